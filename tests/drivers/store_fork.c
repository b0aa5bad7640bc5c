/*
 * store_fork - a pre-forking server, for tests/integration/store.sh.
 *
 *   store_fork CONFDIR MODULEDIR SERVICE N [list]
 *
 * Opens one context, forks N children that start together (a pipe is the
 * starting gun) and each call apicred_get(SERVICE) once, cold, as the
 * workers of php-fpm or gunicorn would. With "list" the parent first lists
 * the shared store (so it holds a connection the children must not share).
 * Prints "ok N" when every child got credentials, else one line per
 * failure; exits non-zero on any failure.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apicred/apicred.h>

static void s_entry(void *user, const apicred_cache_entry *e)
{
	(void)user;
	printf("parent sees %s layer %d: state %d\n", e->service, e->layer, e->state);
}

int main(int argc, char **argv)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx;
	int gun[2], n, ok = 0;
	char c;

	if (argc < 5 || argc > 6 || (n = atoi(argv[4])) <= 0 || n > 256) {
		fprintf(stderr, "usage: store_fork CONFDIR MODULEDIR SERVICE N [list]\n");
		return 2;
	}
	o.confdir = argv[1];
	o.moduledir = argv[2];
	if (apicred_open_opts(&ctx, &o) != APICRED_OK) {
		fprintf(stderr, "open: %s\n", apicred_errmsg());
		return 1;
	}
	if (argc == 6 && apicred_cache_list(ctx, argv[3], s_entry, NULL) != APICRED_OK) {
		fprintf(stderr, "cache list: %s\n", apicred_errmsg());
		return 1;
	}
	if (pipe(gun) != 0)
		return 1;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			apicred_cred *cred = NULL;
			int rc;

			close(gun[1]);
			if (read(gun[0], &c, 1) < 0) /* EOF when the parent fires */
				_exit(3);
			rc = apicred_cred_new(&cred);
			if (rc == APICRED_OK)
				rc = apicred_get(ctx, argv[3], NULL, cred);
			if (rc != APICRED_OK)
				fprintf(stderr, "child %d: %s\n", i, apicred_errmsg());
			apicred_cred_free(cred);
			apicred_close(ctx);
			_exit(rc == APICRED_OK ? 0 : 1);
		}
	}
	close(gun[0]);
	close(gun[1]); /* fire */
	for (int i = 0; i < n; i++) {
		int st;
		if (wait(&st) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ok++;
	}
	apicred_close(ctx);
	printf("ok %d\n", ok);
	return ok == n ? 0 : 1;
}
