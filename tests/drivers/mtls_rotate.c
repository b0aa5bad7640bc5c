/*
 * mtls_rotate - a long-running application, for tests/integration/mtls.sh.
 *
 *   mtls_rotate CONFDIR MODULEDIR SERVICE URL COMMAND reload|SECONDS
 *
 * Opens one context and makes requests to URL with apicred_curl_apply(),
 * as an application that never restarts would: two requests, then COMMAND
 * (sh -c; it replaces the client certificate files), then either
 * apicred_reload() or a monotonic clock moved SECONDS ahead (the library's
 * own periodic check), then a third request. A 401 is not retried, so a
 * token reused with the new certificate shows. Prints one line per request:
 * "N STATUS BODY" or "N error: MESSAGE".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include <apicred/apicred.h>

static int64_t s_offset_ms;

static int64_t s_mono(void *user)
{
	struct timespec ts;

	(void)user;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + s_offset_ms;
}

static void s_log(void *user, int level, const char *service, const char *message)
{
	(void)user;
	fprintf(stderr, "log %d %s: %s\n", level, service ? service : "-", message);
}

struct s_body {
	char buf[512];
	size_t len;
};

static size_t s_write(char *data, size_t size, size_t n, void *user)
{
	struct s_body *b = user;
	size_t len = size * n, room = sizeof(b->buf) - 1 - b->len;

	memcpy(b->buf + b->len, data, len < room ? len : room);
	b->len += len < room ? len : room;
	b->buf[b->len] = '\0';
	return len;
}

static int s_request(apicred_ctx *ctx, const char *service, const char *url, int n)
{
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred = NULL;
	struct s_body body = { .len = 0 };
	CURL *curl = curl_easy_init();
	long status = 0;
	int rc;

	req.url = url;
	if (!curl || apicred_cred_new(&cred) != APICRED_OK) {
		printf("%d error: out of memory\n", n);
		return 1;
	}
	rc = apicred_curl_apply(ctx, service, curl, &req, cred);
	if (rc != APICRED_OK) {
		printf("%d error: %s\n", n, apicred_errmsg());
	} else {
		CURLcode cc;

		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_write);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
		cc = curl_easy_perform(curl);
		if (cc != CURLE_OK) {
			printf("%d error: %s\n", n, curl_easy_strerror(cc));
			rc = 1;
		} else {
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
			for (char *p = body.buf; *p; p++)
				if (*p == '\n' || *p == '\r')
					*p = ' ';
			printf("%d %ld %s\n", n, status, body.buf);
			apicred_report(ctx, service, cred, status, body.buf, body.len, NULL);
		}
	}
	fflush(stdout);
	curl_easy_cleanup(curl);
	apicred_cred_free(cred);
	return rc;
}

int main(int argc, char **argv)
{
	apicred_options o;
	apicred_ctx *ctx;
	int rc;

	if (argc != 7) {
		fprintf(stderr, "usage: mtls_rotate CONFDIR MODULEDIR SERVICE URL COMMAND "
		                "reload|SECONDS\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.confdir = argv[1];
	o.moduledir = argv[2];
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	o.log = s_log;
	o.clock_mono_ms = s_mono;
	rc = apicred_open_opts(&ctx, &o);
	if (rc != APICRED_OK) {
		printf("0 error: %s\n", apicred_errmsg());
		return 1;
	}
	s_request(ctx, argv[3], argv[4], 1);
	s_request(ctx, argv[3], argv[4], 2);
	if (system(argv[5]) != 0) {
		printf("rotate error: %s failed\n", argv[5]);
		return 1;
	}
	if (strcmp(argv[6], "reload") == 0) {
		rc = apicred_reload(ctx);
		if (rc != APICRED_OK)
			printf("reload error: %s\n", apicred_errmsg());
	} else {
		s_offset_ms = atoll(argv[6]) * 1000;
	}
	s_request(ctx, argv[3], argv[4], 3);
	apicred_close(ctx);
	curl_global_cleanup();
	return 0;
}
