/*
 * fuzz_tcx: TCX canonicalisation (the app pass over the request's
 * parameters) and feedback (the server's failure bodies). Input:
 *   service                 one of those below
 *   METHOD URL
 *   content type            (empty: none)
 *   header lines, an empty line
 *   body, then "\n~~~\n"
 *   STATUS, a newline, and the body reported as the server's answer
 * The app pass must be base64("<40 hex>:<32 [a-z0-9]>"); the report must
 * not crash, and the service must still answer afterwards.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define URL "url = \"https://api.example/\";\n"
#define TCX(type, mode, extra) \
	URL "stack = ( { provider = \"tcx\"; type = \"" type "\"; mode = \"" mode "\";\n" \
	"  app_id = \"my-app\"; app_public = \"file:secrets/one\";" extra " } );\n"
static const struct {
	const char *name, *text;
} s_services[] = {
	{ "owtc-param", TCX("owtc", "param", "") },
	{ "owtc-time", TCX("owtc", "time", "") },
	{ "ftc-none", TCX("ftc", "none", " master_key = \"file:secrets/two\";") },
	{ "twtc-param", TCX("twtc", "param", " base_url = \"https://api.example/\";") },
};
#define S_N (sizeof(s_services) / sizeof(s_services[0]))

/* What tcx/authorize and tcx/reauthorize answer, for twtc. */
static const char s_authorize[] =
	"200 application/json\n\n"
	"{\"status\":1,\"data\":{\"token\":\"tok-a\",\"refresh\":\"ref-a\"}}";

static apicred_ctx *s_ctx;
static apicred_cred *s_cred;

static void s_setup(void)
{
	char path[128];

	if (s_ctx)
		return;
	fz_init();
	fz_confdir("conf");
	for (size_t i = 0; i < S_N; i++) {
		snprintf(path, sizeof(path), "conf/conf.d/%s.conf", s_services[i].name);
		fz_write(path, s_services[i].text, strlen(s_services[i].text));
	}
	if (!(s_ctx = fz_open("conf")) || apicred_cred_new(&s_cred) != APICRED_OK)
		abort();
}

static void s_check_pass(const apicred_cred *cred)
{
	const char *pass = apicred_cred_find(cred, APICRED_HEADER, "X-TCX-APP-PASS");
	unsigned char raw[128];
	size_t n;
	int len;

	if (!pass || (n = strlen(pass)) != 100) /* 73 bytes */
		abort();
	len = EVP_DecodeBlock(raw, (const unsigned char *)pass, (int)n);
	if (len != 75) /* EVP_DecodeBlock counts the padding in */
		abort();
	for (int i = 0; i < 73; i++) {
		char c = (char)raw[i];
		if (i == 40 ? c != ':' : i < 40 ? !strchr("0123456789abcdef", c)
		                                 : !strchr("abcdefghijklmnopqrstuvwxyz0123456789", c))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *p = data;
	size_t n = len, i, nh = 0;
	char *name, *line, *ct, *body, *headers[9] = { 0 }, *status;
	apicred_request req = APICRED_REQUEST_INIT;
	int rc;

	s_setup();
	fz_input(data, len);
	name = fz_cut(&p, &n, "\n");
	for (i = 0; i < S_N && strcmp(name, s_services[i].name) != 0; i++)
		;
	free(name);
	if (i == S_N)
		return -1;
	line = fz_cut(&p, &n, "\n");
	ct = fz_cut(&p, &n, "\n");
	while (n && *p != '\n' && nh < 8)
		headers[nh++] = fz_cut(&p, &n, "\n");
	if (n && *p == '\n') {
		p++;
		n--;
	}
	body = fz_cut(&p, &n, "\n~~~\n");
	status = fz_cut(&p, &n, "\n");

	req.method = line;
	req.url = strchr(line, ' ');
	if (req.url)
		*(char *)(uintptr_t)req.url++ = '\0';
	req.content_type = *ct ? ct : NULL;
	req.headers = nh ? (const char *const *)headers : NULL;
	req.body = body;
	req.body_len = strlen(body);

	fz_replies((const uint8_t *)s_authorize, sizeof(s_authorize) - 1);
	rc = apicred_get(s_ctx, s_services[i].name, &req, s_cred);
	fz_no_secret("apicred_errmsg", apicred_errmsg());
	if (rc == APICRED_OK) {
		s_check_pass(s_cred);
		apicred_report(s_ctx, s_services[i].name, s_cred, strtol(status, NULL, 10),
		               p, n, NULL);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		/* The reply is answered again, whatever the feedback did. */
		fz_replies((const uint8_t *)s_authorize, sizeof(s_authorize) - 1);
		rc = apicred_get(s_ctx, s_services[i].name, &req, s_cred);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		if (rc != APICRED_OK && rc != APICRED_ERR_UNAVAILABLE)
			abort(); /* a report must never break a working service */
		if (rc == APICRED_OK)
			s_check_pass(s_cred);
	}
	free(line);
	free(ct);
	free(body);
	free(status);
	for (i = 0; i < nh; i++)
		free(headers[i]);
	return 0;
}
