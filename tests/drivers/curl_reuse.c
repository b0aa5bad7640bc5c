/*
 * curl_reuse - one libcurl handle for several services, for
 * tests/integration/mtls.sh: what apicred_curl_apply sets for one service
 * must not go with the handle to the next (a client certificate above all).
 *
 *   curl_reuse CONFDIR MODULEDIR URL SERVICE...
 *
 * For each SERVICE in turn, on the same handle: apicred_curl_apply for URL,
 * then the transfer. Prints one line per service: "N STATUS" or
 * "N error: MESSAGE".
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include <apicred/apicred.h>

static size_t s_discard(char *data, size_t size, size_t n, void *user)
{
	(void)data;
	(void)user;
	return size * n;
}

int main(int argc, char **argv)
{
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_options o = { .size = sizeof(o) };
	apicred_cred *cred = NULL;
	apicred_ctx *ctx = NULL;
	CURL *curl;

	if (argc < 5) {
		fprintf(stderr, "usage: curl_reuse CONFDIR MODULEDIR URL SERVICE...\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	o.confdir = argv[1];
	o.moduledir = argv[2];
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	if (apicred_open_opts(&ctx, &o) != APICRED_OK || apicred_cred_new(&cred) != APICRED_OK ||
	    !(curl = curl_easy_init())) {
		printf("0 error: %s\n", apicred_errmsg());
		return 1;
	}
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
	req.url = argv[3];
	for (int i = 4; i < argc; i++) {
		long status = 0;
		CURLcode cc;

		if (apicred_curl_apply(ctx, argv[i], curl, &req, cred) != APICRED_OK) {
			printf("%d error: %s\n", i - 3, apicred_errmsg());
			continue;
		}
		cc = curl_easy_perform(curl);
		if (cc != CURLE_OK) {
			printf("%d error: %s\n", i - 3, curl_easy_strerror(cc));
			continue;
		}
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		printf("%d %ld\n", i - 3, status);
	}
	curl_easy_cleanup(curl);
	apicred_cred_free(cred);
	apicred_close(ctx);
	curl_global_cleanup();
	return 0;
}
