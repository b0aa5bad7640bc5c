/*
 * test_reclaim.c - memory safety under reloads and forks, through the public
 * API and the real loader, with the `counter` test provider (a fetch that
 * takes a while) stacked on the real `apikey` provider reading a secret file:
 *
 *  - a hammer: 8 threads get, report 401 and reload (by replacing the secret
 *    file, and by apicred_reload) while an injected clock jumps, so fetches
 *    are in flight while their stack is retired; the sanitizers (ASan in
 *    `./run.sh test-sanitizers`, TSan in `./run.sh test-tsan`) see any use
 *    after free or race;
 *  - fork while 4 threads hammer: the child gets, reloads, frees what it
 *    retires and exits, within a bounded wait (a deadlock fails);
 *  - every public function on a service that failed validation returns the
 *    service's error;
 *  - a description stays readable across reloads; the copy is current;
 *  - services load on first use: a broken one costs the open nothing, nor
 *    its neighbours; threads using it first at once load it once; its
 *    error names it on every call until it is fixed; check_all finds it.
 */
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <apicred/apicred.h>

#include "fixture.h"

static fx *s_fx;
static struct counter_control *s_ctl;

static apicred_ctx *s_open(unsigned flags)
{
	return fx_ctx(s_fx, flags);
}

#define S_SVC "url = \"https://api.example/\";\n" \
              "stack = ( { provider = \"counter\"; label = \"%s\"; },\n" \
              "          { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"

static void s_service(const char *label)
{
	char text[512];

	snprintf(text, sizeof(text), S_SVC, label);
	fx_replace(s_fx, "conf.d/svc.conf", text);
}

/* The counter's token must carry the label of some configuration the test
 * wrote, and the key must be one the secret file held: never anything else. */
static bool s_cred_ok(const apicred_cred *cred)
{
	const char *a = apicred_cred_find(cred, APICRED_HEADER, "Authorization");
	const char *k = apicred_cred_find(cred, APICRED_HEADER, "X-API-Key");

	return a && k && (strncmp(a, "a-", 2) == 0 || strncmp(a, "b-", 2) == 0) &&
	       (strcmp(k, "key-one") == 0 || strcmp(k, "key-two") == 0);
}

static int s_setup(void **state)
{
	s_ctl = fx_counter();
	s_fx = fx_new(); /* the clock starts at FX_MONO0 */
	s_fx->hooks = FX_CLOCK;
	fx_module(s_fx, "counter");
	fx_module(s_fx, "apikey");
	fx_replace(s_fx, "apicred.conf", "cache = { refresh_ahead = 300; default_ttl = 100; "
	                                 "check_interval = 0; backoff_max = 60; };\n"
	                                 "http = { retries = 0; };\n");
	fx_replace(s_fx, "secrets/k", "key-one");
	s_service("a");
	return 0;
}

static int s_teardown(void **state)
{
	fx_free(s_fx);
	s_fx = NULL;
	return 0;
}

/* ---- the hammer ---------------------------------------------------------- */

struct s_ham {
	apicred_ctx *ctx;
	atomic_bool stop;
	atomic_int gets, bad, reloads;
};

/* Gets; every 16th credential is reported as refused (401), by credential
 * or by service (cred NULL), which drops the session and makes the next
 * caller fetch; the clock jumps past refresh-ahead or expiry now and then. */
static void *s_ham_get(void *arg)
{
	struct s_ham *h = arg;
	apicred_cred *cred;
	unsigned n = 0;

	apicred_cred_new(&cred);
	while (!atomic_load(&h->stop)) {
		int retry, rc = apicred_get(h->ctx, "svc", NULL, cred);

		n++;
		atomic_fetch_add(&h->gets, 1);
		if (rc != APICRED_OK || !s_cred_ok(cred)) {
			atomic_fetch_add(&h->bad, 1);
			continue;
		}
		if (n % 16 == 0 &&
		    apicred_report(h->ctx, "svc", n % 32 ? cred : NULL, 401, NULL, 0, &retry) !=
		    APICRED_OK)
			atomic_fetch_add(&h->bad, 1);
		if (n % 64 == 0)
			fx_advance(n % 128 ? 350000 : 700000);
	}
	apicred_cred_free(cred);
	return NULL;
}

/* Reloads: the secret is replaced (the next get notices, check_interval 0),
 * or the service file is rewritten and apicred_reload forces it. */
static void *s_ham_reload(void *arg)
{
	struct s_ham *h = arg;
	unsigned n = 0;

	while (!atomic_load(&h->stop)) {
		n++;
		if (n % 2) {
			fx_replace(s_fx, "secrets/k", n % 4 == 1 ? "key-two" : "key-one");
		} else {
			s_service(n % 4 ? "a" : "b");
			if (apicred_reload(h->ctx) != APICRED_OK)
				atomic_fetch_add(&h->bad, 1);
		}
		atomic_fetch_add(&h->reloads, 1);
		sched_yield();
	}
	return NULL;
}

static void s_hammer(unsigned flags)
{
	struct s_ham h = { .ctx = NULL };
	pthread_t t[8];
	int rounds = getenv("APICRED_HAMMER_ROUNDS") ? atoi(getenv("APICRED_HAMMER_ROUNDS")) : 300;

	/* Fetches that last: reloads land while they are in flight. */
	atomic_store(&s_ctl->delay_ms, 1);
	h.ctx = s_open(flags);
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, i < 6 ? s_ham_get : s_ham_reload, &h);
	/* Stop after enough reloads (not after some time: the result must not
	 * depend on the machine's speed). */
	while (atomic_load(&h.reloads) < rounds)
		usleep(1000);
	atomic_store(&h.stop, true);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&h.bad), 0);
	assert_true(atomic_load(&h.gets) > 0);
	assert_true(atomic_load(&s_ctl->fetches) > 1);
	apicred_close(h.ctx);
}

static void test_hammer(void **state)
{
	s_hammer(0); /* with the background refresher */
}

static void test_hammer_no_background(void **state)
{
	s_hammer(APICRED_OPEN_NO_BACKGROUND);
}

/* ---- fork ---------------------------------------------------------------- */

struct s_forkload {
	apicred_ctx *ctx;
	atomic_bool stop;
	atomic_int bad;
};

static void *s_fork_get(void *arg)
{
	struct s_forkload *l = arg;
	apicred_cred *cred;
	unsigned n = 0;

	apicred_cred_new(&cred);
	while (!atomic_load(&l->stop)) {
		if (apicred_get(l->ctx, "svc", NULL, cred) != APICRED_OK || !s_cred_ok(cred))
			atomic_fetch_add(&l->bad, 1);
		if (++n % 32 == 0) /* a fetch (and a retirement) now and then */
			apicred_report(l->ctx, "svc", cred, 401, NULL, 0, NULL);
		if (n % 256 == 0) /* the parent's reloads take the loader's lock */
			apicred_reload(l->ctx);
	}
	apicred_cred_free(cred);
	return NULL;
}

/* In the child: gets, reloads twice (each frees the stack it replaces:
 * counted by the provider's fini), gets the new configuration. */
static int s_child(apicred_ctx *ctx)
{
	apicred_cred *cred;
	int finis = atomic_load(&s_ctl->finis), rc = 0;

	if (apicred_cred_new(&cred) != APICRED_OK)
		return 10;
	if (apicred_get(ctx, "svc", NULL, cred) != APICRED_OK || !s_cred_ok(cred))
		rc = 11;
	for (int i = 0; rc == 0 && i < 2; i++) {
		char path[512];
		FILE *f;
		snprintf(path, sizeof(path), "%s/conf.d/svc.conf", s_fx->conf);
		f = fopen(path, "a");
		if (!f || fprintf(f, "# child %d\n", i) < 0 || fclose(f) != 0)
			rc = 12;
		else if (apicred_reload(ctx) != APICRED_OK)
			rc = 13;
		else if (apicred_get(ctx, "svc", NULL, cred) != APICRED_OK || !s_cred_ok(cred))
			rc = 14;
	}
	/* Nothing reads the replaced stacks here: both must be gone, which a
	 * read section left open by a parent thread would prevent. */
	if (rc == 0 && atomic_load(&s_ctl->finis) < finis + 2)
		rc = 15;
	apicred_cred_free(cred);
	apicred_close(ctx);
	return rc;
}

/* Waits for the child, for at most 20 s: a deadlocked child fails the test
 * instead of hanging it (this bounds a hang; it times nothing). */
static int s_reap(pid_t pid)
{
	int status;

	for (int i = 0; i < 2000; i++) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
		usleep(10000);
	}
	if (getenv("APICRED_FORK_DEBUG")) { /* show where it is stuck */
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt' >&2", (int)pid);
		if (system(cmd) != 0)
			fprintf(stderr, "gdb failed\n");
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1; /* deadlocked */
}

static void test_fork_while_hammering(void **state)
{
	struct s_forkload l = { .ctx = NULL };
	apicred_cred *cred = NULL;
	pthread_t t[4];
	int forks = getenv("APICRED_FORK_ROUNDS") ? atoi(getenv("APICRED_FORK_ROUNDS")) : 20;
	int rc = 0;
	bool failed = false;

#ifdef __SANITIZE_ADDRESS__
	/* An AddressSanitizer without a fork interceptor (gcc 12's) leaves its
	 * allocator's locks as the parent's threads held them, so the child's
	 * first malloc may wait forever whatever apicred does (seen in gdb:
	 * SizeClassAllocator64::GetFromAllocator). The plain and the
	 * ThreadSanitizer runs (.ci/run has both) keep this case. */
	if (!dlsym(RTLD_DEFAULT, "__interceptor_fork")) {
		fprintf(stderr, "# not run here: this AddressSanitizer does not make fork "
		        "safe (cmocka's TAP would count a skip() as a failure)\n");
		return;
	}
#endif
	atomic_store(&s_ctl->delay_ms, 1);
	l.ctx = s_open(0);
	/* The module is loaded before the first fork, as in a server that gets
	 * before it forks: ThreadSanitizer's dlopen wrapper holds a lock of its
	 * own, which a fork during a first load leaves held in the child (gdb),
	 * whatever apicred does. The forks below still land amid gets. */
	if (apicred_cred_new(&cred) != APICRED_OK || apicred_get(l.ctx, "svc", NULL, cred) != APICRED_OK)
		fail_msg("the first get: %s", apicred_errmsg());
	apicred_cred_free(cred);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, s_fork_get, &l);
	for (int i = 0; i < forks && !failed; i++) {
		pid_t pid;

		while (atomic_load(&s_ctl->fetches) < i) /* threads are busy */
			sched_yield();
		pid = fork();
		if (pid == 0)
			_exit(s_child(l.ctx));
		rc = pid < 0 ? -2 : s_reap(pid);
		failed = rc != 0;
		s_service("a"); /* undo the child's edits for the next one */
	}
	/* Threads joined before failing: they use this stack frame. */
	atomic_store(&l.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	if (failed)
		fail_msg("child %s %d", rc == -1 ? "deadlocked:" : "failed:", rc);
	assert_int_equal(atomic_load(&l.bad), 0);
	apicred_close(l.ctx);
}

/* ---- a failed service ---------------------------------------------------- */

static void s_assert_svc_err(int rc, const char *why)
{
	if (rc != APICRED_ERR_CONFIG)
		fail_msg("%s: %d (%s), expected the service's error", why, rc, apicred_errmsg());
	if (!strstr(apicred_errmsg(), "broken") || !strstr(apicred_errmsg(), "nonsense"))
		fail_msg("%s: message '%s' does not name the service and the cause", why,
		         apicred_errmsg());
}

static void test_failed_service_returns_its_error(void **state)
{
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_ctx *ctx;
	apicred_cred *cred;
	char *copy = (char *)"x";
	CURL *easy = curl_easy_init();
	int retry = 7;

	/* Layer 1 fails validation: layer 2 never gets its provider. */
	fx_replace(s_fx, "conf.d/broken.conf",
	        "description = \"half a service\";\n"
	        "url = \"https://api.example/\";\n"
	        "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; nonsense = 1; },\n"
	        "          { provider = \"counter\"; } );\n");
	ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	assert_non_null(easy);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	req.url = "https://api.example/x";

	s_assert_svc_err(apicred_get(ctx, "broken", NULL, cred), "get");
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 0);
	s_assert_svc_err(apicred_report(ctx, "broken", NULL, 401, NULL, 0, &retry), "report(NULL)");
	assert_int_equal(retry, 0);
	s_assert_svc_err(apicred_report(ctx, "broken", cred, 401, NULL, 0, NULL), "report(cred)");
	s_assert_svc_err(apicred_check(ctx, "broken"), "check");
	s_assert_svc_err(apicred_curl_apply(ctx, "broken", easy, &req, cred), "curl_apply");
	s_assert_svc_err(apicred_provision(ctx, "broken", APICRED_PROVISION_SHOW, NULL),
	                 "provision");
	assert_null(apicred_service_description(ctx, "broken"));
	s_assert_svc_err(APICRED_ERR_CONFIG, "description");
	s_assert_svc_err(apicred_service_description_copy(ctx, "broken", &copy), "description_copy");
	assert_null(copy);
	/* The service next to it is unaffected. */
	assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_OK);
	assert_true(s_cred_ok(cred));

	apicred_cred_free(cred);
	curl_easy_cleanup(easy);
	apicred_close(ctx);
	fx_replace(s_fx, "conf.d/broken.conf", "");
	{
		char path[512];
		snprintf(path, sizeof(path), "%s/conf.d/broken.conf", s_fx->conf);
		unlink(path);
	}
}

/* ---- services load on first use ----------------------------------------- */

/* Lines of the fixture's log that mention s (no thread of ours logging). */
static int s_logged_lines(const char *s)
{
	int n = 0;

	for (const char *l = s_fx->log; l && *l;) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) : strlen(l);
		char line[2048];

		snprintf(line, sizeof(line), "%.*s", (int)len, l);
		n += strstr(line, s) != NULL;
		l += len + (nl != NULL);
	}
	return n;
}

struct s_first {
	apicred_ctx *ctx;
	pthread_barrier_t *go;
	atomic_int bad;
};

static void *s_first_main(void *arg)
{
	struct s_first *f = arg;
	apicred_cred *cred;

	apicred_cred_new(&cred);
	pthread_barrier_wait(f->go);
	if (apicred_get(f->ctx, "broken", NULL, cred) != APICRED_ERR_CONFIG ||
	    !strstr(apicred_errmsg(), "broken") || !strstr(apicred_errmsg(), "nonsense"))
		atomic_fetch_add(&f->bad, 1);
	apicred_cred_free(cred);
	return NULL;
}

static void s_problem_keep(void *user, const char *message)
{
	char *all = user;

	if (strlen(all) + strlen(message) + 2 < 4096) {
		strcat(all, message);
		strcat(all, "\n");
	}
}

static void test_services_load_on_first_use(void **state)
{
	struct s_first f = { 0 };
	pthread_barrier_t go;
	pthread_t tid[8];
	apicred_cred *cred;
	char problems[4096] = "";

	fx_replace(s_fx, "conf.d/broken.conf",
	        "url = \"https://api.example/\";\n"
	        "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; nonsense = 1; } );\n");
	fx_replace(s_fx, "conf.d/nosecret.conf",
	        "url = \"https://api.example/\";\n"
	        "stack = ( { provider = \"apikey\"; key = \"file:secrets/none\"; } );\n");
	f.ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	/* Opening reads the list only: not a word about either service. */
	assert_int_equal(apicred_service_count(f.ctx), 3);
	assert_int_equal(s_logged_lines("broken"), 0);
	assert_int_equal(s_logged_lines("nosecret"), 0);
	/* A broken neighbour does not affect a good service. */
	assert_int_equal(apicred_get(f.ctx, "svc", NULL, cred), APICRED_OK);
	assert_true(s_cred_ok(cred));
	assert_int_equal(s_logged_lines("broken") + s_logged_lines("nosecret"), 0);

	/* Eight threads use it first at once: it is loaded (and its failure
	 * logged) once, and every one of them gets its error. */
	pthread_barrier_init(&go, NULL, 8);
	f.go = &go;
	for (int i = 0; i < 8; i++)
		pthread_create(&tid[i], NULL, s_first_main, &f);
	for (int i = 0; i < 8; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&go);
	assert_int_equal(atomic_load(&f.bad), 0);
	assert_int_equal(s_logged_lines("broken"), 1);
	/* Sticky: the same error, naming the service, on every later call. */
	s_assert_svc_err(apicred_get(f.ctx, "broken", NULL, cred), "get again");
	s_assert_svc_err(apicred_check(f.ctx, "broken"), "check");
	assert_int_equal(s_logged_lines("broken"), 1);

	/* A secret is resolved on first use, not at open. */
	assert_int_equal(s_logged_lines("nosecret"), 0);
	assert_int_equal(apicred_get(f.ctx, "nosecret", NULL, cred), APICRED_ERR_SECRET);
	assert_non_null(strstr(apicred_errmsg(), "nosecret"));
	assert_non_null(strstr(apicred_errmsg(), "none"));
	assert_true(s_logged_lines("nosecret") >= 1);

	/* check_all finds both; the first (by name) is the error. */
	assert_int_equal(apicred_check_all(f.ctx, NULL, NULL), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "broken"));
	assert_int_equal(apicred_check_all(f.ctx, s_problem_keep, problems), APICRED_ERR_CONFIG);
	assert_non_null(strstr(problems, "broken: "));
	assert_non_null(strstr(problems, "nonsense"));
	assert_non_null(strstr(problems, "nosecret: "));
	assert_null(strstr(problems, "svc: "));

	/* Fixed on disk, it loads again (check_interval = 0). */
	fx_replace(s_fx, "conf.d/broken.conf",
	        "url = \"https://api.example/\";\n"
	        "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n");
	fx_advance(1000);
	assert_int_equal(apicred_get(f.ctx, "broken", NULL, cred), APICRED_OK);
	assert_string_equal(apicred_cred_find(cred, APICRED_HEADER, "X-API-Key"), "key-one");

	apicred_cred_free(cred);
	apicred_close(f.ctx);
}

/* The lookup remembers the caller's name pointer: a buffer that holds
 * another name next time must find that service, or none. */
static void test_name_buffer_reused(void **state)
{
	apicred_ctx *ctx;
	apicred_cred *cred;
	char name[32];

	fx_replace(s_fx, "conf.d/svc2.conf",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; "
	           "header = \"X-Other\"; } );\n");
	ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	strcpy(name, "svc");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_OK);
		assert_true(s_cred_ok(cred));
	}
	strcpy(name, "svc2");
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_OK);
	assert_string_equal(apicred_cred_find(cred, APICRED_HEADER, "X-Other"), "key-one");
	assert_null(apicred_cred_find(cred, APICRED_HEADER, "Authorization"));
	name[3] = '\0'; /* "svc" again, in the same buffer */
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_OK);
	assert_true(s_cred_ok(cred));
	strcpy(name, "sv");
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_ERR_NO_SERVICE);
	assert_non_null(strstr(apicred_errmsg(), "sv"));
	strcpy(name, "svc3");
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_ERR_NO_SERVICE);
	/* A second context (maybe at the same address as the closed one). */
	apicred_close(ctx);
	{
		char path[600];
		snprintf(path, sizeof(path), "%s/conf.d/svc2.conf", s_fx->conf);
		assert_int_equal(unlink(path), 0);
	}
	ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	strcpy(name, "svc2");
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_ERR_NO_SERVICE);
	strcpy(name, "svc");
	assert_int_equal(apicred_get(ctx, name, NULL, cred), APICRED_OK);
	assert_true(s_cred_ok(cred));
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A check_all of a confdir whose services are all fine. */
static void test_check_all_fine(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	char problems[4096] = "";

	assert_int_equal(apicred_check_all(ctx, s_problem_keep, problems), APICRED_OK);
	assert_string_equal(problems, "");
	assert_int_equal(apicred_check_all(NULL, NULL, NULL), APICRED_ERR_INVALID);
	apicred_close(ctx);
}

/* ---- descriptions -------------------------------------------------------- */

static void s_describe(const char *text)
{
	char conf[600];

	snprintf(conf, sizeof(conf), "description = \"%s\";\n" S_SVC, text, "a");
	fx_replace(s_fx, "conf.d/svc.conf", conf);
}

struct s_desc { apicred_ctx *ctx; atomic_bool stop; atomic_int bad; };

static void *s_desc_main(void *arg)
{
	struct s_desc *d = arg;

	while (!atomic_load(&d->stop)) {
		const char *t = apicred_service_description(d->ctx, "svc");
		char *c = NULL;
		/* Read it all, as a caller would: ASan sees a freed one. */
		if (!t || (strcmp(t, "one") != 0 && strcmp(t, "two") != 0))
			atomic_fetch_add(&d->bad, 1);
		if (apicred_service_description_copy(d->ctx, "svc", &c) != APICRED_OK || !c ||
		    (strcmp(c, "one") != 0 && strcmp(c, "two") != 0))
			atomic_fetch_add(&d->bad, 1);
		free(c);
	}
	return NULL;
}

static void test_description_survives_reload(void **state)
{
	struct s_desc d = { .ctx = NULL };
	const char *before;
	char *copy = NULL;
	pthread_t t[2];

	s_describe("one");
	d.ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	before = apicred_service_description(d.ctx, "svc");
	assert_non_null(before);
	assert_string_equal(before, "one");

	s_describe("two");
	assert_int_equal(apicred_reload(d.ctx), APICRED_OK);
	assert_string_equal(before, "one"); /* still readable: kept until close */
	assert_string_equal(apicred_service_description(d.ctx, "svc"), "two");
	assert_int_equal(apicred_service_description_copy(d.ctx, "svc", &copy), APICRED_OK);
	assert_string_equal(copy, "two");
	free(copy);

	/* Readers on two threads while this one reloads back and forth. */
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, s_desc_main, &d);
	for (int i = 0; i < 200; i++) {
		s_describe(i % 2 ? "two" : "one");
		assert_int_equal(apicred_reload(d.ctx), APICRED_OK);
	}
	atomic_store(&d.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&d.bad), 0);

	/* No description: NULL, and the copy is NULL with success. */
	s_service("a");
	assert_int_equal(apicred_reload(d.ctx), APICRED_OK);
	assert_null(apicred_service_description(d.ctx, "svc"));
	copy = (char *)"x";
	assert_int_equal(apicred_service_description_copy(d.ctx, "svc", &copy), APICRED_OK);
	assert_null(copy);
	assert_int_equal(apicred_service_description_copy(d.ctx, "nosuch", &copy),
	                 APICRED_ERR_NO_SERVICE);
	apicred_close(d.ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hammer, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_hammer_no_background, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_fork_while_hammering, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_failed_service_returns_its_error, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_description_survives_reload, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_services_load_on_first_use, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_check_all_fine, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_name_buffer_reused, s_setup, s_teardown),
	};

	return cmocka_run_group_tests_name("reclaim", tests, NULL, NULL);
}
