/*
 * test_abi.c - the current core loads and runs frozen10, a provider built
 * against the frozen v1.0 provider.h (tests/modules/v1.0): configuration,
 * secrets, encoding, sessions, apply, feedback and query parameters all
 * keep their v1.0 meaning.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
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

static void test_v1_0_provider_runs(void **state)
{
	fx *f = *state;
	char *url = NULL;
	int retry = -1;

	fx_module(f, "frozen10");
	fx_secret(f, "k", "AB", 0600);
	fx_service(f, "old", 0600,
	           "url = \"https://api.example.test/\";\n"
	           "stack = ( { provider = \"frozen10\"; greeting = \"hello\";\n"
	           "  key = \"file:secrets/k\"; } );\n");
	fx_open(f);
	assert_int_equal(apicred_check(f->ctx, "old"), APICRED_OK);
	assert_int_equal(fx_get(f, "old"), APICRED_OK);
	/* "AB" in hex; count's default from the schema. */
	fx_assert_headers(f, "X-Frozen: hello 7 4142", "X-Frozen-Session: session-1", NULL);
	assert_int_equal(apicred_cred_url(f->cred, "https://api.example.test/x", &url), APICRED_OK);
	assert_string_equal(url, "https://api.example.test/x?frozen=old");
	free(url);

	/* Its feedback drops the session on 401; the next get fetches anew. */
	assert_int_equal(apicred_report(f->ctx, "old", f->cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(fx_get(f, "old"), APICRED_OK);
	fx_assert_headers(f, "X-Frozen: hello 7 4142", "X-Frozen-Session: session-2", NULL);
}

/* The core still validates against a v1.0 schema: a missing required key
 * and a wrongly typed one are refused with file:line. */
static void test_v1_0_schema_enforced(void **state)
{
	fx *f = *state;

	fx_module(f, "frozen10");
	fx_secret(f, "k", "AB", 0600);
	fx_service(f, "nogreeting", 0600,
	           "url = \"https://api.example.test/\";\n"
	           "stack = ( { provider = \"frozen10\"; key = \"file:secrets/k\"; } );\n");
	fx_service(f, "badcount", 0600,
	           "url = \"https://api.example.test/\";\n"
	           "stack = ( { provider = \"frozen10\"; greeting = \"hi\";\n"
	           "  key = \"file:secrets/k\"; count = \"seven\"; } );\n");
	fx_open(f);
	fx_assert_err(f, fx_get(f, "nogreeting"), APICRED_ERR_CONFIG, "nogreeting", "greeting",
	              NULL);
	fx_assert_err(f, fx_get(f, "badcount"), APICRED_ERR_CONFIG, "badcount", "count", ":3",
	              NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_v1_0_provider_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_0_schema_enforced, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
