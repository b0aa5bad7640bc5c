/*
 * test_hmac.c - the hmac provider through the real library: a real ctx,
 * the real hmac.so, a login endpoint played by the sandbox's scripted
 * endpoint, and a clock fixed at 2018-12-30 23:59:59 UTC. Every expected value is either a
 * literal known vector or computed here with OpenSSL.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"

#define TOKEN "sb-tpv-token"
#define SECRET "sb-tpv-secret-0123456789abcdef"
#define TS "1546214399"

struct t {
	apicred_ctx *ctx;
};

/* The harness: the current test's configuration (clock fixed, random bytes
 * 0, 1, ..., the providers as built, no fetch retries), and the sandbox
 * whose scripted endpoint plays the login server, one for all the tests. */
static fx *s_fx;
static fx_sandbox *s_sb;

static void s_fx_new(void)
{
	s_fx = fx_new();
	s_fx->hooks = FX_CLOCK | FX_RANDOM;
	fx_modules_built(s_fx);
	fx_global(s_fx, "http = { retries = 0; };\n");
}

static int s_group_setup(void **state)
{
	s_sb = fx_sandbox_start();
	return 0;
}

static int s_group_teardown(void **state)
{
	fx_sandbox_stop(s_sb);
	return 0;
}

static int s_setup(void **state)
{
	struct t *f = calloc(1, sizeof(*f));

	s_fx_new();
	fx_mono_ms = 1000000;
	fx_wall_ms = 1546214399000LL;
	fx_sandbox_reset(s_sb);
	fx_sandbox_answer(s_sb, 200, NULL, "{\"auth_token\":\"tok-1\"}");
	*state = f;
	return 0;
}

static int s_teardown(void **state)
{
	struct t *f = *state;

	apicred_close(f->ctx);
	fx_free(s_fx);
	free(f);
	return 0;
}

/* A TPV service on the scripted endpoint with extra settings. */
static void s_tpv(struct t *f, const char *name, const char *extra)
{
	fx_service(s_fx, name, 0600,
	           "url = \"https://tpv.example/\";\n"
	           "description = \"TPV test\";\n"
	           "stack = ( { provider = \"hmac\"; insecure_http = true;\n"
	           "  auth_url = \"http://127.0.0.1:%d/script/api/v1/auth\";\n"
	           "  app_token = \"" TOKEN "\"; app_secret = \"" SECRET "\";\n"
	           "  %s } );\n", s_sb->port, extra);
}

static const char *s_sig(const char *msg)
{
	return fx_hmac_sha256_hex(SECRET, strlen(SECRET), msg, strlen(msg));
}

/* ---- login ------------------------------------------------------------------ */

static void test_login_signature(void **state)
{
	struct t *f = *state;
	fx_req r;

	s_tpv(f, "tpv", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "GET", "https://tpv.example/api/v1/products", NULL, NULL),
	                 APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 1);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(r.method, "POST");
	assert_int_equal(strncmp(r.target, "/script/api/v1/auth?", 20), 0);
	assert_string_equal(fx_req_query(&r, "token"), TOKEN);
	assert_string_equal(fx_req_query(&r, "timestamp"), TS);
	/* Known vector: HMAC-SHA256(SECRET, "token=sb-tpv-token&timestamp=1546214399"),
	 * from `openssl dgst -sha256 -hmac`. */
	assert_string_equal(fx_req_query(&r, "_signature"),
	                    "2fba604357da66f765bf3f85f962e6e098e5bab7fd62ddb172208a0fb4433e3f");
	assert_string_equal(fx_req_query(&r, "_signature"), s_sig("token=" TOKEN "&timestamp=" TS));
	assert_int_equal(r.body_len, 0);
	/* The token goes out as it came, without "Bearer". */
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-1");
}

static void test_login_milliseconds(void **state)
{
	struct t *f = *state;
	fx_req r;

	s_tpv(f, "tpv", "timestamp = \"milliseconds\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(fx_req_query(&r, "timestamp"), TS "000");
	assert_string_equal(fx_req_query(&r, "_signature"),
	                    "368bfca453417e2adb670e1e8479dda7b5eeb1ea63ff2dfc20596ab1a812e40a");
}

/* The signature covers the raw token; only the URL carries it escaped. */
static void test_login_escapes_on_the_wire_only(void **state)
{
	struct t *f = *state;
	const char *tok = "a b&c=d+e%/é";
	fx_req r;
	char msg[128];

	fx_service(s_fx, "odd", 0600,
	           "url = \"https://tpv.example/\";\n"
	           "stack = ( { provider = \"hmac\"; insecure_http = true;\n"
	           "  auth_url = \"http://127.0.0.1:%d/script/login?v=2\";\n"
	           "  app_token = \"%s\"; app_secret = \"" SECRET "\"; } );\n", s_sb->port, tok);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "odd", NULL, NULL, NULL, NULL), APICRED_OK);
	r = fx_sandbox_req(s_sb, 0);
	/* An auth_url with a query keeps it. */
	assert_int_equal(strncmp(r.target, "/script/login?v=2&token=", 24), 0);
	assert_string_equal(fx_req_query(&r, "token"), "a+b%26c%3Dd%2Be%25%2F%C3%A9");
	snprintf(msg, sizeof(msg), "token=%s&timestamp=" TS, tok);
	assert_string_equal(fx_req_query(&r, "_signature"), s_sig(msg));
}

/* A secret longer than SHA-256's 64-byte block is hashed first by HMAC. */
static void test_long_secret(void **state)
{
	struct t *f = *state;
	char secret[101];
	fx_req r;
	const char *msg = "token=" TOKEN "&timestamp=" TS;

	for (int i = 0; i < 100; i++)
		secret[i] = (char)('A' + i % 26);
	secret[100] = '\0';
	fx_service(s_fx, "long", 0600,
	           "url = \"https://x.example/\";\n"
	           "stack = ( { provider = \"hmac\"; insecure_http = true;\n"
	           "  auth_url = \"http://127.0.0.1:%d/script/auth\";\n"
	           "  app_token = \"" TOKEN "\"; app_secret = \"%s\"; } );\n", s_sb->port, secret);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "long", "GET", "https://x.example/p?a=1", NULL, NULL),
	                 APICRED_OK);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(fx_req_query(&r, "_signature"),
	                    fx_hmac_sha256_hex(secret, 100, msg, strlen(msg)));
	assert_string_equal(fx_header(s_fx, "Signature"), fx_hmac_sha256_hex(secret, 100, "a=1", 3));
}

/* ---- per-request signatures ---------------------------------------------------- */

static void test_sign_query(void **state)
{
	struct t *f = *state;
	static const struct { const char *url, *signed_text; } cases[] = {
		{ "https://tpv.example/api/v1/products?your=Parameters&here=1", "your=Parameters&here=1" },
		/* As sent: no re-encoding, no sorting. */
		{ "https://tpv.example/p?z=1&a=%26%3D%2B%25%23%22&sp=a+b&e=&u=%C3%A9",
		  "z=1&a=%26%3D%2B%25%23%22&sp=a+b&e=&u=%C3%A9" },
		{ "https://tpv.example/p?a=1#frag?b=2", "a=1" },
		{ "https://tpv.example/p#x?y", "" },
		{ "https://tpv.example/p", "" },
		{ "https://tpv.example/p?", "" },
	};

	s_tpv(f, "tpv", "sign = \"query\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "POST", cases[i].url, "{\"x\":1}", NULL),
		                 APICRED_OK);
		assert_string_equal(fx_header(s_fx, "Authorization"), "tok-1");
		assert_string_equal(fx_header(s_fx, "Signature"), s_sig(cases[i].signed_text));
	}
	/* One login for all of them. */
	assert_int_equal(fx_sandbox_count(s_sb), 1);
}

/* A query parameter from a layer above is part of the URL as sent, so it
 * is signed too. */
static void test_sign_query_from_layer_above(void **state)
{
	struct t *f = *state;

	fx_service(s_fx, "tpvk", 0600,
	           "url = \"https://tpv.example/\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"k-1 2\"; in = \"query\"; },\n"
	           "  { provider = \"hmac\"; insecure_http = true; sign = \"query\";\n"
	           "  auth_url = \"http://127.0.0.1:%d/script/api/v1/auth\";\n"
	           "  app_token = \"" TOKEN "\"; app_secret = \"" SECRET "\"; } );\n",
	           s_sb->port);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpvk", "GET", "https://tpv.example/p?a=1", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(fx_query(s_fx, "api_key"), "k-1 2");
	assert_string_equal(fx_header(s_fx, "Signature"), s_sig("a=1&api_key=k-1+2") /* as libcurl escapes it */);
}

static void test_sign_body(void **state)
{
	struct t *f = *state;
	const char *body = "{\"channel\":\"dtd\",\"external_id\":null,\"v\":\"& = + % # \\\"\"}";

	s_tpv(f, "tpv", "sign = \"body\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "POST", "https://tpv.example/api/v1/tpv?a=1", body,
	                        "application/json"), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Signature"), s_sig(body));
	/* No body: the signature of "". */
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "GET", "https://tpv.example/x?a=1", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Signature"), s_sig(""));
}

static void test_sign_query_body(void **state)
{
	struct t *f = *state;

	s_tpv(f, "tpv", "sign = \"query+body\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "POST", "https://tpv.example/x?a=1&b=2", "c=3&d=4",
	                        "application/x-www-form-urlencoded"), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Signature"), s_sig("a=1&b=2c=3&d=4"));
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", "POST", "https://tpv.example/x", "{}", NULL),
	                 APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Signature"), s_sig("{}"));
}

static void test_sign_none_and_header_names(void **state)
{
	struct t *f = *state;

	s_tpv(f, "none", "sign = \"none\";");
	s_tpv(f, "named", "auth_header = \"X-Auth-Token\"; signature_header = \"X-Signature\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "none", "GET", "https://tpv.example/x?a=1", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-1");
	assert_null(fx_header(s_fx, "Signature"));
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_HEADER), 1);

	assert_int_equal(fx_request(s_fx, f->ctx, "named", "GET", "https://tpv.example/x?a=1", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-Auth-Token"), "tok-1");
	assert_string_equal(fx_header(s_fx, "X-Signature"), s_sig("a=1"));
	assert_null(fx_header(s_fx, "Authorization"));
}

/* ---- session lifetime and feedback ----------------------------------------------- */

static void test_token_ttl(void **state)
{
	struct t *f = *state;

	s_tpv(f, "tpv", "");
	s_tpv(f, "short", "token_ttl = 60;");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_request(s_fx, f->ctx, "short", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);
	assert_int_equal(apicred_cred_expires_at(s_fx->cred), 1546214399 + 60);

	fx_sandbox_answer(s_sb, 200, NULL, "{\"auth_token\":\"tok-2\"}");
	fx_mono_ms += 61 * 1000;
	fx_wall_ms += 61 * 1000;
	assert_int_equal(fx_request(s_fx, f->ctx, "short", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-2");
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-1");
	assert_int_equal(fx_sandbox_count(s_sb), 3);

	/* The default 30 minutes: logged in again once they are over. */
	fx_mono_ms += 1800 * 1000;
	fx_wall_ms += 1800 * 1000;
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-2");
	assert_int_equal(fx_sandbox_count(s_sb), 4);
	/* That login was signed with the new time. */
	{
		fx_req r = fx_sandbox_req(s_sb, 3);
		char msg[64];

		snprintf(msg, sizeof(msg), "token=" TOKEN "&timestamp=%lld",
		         (long long)(fx_wall_ms / 1000));
		assert_string_equal(fx_req_query(&r, "_signature"), s_sig(msg));
	}
}

static void test_feedback_401_logs_in_again(void **state)
{
	struct t *f = *state;
	const char *err400 = "{\"error\":\"channel must be defined\"}";
	int retry = 0;

	s_tpv(f, "tpv", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	fx_sandbox_answer(s_sb, 200, NULL, "{\"auth_token\":\"tok-2\"}");
	/* A 400 explains itself in the log but keeps the token. */
	assert_int_equal(apicred_report(f->ctx, "tpv", s_fx->cred, 400, err400, strlen(err400),
	                                &retry), APICRED_OK);
	assert_int_equal(retry, 0);
	assert_true(fx_logged(s_fx, "channel must be defined"));
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-1");

	assert_int_equal(apicred_report(f->ctx, "tpv", s_fx->cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "tok-2");
	assert_int_equal(fx_sandbox_count(s_sb), 2);
}

/* apply runs in many threads at once on one keyed HMAC state. */
struct s_worker {
	apicred_ctx *ctx;
	int bad;
};

static void *s_work(void *arg)
{
	struct s_worker *w = arg;
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred;
	char url[64], want[65];
	const char *sig;

	if (apicred_cred_new(&cred) != APICRED_OK) {
		w->bad++;
		return NULL;
	}
	for (int i = 0; i < 2000; i++) {
		snprintf(url, sizeof(url), "https://tpv.example/p?i=%d", i % 7);
		snprintf(want, sizeof(want), "%s", s_sig(url + strlen("https://tpv.example/p?")));
		req.url = url;
		if (apicred_get(w->ctx, "tpv", &req, cred) != APICRED_OK ||
		    !(sig = apicred_cred_find(cred, APICRED_HEADER, "Signature")) ||
		    strcmp(sig, want) != 0)
			w->bad++;
	}
	apicred_cred_free(cred);
	return NULL;
}

static void test_concurrent_apply(void **state)
{
	struct t *f = *state;
	struct s_worker w[4];
	pthread_t t[4];

	s_tpv(f, "tpv", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), APICRED_OK);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct s_worker){ f->ctx, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, s_work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	assert_int_equal(fx_sandbox_count(s_sb), 1);
}

/* ---- failures ------------------------------------------------------------------- */

static void s_expect_failure(struct t *f, int status, const char *body, int code,
                             const char *needle)
{
	const char *msg;

	fx_sandbox_answer(s_sb, status, NULL, body);
	apicred_close(f->ctx);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "tpv", NULL, NULL, NULL, NULL), code);
	msg = apicred_errmsg();
	if (!strstr(msg, needle) || !strstr(msg, "tpv"))
		fail_msg("status %d: message \"%s\" lacks \"%s\"", status, msg, needle);
	/* Never a secret in a message or in the log. */
	assert_null(strstr(msg, SECRET));
	assert_null(strstr(msg, TOKEN));
	assert_false(fx_logged(s_fx, SECRET));
	assert_false(fx_logged(s_fx, TOKEN));
}

static void test_login_failures(void **state)
{
	struct t *f = *state;

	s_tpv(f, "tpv", "");
	s_expect_failure(f, 400, "{\"error\":\"invalid signature\"}", APICRED_ERR_AUTH,
	                 "invalid signature");
	s_expect_failure(f, 401, "{\"error\":\"unknown token\"}", APICRED_ERR_AUTH, "401");
	s_expect_failure(f, 403, "", APICRED_ERR_AUTH, "403");
	s_expect_failure(f, 200, "<html>oops</html>", APICRED_ERR_PROTOCOL, "JSON");
	s_expect_failure(f, 200, "{\"token\":\"x\"}", APICRED_ERR_PROTOCOL, "auth_token");
	s_expect_failure(f, 200, "{\"auth_token\":\"\"}", APICRED_ERR_PROTOCOL, "auth_token");
	s_expect_failure(f, 200, "{\"auth_token\":\"a\\r\\nX-Evil: 1\"}", APICRED_ERR_PROTOCOL,
	                 "control characters");
	s_expect_failure(f, 503, "{\"error\":\"maintenance\"}", APICRED_ERR_UNAVAILABLE, "503");
}

static void test_bad_config(void **state)
{
	struct t *f = *state;

	s_tpv(f, "ttl0", "token_ttl = 0;");
	s_tpv(f, "badsign", "sign = \"headers\";");
	fx_service(s_fx, "nosecret", 0600,
	           "url = \"https://tpv.example/\";\n"
	           "stack = ( { provider = \"hmac\"; auth_url = \"https://x.example/auth\";\n"
	           "  app_token = \"t\"; } );\n");
	fx_service(s_fx, "badurl", 0600,
	           "url = \"https://tpv.example/\";\n"
	           "stack = ( { provider = \"hmac\"; auth_url = \"ftp://x.example/auth\";\n"
	           "  app_token = \"t\"; app_secret = \"s\"; } );\n");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_check(f->ctx, "ttl0"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "token_ttl"));
	assert_int_equal(apicred_check(f->ctx, "badsign"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "sign"));
	assert_int_equal(apicred_check(f->ctx, "nosecret"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "app_secret"));
	assert_int_equal(apicred_check(f->ctx, "badurl"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "auth_url"));
	assert_int_equal(fx_sandbox_count(s_sb), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_login_signature, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_login_milliseconds, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_login_escapes_on_the_wire_only, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_long_secret, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_sign_query, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_sign_query_from_layer_above, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_sign_body, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_sign_query_body, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_sign_none_and_header_names, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_token_ttl, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_feedback_401_logs_in_again, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_apply, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_login_failures, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, s_setup, s_teardown),
	};

	return cmocka_run_group_tests_name("hmac", tests, s_group_setup, s_group_teardown);
}
