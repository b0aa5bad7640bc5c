/*
 * test_get.c - what apicred_get hands back for the apikey and tok providers,
 * tok's failover on a reported 403 and its return to a rotated primary,
 * many threads sharing one context, the handle a failed
 * apicred_curl_apply leaves behind, and one handle and cred reused.
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

#include <curl/curl.h>

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

/* ---- apicred_curl_apply that fails ---------------------------------------- */

static size_t s_discard(char *p, size_t size, size_t n, void *user)
{
	(void)p, (void)user;
	return size * n;
}

/* Performs h against the sandbox; the request it got. */
static fx_req s_sent(fx_sandbox *sb, CURL *h)
{
	size_t n = fx_sandbox_count(sb);

	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_int_equal(fx_sandbox_count(sb), n + 1);
	return fx_sandbox_req(sb, n);
}

/* A failed call leaves no header list on the handle (apicred_curl_apply(3)):
 * running it anyway sends neither the header lines of the cred, which the
 * failure wiped and which may since have been freed, nor stale ones left
 * from an earlier success, nor the application's own lines. */
static void test_curl_apply_failure(void **state)
{
	fx *f = *state;
	fx_sandbox *sb = fx_sandbox_start();
	const char *const lines[] = { "X-App: app-line", NULL };
	apicred_request req = APICRED_REQUEST_INIT;
	char url[128], other[128];
	apicred_cred *cred;
	CURL *h = curl_easy_init();
	fx_req r;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-apikey-0123456789", 0600);
	fx_service(f, "sb", 0600, "url = \"%s/\";\ninsecure_http = true;\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n", sb->url);
	fx_open(f);
	fx_sandbox_answer(sb, 200, NULL, "ok");
	snprintf(url, sizeof(url), "%s/script/x", sb->url);
	snprintf(other, sizeof(other), "http://localhost:%d/script/x", sb->port);
	req.url = url;
	req.headers = lines;
	assert_non_null(h);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_discard);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);

	/* The reference: a success sends both. */
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");
	assert_string_equal(fx_req_header(&r, "X-App"), "app-line");

	/* Refused (another origin): the cred is wiped, then freed, and the
	 * handle, still on the last URL, sends no header of either. */
	req.url = other;
	fx_assert_err(f, apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_ERR_ORIGIN,
	              "sb", "origin", NULL);
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 0);
	apicred_cred_free(cred);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_null(fx_req_header(&r, "X-API-Key"));
	assert_null(fx_req_header(&r, "X-App"));

	/* A failure before any credential is made (no such service) leaves no
	 * stale list from the success before it either. */
	req.url = url;
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	fx_assert_err(f, apicred_curl_apply(f->ctx, "nosuch", h, &req, cred),
	              APICRED_ERR_NO_SERVICE, "nosuch", NULL);
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 0);
	r = s_sent(sb, h);
	assert_null(fx_req_header(&r, "X-API-Key"));
	assert_null(fx_req_header(&r, "X-App"));

	/* Nor does a call refused for its arguments. */
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, NULL, cred), APICRED_ERR_INVALID);
	r = s_sent(sb, h);
	assert_null(fx_req_header(&r, "X-API-Key"));

	/* And the handle works again after the next success. */
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");
	fx_assert_no_secret(f, apicred_errmsg());

	curl_easy_cleanup(h);
	apicred_cred_free(cred);
	fx_sandbox_stop(sb);
}

/* One cred and one handle, request after request (the loop of
 * apicred_curl_apply(3)): each transfer carries the header lines of its
 * own call, never those an earlier call built, whatever changed between
 * them: the application's lines, the Content-Type, the service. */
static void test_curl_apply_loop(void **state)
{
	fx *f = *state;
	fx_sandbox *sb = fx_sandbox_start();
	const char *const lines[] = { "X-App: app-line", NULL };
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred;
	CURL *h = curl_easy_init();
	char url[128];
	fx_req r;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-apikey-0123456789", 0600);
	fx_secret(f, "k2", "sb-apikey-second-key", 0600);
	fx_service(f, "sb", 0600, "url = \"%s/\";\ninsecure_http = true;\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n", sb->url);
	fx_service(f, "sb2", 0600, "url = \"%s/\";\ninsecure_http = true;\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k2\"; } );\n",
	           sb->url);
	fx_open(f);
	fx_sandbox_answer(sb, 200, NULL, "ok");
	snprintf(url, sizeof(url), "%s/script/x", sb->url);
	req.url = url;
	assert_non_null(h);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_discard);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);

	/* The same call three times: the same key each time. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
		r = s_sent(sb, h);
		assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");
		assert_null(fx_req_header(&r, "X-App"));
	}
	/* The application's lines come and go. */
	req.headers = lines;
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_string_equal(fx_req_header(&r, "X-App"), "app-line");
	assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");
	req.headers = NULL;
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_null(fx_req_header(&r, "X-App"));
	assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");
	/* So does a Content-Type (a body the application sets itself). */
	req.method = "POST";
	req.body = "{}";
	req.body_len = 2;
	req.content_type = "application/json";
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
	r = s_sent(sb, h);
	assert_string_equal(fx_req_header(&r, "Content-Type"), "application/json");
	req.method = "GET";
	req.body = NULL;
	req.body_len = 0;
	req.content_type = NULL;
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_null(fx_req_header(&r, "Content-Type"));
	/* Two services in turn through the one cred. */
	for (int i = 0; i < 4; i++) {
		const char *svc = i % 2 ? "sb2" : "sb";
		assert_int_equal(apicred_curl_apply(f->ctx, svc, h, &req, cred), APICRED_OK);
		r = s_sent(sb, h);
		assert_string_equal(fx_req_header(&r, "X-API-Key"),
		                    i % 2 ? "sb-apikey-second-key" : "sb-apikey-0123456789");
	}
	/* A plain apicred_get between two transfers changes nothing sent. */
	assert_int_equal(apicred_get(f->ctx, "sb", &req, cred), APICRED_OK);
	assert_int_equal(apicred_curl_apply(f->ctx, "sb", h, &req, cred), APICRED_OK);
	r = s_sent(sb, h);
	assert_string_equal(fx_req_header(&r, "X-API-Key"), "sb-apikey-0123456789");

	curl_easy_cleanup(h);
	apicred_cred_free(cred);
	fx_sandbox_stop(sb);
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
		T(test_curl_apply_failure),
		T(test_curl_apply_loop),
#undef T
	};

	return cmocka_run_group_tests_name("get", tests, NULL, NULL);
}
