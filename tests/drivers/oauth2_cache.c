/*
 * oauth2_cache.c - the core's credential cache, exercised through the real
 * oauth2 provider against the real HTTPS sandbox.
 *
 * Run by tests/integration/oauth2-cache.sh, which starts the sandbox and
 * writes the service files; this program reads from the environment:
 *   SB, SB_CA                 the sandbox's base URL and CA certificate
 *   APICRED_TEST_CONFDIR      the confdir with the services below
 *   APICRED_TEST_MODULEDIR    the freshly built providers
 * Services: "gen" (generic endpoint, basic, default_ttl 600), "bar" (the
 * same on the plain HTTP listener: endpoint "http-token"), "momo-prov"
 * (MoMo provisioning, no secrets yet), "momo-badkey" (wrong subscription key).
 *   APICRED_TEST_STORE_CONFDIR  "gen" again, with a shared store (file:DIR)
 *
 * Time is the injected clock: nothing sleeps for an expiry, and nothing
 * sleeps to show that something does not happen. The few waits below poll
 * (bounded) for the background refresher, never for a deadline.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include <apicred/apicred.h>

/* ---- environment and sandbox control ---------------------------------- */

static const char *s_sb, *s_ca, *s_confdir, *s_moduledir, *s_store_confdir;

struct s_buf { char *p; size_t n; };

static size_t s_write(char *data, size_t size, size_t n, void *user)
{
	struct s_buf *b = user;
	char *np = realloc(b->p, b->n + size * n + 1);

	assert_non_null(np);
	memcpy(np + b->n, data, size * n);
	b->n += size * n;
	np[b->n] = '\0';
	b->p = np;
	return size * n;
}

/* A control request to the sandbox; returns the body (free()). */
static char *s_ctl(const char *method, const char *path, const char *body)
{
	struct s_buf b = { NULL, 0 };
	char url[1024];
	long status = 0;
	CURL *c = curl_easy_init();

	assert_non_null(c);
	snprintf(url, sizeof(url), "%s%s", s_sb, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, s_ca);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	}
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	assert_true(status >= 200 && status <= 299);
	if (!b.p)
		b.p = strdup("");
	return b.p;
}

static void s_reset(void)
{
	free(s_ctl("POST", "/_ctl/reset", NULL));
}

static void s_fault(const char *endpoint, const char *kind, int times, const char *arg)
{
	char path[256];

	snprintf(path, sizeof(path), "/_ctl/fault?endpoint=%s&kind=%s&times=%d%s%s",
	         endpoint, kind, times, arg ? "&arg=" : "", arg ? arg : "");
	free(s_ctl("POST", path, NULL));
}

static void s_set(const char *json)
{
	free(s_ctl("POST", "/_ctl/set", json));
}

static long s_count(const char *endpoint)
{
	char path[128], *body;
	json_t *j;
	long n;

	snprintf(path, sizeof(path), "/_ctl/count?endpoint=%s", endpoint);
	body = s_ctl("GET", path, NULL);
	j = json_loads(body, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_integer(json_object_get(j, "count")));
	n = (long)json_integer_value(json_object_get(j, "count"));
	json_decref(j);
	free(body);
	return n;
}

static void s_msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- injected clocks and randomness ------------------------------------ */

#define S_MONO0 1000000000LL       /* arbitrary */
#define S_WALL0 1800000000000LL    /* 2027-01-15, in ms */

static _Atomic int64_t s_mono = S_MONO0, s_wall = S_WALL0;
static unsigned char s_fixed_random[16];
static atomic_int s_use_fixed_random;

static int64_t s_clock_mono(void *user) { return atomic_load(&s_mono); }
static int64_t s_clock_wall(void *user) { return atomic_load(&s_wall); }

/* Elapsed injected time since the test's start, in seconds. */
static void s_goto(int64_t secs)
{
	atomic_store(&s_mono, S_MONO0 + secs * 1000);
	atomic_store(&s_wall, S_WALL0 + secs * 1000);
}

static int s_random(void *user, unsigned char *buf, size_t len)
{
	if (atomic_load(&s_use_fixed_random)) {
		for (size_t i = 0; i < len; i++)
			buf[i] = s_fixed_random[i % sizeof(s_fixed_random)];
		return APICRED_OK;
	}
	return getrandom(buf, len, 0) == (ssize_t)len ? APICRED_OK : APICRED_ERR_INTERNAL;
}

/* Warnings logged about "gen": a failed fetch is logged once published. */
static atomic_int s_gen_warnings;

static void s_log(void *user, int level, const char *service, const char *message)
{
	if (level <= LOG_WARNING && service && strcmp(service, "gen") == 0)
		atomic_fetch_add(&s_gen_warnings, 1);
	fprintf(stderr, "# log %d %s: %s\n", level, service ? service : "-", message);
}

static apicred_ctx *s_open_in(const char *confdir, unsigned flags)
{
	apicred_options o;
	apicred_ctx *ctx = NULL;

	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.flags = flags;
	o.confdir = confdir;
	o.moduledir = s_moduledir;
	o.log = s_log;
	o.clock_mono_ms = s_clock_mono;
	o.clock_wall_ms = s_clock_wall;
	o.random = s_random;
	assert_int_equal(apicred_open_opts(&ctx, &o), APICRED_OK);
	return ctx;
}

static apicred_ctx *s_open(void)
{
	return s_open_in(s_confdir, 0);
}

/* Gets credentials and copies the Authorization value into tok. */
static int s_get(apicred_ctx *ctx, const char *svc, apicred_cred *cred, char *tok, size_t n)
{
	int rc = apicred_get(ctx, svc, NULL, cred);

	if (tok) {
		const char *v = rc == APICRED_OK ?
			apicred_cred_find(cred, APICRED_HEADER, "Authorization") : NULL;
		snprintf(tok, n, "%s", v ? v : "");
	}
	return rc;
}

/* Polls (bounded, 20 s) until a get on svc returns a token other than old. */
static int s_wait_new_token(apicred_ctx *ctx, const char *svc, const char *old,
                            char *tok, size_t n)
{
	apicred_cred *cred;
	int rc = -1;

	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	for (int i = 0; i < 2000; i++) {
		rc = s_get(ctx, svc, cred, tok, n);
		if (rc == APICRED_OK && strcmp(tok, old) != 0)
			break;
		s_msleep(10);
	}
	apicred_cred_free(cred);
	return rc;
}

/* Polls (bounded, 20 s) until the sandbox has counted at least n requests. */
static long s_wait_count(const char *endpoint, long n)
{
	long c = 0;

	for (int i = 0; i < 2000 && (c = s_count(endpoint)) < n; i++)
		s_msleep(10);
	return c;
}

/* ---- fixtures ----------------------------------------------------------- */

static int s_setup(void **state)
{
	s_reset();
	s_goto(0);
	atomic_store(&s_use_fixed_random, 0);
	*state = s_open();
	return 0;
}

static int s_teardown(void **state)
{
	apicred_close(*state);
	return 0;
}

/* ---- single flight ------------------------------------------------------ */

#define S_THREADS 64

struct s_thread {
	apicred_ctx *ctx;
	pthread_barrier_t *barrier;
	int rc;
	char tok[512];
};

static void *s_cold_get(void *arg)
{
	struct s_thread *t = arg;
	apicred_cred *cred;

	if (apicred_cred_new(&cred) != APICRED_OK) {
		t->rc = -1;
		return NULL;
	}
	pthread_barrier_wait(t->barrier);
	t->rc = s_get(t->ctx, "gen", cred, t->tok, sizeof(t->tok));
	apicred_cred_free(cred);
	return NULL;
}

/* 64 threads on a cold cache: one token request, one token for all. */
static void test_cold_single_flight(void **state)
{
	static struct s_thread t[S_THREADS];
	pthread_t tid[S_THREADS];
	pthread_barrier_t barrier;

	pthread_barrier_init(&barrier, NULL, S_THREADS);
	for (int i = 0; i < S_THREADS; i++) {
		t[i] = (struct s_thread){ .ctx = *state, .barrier = &barrier };
		assert_int_equal(pthread_create(&tid[i], NULL, s_cold_get, &t[i]), 0);
	}
	for (int i = 0; i < S_THREADS; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&barrier);

	for (int i = 0; i < S_THREADS; i++) {
		assert_int_equal(t[i].rc, APICRED_OK);
		assert_true(strncmp(t[i].tok, "Bearer ", 7) == 0 && strlen(t[i].tok) > 7);
		assert_string_equal(t[i].tok, t[0].tok);
	}
	assert_int_equal(s_count("token"), 1);
}

/* ---- refresh ahead ------------------------------------------------------ */

struct s_window {
	apicred_ctx *ctx;
	pthread_barrier_t *barrier;
	const char *old;
	int bad;  /* gets that failed or returned another token */
};

static void *s_window_gets(void *arg)
{
	struct s_window *w = arg;
	apicred_cred *cred;
	char tok[512];

	if (apicred_cred_new(&cred) != APICRED_OK) {
		w->bad = -1;
		return NULL;
	}
	pthread_barrier_wait(w->barrier);
	for (int i = 0; i < 100; i++)
		if (s_get(w->ctx, "gen", cred, tok, sizeof(tok)) != APICRED_OK ||
		    strcmp(tok, w->old) != 0)
			w->bad++;
	apicred_cred_free(cred);
	return NULL;
}

/* In the refresh window, while a (slow) refresh is under way, every caller
 * gets the still-valid old token at once: had any waited for the network,
 * it would have come back with the new one. Then the new token arrives and
 * only one refresh was made. */
static void test_refresh_ahead(void **state)
{
	apicred_ctx *ctx = *state;
	static struct s_window w[S_THREADS];
	pthread_t tid[S_THREADS];
	pthread_barrier_t barrier;
	apicred_cred *cred;
	char t1[512], t2[512], tok[512];

	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	assert_int_equal(s_count("token"), 1);

	/* Lifetime 3600 s, refresh_ahead 300 s: the window opens at 3300 s. */
	s_fault("token", "slow", 1, "5");
	s_goto(3000);
	assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);
	assert_int_equal(s_count("token"), 1); /* not yet in the window */

	s_goto(3400);
	pthread_barrier_init(&barrier, NULL, S_THREADS);
	for (int i = 0; i < S_THREADS; i++) {
		w[i] = (struct s_window){ .ctx = ctx, .barrier = &barrier, .old = t1 };
		assert_int_equal(pthread_create(&tid[i], NULL, s_window_gets, &w[i]), 0);
	}
	for (int i = 0; i < S_THREADS; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&barrier);
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(w[i].bad, 0);
	/* The slow refresh (5 s) was still running: the sandbox has seen it
	 * arrive, or will; nothing else was asked for. */
	assert_true(s_count("token") <= 2);

	assert_int_equal(s_wait_new_token(ctx, "gen", t1, t2, sizeof(t2)), APICRED_OK);
	assert_string_not_equal(t2, t1);
	assert_int_equal(s_count("token"), 2);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
		assert_string_equal(tok, t2);
	}
	assert_int_equal(s_count("token"), 2);
	apicred_cred_free(cred);
}

/* ---- stale if error ------------------------------------------------------ */

/* A failing refresh keeps the old token until its hard expiry, then the
 * error surfaces with the server's text; once the server heals, a token
 * comes back. */
static void test_stale_if_error(void **state)
{
	apicred_ctx *ctx = *state;
	apicred_cred *cred;
	char t1[512], t2[512], tok[512];
	long n;
	int rc;

	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	s_fault("token", "500", 100000, NULL);

	s_goto(3400);
	assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);
	n = s_wait_count("token", 2);
	assert_true(n >= 2); /* the refresh was tried and failed */
	assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);

	/* Still valid a second before hard expiry, whatever the retries did. */
	for (int64_t t = 3410; t < 3600; t += 10) {
		s_goto(t);
		assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
		assert_string_equal(tok, t1);
	}
	s_goto(3599);
	assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);

	/* Past hard expiry: the old token is never served. */
	s_goto(3601);
	rc = s_get(ctx, "gen", cred, tok, sizeof(tok));
	assert_int_not_equal(rc, APICRED_OK);
	assert_int_equal(rc, APICRED_ERR_UNAVAILABLE);
	assert_non_null(strstr(apicred_errmsg(), "gen"));
	assert_non_null(strstr(apicred_errmsg(), "500"));
	assert_null(strstr(apicred_errmsg(), "s3cr"));

	/* The server heals; after any back-off a new token is fetched. */
	s_fault("token", "500", 0, NULL);
	s_goto(3601 + 3600);
	assert_int_equal(s_wait_new_token(ctx, "gen", t1, t2, sizeof(t2)), APICRED_OK);
	assert_string_not_equal(t2, t1);
	apicred_cred_free(cred);
}

/* ---- 401 feedback -------------------------------------------------------- */

/* A 401 drops the token that failed, not a newer one. */
static void test_report_401(void **state)
{
	apicred_ctx *ctx = *state;
	apicred_cred *c1, *c2, *c3;
	char t1[512], t2[512], tok[512], t3[512];
	int retry = -1;

	assert_int_equal(apicred_cred_new(&c1), APICRED_OK);
	assert_int_equal(apicred_cred_new(&c2), APICRED_OK);
	assert_int_equal(apicred_cred_new(&c3), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", c1, t1, sizeof(t1)), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", c2, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);

	/* A 200 changes nothing. */
	assert_int_equal(apicred_report(ctx, "gen", c1, 200, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(s_get(ctx, "gen", c3, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);
	assert_int_equal(s_count("token"), 1);

	assert_int_equal(apicred_report(ctx, "gen", c1, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(s_get(ctx, "gen", c3, t2, sizeof(t2)), APICRED_OK);
	assert_string_not_equal(t2, t1);
	assert_int_equal(s_count("token"), 2);

	/* A late 401 for the old token (c2 still holds t1) keeps t2. */
	assert_int_equal(apicred_report(ctx, "gen", c2, 401, NULL, 0, NULL), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", c2, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t2);
	assert_int_equal(s_count("token"), 2);

	/* A 401 for t2 drops it. */
	assert_int_equal(apicred_report(ctx, "gen", c3, 401, NULL, 0, NULL), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", c3, t3, sizeof(t3)), APICRED_OK);
	assert_string_not_equal(t3, t2);
	assert_string_not_equal(t3, t1);
	assert_int_equal(s_count("token"), 3);

	apicred_cred_free(c1);
	apicred_cred_free(c2);
	apicred_cred_free(c3);
}

static void *s_report_storm(void *arg)
{
	struct s_thread *t = arg;
	apicred_cred *cred;

	if (apicred_cred_new(&cred) != APICRED_OK) {
		t->rc = -1;
		return NULL;
	}
	t->rc = s_get(t->ctx, "gen", cred, NULL, 0);
	pthread_barrier_wait(t->barrier);
	if (t->rc == APICRED_OK)
		t->rc = apicred_report(t->ctx, "gen", cred, 401, NULL, 0, NULL);
	if (t->rc == APICRED_OK)
		t->rc = s_get(t->ctx, "gen", cred, t->tok, sizeof(t->tok));
	apicred_cred_free(cred);
	return NULL;
}

/* 64 threads report a 401 for the same token: one new token, no storm. */
static void test_report_401_storm(void **state)
{
	static struct s_thread t[S_THREADS];
	pthread_t tid[S_THREADS];
	pthread_barrier_t barrier;
	apicred_cred *cred;
	char t1[512];

	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(s_get(*state, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	apicred_cred_free(cred);

	pthread_barrier_init(&barrier, NULL, S_THREADS);
	for (int i = 0; i < S_THREADS; i++) {
		t[i] = (struct s_thread){ .ctx = *state, .barrier = &barrier };
		assert_int_equal(pthread_create(&tid[i], NULL, s_report_storm, &t[i]), 0);
	}
	for (int i = 0; i < S_THREADS; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&barrier);
	for (int i = 0; i < S_THREADS; i++) {
		assert_int_equal(t[i].rc, APICRED_OK);
		assert_string_equal(t[i].tok, t[0].tok);
	}
	assert_string_not_equal(t[0].tok, t1);
	assert_int_equal(s_count("token"), 2);
}

/* ---- Retry-After ---------------------------------------------------------- */

/* A 429 with Retry-After: 120 on a refresh: no new attempt before 120 s
 * have passed (the old token is served meanwhile), one after. Shown
 * without waiting for time to pass: "bar" (on the plain HTTP listener, its
 * own endpoint) has a retry scheduled for 3429 s before gen's refresh
 * fails, so a retry of gen due before 3430 s, were one scheduled, would be
 * queued ahead of bar's and run first; once bar's retry has run, so would
 * gen's have. */
static void test_retry_after(void **state)
{
	apicred_ctx *ctx = *state;
	apicred_cred *cred;
	char t1[512], t2[512], b1[512], b2[512], tok[512];
	int warned;

	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	assert_int_equal(s_get(ctx, "bar", cred, b1, sizeof(b1)), APICRED_OK);

	/* bar's refresh: 503, Retry-After 124 s -> its retry at 3429 s. */
	s_fault("http-token", "503", 1, "124");
	s_goto(3305);
	assert_int_equal(s_get(ctx, "bar", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, b1);
	assert_int_equal(s_wait_count("http-token", 2), 2);

	/* gen's refresh (the refresher runs it after bar's): 429, Retry-After 120. */
	warned = atomic_load(&s_gen_warnings);
	s_fault("token", "429", 1, "120");
	s_goto(3310);
	assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
	assert_string_equal(tok, t1);
	assert_int_equal(s_wait_count("token", 2), 2);
	/* Bounded wait for the failure to be published (logged), not for time. */
	for (int i = 0; i < 2000 && atomic_load(&s_gen_warnings) == warned; i++)
		s_msleep(10);
	assert_true(atomic_load(&s_gen_warnings) > warned);

	/* 100 s later, well inside Retry-After: gets are served, nobody asks. */
	for (int64_t t = 3311; t <= 3410; t++) {
		s_goto(t);
		assert_int_equal(s_get(ctx, "gen", cred, tok, sizeof(tok)), APICRED_OK);
		assert_string_equal(tok, t1);
	}
	/* Up to a second before Retry-After ends: bar's retry runs, gen's not. */
	s_goto(3429);
	assert_int_equal(s_wait_new_token(ctx, "bar", b1, b2, sizeof(b2)), APICRED_OK);
	assert_int_equal(s_count("http-token"), 3);
	assert_int_equal(s_count("token"), 2);

	/* Past Retry-After (and any back-off, still before hard expiry). */
	s_goto(3590);
	assert_int_equal(s_wait_new_token(ctx, "gen", t1, t2, sizeof(t2)), APICRED_OK);
	assert_string_not_equal(t2, t1);
	assert_int_equal(s_count("token"), 3);
	apicred_cred_free(cred);
}

/* ---- token responses ------------------------------------------------------ */

/* expires_in as sent by the server -> lifetime; default_ttl is 600 in the
 * "gen" service, so "never forever" shows as +600. */
static void s_expires_case(const char *fault, const char *set_json, int64_t want_s)
{
	apicred_ctx *ctx;
	apicred_cred *cred;
	int64_t at;

	s_reset();
	s_goto(0);
	if (fault)
		s_fault("token", fault, 1, NULL);
	if (set_json)
		s_set(set_json);
	ctx = s_open();
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(s_get(ctx, "gen", cred, NULL, 0), APICRED_OK);
	at = apicred_cred_expires_at(cred);
	if (want_s < 0) {
		/* Clamped, not overflowed: more than a year, less than 11. */
		assert_true(at > S_WALL0 / 1000 + 365LL * 86400);
		assert_true(at <= S_WALL0 / 1000 + 11LL * 365 * 86400);
	} else {
		assert_int_equal(at, S_WALL0 / 1000 + want_s);
		/* And it does expire: the next get after it fetches again. */
		s_goto(want_s + 1);
		assert_int_equal(s_get(ctx, "gen", cred, NULL, 0), APICRED_OK);
		assert_int_equal(s_count("token"), 2);
	}
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_expires_in(void **state)
{
	s_expires_case(NULL, NULL, 3600);
	s_expires_case("expires_str", NULL, 120);
	s_expires_case("no_expires", NULL, 600);
	s_expires_case("expires_zero", NULL, 600);
	s_expires_case(NULL, "{\"expires_in\": \"soon\"}", 600);
	s_expires_case(NULL, "{\"expires_in\": -5}", 600);
	s_expires_case(NULL, "{\"expires_in\": null}", 600);
	s_expires_case(NULL, "{\"expires_in\": [1]}", 600);
	s_expires_case(NULL, "{\"expires_in\": 90.0}", 90);
	s_expires_case(NULL, "{\"expires_in\": \" 45 \"}", 45);
	s_expires_case(NULL, "{\"expires_in\": 1e30}", -1);
}

/* One failing token request on a cold cache: its code, the server's words
 * in the detail, the service named, no secret, and exactly one request (no
 * silent retry with the other client authentication, no retry of a 4xx). */
static void s_error_case(const char *kind, int want, const char *text, int exact_one)
{
	apicred_ctx *ctx;
	apicred_cred *cred;
	const char *msg;
	int rc;

	s_reset();
	s_goto(0);
	s_fault("token", kind, -1, NULL); /* lasts: the core retries 5xx */
	ctx = s_open();
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	rc = apicred_get(ctx, "gen", NULL, cred);
	msg = apicred_errmsg();
	print_message("# %s -> %d: %s\n", kind, rc, msg);
	assert_int_equal(rc, want);
	assert_non_null(strstr(msg, "gen"));
	assert_non_null(strstr(msg, text));
	assert_null(strstr(msg, "s3cr"));
	assert_null(strstr(msg, "sb-client"));
	if (exact_one)
		assert_int_equal(s_count("token"), 1);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_error_bodies(void **state)
{
	s_error_case("invalid_scope", APICRED_ERR_AUTH, "invalid_scope", 1);
	s_error_case("invalid_client", APICRED_ERR_AUTH, "invalid_client", 1);
	s_error_case("forbidden_empty", APICRED_ERR_AUTH, "403", 1);
	s_error_case("login_failed", APICRED_ERR_UNAVAILABLE, "login_failed", 0);
	s_error_case("500", APICRED_ERR_UNAVAILABLE, "500", 0);
	s_error_case("503", APICRED_ERR_UNAVAILABLE, "503", 0);
}

static void test_bad_replies(void **state)
{
	s_error_case("badjson", APICRED_ERR_PROTOCOL, "JSON", 0);
	s_error_case("crlf", APICRED_ERR_PROTOCOL, "CR", 0);
	s_error_case("close", APICRED_ERR_HTTP, "token", 0);
}

/* A 2 MiB body: refused (by the core's cap or the layer's max_body). */
static void test_huge_body(void **state)
{
	apicred_ctx *ctx;
	apicred_cred *cred;
	int rc;

	s_reset();
	s_fault("token", "huge", -1, NULL); /* lasts: the core retries */
	ctx = s_open();
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	rc = apicred_get(ctx, "gen", NULL, cred);
	print_message("# huge -> %d: %s\n", rc, apicred_errmsg());
	assert_true(rc == APICRED_ERR_PROTOCOL || rc == APICRED_ERR_HTTP);
	assert_non_null(strstr(apicred_errmsg(), "gen"));
	assert_true(strstr(apicred_errmsg(), "max_body") || strstr(apicred_errmsg(), "large") ||
	            strstr(apicred_errmsg(), "size") || strstr(apicred_errmsg(), "bytes"));
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* ---- provisioning ----------------------------------------------------------- */

static char *s_read(const char *name, mode_t *mode)
{
	char path[1024], *buf;
	struct stat sb;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/secrets/%s", s_confdir, name);
	if (stat(path, &sb) != 0)
		return NULL;
	if (mode)
		*mode = sb.st_mode & 07777;
	f = fopen(path, "r");
	assert_non_null(f);
	buf = calloc(1, (size_t)sb.st_size + 1);
	n = (long)fread(buf, 1, (size_t)sb.st_size, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void s_unlink_prov(void)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/secrets/prov.user", s_confdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/secrets/prov.key", s_confdir);
	unlink(path);
}

/* Creates the API user and key, stores them 0600, and they work. A second
 * run refuses to overwrite before asking the server for anything. */
static void test_provision_happy(void **state)
{
	apicred_ctx *ctx = *state;
	apicred_cred *cred;
	char *report = NULL, *user, *key, *again;
	mode_t mode = 0;
	static const unsigned char uuid[16] = {
		0x3f, 0x2b, 0x6a, 0x10, 0xaa, 0xbb, 0x0c, 0xdd,
		0x1e, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab
	};

	s_unlink_prov();
	memcpy(s_fixed_random, uuid, 16);
	atomic_store(&s_use_fixed_random, 1);
	assert_int_equal(apicred_provision(ctx, "momo-prov", 0, &report), APICRED_OK);
	assert_non_null(report);
	print_message("# %s", report);
	/* Version 4, variant 10xx set on the random bytes. */
	assert_non_null(strstr(report, "3f2b6a10-aabb-4cdd-9eff-0123456789ab"));

	user = s_read("prov.user", &mode);
	assert_non_null(user);
	assert_string_equal(user, "3f2b6a10-aabb-4cdd-9eff-0123456789ab");
	assert_int_equal(mode, 0600);
	key = s_read("prov.key", &mode);
	assert_non_null(key);
	assert_true(strlen(key) > 0);
	assert_int_equal(mode, 0600);
	assert_null(strstr(report, key)); /* the API key is a secret */
	free(report);
	assert_int_equal(s_count("momo-apiuser"), 1);
	assert_int_equal(s_count("momo-apikey"), 1);

	/* The user's details, as the server knows them. */
	assert_int_equal(apicred_provision(ctx, "momo-prov", APICRED_PROVISION_SHOW, &report),
	                 APICRED_OK);
	assert_non_null(report);
	assert_non_null(strstr(report, "providerCallbackHost: clinic.example"));
	assert_non_null(strstr(report, "targetEnvironment: sandbox"));
	free(report);

	/* The new credentials get a token (Basic user:key + subscription key). */
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(apicred_get(ctx, "momo-prov", NULL, cred), APICRED_OK);
	assert_non_null(apicred_cred_find(cred, APICRED_HEADER, "Authorization"));
	assert_string_equal(apicred_cred_find(cred, APICRED_HEADER, "Ocp-Apim-Subscription-Key"),
	                    "sb-momo-subkey-abcdef");
	assert_int_equal(s_count("momo-token"), 1);
	apicred_cred_free(cred);

	/* No overwrite without force, and nothing created remotely. */
	atomic_store(&s_use_fixed_random, 0);
	report = NULL;
	assert_int_equal(apicred_provision(ctx, "momo-prov", 0, &report), APICRED_ERR_EXISTS);
	print_message("# again: %s\n", apicred_errmsg());
	assert_null(report);
	assert_non_null(strstr(apicred_errmsg(), "force"));
	assert_int_equal(s_count("momo-apiuser"), 1);
	again = s_read("prov.user", NULL);
	assert_string_equal(again, user);
	free(again);

	/* With force: a new user replaces the old one. */
	assert_int_equal(apicred_provision(ctx, "momo-prov", APICRED_PROVISION_FORCE, &report),
	                 APICRED_OK);
	free(report);
	again = s_read("prov.user", &mode);
	assert_string_not_equal(again, user);
	assert_int_equal(mode, 0600);
	assert_int_equal(s_count("momo-apiuser"), 2);
	free(again);
	free(user);
	free(key);
	s_unlink_prov();
}

/* The pre-seeded sandbox user's id drawn again: 409 -> a clear error. */
static void test_provision_409(void **state)
{
	static const unsigned char seeded[16] = {
		0xc7, 0x20, 0x25, 0xf5, 0x5c, 0xd1, 0x46, 0x30,
		0x99, 0xe4, 0x8b, 0xa4, 0x72, 0x2f, 0xad, 0x56
	};
	char *report = NULL;

	s_unlink_prov();
	memcpy(s_fixed_random, seeded, 16);
	atomic_store(&s_use_fixed_random, 1);
	assert_int_equal(apicred_provision(*state, "momo-prov", 0, &report), APICRED_ERR_EXISTS);
	print_message("# 409: %s\n", apicred_errmsg());
	assert_null(report);
	assert_non_null(strstr(apicred_errmsg(), "momo-prov"));
	assert_non_null(strstr(apicred_errmsg(), "409"));
	assert_non_null(strstr(apicred_errmsg(), "c72025f5-5cd1-4630-99e4-8ba4722fad56"));
	assert_null(s_read("prov.user", NULL));
	assert_null(s_read("prov.key", NULL));
	assert_int_equal(s_count("momo-apikey"), 0);
}

/* A subscription key the server refuses: 401 -> a clear error, no files. */
static void test_provision_bad_subkey(void **state)
{
	char *report = NULL;
	int rc;

	rc = apicred_provision(*state, "momo-badkey", 0, &report);
	print_message("# bad key: %s\n", apicred_errmsg());
	assert_int_equal(rc, APICRED_ERR_AUTH);
	assert_null(report);
	assert_non_null(strstr(apicred_errmsg(), "momo-badkey"));
	assert_non_null(strstr(apicred_errmsg(), "401"));
	assert_non_null(strstr(apicred_errmsg(), "subscription key"));
	assert_null(s_read("badkey.user", NULL));
	assert_null(s_read("badkey.key", NULL));
	assert_int_equal(s_count("momo-apikey"), 0);
}

/* A layer without provision_url has nothing to provision. */
static void test_provision_unsupported(void **state)
{
	char *report = NULL;

	assert_int_not_equal(apicred_provision(*state, "gen", 0, &report), APICRED_OK);
	assert_null(report);
	assert_non_null(strstr(apicred_errmsg(), "gen"));
	assert_int_equal(s_count("momo-apiuser"), 0);
}

/* Two contexts (as two processes) sharing a store, on the injected clock,
 * refreshing in the caller (no background thread): one token request per
 * refresh period, and an expired entry is replaced, not used. */
static void test_shared_store(void **state)
{
	apicred_ctx *a, *b;
	apicred_cred *cred;
	char t1[512], t2[512], got[512];

	s_reset();
	s_goto(0);
	a = s_open_in(s_store_confdir, APICRED_OPEN_NO_BACKGROUND);
	b = s_open_in(s_store_confdir, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);

	assert_int_equal(s_get(a, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	assert_int_equal(s_get(b, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_string_equal(got, t1);
	assert_int_equal(s_count("token"), 1);

	/* In the refresh window (3600 s tokens, 300 s ahead): a refreshes and
	 * keeps serving t1 meanwhile; b finds a's new token in the store. */
	s_goto(3400);
	assert_int_equal(s_get(a, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_string_equal(got, t1);
	assert_int_equal(s_count("token"), 2);
	assert_int_equal(s_get(a, "gen", cred, t2, sizeof(t2)), APICRED_OK);
	assert_string_not_equal(t2, t1);
	assert_int_equal(s_get(b, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_int_equal(s_get(b, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_string_equal(got, t2);
	assert_int_equal(s_count("token"), 2);

	/* Past t2's expiry: the entry is expired, so one new fetch, shared. */
	s_goto(3400 + 3600 + 10);
	assert_int_equal(s_get(b, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_string_not_equal(got, t2);
	assert_int_equal(s_count("token"), 3);
	snprintf(t1, sizeof(t1), "%s", got);
	assert_int_equal(s_get(a, "gen", cred, got, sizeof(got)), APICRED_OK);
	assert_string_equal(got, t1);
	assert_int_equal(s_count("token"), 3);

	apicred_cred_free(cred);
	apicred_close(a);
	apicred_close(b);
}

/* A failed fetch keeps the entry's lock a second more (a lease): another
 * process due for a refresh within that second leaves the endpoint alone
 * and keeps its valid token. So through an outage the processes sharing a
 * store try once a second between them all, not once a second each. */
static void test_shared_store_failure_lease(void **state)
{
	apicred_ctx *a, *b;
	apicred_cred *cred;
	char t1[512], got[512];
	struct timespec since, now;
	long ms;

	s_reset();
	s_goto(0);
	a = s_open_in(s_store_confdir, APICRED_OPEN_NO_BACKGROUND);
	b = s_open_in(s_store_confdir, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_cred_new(&cred), APICRED_OK);
	assert_int_equal(apicred_cache_clear(b, "gen", NULL), APICRED_OK);
	assert_int_equal(s_get(b, "gen", cred, t1, sizeof(t1)), APICRED_OK);
	assert_int_equal(s_count("token"), 1);

	/* a has no session and the entry is gone: a fetches, the endpoint is
	 * down (1 + 2 retries). */
	assert_int_equal(apicred_cache_clear(a, "gen", NULL), APICRED_OK);
	s_fault("token", "503", -1, NULL);
	s_goto(3400); /* b's token is due for refresh (3600 s, 300 s ahead) */
	assert_int_equal(s_get(a, "gen", cred, got, sizeof(got)), APICRED_ERR_UNAVAILABLE);
	clock_gettime(CLOCK_MONOTONIC, &since);
	assert_int_equal(s_count("token"), 4);
	/* b refreshes inline (no background thread): the lock is leased, so
	 * it keeps its token and asks nothing. */
	assert_int_equal(s_get(b, "gen", cred, got, sizeof(got)), APICRED_OK);
	clock_gettime(CLOCK_MONOTONIC, &now);
	assert_string_equal(got, t1);
	ms = (now.tv_sec - since.tv_sec) * 1000 + (now.tv_nsec - since.tv_nsec) / 1000000;
	if (ms < 800) /* else the machine stalled past the lease: this proves nothing */
		assert_int_equal(s_count("token"), 4);
	else
		fprintf(stderr, "# lease case skipped: %ld ms between the two gets\n", ms);
	s_fault("token", "503", 0, NULL);

	apicred_cred_free(cred);
	apicred_close(a);
	apicred_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shared_store),
		cmocka_unit_test(test_shared_store_failure_lease),
		cmocka_unit_test_setup_teardown(test_cold_single_flight, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_refresh_ahead, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_stale_if_error, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_report_401, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_report_401_storm, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_retry_after, s_setup, s_teardown),
		cmocka_unit_test(test_expires_in),
		cmocka_unit_test(test_error_bodies),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_huge_body),
		cmocka_unit_test_setup_teardown(test_provision_happy, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_provision_409, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_provision_bad_subkey, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_provision_unsupported, s_setup, s_teardown),
	};

	s_sb = getenv("SB");
	s_ca = getenv("SB_CA");
	s_confdir = getenv("APICRED_TEST_CONFDIR");
	s_moduledir = getenv("APICRED_TEST_MODULEDIR");
	s_store_confdir = getenv("APICRED_TEST_STORE_CONFDIR");
	if (!s_sb || !s_ca || !s_confdir || !s_moduledir || !s_store_confdir) {
		fprintf(stderr, "oauth2_cache: run me from tests/integration/oauth2-cache.sh "
		        "(needs SB, SB_CA, APICRED_TEST_CONFDIR, APICRED_TEST_STORE_CONFDIR, "
		        "APICRED_TEST_MODULEDIR)\n");
		return 99;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests_name("oauth2_cache", tests, NULL, NULL);
}
