/*
 * fuzz_config: the service-file and apicred.conf loader. Input: a service
 * file, then optionally "\n%%\n" and an apicred.conf, then "\n%%\n" and the
 * HTTP replies a get may need (fuzz.h). The service is checked, described,
 * got (its credentials well-formed, no secret in any message) and told of
 * a 401.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static void s_check_cred(const apicred_cred *cred)
{
	size_t n = apicred_cred_count(cred, APICRED_HEADER);

	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t vlen;
		if (apicred_cred_item(cred, APICRED_HEADER, i, &name, &value, &vlen) != APICRED_OK ||
		    !*name || strpbrk(name, "\r\n: ") || memchr(value, '\r', vlen) ||
		    memchr(value, '\n', vlen) || memchr(value, '\0', vlen))
			abort(); /* a header that would inject or break the request */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *p = data;
	size_t n = len;
	char *svc, *global = NULL;
	apicred_ctx *ctx;

	if (!*fz_dir()) {
		fz_init();
		fz_confdir("conf");
	}
	fz_input(data, len);
	svc = fz_cut(&p, &n, "\n%%\n");
	if (n)
		global = fz_cut(&p, &n, "\n%%\n");
	fz_write("conf/conf.d/fz.conf", svc, strlen(svc));
	if (global)
		fz_write("conf/apicred.conf", global, strlen(global));
	else
		fz_remove("conf/apicred.conf");
	fz_replies(p, n);

	if ((ctx = fz_open("conf"))) {
		apicred_request req = APICRED_REQUEST_INIT;
		apicred_cred *cred = NULL;
		const char *d;
		char *dr = NULL;
		int rc;

		rc = apicred_check(ctx, "fz");
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		if ((d = apicred_service_description(ctx, "fz")))
			fz_no_secret("the description", d);
		if (apicred_service_description_read(ctx, "fz", &dr) == APICRED_OK && dr)
			fz_no_secret("the description read alone", dr);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		free(dr);
		req.method = "POST";
		req.url = "https://api.example/v1/items?page=2";
		req.body = "{\"name\":\"x\"}";
		req.body_len = strlen(req.body);
		if (rc == APICRED_OK && apicred_cred_new(&cred) == APICRED_OK) {
			rc = apicred_get(ctx, "fz", &req, cred);
			fz_no_secret("apicred_errmsg", apicred_errmsg());
			if (rc == APICRED_OK) {
				s_check_cred(cred);
				apicred_report(ctx, "fz", cred, 401, "{}", 2, NULL);
				fz_no_secret("apicred_errmsg", apicred_errmsg());
			}
			apicred_cred_free(cred);
		}
		apicred_close(ctx);
	}
	free(svc);
	free(global);
	return 0;
}
