/*
 * bench_store.c - the shared session store (cache.store), oauth2 against
 * the sandbox, side by side in one run:
 *
 *   1. apicred_get on a fresh cache with the store "file" and "none"
 *      (the hot path never touches the store: equal within noise);
 *   2. a new process's first apicred_get served by a store hit, from a
 *      directory and from Redis on loopback (targets 50 us and 1 ms);
 *   3. token requests made by 64 processes over 5 token lifetimes, each
 *      with its own context on a clock that runs 3300 times faster than
 *      real time (target: one per refresh period).
 *
 * `make bench` runs it; bench/bench-store-env.sh starts the sandbox, a
 * redis-server and the confdirs, and stops them when done. Figures, not
 * assertions: the exit status only says whether the bench could run.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <apicred/apicred.h>

#include "bench_util.h"

#define S_NONE bench_env("NONE")
#define S_FILE bench_env("FILE")
#define S_REDIS bench_env("REDIS")

static int s_cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* A clock SPEEDUP times faster than real time from s_t0, shared by the
 * processes of part 3 (they inherit s_t0), for both the cache and the
 * store (wall clock). */
#define S_SPEEDUP 3300
static int64_t s_t0;

static int64_t s_fast_mono(void *user)
{
	return 1000000000 + (bench_ns() - s_t0) / 1000000 * S_SPEEDUP;
}

static int64_t s_fast_wall(void *user)
{
	return 1800000000000LL + s_fast_mono(user);
}

static apicred_ctx *s_open(const char *conf, int fast)
{
	apicred_options o = { .size = sizeof(o), .confdir = conf, .moduledir = bench_moduledir };
	apicred_ctx *ctx;

	if (fast) {
		o.clock_mono_ms = s_fast_mono;
		o.clock_wall_ms = s_fast_wall;
	}
	if (apicred_open_opts(&ctx, &o) != APICRED_OK)
		BENCH_DIE("apicred_open: %s", apicred_errmsg());
	return ctx;
}

static void s_get(apicred_ctx *ctx, apicred_cred *cred)
{
	if (apicred_get(ctx, "gen", NULL, cred) != APICRED_OK)
		BENCH_DIE("apicred_get: %s", apicred_errmsg());
}

/* ---- 1. the hot path, store on and off ------------------------------------------ */

#define S_BATCHES 100
#define S_BATCH 20000

/* Median ns per call over batches of one thread. */
static int64_t s_hot(apicred_ctx *ctx, apicred_cred *cred)
{
	double ns[S_BATCHES];

	for (int b = 0; b < S_BATCHES; b++) {
		int64_t t0 = bench_ns();
		for (int i = 0; i < S_BATCH; i++)
			s_get(ctx, cred);
		ns[b] = (double)(bench_ns() - t0) / S_BATCH;
	}
	return (int64_t)bench_median(ns, S_BATCHES);
}

static void s_bench_hot(void)
{
	apicred_ctx *on = s_open(S_FILE, 0), *off = s_open(S_NONE, 0);
	apicred_cred *cred;
	int64_t m_on[3], m_off[3];

	apicred_cred_new(&cred);
	s_get(on, cred);
	s_get(off, cred);
	for (int r = 0; r < 3; r++) { /* interleaved, so drift hits both */
		m_on[r] = s_hot(on, cred);
		m_off[r] = s_hot(off, cred);
	}
	qsort(m_on, 3, sizeof(int64_t), s_cmp64);
	qsort(m_off, 3, sizeof(int64_t), s_cmp64);
	printf("1. cached apicred_get, 1 thread, 3 interleaved rounds of %d x %d calls\n",
	       S_BATCHES, S_BATCH);
	printf("   store \"file\": median %4lld ns/call (rounds %lld..%lld)\n",
	       (long long)m_on[1], (long long)m_on[0], (long long)m_on[2]);
	printf("   store \"none\": median %4lld ns/call (rounds %lld..%lld)\n",
	       (long long)m_off[1], (long long)m_off[0], (long long)m_off[2]);
	printf("   target: equal within noise (the hot path never touches the store)\n");
	apicred_cred_free(cred);
	apicred_close(on);
	apicred_close(off);
}

/* ---- 2. a new process's first get from a store hit ------------------------------ */

#define S_PROCS 100

/* Forks S_PROCS processes one after the other; each opens its own context
 * and times its first apicred_get. Prints median, 90th percentile, max. */
static void s_first_get(const char *what, const char *conf, const char *target)
{
	int64_t ns[S_PROCS];
	long before;
	apicred_ctx *ctx = s_open(conf, 0);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	s_get(ctx, cred); /* the entry exists from here on */
	apicred_cred_free(cred);
	apicred_close(ctx);
	before = bench_count("token");
	for (int i = 0; i < S_PROCS; i++) {
		int p[2], st;
		pid_t pid;

		if (pipe(p) != 0 || (pid = fork()) < 0)
			BENCH_DIE("fork: %s", strerror(errno));
		if (pid == 0) {
			int64_t t0, d;
			ctx = s_open(conf, 0);
			apicred_cred_new(&cred);
			t0 = bench_ns();
			s_get(ctx, cred);
			d = bench_ns() - t0;
			if (write(p[1], &d, sizeof(d)) != sizeof(d))
				_exit(1);
			_exit(0); /* as a CLI run would, without tearing down */
		}
		close(p[1]);
		if (read(p[0], &ns[i], sizeof(ns[i])) != sizeof(ns[i]))
			BENCH_DIE("a child failed");
		close(p[0]);
		waitpid(pid, &st, 0);
	}
	qsort(ns, S_PROCS, sizeof(ns[0]), s_cmp64);
	printf("   %-22s median %7.1f us  90%% %7.1f us  max %7.1f us  token requests %ld"
	       "  (target %s)\n", what, (double)ns[S_PROCS / 2] / 1e3,
	       (double)ns[S_PROCS * 9 / 10] / 1e3, (double)ns[S_PROCS - 1] / 1e3,
	       bench_count("token") - before, target);
}

static void s_bench_first(void)
{
	printf("2. a new process's first apicred_get (%d processes, one at a time)\n", S_PROCS);
	s_first_get("store \"file\" (hit):", S_FILE, "<= 50 us");
	s_first_get("store redis (hit):", S_REDIS, "<= 1 ms");
	s_first_get("store \"none\":", S_NONE, "a token request each");
}

/* ---- 3. 64 processes over 5 token lifetimes ---------------------------------------- */

#define S_WORKERS 64

static void s_fleet(const char *what, const char *conf)
{
	/* Tokens of 3600 s refreshed 300 s ahead: one request per 3300 s. Five
	 * such periods, stopping 60 s short of the sixth refresh. */
	const int64_t span_ms = 5 * 3300 * 1000 - 60 * 1000;
	long before = bench_count("token"), failed = 0;
	int64_t t0 = bench_ns();

	s_t0 = bench_ns();
	for (int i = 0; i < S_WORKERS; i++) {
		pid_t pid = fork();
		if (pid < 0)
			BENCH_DIE("fork: %s", strerror(errno));
		if (pid == 0) {
			apicred_ctx *ctx = s_open(conf, 1);
			apicred_cred *cred;
			struct timespec nap = { 0, 1000000 };
			int bad = 0;

			apicred_cred_new(&cred);
			while (s_fast_mono(NULL) - 1000000000 < span_ms) {
				if (apicred_get(ctx, "gen", NULL, cred) != APICRED_OK)
					bad = 1;
				nanosleep(&nap, NULL); /* a worker between requests */
			}
			apicred_cred_free(cred);
			apicred_close(ctx);
			_exit(bad);
		}
	}
	for (int i = 0; i < S_WORKERS; i++) {
		int st;
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed++;
	}
	printf("   %-14s %4ld token requests (target 5)  processes with a failed get: %ld"
	       "  (%.1f s real)\n", what, bench_count("token") - before, failed,
	       (double)(bench_ns() - t0) / 1e9);
}

static void s_bench_fleet(void)
{
	printf("3. %d processes, each its own context, getting every 1 ms for 5 token\n"
	   "   periods of 3300 s (tokens of 3600 s refreshed 300 s ahead) on a clock\n"
	   "   %d times real time (a refresh window lasts ~%d ms)\n", S_WORKERS, S_SPEEDUP,
	   300000 / S_SPEEDUP);
	s_fleet("store \"file\":", S_FILE);
	s_fleet("store redis:", S_REDIS);
	s_fleet("store \"none\":", S_NONE);
}

int main(void)
{
	bench_init("bench_store");
	bench_env_start("bench-store-env.sh", "");
	printf("bench_store: sandbox %s\n", bench_env("SB"));
	s_bench_hot();
	s_bench_first();
	s_bench_fleet();
	bench_env_stop();
	return 0;
}
