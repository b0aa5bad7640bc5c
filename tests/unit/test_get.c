/*
 * test_get.c - what apicred_get hands back for the apikey and tok providers,
 * tok's failover on a reported 403 and its return to a rotated primary, and
 * many threads sharing one context.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <cmocka.h>

#include "fixture.h"

static int setup(void **state)
{
	*state = fx_new();
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- apikey ------------------------------------------------------------- */

static void test_apikey_header(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-apikey-0123456789", 0600);
	fx_service(f, "default", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	fx_service(f, "prefixed", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "  header = \"Authorization\"; prefix = \"apikey \"; } );\n");
	fx_service(f, "momo", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "  header = \"Ocp-Apim-Subscription-Key\"; } );\n");
	fx_open(f);

	assert_int_equal(fx_get(f, "default"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-apikey-0123456789", NULL);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_QUERY), 0);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_TLS), 0);
	assert_int_equal(apicred_cred_expires_at(f->cred), 0);

	assert_int_equal(fx_get(f, "prefixed"), APICRED_OK);
	fx_assert_headers(f, "Authorization: apikey sb-apikey-0123456789", NULL);

	assert_int_equal(fx_get(f, "momo"), APICRED_OK);
	fx_assert_headers(f, "Ocp-Apim-Subscription-Key: sb-apikey-0123456789", NULL);
	assert_string_equal(apicred_cred_find(f->cred, APICRED_HEADER,
	                                      "ocp-apim-subscription-key"),
	                    "sb-apikey-0123456789");
	assert_null(apicred_cred_find(f->cred, APICRED_HEADER, "X-API-Key"));
}

static void test_apikey_query(void **state)
{
	fx *f = *state;
	const char *name, *value;
	size_t len;
	char *url;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-q&key=1", 0600);
	fx_service(f, "q-default", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; in = \"query\"; } );\n");
	fx_service(f, "q-named", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; in = \"query\";\n"
	           "  query = \"subscription-key\"; } );\n");
	fx_open(f);

	assert_int_equal(fx_get(f, "q-default"), APICRED_OK);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_QUERY), 1);
	assert_int_equal(apicred_cred_item(f->cred, APICRED_QUERY, 0, &name, &value, &len),
	                 APICRED_OK);
	assert_string_equal(name, "api_key");
	assert_string_equal(value, "sb-q&key=1"); /* raw */
	assert_int_equal(len, strlen("sb-q&key=1"));
	/* ... and escaped when put into a URL. */
	assert_int_equal(apicred_cred_url(f->cred, "https://127.0.0.1/v1/x?a=b", &url),
	                 APICRED_OK);
	/* (hex digits of either case are the same escape) */
	assert_int_equal(strcasecmp(url, "https://127.0.0.1/v1/x?a=b&api_key=sb-q%26key%3D1"), 0);
	free(url);
	assert_int_equal(apicred_cred_url(f->cred, "https://127.0.0.1/v1/x", &url), APICRED_OK);
	assert_int_equal(strcasecmp(url, "https://127.0.0.1/v1/x?api_key=sb-q%26key%3D1"), 0);
	free(url);

	assert_int_equal(fx_get(f, "q-named"), APICRED_OK);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_QUERY), 1);
	assert_string_equal(apicred_cred_find(f->cred, APICRED_QUERY, "subscription-key"),
	                    "sb-q&key=1");
	assert_null(apicred_cred_find(f->cred, APICRED_QUERY, "api_key"));
}

/* ---- tok ---------------------------------------------------------------- */

#define PRIMARY "11111111-2222-3333-4444-555555555555"
#define BACKUP  "99999999-8888-7777-6666-555555555555"
#define ROTATED "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

static void tok_fixture(fx *f)
{
	fx_module(f, "tok");
	fx_secret(f, "tok.primary", PRIMARY, 0600);
	fx_secret(f, "tok.backup", BACKUP, 0600);
	fx_service(f, "edgecast", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/tok.primary\";\n"
	           "  backup_token = \"file:secrets/tok.backup\"; } );\n");
}

static int report(fx *f, const char *svc, long status)
{
	static const char body[] = "{\"reason\":\"invalid token\"}";
	int retry = -1;

	assert_int_equal(apicred_report(f->ctx, svc, f->cred, status, body,
	                                sizeof(body) - 1, &retry), APICRED_OK);
	assert_true(retry == 0 || retry == 1);
	return retry;
}

static void test_tok_header(void **state)
{
	fx *f = *state;

	tok_fixture(f);
	fx_service(f, "lower", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/tok.primary\";\n"
	           "  prefix = \"tok:\"; header = \"X-Auth\"; } );\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" PRIMARY, NULL);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_QUERY), 0);
	assert_int_equal(fx_get(f, "lower"), APICRED_OK);
	fx_assert_headers(f, "X-Auth: tok:" PRIMARY, NULL);
	assert_int_equal(f->log_warnings, 0);
}

static void test_tok_failover(void **state)
{
	fx *f = *state;

	tok_fixture(f);
	fx_open(f);

	/* Other statuses change nothing. */
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	assert_int_equal(report(f, "edgecast", 200), 0);
	assert_int_equal(report(f, "edgecast", 401), 0);
	assert_int_equal(report(f, "edgecast", 500), 0);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" PRIMARY, NULL);
	assert_int_equal(f->log_warnings, 0);

	/* 403 on the primary: fail over, say so, ask for a retry. */
	assert_int_equal(report(f, "edgecast", 403), 1);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);
	assert_true(f->log_warnings >= 1);
	assert_true(fx_logged(f, "edgecast"));
	assert_true(fx_logged(f, "backup"));

	/* 403 on the backup: nothing left to try. */
	assert_int_equal(report(f, "edgecast", 403), 0);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);

	/* A reload with nothing changed keeps the layer, and so the backup. */
	assert_int_equal(apicred_reload(f->ctx), APICRED_OK);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);
	fx_assert_no_secret(f, NULL);
}

static void test_tok_rotation(void **state)
{
	fx *f = *state;

	tok_fixture(f);
	fx_open(f);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	assert_int_equal(report(f, "edgecast", 403), 1);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);

	/* The admin writes the new primary: the layer starts over with it. */
	fx_secret_replace(f, "tok.primary", ROTATED);
	assert_int_equal(apicred_reload(f->ctx), APICRED_OK);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" ROTATED, NULL);

	/* And can fail over again. */
	assert_int_equal(report(f, "edgecast", 403), 1);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);
	fx_assert_no_secret(f, NULL);
}

static void test_tok_without_backup(void **state)
{
	fx *f = *state;

	tok_fixture(f);
	fx_service(f, "single", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/tok.primary\"; } );\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "single"), APICRED_OK);
	assert_int_equal(report(f, "single", 403), 0);
	assert_int_equal(fx_get(f, "single"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" PRIMARY, NULL);
	/* The other service's layer is untouched. */
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" PRIMARY, NULL);
	fx_assert_no_secret(f, NULL);
}

static void test_report_errors(void **state)
{
	fx *f = *state;
	int retry = -1;

	tok_fixture(f);
	fx_open(f);
	fx_assert_err(f, apicred_report(f->ctx, "nobody", NULL, 403, NULL, 0, &retry),
	              APICRED_ERR_NO_SERVICE, "nobody", NULL);
	fx_assert_err(f, apicred_report(f->ctx, "../x", NULL, 403, NULL, 0, &retry),
	              APICRED_ERR_BAD_NAME, "../x", NULL);
	/* NULL cred means "the current credentials". */
	assert_int_equal(apicred_report(f->ctx, "edgecast", NULL, 403, NULL, 0, &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(fx_get(f, "edgecast"), APICRED_OK);
	fx_assert_headers(f, "Authorization: TOK:" BACKUP, NULL);
}

/* ---- a stack of both, and threads -------------------------------------- */

static void test_stack_of_two(void **state)
{
	fx *f = *state;

	tok_fixture(f);
	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-apikey-two", 0600);
	fx_service(f, "both", 0600,
	           "headers = ( \"Accept: application/json\" );\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; },\n"
	           "          { provider = \"tok\"; token = \"file:secrets/tok.primary\"; } );\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "both"), APICRED_OK);
	fx_assert_headers(f, "Accept: application/json", "X-API-Key: sb-apikey-two",
	                  "Authorization: TOK:" PRIMARY, NULL);
}

enum { S_THREADS = 8, S_GETS = 10000 };

struct s_worker {
	apicred_ctx *ctx;
	atomic_int *bad;
};

static int s_one(apicred_ctx *ctx, apicred_cred *cred)
{
	const char *a, *b;

	if (apicred_get(ctx, "both", NULL, cred) != APICRED_OK)
		return 0;
	if (apicred_cred_count(cred, APICRED_HEADER) != 3)
		return 0;
	a = apicred_cred_find(cred, APICRED_HEADER, "X-API-Key");
	b = apicred_cred_find(cred, APICRED_HEADER, "Authorization");
	return a && b && strcmp(a, "sb-apikey-threads") == 0 &&
	       strcmp(b, "TOK:" PRIMARY) == 0;
}

/* cmocka's asserts are not thread-safe: workers count, main asserts. */
static void *s_worker_main(void *arg)
{
	struct s_worker *w = arg;
	apicred_cred *cred;

	if (apicred_cred_new(&cred) != APICRED_OK) {
		atomic_fetch_add(w->bad, S_GETS);
		return NULL;
	}
	for (int i = 0; i < S_GETS; i++)
		if (!s_one(w->ctx, cred))
			atomic_fetch_add(w->bad, 1);
	apicred_cred_free(cred);
	return NULL;
}

static void test_threads(void **state)
{
	fx *f = *state;
	pthread_t th[S_THREADS];
	struct s_worker w;
	atomic_int bad = 0;

	tok_fixture(f);
	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-apikey-threads", 0600);
	fx_service(f, "both", 0600,
	           "headers = ( \"Accept: application/json\" );\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; },\n"
	           "          { provider = \"tok\"; token = \"file:secrets/tok.primary\"; } );\n");
	fx_open(f);
	w.ctx = f->ctx;
	w.bad = &bad;
	/* No warm-up: the first gets race to load the service. */
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, s_worker_main, &w), 0);
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(atomic_load(&bad), 0);
	assert_int_equal(f->log_warnings, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_apikey_header),
		T(test_apikey_query),
		T(test_tok_header),
		T(test_tok_failover),
		T(test_tok_rotation),
		T(test_tok_without_backup),
		T(test_report_errors),
		T(test_stack_of_two),
		T(test_threads),
#undef T
	};

	return cmocka_run_group_tests_name("get", tests, NULL, NULL);
}
