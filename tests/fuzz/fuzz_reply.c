/*
 * fuzz_reply: token and login replies of oauth2, hmac and tcx, and the
 * replies of oauth2's provisioning. Input: a first line naming one of the
 * services below, then the HTTP replies (fuzz.h). The real provider asks,
 * the fuzzer answers; the credentials must be well-formed and no message
 * may hold a secret. After a success the service is told of a 401 and got
 * again (a refresh: tcx/reauthorize, a new token).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define URL "url = \"https://api.example/\";\n"
static const struct {
	const char *name, *text;
} s_services[] = {
	{ "oauth2-basic", URL "stack = ( { provider = \"oauth2\";\n"
	  "  token_url = \"https://id.example/token\";\n"
	  "  client_id = \"file:secrets/user\"; client_secret = \"file:secrets/one\"; } );\n" },
	{ "oauth2-post", URL "stack = ( { provider = \"apikey\"; key = \"file:secrets/two\"; },\n"
	  "  { provider = \"oauth2\"; token_url = \"https://api.example/token\";\n"
	  "  client_id = \"file:secrets/user\"; client_secret = \"file:secrets/one\";\n"
	  "  client_auth = \"post\"; scope = ( \"a\", \"b\" ); max_body = 4096; } );\n" },
	{ "hmac", URL "stack = ( { provider = \"hmac\";\n"
	  "  auth_url = \"https://api.example/api/v1/auth\";\n"
	  "  app_token = \"file:secrets/two\"; app_secret = \"file:secrets/one\"; } );\n" },
	{ "tcx-twtc", URL "stack = ( { provider = \"tcx\"; type = \"twtc\"; mode = \"time\";\n"
	  "  base_url = \"https://api.example/\"; app_id = \"my-app\";\n"
	  "  app_public = \"file:secrets/one\"; } );\n" },
	{ "momo", URL "stack = ( { provider = \"oauth2\";\n"
	  "  token_url = \"https://api.example/collection/token/\";\n"
	  "  client_id = \"file:secrets/p.user\"; client_secret = \"file:secrets/p.key\";\n"
	  "  provision_url = \"https://api.example/v1_0\"; callback_host = \"cb.example\"; } );\n" },
};
#define S_N (sizeof(s_services) / sizeof(s_services[0]))

static void s_check_cred(const apicred_cred *cred)
{
	size_t n = apicred_cred_count(cred, APICRED_HEADER);

	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t vlen;
		if (apicred_cred_item(cred, APICRED_HEADER, i, &name, &value, &vlen) != APICRED_OK ||
		    memchr(value, '\r', vlen) || memchr(value, '\n', vlen) ||
		    memchr(value, '\0', vlen))
			abort(); /* a header that would inject or break the request */
	}
}

static apicred_ctx *s_ctx[S_N];
static apicred_cred *s_cred;

/* One context per service, each in its own confdir: a context loads every
 * service it has, and one is enough. They live on; the clock moves a year
 * on after each input, past every token lifetime and back-off, so each
 * input fetches afresh. */
static void s_setup(void)
{
	char path[128];

	if (s_cred)
		return;
	fz_init();
	for (size_t i = 0; i < S_N; i++) {
		fz_confdir(s_services[i].name);
		snprintf(path, sizeof(path), "%s/conf.d/%s.conf", s_services[i].name,
		         s_services[i].name);
		fz_write(path, s_services[i].text, strlen(s_services[i].text));
		if (!(s_ctx[i] = fz_open(s_services[i].name)))
			abort();
	}
	if (apicred_cred_new(&s_cred) != APICRED_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *p = data;
	size_t n = len, i;
	char *name;
	const char *svc;
	apicred_request req = APICRED_REQUEST_INIT;
	int rc;

	s_setup();
	fz_input(data, len);
	name = fz_cut(&p, &n, "\n");
	for (i = 0; i < S_N && strcmp(name, s_services[i].name) != 0; i++)
		;
	free(name);
	if (i == S_N)
		return -1; /* not worth keeping */
	svc = s_services[i].name;
	fz_replies(p, n);
	if (strcmp(svc, "momo") == 0) {
		char *report = NULL;
		/* Provisioning overwrites these; each input starts from the same. */
		fz_write("momo/secrets/p.user", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", 36);
		fz_write("momo/secrets/p.key", FZ_SECRET_TWO, strlen(FZ_SECRET_TWO));
		apicred_provision(s_ctx[i], svc, APICRED_PROVISION_FORCE, &report);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		fz_no_secret("the provisioning report", report);
		free(report);
	}
	req.method = "GET";
	req.url = "https://api.example/v1/things?q=1";
	rc = apicred_get(s_ctx[i], svc, &req, s_cred);
	fz_no_secret("apicred_errmsg", apicred_errmsg());
	if (rc == APICRED_OK) {
		s_check_cred(s_cred);
		apicred_report(s_ctx[i], svc, s_cred, 401, NULL, 0, NULL);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		fz_clock_advance(5000);
		rc = apicred_get(s_ctx[i], svc, &req, s_cred);
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		if (rc == APICRED_OK)
			s_check_cred(s_cred);
	}
	fz_clock_advance(400LL * 86400 * 1000);
	return 0;
}
