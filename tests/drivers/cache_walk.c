/*
 * cache_walk - the library's own walk of the shared store, for
 * tests/integration/store.sh (the tool goes service by service).
 *
 *   cache_walk CONFDIR MODULEDIR list|clear
 *
 * Calls apicred_cache_list or apicred_cache_clear with service NULL.
 * Prints one line per entry ("SERVICE LAYER STATE") or "cleared N", then
 * "rc CODE" and apicred_errmsg() when it failed; exits 1 on a failure.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <apicred/apicred.h>

static void s_entry(void *user, const apicred_cache_entry *e)
{
	(void)user;
	printf("%s %d %d\n", e->service, e->layer, e->state);
}

int main(int argc, char **argv)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx;
	size_t cleared = 0;
	int rc;

	if (argc != 4 || (strcmp(argv[3], "list") != 0 && strcmp(argv[3], "clear") != 0)) {
		fprintf(stderr, "usage: cache_walk CONFDIR MODULEDIR list|clear\n");
		return 2;
	}
	o.confdir = argv[1];
	o.moduledir = argv[2];
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	if (apicred_open_opts(&ctx, &o) != APICRED_OK) {
		fprintf(stderr, "open: %s\n", apicred_errmsg());
		return 1;
	}
	if (strcmp(argv[3], "list") == 0) {
		rc = apicred_cache_list(ctx, NULL, s_entry, NULL);
	} else {
		rc = apicred_cache_clear(ctx, NULL, &cleared);
		printf("cleared %zu\n", cleared);
	}
	if (rc != APICRED_OK)
		printf("rc %d: %s\n", rc, apicred_errmsg());
	apicred_close(ctx);
	return rc == APICRED_OK ? 0 : 1;
}
