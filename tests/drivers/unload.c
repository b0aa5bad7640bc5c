/*
 * unload - libapicred loaded with dlopen and unloaded with dlclose while a
 * thread that used it still runs, for tests/integration/unload.sh.
 *
 *   unload LIBRARY CONFDIR MODULEDIR SERVICE
 *
 * A plug-in host's life: a worker thread opens a context, gets SERVICE's
 * credentials and closes it; the host dlcloses the library; then the
 * worker exits (libc runs the library's thread-exit destructors) and the
 * host forks (libc runs its fork handlers). Prints one line per step;
 * exits 0 when every step got through. Deliberately not linked with
 * libapicred: a link would keep the library loaded past dlclose.
 */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apicred/apicred.h>

static void *s_lib;
static char **s_argv;
static pthread_barrier_t s_used, s_unloaded;

#define S_SYM(type, name) ((type)dlsym(s_lib, name))

static void *s_worker(void *arg)
{
	int (*open_opts)(apicred_ctx **, const apicred_options *) =
		S_SYM(int (*)(apicred_ctx **, const apicred_options *), "apicred_open_opts");
	int (*cred_new)(apicred_cred **) = S_SYM(int (*)(apicred_cred **), "apicred_cred_new");
	int (*get)(apicred_ctx *, const char *, const apicred_request *, apicred_cred *) =
		S_SYM(int (*)(apicred_ctx *, const char *, const apicred_request *,
		              apicred_cred *), "apicred_get");
	size_t (*count)(const apicred_cred *, apicred_kind) =
		S_SYM(size_t (*)(const apicred_cred *, apicred_kind), "apicred_cred_count");
	void (*cred_free)(apicred_cred *) = S_SYM(void (*)(apicred_cred *), "apicred_cred_free");
	void (*close)(apicred_ctx *) = S_SYM(void (*)(apicred_ctx *), "apicred_close");
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	int rc;

	(void)arg;
	o.confdir = s_argv[2];
	o.moduledir = s_argv[3];
	if (!open_opts || !cred_new || !get || !count || !cred_free || !close)
		printf("dlsym: %s\n", dlerror());
	else if ((rc = open_opts(&ctx, &o)) != APICRED_OK)
		printf("open: rc %d\n", rc);
	else if (cred_new(&cred) == APICRED_OK) {
		/* A get that fails first leaves this thread an error message. */
		rc = get(ctx, "no-such-service", NULL, cred);
		printf("get no-such-service: rc %d\n", rc);
		rc = get(ctx, s_argv[4], NULL, cred);
		printf("get %s: rc %d, %zu header(s)\n", s_argv[4], rc, count(cred, APICRED_HEADER));
	}
	cred_free(cred);
	if (ctx)
		close(ctx);
	fflush(stdout);
	pthread_barrier_wait(&s_used);
	pthread_barrier_wait(&s_unloaded); /* the library is gone: exit now */
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	pid_t pid;
	int status = -1;

	if (argc != 5) {
		fprintf(stderr, "usage: unload LIBRARY CONFDIR MODULEDIR SERVICE\n");
		return 2;
	}
	s_argv = argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!(s_lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL))) {
		printf("dlopen: %s\n", dlerror());
		return 1;
	}
	pthread_barrier_init(&s_used, NULL, 2);
	pthread_barrier_init(&s_unloaded, NULL, 2);
	if (pthread_create(&t, NULL, s_worker, NULL) != 0)
		return 1;
	pthread_barrier_wait(&s_used);
	printf("dlclose: %d\n", dlclose(s_lib));
	pthread_barrier_wait(&s_unloaded);
	pthread_join(t, NULL);
	printf("thread exited\n");
	if ((pid = fork()) == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, &status, 0);
	printf("fork: child status %d\n", status);
	return 0;
}
