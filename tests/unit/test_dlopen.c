/*
 * test_dlopen.c - every provider module in $APICRED_TEST_MODULEDIR loads
 * with dlopen(RTLD_NOW) (no undefined symbols), exports the initvt entry
 * point, speaks ABI major 1 only, and fills a well-formed vtable named after
 * its file. One test case per *.so, found at run time, so providers added
 * later are covered without touching this file.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <apicred/provider.h>

typedef int (*s_initvt_fn)(int major, int minor, void *vtable);

static void s_check_schema(const char *module, const apicred_schema *schema)
{
	for (int i = 0; schema[i].name; i++) {
		const apicred_schema *k = &schema[i];

		if (k->type < APICRED_T_STRING || k->type > APICRED_T_HEADERS)
			fail_msg("%s: key %s has no valid type", module, k->name);
		if (k->flags & ~(APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_SECRET_FILE |
		                 APICRED_F_NONEMPTY))
			fail_msg("%s: key %s has unknown flags", module, k->name);
		if ((k->flags & APICRED_F_NONEMPTY) && k->def && !*k->def)
			fail_msg("%s: key %s must not be empty but defaults to \"\"", module, k->name);
		if (!k->help || !*k->help)
			fail_msg("%s: key %s has no help line", module, k->name);
		if ((k->flags & APICRED_F_REQUIRED) && k->def)
			fail_msg("%s: key %s is required and has a default", module, k->name);
		if ((k->flags & APICRED_F_SECRET) && k->def)
			fail_msg("%s: secret key %s has a default", module, k->name);
		if (strncmp(k->name, "x-", 2) == 0 || strcmp(k->name, "provider") == 0 ||
		    strcmp(k->name, "control") == 0)
			fail_msg("%s: key %s is reserved for the core or sites", module, k->name);
		for (int j = 0; j < i; j++)
			if (strcmp(schema[j].name, k->name) == 0)
				fail_msg("%s: key %s appears twice", module, k->name);
		if (k->choices) {
			size_t len = k->def ? strlen(k->def) : 0;
			const char *p = k->choices;

			if (k->type != APICRED_T_STRING)
				fail_msg("%s: key %s has choices but is no string", module, k->name);
			/* The default must be one of the choices. */
			while (k->def) {
				if (strncmp(p, k->def, len) == 0 && (p[len] == '|' || !p[len]))
					break;
				p = strchr(p, '|');
				if (!p)
					fail_msg("%s: key %s: default not among the choices", module,
					         k->name);
				p++;
			}
		}
	}
}

static void test_module(void **state)
{
	const char *path = *state;
	const char *base = strrchr(path, '/') + 1;
	char name[256];
	apicred_vtable_v1 vt;
	s_initvt_fn initvt;
	void *h;

	snprintf(name, sizeof(name), "%.*s", (int)(strlen(base) - 3), base);

	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		fail_msg("dlopen(RTLD_NOW): %s", dlerror());
	*(void **)&initvt = dlsym(h, "apicred_provider_initvt");
	if (!initvt)
		fail_msg("%s: no apicred_provider_initvt: %s", name, dlerror());

	/* Another major is refused and leaves the vtable alone. */
	memset(&vt, 0, sizeof(vt));
	assert_int_equal(initvt(APICRED_PROVIDER_MAJOR + 1, 0, &vt), APICRED_ERR_ABI);
	assert_null(vt.name);

	memset(&vt, 0, sizeof(vt));
	assert_int_equal(initvt(APICRED_PROVIDER_MAJOR, APICRED_PROVIDER_MINOR, &vt),
	                 APICRED_OK);
	assert_non_null(vt.name);
	assert_string_equal(vt.name, name);
	assert_non_null(vt.schema);
	assert_non_null(vt.init);
	assert_non_null(vt.apply);
	assert_non_null(vt.fini);
	/* A session needs someone to free it. */
	assert_true(!vt.fetch == !vt.session_free);
	/* Sessions travel both ways, or not at all (minor 1). */
	assert_true(!vt.session_export == !vt.session_import);
	assert_true(!vt.session_export || vt.fetch);
	s_check_schema(name, vt.schema);

	/* A core that knows only minor 0 gets exactly the minor-0 fields: the
	 * provider writes nothing past them (the core's vtable may end there). */
	{
		unsigned char buf[sizeof(apicred_vtable_v1) + 64];
		size_t end = apicred_vtable_v1_size(0);

		memset(buf, 0xA5, sizeof(buf));
		assert_int_equal(initvt(APICRED_PROVIDER_MAJOR, 0, buf), APICRED_OK);
		for (size_t i = end; i < sizeof(buf); i++)
			if (buf[i] != 0xA5)
				fail_msg("%s: initvt(1, 0) wrote byte %zu, past the %zu bytes of "
				         "minor 0", name, i, end);
	}
	assert_int_equal(initvt(APICRED_PROVIDER_MAJOR, -1, &vt), APICRED_ERR_ABI);

	assert_int_equal(dlclose(h), 0);
}

static int s_is_module(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return len > 3 && strcmp(d->d_name + len - 3, ".so") == 0;
}

int main(void)
{
	const char *dir = getenv("APICRED_TEST_MODULEDIR");
	struct CMUnitTest *tests;
	struct dirent **list;
	int n, rc, apikey = 0;

	if (!dir)
		dir = "providers/.libs";
	n = scandir(dir, &list, s_is_module, alphasort);
	if (n < 0) {
		fprintf(stderr, "test_dlopen: cannot read %s\n", dir);
		return 1;
	}
	tests = calloc(n ? n : 1, sizeof(*tests));
	if (!tests)
		return 1;
	for (int i = 0; i < n; i++) {
		char *path;

		if (asprintf(&path, "%s/%s", dir, list[i]->d_name) < 0)
			return 1;
		tests[i].name = strdup(list[i]->d_name);
		tests[i].test_func = test_module;
		tests[i].initial_state = path;
		apikey |= strcmp(list[i]->d_name, "apikey.so") == 0;
		free(list[i]);
	}
	free(list);
	/* An empty or wrong directory must not pass as "nothing to check". */
	if (!apikey) {
		fprintf(stderr, "test_dlopen: apikey.so not found in %s\n", dir);
		return 1;
	}
	rc = _cmocka_run_group_tests("dlopen", tests, n, NULL, NULL);
	for (int i = 0; i < n; i++) {
		free((char *)tests[i].name);
		free(tests[i].initial_state);
	}
	free(tests);
	return rc;
}
