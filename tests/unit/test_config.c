/*
 * test_config.c - service files, schema validation, provider loading,
 * service names, static headers and the PAM-style control of layers,
 * through the public API with real provider modules.
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

/* The X-Label values of the credential, in order, comma-separated. */
static const char *labels(fx *f)
{
	static char buf[256];
	size_t n = apicred_cred_count(f->cred, APICRED_HEADER);

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t len;

		assert_int_equal(apicred_cred_item(f->cred, APICRED_HEADER, i, &name, &value,
		                                   &len), APICRED_OK);
		if (strcmp(name, "X-Label") == 0) {
			if (buf[0])
				strcat(buf, ",");
			strncat(buf, value, sizeof(buf) - strlen(buf) - 2);
		}
	}
	return buf;
}

/* Both apicred_check and apicred_get fail the same way. */
static void assert_service_fails(fx *f, const char *svc, int code, const char *a,
                                 const char *b)
{
	fx_assert_err(f, apicred_check(f->ctx, svc), code, svc, a, b, NULL);
	fx_assert_err(f, fx_get(f, svc), code, svc, a, b, NULL);
}

/* ---- syntax ---------------------------------------------------------- */

static void test_syntax_error_has_file_line(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-syntax", 0600);
	fx_service(f, "broken", 0600,
	           "description = \"syntax\";\n"
	           "stack = (\n"
	           "  { provider = \"apikey\"; key = ; }\n"
	           ");\n");
	fx_service(f, "fine", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	fx_open(f);
	/* One broken file does not take the others down. */
	assert_int_equal(fx_get(f, "fine"), APICRED_OK);
	assert_service_fails(f, "broken", APICRED_ERR_CONFIG, "broken.conf:3", NULL);
}

static void test_global_syntax_error(void **state)
{
	fx *f = *state;
	apicred_ctx *ctx = NULL;
	apicred_options o = { .size = sizeof(o) };
	int rc;

	fx_global(f, "# global\nhttp = { timeout = ; };\n");
	o.confdir = f->conf;
	o.moduledir = f->mod;
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	rc = apicred_open_opts(&ctx, &o);
	apicred_close(ctx);
	assert_int_equal(rc, APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "apicred.conf:2"));
}

/* With no confdir or moduledir given, the environment names them. */
static void test_environment_dirs(void **state)
{
	fx *f = *state;
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-env-dirs", 0600);
	fx_service(f, "from-env", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	setenv("APICRED_CONFDIR", f->conf, 1);
	setenv("APICRED_MODULEDIR", f->mod, 1);
	assert_int_equal(apicred_open(&ctx, NULL, APICRED_OPEN_NO_BACKGROUND), APICRED_OK);
	unsetenv("APICRED_CONFDIR");
	unsetenv("APICRED_MODULEDIR");
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(apicred_get(ctx, "from-env", NULL, cred), APICRED_OK);
	assert_string_equal(apicred_cred_find(cred, APICRED_HEADER, "X-API-Key"),
	                    "sb-key-env-dirs");
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* ---- validation against the schema ------------------------------------ */

static void test_values_and_defaults(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_service(f, "all", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\"; number = 7;\n"
	           "  flag = true; items = ( \"a\", \"b\" ); pairs = { k = \"v\"; k2 = \"v2\"; };\n"
	           "  color = \"blue\"; } );\n");
	fx_service(f, "defaults", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"D\"; } );\n");
	fx_service(f, "onestring", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"O\"; items = \"one\"; } );\n");
	fx_open(f);

	assert_int_equal(fx_get(f, "all"), APICRED_OK);
	fx_assert_headers(f, "X-Label: L", "X-Number: 7", "X-Flag: true", "X-Color: blue",
	                  "X-Items: a,b", "X-Pairs: k=v,k2=v2", NULL);
	assert_int_equal(fx_get(f, "defaults"), APICRED_OK);
	fx_assert_headers(f, "X-Label: D", "X-Number: 42", "X-Flag: false", "X-Color: red",
	                  NULL);
	/* A single string where a list is expected is a list of one. */
	assert_int_equal(fx_get(f, "onestring"), APICRED_OK);
	fx_assert_headers(f, "X-Label: O", "X-Number: 42", "X-Flag: false", "X-Color: red",
	                  "X-Items: one", NULL);
}

static void test_unknown_key(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-unknown", 0600);
	fx_service(f, "unknown", 0600,
	           "stack = (\n"
	           "  { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "    colour = \"red\"; }\n"
	           ");\n");
	fx_open(f);
	assert_service_fails(f, "unknown", APICRED_ERR_CONFIG, "colour", "unknown.conf:3");
}

static void test_unknown_top_level_key(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-unknown-top", 0600);
	fx_service(f, "top", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"
	           "flavour = \"vanilla\";\n");
	fx_open(f);
	assert_service_fails(f, "top", APICRED_ERR_CONFIG, "flavour", "top.conf:2");
}

static void test_x_keys_ignored(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-x", 0600);
	fx_service(f, "site", 0600,
	           "x-owner = \"ops team\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "  x-ticket = 1234; x-note = { any = \"thing\"; }; } );\n");
	fx_open(f);
	assert_int_equal(apicred_check(f->ctx, "site"), APICRED_OK);
	assert_int_equal(fx_get(f, "site"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-key-x", NULL);
}

static void test_missing_required_key(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_module(f, "apikey");
	fx_service(f, "nolabel", 0600,
	           "stack = (\n"
	           "  { provider = \"alltypes\"; number = 1; }\n"
	           ");\n");
	fx_service(f, "nokey", 0600,
	           "stack = ( { provider = \"apikey\"; header = \"X-Key\"; } );\n");
	fx_service(f, "noprovider", 0600, "stack = ( { key = \"k\"; } );\n");
	fx_service(f, "nostack", 0600, "description = \"nothing\";\n");
	fx_open(f);
	assert_service_fails(f, "nolabel", APICRED_ERR_CONFIG, "label", "nolabel.conf:");
	assert_service_fails(f, "nokey", APICRED_ERR_CONFIG, "key", "nokey.conf:");
	assert_service_fails(f, "noprovider", APICRED_ERR_CONFIG, "provider", "noprovider.conf:");
	assert_service_fails(f, "nostack", APICRED_ERR_CONFIG, "stack", "nostack.conf:");
}

static void test_wrong_type(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_service(f, "t-int", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  number = \"forty-two\"; } );\n");
	fx_service(f, "t-bool", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  flag = \"yes\"; } );\n");
	fx_service(f, "t-string", 0600,
	           "stack = ( { provider = \"alltypes\";\n"
	           "  label = 5; } );\n");
	fx_service(f, "t-list", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  items = ( 1, 2 ); } );\n");
	fx_service(f, "t-group", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  pairs = \"k=v\"; } );\n");
	fx_service(f, "t-group-value", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  pairs = { k = 1; }; } );\n");
	fx_service(f, "t-stack", 0600, "stack = \"apikey\";\n");
	fx_service(f, "t-layer", 0600, "stack = ( \"alltypes\" );\n");
	fx_open(f);
	assert_service_fails(f, "t-int", APICRED_ERR_CONFIG, "number", "t-int.conf:2");
	assert_service_fails(f, "t-bool", APICRED_ERR_CONFIG, "flag", "t-bool.conf:2");
	assert_service_fails(f, "t-string", APICRED_ERR_CONFIG, "label", "t-string.conf:2");
	assert_service_fails(f, "t-list", APICRED_ERR_CONFIG, "items", "t-list.conf:2");
	assert_service_fails(f, "t-group", APICRED_ERR_CONFIG, "pairs", "t-group.conf:2");
	assert_service_fails(f, "t-group-value", APICRED_ERR_CONFIG, "pairs",
	                     "t-group-value.conf:2");
	assert_service_fails(f, "t-stack", APICRED_ERR_CONFIG, "stack", "t-stack.conf:1");
	assert_service_fails(f, "t-layer", APICRED_ERR_CONFIG, "t-layer.conf:1", NULL);
}

static void test_value_outside_choices(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_module(f, "apikey");
	fx_service(f, "purple", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"L\";\n"
	           "  color = \"purple\"; } );\n");
	fx_service(f, "where", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"env:APICRED_TEST_NOPE\";\n"
	           "  in = \"body\"; } );\n");
	fx_open(f);
	assert_service_fails(f, "purple", APICRED_ERR_CONFIG, "color", "purple.conf:2");
	assert_service_fails(f, "where", APICRED_ERR_CONFIG, "in", "where.conf:2");
}

/* ---- loading providers ------------------------------------------------ */

static void test_unknown_provider(void **state)
{
	fx *f = *state;
	char path[400];

	fx_service(f, "ghost", 0600, "stack = ( { provider = \"nosuch\"; key = \"k\"; } );\n");
	fx_open(f);
	snprintf(path, sizeof(path), "%s/nosuch.so", f->mod);
	/* Names the provider (in the path), the path tried and why. */
	assert_service_fails(f, "ghost", APICRED_ERR_PROVIDER, path, "No such file");
}

static void test_provider_name_is_not_a_path(void **state)
{
	fx *f = *state;

	fx_service(f, "escape", 0600,
	           "stack = ( { provider = \"../modules/apikey\"; key = \"k\"; } );\n");
	fx_service(f, "abs", 0600,
	           "stack = ( { provider = \"/usr/lib/x\"; key = \"k\"; } );\n");
	fx_module(f, "apikey");
	fx_open(f);
	/* Either the name is refused or it is not found: never loaded. */
	assert_int_not_equal(fx_get(f, "escape"), APICRED_OK);
	assert_int_not_equal(fx_get(f, "abs"), APICRED_OK);
	assert_non_null(strstr(apicred_errmsg(), "abs"));
}

static void test_module_without_initvt(void **state)
{
	fx *f = *state;
	char path[400];

	fx_module(f, "noinitvt");
	fx_service(f, "novt", 0600, "stack = ( { provider = \"noinitvt\"; } );\n");
	fx_open(f);
	snprintf(path, sizeof(path), "%s/noinitvt.so", f->mod);
	assert_service_fails(f, "novt", APICRED_ERR_PROVIDER, path, "apicred_provider_initvt");
}

static void test_module_other_abi_major(void **state)
{
	fx *f = *state;
	char path[400];

	fx_module(f, "badabi");
	fx_service(f, "future", 0600, "stack = ( { provider = \"badabi\"; } );\n");
	fx_open(f);
	snprintf(path, sizeof(path), "%s/badabi.so", f->mod);
	assert_service_fails(f, "future", APICRED_ERR_ABI, path, NULL);
}

static void test_init_failure(void **state)
{
	fx *f = *state;

	fx_module(f, "initfail");
	fx_service(f, "refused", 0600, "stack = ( { provider = \"initfail\"; } );\n");
	fx_open(f);
	fx_assert_err(f, fx_get(f, "refused"), APICRED_ERR_UNSUPPORTED, "refused",
	              "initfail refuses to start on purpose", NULL);
}

/* A schema key of a type the core does not know fails the layer closed,
 * whether the file sets that key or not: the reason names provider and key. */
static void test_module_unknown_key_type(void **state)
{
	fx *f = *state;
	char path[400];

	fx_module(f, "badtype");
	fx_service(f, "unset", 0600, "stack = ( { provider = \"badtype\"; label = \"x\"; } );\n");
	fx_service(f, "set", 0600, "stack = ( { provider = \"badtype\"; mode = \"x\"; } );\n");
	fx_open(f);
	snprintf(path, sizeof(path), "%s/badtype.so", f->mod);
	assert_service_fails(f, "unset", APICRED_ERR_PROVIDER, "provider 'badtype'",
	                     "key 'mode' with unknown type 99");
	assert_non_null(strstr(apicred_errmsg(), path));
	assert_service_fails(f, "set", APICRED_ERR_PROVIDER, "provider 'badtype'",
	                     "key 'mode' with unknown type 99");
	assert_null(fx_header(f, "X-Badtype"));
}

/* A layer whose provider will not load fails like any failing layer (PAM's
 * "must fail" handler): a required one fails the service (see above); an
 * optional one is skipped, never silently: the log says which and why. */
/* Issue 2: a layer whose provider is missing makes the service fail, even
 * an optional one; the reason names the provider and the path tried. */
static void test_missing_optional_provider_fails_closed(void **state)
{
	fx *f = *state;
	char path[400];

	fx_module(f, "alltypes");
	fx_service(f, "closed", 0600,
	           "stack = ( { provider = \"alltypes\"; label = \"A\"; },\n"
	           "          { provider = \"nosuch\"; control = \"optional\"; } );\n");
	fx_open(f);
	snprintf(path, sizeof(path), "%s/nosuch.so", f->mod);
	fx_assert_err(f, fx_get(f, "closed"), APICRED_ERR_PROVIDER, "closed", "nosuch", path, NULL);
	assert_int_equal(apicred_check(f->ctx, "closed"), APICRED_ERR_PROVIDER);
	assert_true(fx_logged(f, path));
}

/* ---- service names ------------------------------------------------------ */

static void test_bad_service_names(void **state)
{
	static const char *bad[] = {
		"a/b", "../etc", "..", ".", "x/../y", "/abs", ".hidden", "-dash", "a b",
		"a\nb", "svc/", NULL
	};
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-names", 0600);
	fx_service(f, "good.name_1-x", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	fx_open(f);
	for (int i = 0; bad[i]; i++) {
		int rc = fx_get(f, bad[i]);

		if (rc != APICRED_ERR_BAD_NAME)
			fail_msg("name #%d: expected APICRED_ERR_BAD_NAME, got %d: %s", i, rc,
			         apicred_errmsg());
		assert_int_equal(apicred_check(f->ctx, bad[i]), APICRED_ERR_BAD_NAME);
	}
	fx_assert_err(f, fx_get(f, "../etc"), APICRED_ERR_BAD_NAME, "../etc", NULL);
	assert_int_equal(fx_get(f, ""), APICRED_ERR_BAD_NAME);
	assert_int_equal(fx_get(f, NULL), APICRED_ERR_INVALID);
	assert_int_equal(fx_get(f, "good.name_1-x"), APICRED_OK);
}

static void test_unknown_service(void **state)
{
	fx *f = *state;

	fx_open(f);
	fx_assert_err(f, fx_get(f, "nobody-home"), APICRED_ERR_NO_SERVICE, "nobody-home", NULL);
	fx_assert_err(f, apicred_check(f->ctx, "nobody-home"), APICRED_ERR_NO_SERVICE,
	              "nobody-home", NULL);
}

static void test_service_list(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_service(f, "charlie", 0600, "stack = ( { provider = \"alltypes\"; label = \"C\"; } );\n");
	fx_service(f, "alpha", 0600, "description = \"the first\";\n"
	           "stack = ( { provider = \"alltypes\"; label = \"A\"; } );\n");
	fx_service(f, "bravo", 0600, "stack = ( { provider = \"nosuch\"; } );\n");
	fx_open(f);
	/* Broken services are listed too: `apicred list` shows them. */
	assert_int_equal(apicred_service_count(f->ctx), 3);
	assert_string_equal(apicred_service_name(f->ctx, 0), "alpha");
	assert_string_equal(apicred_service_name(f->ctx, 1), "bravo");
	assert_string_equal(apicred_service_name(f->ctx, 2), "charlie");
	assert_null(apicred_service_name(f->ctx, 3));
	assert_string_equal(apicred_service_description(f->ctx, "alpha"), "the first");
	assert_null(apicred_service_description(f->ctx, "charlie"));
}

/* apicred list's description: from the file alone, so a service whose
 * provider or secret is missing still has it (nothing loaded, nothing
 * read but the file); a file that fails its checks or does not parse
 * gives its error. */
static void test_description_read(void **state)
{
	fx *f = *state;
	char *d = (char *)"unset";

	fx_global(f, "log = { level = \"debug\"; };\n");
	fx_module(f, "apikey");
	fx_service(f, "nomodule", 0600, "description = \"no module here\";\n"
	           "stack = ( { provider = \"nosuch\"; } );\n");
	fx_service(f, "nosecret", 0600, "description = \"no secret here\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/missing\"; } );\n");
	fx_service(f, "plain", 0600, "stack = ( { provider = \"apikey\"; key = \"k\"; } );\n");
	fx_service(f, "open", 0666, "description = \"anyone may edit this\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"k\"; } );\n");
	fx_service(f, "syntax", 0600, "description = \"broken\";\nstack = ( {\n");
	fx_service(f, "number", 0600, "description = 5;\n"
	           "stack = ( { provider = \"apikey\"; key = \"k\"; } );\n");
	fx_open(f);

	assert_int_equal(apicred_service_description_read(f->ctx, "nomodule", &d), APICRED_OK);
	assert_string_equal(d, "no module here");
	free(d);
	assert_int_equal(apicred_service_description_read(f->ctx, "nosecret", &d), APICRED_OK);
	assert_string_equal(d, "no secret here");
	free(d);
	assert_int_equal(apicred_service_description_read(f->ctx, "plain", &d), APICRED_OK);
	assert_null(d);
	/* No provider was loaded for any of them (the log would say so). */
	assert_false(fx_logged(f, "loaded provider"));

	fx_assert_err(f, apicred_service_description_read(f->ctx, "open", &d), APICRED_ERR_CONFIG,
	              "open", "open.conf", "writable", NULL);
	assert_null(d);
	fx_assert_err(f, apicred_service_description_read(f->ctx, "syntax", &d), APICRED_ERR_CONFIG,
	              "syntax", "syntax.conf:", NULL);
	fx_assert_err(f, apicred_service_description_read(f->ctx, "number", &d), APICRED_ERR_CONFIG,
	              "number", "number.conf:1", "'description' must be a string", NULL);
	assert_int_equal(apicred_service_description_read(f->ctx, "nosuch", &d),
	                 APICRED_ERR_NO_SERVICE);
	assert_int_equal(apicred_service_description_read(f->ctx, "../x", &d),
	                 APICRED_ERR_BAD_NAME);
	assert_int_equal(apicred_service_description_read(f->ctx, NULL, &d), APICRED_ERR_INVALID);
	assert_int_equal(apicred_service_description_read(NULL, "plain", &d), APICRED_ERR_INVALID);
	assert_int_equal(apicred_service_description_read(f->ctx, "plain", NULL),
	                 APICRED_ERR_INVALID);

	/* Loading is another matter: apicred_service_description loads the
	 * service (the log shows it) and gives a failed one's error. */
	assert_string_equal(apicred_service_description(f->ctx, "nosecret"), "no secret here");
	assert_true(fx_logged(f, "loaded provider 'apikey'"));
	assert_null(apicred_service_description(f->ctx, "nomodule"));
	fx_assert_err(f, apicred_service_description_copy(f->ctx, "nomodule", &d),
	              APICRED_ERR_PROVIDER, "nomodule", "nosuch", NULL);
	assert_null(d);
	/* Reading the file after a failed load still gives the description. */
	assert_int_equal(apicred_service_description_read(f->ctx, "nomodule", &d), APICRED_OK);
	assert_string_equal(d, "no module here");
	free(d);
}

/* conf.d is read in the file system's order and sorted on the first
 * listing: threads racing to list a new context all see the names sorted,
 * and each name still finds its own file. */
#define S_NAMES 97 /* prime: k * 37 % S_NAMES visits every k */
#define S_LISTERS 4

struct s_lister {
	apicred_ctx *ctx;
	atomic_int *bad;
};

/* cmocka's asserts are not thread-safe: listers count, main asserts. */
static void *s_lister_main(void *arg)
{
	struct s_lister *l = arg;
	char want[16];

	for (size_t i = 0; i <= S_NAMES; i++) {
		const char *name = apicred_service_name(l->ctx, i);

		snprintf(want, sizeof(want), "svc%03zu", i);
		if (i == S_NAMES ? name != NULL : !name || strcmp(name, want) != 0)
			atomic_fetch_add(l->bad, 1);
	}
	return NULL;
}

static void test_service_list_sorted(void **state)
{
	fx *f = *state;
	pthread_t th[S_LISTERS];
	struct s_lister l;
	atomic_int bad = 0;
	char name[16], want[32];

	fx_module(f, "alltypes");
	for (unsigned i = 0; i < S_NAMES; i++) { /* created out of order */
		unsigned k = i * 37 % S_NAMES;
		snprintf(name, sizeof(name), "svc%03u", k);
		fx_service(f, name, 0600, "description = \"d-%s\";\n"
		           "stack = ( { provider = \"alltypes\"; label = \"L\"; } );\n", name);
	}
	fx_open(f);
	assert_int_equal(apicred_service_count(f->ctx), S_NAMES);
	l.ctx = f->ctx;
	l.bad = &bad;
	for (int i = 0; i < S_LISTERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, s_lister_main, &l), 0);
	for (int i = 0; i < S_LISTERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(atomic_load(&bad), 0);
	for (unsigned i = 0; i < S_NAMES; i += 8) {
		snprintf(name, sizeof(name), "svc%03u", i);
		snprintf(want, sizeof(want), "d-%s", name);
		assert_string_equal(apicred_service_description(f->ctx, name), want);
	}
}

/* ---- static headers ----------------------------------------------------- */

static void test_static_headers(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-static", 0600);
	fx_service(f, "static", 0600,
	           "headers = ( \"Accept: application/json\", \"X-Client: apicred-test\" );\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "static"), APICRED_OK);
	fx_assert_headers(f, "Accept: application/json", "X-Client: apicred-test",
	                  "X-API-Key: sb-key-static", NULL);
	assert_string_equal(apicred_cred_find(f->cred, APICRED_HEADER, "accept"),
	                    "application/json");
}

static void test_static_header_crlf(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-crlf", 0600);
	fx_service(f, "inject-crlf", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"
	           "headers = ( \"Accept: a\\r\\nX-Injected: 1\" );\n");
	fx_service(f, "inject-lf", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"
	           "headers = ( \"Accept: a\\nX-Injected: 1\" );\n");
	fx_service(f, "inject-cr", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"
	           "headers = ( \"Accept: a\\rX-Injected: 1\" );\n");
	fx_service(f, "no-colon", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"
	           "headers = ( \"Accept application/json\" );\n");
	fx_open(f);
	assert_service_fails(f, "inject-crlf", APICRED_ERR_CONFIG, "inject-crlf.conf:2", NULL);
	assert_service_fails(f, "inject-lf", APICRED_ERR_CONFIG, "inject-lf.conf:2", NULL);
	assert_service_fails(f, "inject-cr", APICRED_ERR_CONFIG, "inject-cr.conf:2", NULL);
	assert_service_fails(f, "no-colon", APICRED_ERR_CONFIG, "no-colon.conf:2", NULL);
}

/* A header name from configuration with CR/LF is refused as well. */
static void test_header_name_crlf(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-key-name-crlf", 0600);
	fx_service(f, "name-crlf", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\";\n"
	           "  header = \"X-A\\r\\nX-Injected\"; } );\n");
	fx_open(f);
	assert_int_not_equal(fx_get(f, "name-crlf"), APICRED_OK);
	assert_non_null(strstr(apicred_errmsg(), "name-crlf"));
	fx_assert_no_secret(f, apicred_errmsg());
	assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);
}

/* ---- control ------------------------------------------------------------ */

#define LAYER(label, extra) \
	"{ provider = \"alltypes\"; label = \"" label "\"; " extra " }"

static void test_control(void **state)
{
	fx *f = *state;

	fx_module(f, "alltypes");
	fx_service(f, "req-fails", 0600, "stack = ( "
	           LAYER("A", "fail = true;") ", " LAYER("B", "") " );\n");
	fx_service(f, "req-default", 0600, "stack = ( "
	           LAYER("A", "") ", " LAYER("B", "control = \"required\";") " );\n");
	fx_service(f, "opt-fails", 0600, "stack = ( "
	           LAYER("A", "fail = true; control = \"optional\";") ", " LAYER("B", "") " );\n");
	fx_service(f, "opt-ok", 0600, "stack = ( "
	           LAYER("A", "control = \"optional\";") ", " LAYER("B", "") " );\n");
	fx_service(f, "suff-ok", 0600, "stack = ( "
	           LAYER("A", "") ", " LAYER("B", "control = \"sufficient\";") ", "
	           LAYER("C", "") " );\n");
	fx_service(f, "suff-fails", 0600, "stack = ( "
	           LAYER("A", "fail = true; control = \"sufficient\";") ", "
	           LAYER("B", "") " );\n");
	fx_service(f, "req-then-suff", 0600, "stack = ( "
	           LAYER("A", "fail = true;") ", " LAYER("B", "control = \"sufficient\";")
	           " );\n");
	fx_service(f, "bad-control", 0600, "stack = (\n"
	           LAYER("A", "control = \"maybe\";") " );\n");
	fx_open(f);

	fx_assert_err(f, fx_get(f, "req-fails"), APICRED_ERR_AUTH, "req-fails",
	              "alltypes fails on purpose", NULL);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);

	assert_int_equal(fx_get(f, "req-default"), APICRED_OK);
	assert_string_equal(labels(f), "A,B");

	/* optional: a failure is ignored and adds nothing. */
	assert_int_equal(fx_get(f, "opt-fails"), APICRED_OK);
	assert_string_equal(labels(f), "B");
	assert_int_equal(fx_get(f, "opt-ok"), APICRED_OK);
	assert_string_equal(labels(f), "A,B");

	/* sufficient: success ends the stack; failure is ignored. */
	assert_int_equal(fx_get(f, "suff-ok"), APICRED_OK);
	assert_string_equal(labels(f), "A,B");
	assert_int_equal(fx_get(f, "suff-fails"), APICRED_OK);
	assert_string_equal(labels(f), "B");
	/* ... but cannot rescue an earlier required failure. */
	assert_int_equal(fx_get(f, "req-then-suff"), APICRED_ERR_AUTH);

	assert_service_fails(f, "bad-control", APICRED_ERR_CONFIG, "control",
	                     "bad-control.conf:2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_syntax_error_has_file_line),
		T(test_global_syntax_error),
		T(test_environment_dirs),
		T(test_values_and_defaults),
		T(test_unknown_key),
		T(test_unknown_top_level_key),
		T(test_x_keys_ignored),
		T(test_missing_required_key),
		T(test_wrong_type),
		T(test_value_outside_choices),
		T(test_unknown_provider),
		T(test_provider_name_is_not_a_path),
		T(test_module_without_initvt),
		T(test_module_other_abi_major),
		T(test_init_failure),
		T(test_module_unknown_key_type),
		T(test_missing_optional_provider_fails_closed),
		T(test_bad_service_names),
		T(test_unknown_service),
		T(test_service_list),
		T(test_description_read),
		T(test_service_list_sorted),
		T(test_static_headers),
		T(test_static_header_crlf),
		T(test_header_name_crlf),
		T(test_control),
#undef T
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
