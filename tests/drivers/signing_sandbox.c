/*
 * signing_sandbox.c - what the `apicred` tool cannot show in one run, checked
 * against the sandbox with the library's clock hook: a session that must
 * outlive the server's token (hmac 401 -> login again; tcx TCXTFX -> drop
 * and authorize afresh) and a twtc token renewed with tcx/reauthorize.
 * Driven by tests/integration/hmac.sh and tcx.sh, which write the services;
 * prints "PASS what" / "FAIL what" lines for their ok_lines.
 *
 *   signing_sandbox hmac SERVICE          (a TPV service on $SB)
 *   signing_sandbox tcx SERVICE           (a twtc service on $SB)
 *   signing_sandbox tcx-renew-fail SERVICE (reauthorize will be refused)
 *
 * Environment: SB, SB_CA, APICRED_TEST_CONFDIR, APICRED_TEST_MODULEDIR.
 * Only the monotonic clock is moved: the sandbox checks tcx_datetime and
 * the TPV login timestamp against its real clock.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include <apicred/apicred.h>

static int64_t s_offset_ms;
static int s_failed;
static const char *s_sb, *s_ca;

static int64_t s_mono(void *user)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + s_offset_ms;
}

static void s_check(int cond, const char *what)
{
	printf("%s %s\n", cond ? "PASS" : "FAIL", what);
	if (!cond) {
		s_failed = 1;
		printf("# apicred_errmsg: %s\n", apicred_errmsg());
	}
}

struct s_buf {
	char data[65536];
	size_t len;
};

static size_t s_write(char *p, size_t size, size_t n, void *user)
{
	struct s_buf *b = user;
	size_t len = size * n;

	if (len > sizeof(b->data) - 1 - b->len)
		len = sizeof(b->data) - 1 - b->len;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return size * n;
}

/* One request decorated by apicred_curl_apply; HTTP status, body in b. */
static long s_perform(apicred_ctx *ctx, const char *service, const apicred_request *req,
                      apicred_cred *cred, struct s_buf *b)
{
	CURL *h = curl_easy_init();
	long status = 0;

	b->len = 0;
	b->data[0] = '\0';
	if (!h || apicred_curl_apply(ctx, service, h, req, cred) != APICRED_OK) {
		curl_easy_cleanup(h);
		return -1;
	}
	curl_easy_setopt(h, CURLOPT_CAINFO, s_ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	if (req->method)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return status;
}

/* Sandbox control, made by libcurl directly (not the code under test). */
static int s_ctl(const char *op)
{
	char url[1024];
	CURL *h = curl_easy_init();
	long status = 0;
	struct s_buf *b = calloc(1, sizeof(*b));

	snprintf(url, sizeof(url), "%s/_ctl/%s", s_sb, op);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, s_ca);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	free(b);
	return status == 200 ? 0 : -1;
}

static char *s_dup_header(apicred_cred *cred, const char *name)
{
	const char *v = apicred_cred_find(cred, APICRED_HEADER, name);

	return v ? strdup(v) : NULL;
}

/* hmac: the server forgets the login token; the 401 reported makes the
 * library log in again and the retried request passes. */
static void s_hmac(apicred_ctx *ctx, const char *svc, apicred_cred *cred, struct s_buf *b)
{
	apicred_request req = APICRED_REQUEST_INIT;
	char url[1024], *tok;
	int retry = -1;

	snprintf(url, sizeof(url), "%s/tpv/api/v1/products?brand=1&x=a+b", s_sb);
	req.url = url;
	s_check(s_perform(ctx, svc, &req, cred, b) == 200, "hmac: signed request passes");
	tok = s_dup_header(cred, "Authorization");
	s_check(s_ctl("expire") == 0, "hmac: sandbox expires every token");
	s_check(s_perform(ctx, svc, &req, cred, b) == 401, "hmac: the forgotten token gets 401");
	s_check(apicred_report(ctx, svc, cred, 401, b->data, b->len, &retry) == APICRED_OK &&
	        retry == 1, "hmac: reporting the 401 asks for a retry");
	s_check(s_perform(ctx, svc, &req, cred, b) == 200, "hmac: the retry passes");
	s_check(tok && apicred_cred_find(cred, APICRED_HEADER, "Authorization") &&
	        strcmp(tok, apicred_cred_find(cred, APICRED_HEADER, "Authorization")) != 0,
	        "hmac: with a new login token");
	free(tok);
}

static int s_tcx_ok(const struct s_buf *b)
{
	return strstr(b->data, "\"status\": 1") || strstr(b->data, "\"status\":1");
}

/* twtc: renewed past expiry with tcx/reauthorize (same token); a TCXTFX
 * reported drops the token and the next get authorizes afresh. */
static void s_tcx(apicred_ctx *ctx, const char *svc, apicred_cred *cred, struct s_buf *b,
                  int renew_fails)
{
	apicred_request req = APICRED_REQUEST_INIT;
	char url[1024], *tok, *tok2;
	int retry = -1;

	snprintf(url, sizeof(url), "%s/tcx/api/items?b=2&a=1", s_sb);
	req.url = url;
	s_check(s_perform(ctx, svc, &req, cred, b) == 200 && s_tcx_ok(b),
	        "tcx: request with the authorized token passes");
	tok = s_dup_header(cred, "X-TCX-TOKEN");

	/* Past the expiry (the sandbox's tokens live 3600 s). */
	s_offset_ms += 3601 * 1000;
	s_check(s_perform(ctx, svc, &req, cred, b) == 200 && s_tcx_ok(b),
	        "tcx: request after the renewal passes");
	tok2 = s_dup_header(cred, "X-TCX-TOKEN");
	if (renew_fails)
		s_check(tok && tok2 && strcmp(tok, tok2) != 0,
		        "tcx: refused reauthorize -> authorized afresh (new token)");
	else
		s_check(tok && tok2 && strcmp(tok, tok2) == 0,
		        "tcx: reauthorize keeps the access token");
	free(tok);
	if (renew_fails) {
		free(tok2);
		return;
	}

	s_check(s_ctl("expire") == 0, "tcx: sandbox expires every token");
	s_check(s_perform(ctx, svc, &req, cred, b) == 200 && strstr(b->data, "TCXTFX"),
	        "tcx: the expired token gets a TCXTFX body");
	s_check(apicred_report(ctx, svc, cred, 200, b->data, b->len, &retry) == APICRED_OK &&
	        retry == 1, "tcx: reporting TCXTFX asks for a retry");
	s_check(s_perform(ctx, svc, &req, cred, b) == 200 && s_tcx_ok(b), "tcx: the retry passes");
	tok = s_dup_header(cred, "X-TCX-TOKEN");
	s_check(tok && tok2 && strcmp(tok, tok2) != 0, "tcx: with a new access token");
	free(tok);
	free(tok2);
}

int main(int argc, char **argv)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx;
	apicred_cred *cred;
	struct s_buf *b;

	s_sb = getenv("SB");
	s_ca = getenv("SB_CA");
	o.confdir = getenv("APICRED_TEST_CONFDIR");
	o.moduledir = getenv("APICRED_TEST_MODULEDIR");
	if (argc != 3 || !s_sb || !s_ca || !o.confdir || !o.moduledir) {
		printf("FAIL usage: signing_sandbox hmac|tcx|tcx-renew-fail SERVICE, with SB, "
		       "SB_CA, APICRED_TEST_CONFDIR, APICRED_TEST_MODULEDIR set\n");
		return 1;
	}
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	o.clock_mono_ms = s_mono;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	b = calloc(1, sizeof(*b));
	if (!b || apicred_open_opts(&ctx, &o) != APICRED_OK || apicred_cred_new(&cred) != APICRED_OK) {
		printf("FAIL open: %s\n", apicred_errmsg());
		return 1;
	}
	if (strcmp(argv[1], "hmac") == 0)
		s_hmac(ctx, argv[2], cred, b);
	else
		s_tcx(ctx, argv[2], cred, b, strcmp(argv[1], "tcx-renew-fail") == 0);
	apicred_cred_free(cred);
	apicred_close(ctx);
	free(b);
	curl_global_cleanup();
	return s_failed;
}
