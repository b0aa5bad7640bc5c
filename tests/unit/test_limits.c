/*
 * test_limits.c - numbers from files are range-checked when they are read
 * (issue 8, item 9): a value that is out of range, or whose milliseconds
 * would overflow, is refused with file:line instead of wrapping around;
 * jansson's copies of secrets are wiped when freed (item 12).
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* apicred_open with apicred.conf = text: the code, the message kept. */
static int s_open_global(fx *f, const char *text, char *msg, size_t cap)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx = NULL;
	int rc;

	fx_global(f, text);
	o.confdir = f->conf;
	o.moduledir = f->mod;
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	rc = apicred_open_opts(&ctx, &o);
	snprintf(msg, cap, "%s", apicred_errmsg());
	apicred_close(ctx);
	return rc;
}

static void test_global_out_of_range(void **state)
{
	static const struct { const char *text, *key; } bad[] = {
		{ "http = {\n timeout = 0;\n};\n", "'timeout'" },
		{ "http = {\n connect_timeout = 0;\n};\n", "'connect_timeout'" },
		{ "http = {\n deadline = 0;\n};\n", "'deadline'" },
		/* times 1000 would overflow a 64-bit integer */
		{ "http = {\n timeout = 9223372036854775807L;\n};\n", "'timeout'" },
		{ "http = {\n retries = 100000;\n};\n", "'retries'" },
		{ "http = {\n max_body = 0;\n};\n", "'max_body'" },
		{ "cache = {\n default_ttl = 9223372036854775807L;\n};\n", "'default_ttl'" },
		{ "cache = {\n backoff_max = 92233720368547758L;\n};\n", "'backoff_max'" },
		{ "cache = {\n refresh_ahead = -1;\n};\n", "'refresh_ahead'" },
		{ "cache = {\n check_interval = 4000000000000000L;\n};\n", "'check_interval'" },
	};
	fx *f = *state;
	char msg[1024];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(s_open_global(f, bad[i].text, msg, sizeof(msg)), APICRED_ERR_CONFIG);
		if (!strstr(msg, "apicred.conf:2") || !strstr(msg, bad[i].key))
			fail_msg("%s: %s", bad[i].text, msg);
	}
	/* The edges are fine. */
	assert_int_equal(s_open_global(f, "http = { timeout = 1; deadline = 86400; retries = 10; };\n"
	                                  "cache = { default_ttl = 31622400; refresh_ahead = 0; };\n",
	                               msg, sizeof(msg)), APICRED_OK);
}

static void test_layer_out_of_range(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-limits", 0600);
	fx_service(f, "ttl", 0600,
	           "stack = (\n"
	           "  { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "    default_ttl = 9223372036854775807L; }\n"
	           ");\n");
	fx_service(f, "zero", 0600,
	           "stack = (\n"
	           "  { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "    default_ttl = 0; }\n"
	           ");\n");
	fx_service(f, "ahead", 0600,
	           "stack = (\n"
	           "  { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "    refresh_ahead = 40000000000; }\n"
	           ");\n");
	fx_service(f, "fine", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "            default_ttl = 31622400; refresh_ahead = 0; } );\n");
	fx_open(f);
	fx_assert_err(f, apicred_check(f->ctx, "ttl"), APICRED_ERR_CONFIG, "ttl", "ttl.conf:3",
	              "default_ttl", NULL);
	fx_assert_err(f, apicred_check(f->ctx, "zero"), APICRED_ERR_CONFIG, "zero", "zero.conf:3",
	              "default_ttl", NULL);
	fx_assert_err(f, apicred_check(f->ctx, "ahead"), APICRED_ERR_CONFIG, "ahead",
	              "ahead.conf:3", "refresh_ahead", NULL);
	assert_int_equal(fx_get(f, "fine"), APICRED_OK);
}

static void *s_app_malloc(size_t n) { return malloc(n); }
static void s_app_free(void *p) { free(p); }

/* In a child (jansson's functions are per process): opens a context,
 * after the application gave jansson its own allocator or not; exits 0
 * when jansson frees through a function that is not plain free() (the
 * library's wiping one), 1 when through plain free(), 2 through the
 * application's, 3 on another failure. */
static int s_child_free_fn(fx *f, bool app_allocator)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		json_malloc_t m;
		json_free_t fr;
		json_t *j;
		apicred_ctx *ctx = NULL;

		if (app_allocator)
			json_set_alloc_funcs(s_app_malloc, s_app_free);
		if (apicred_open(&ctx, f->conf, APICRED_OPEN_NO_BACKGROUND) != APICRED_OK)
			_exit(3);
		json_get_alloc_funcs(&m, &fr);
		/* Whatever it is, it frees what jansson allocated before. */
		j = json_string("sb-secret-in-json");
		json_decref(j);
		apicred_close(ctx);
		_exit(fr == s_app_free ? 2 : fr == free ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_jansson_wipes(void **state)
{
	fx *f = *state;

	assert_int_equal(s_child_free_fn(f, false), 0);
	assert_int_equal(s_child_free_fn(f, true), 2); /* the application's choice */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_global_out_of_range),
		T(test_layer_out_of_range),
		T(test_jansson_wipes),
#undef T
	};

	return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
