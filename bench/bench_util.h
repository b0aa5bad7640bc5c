/*
 * bench_util.h - what the bench programs share: clocks and medians, the
 * environment of bench/bench-env.sh (sandbox, nginx, confdirs), the
 * sandbox's control API, the summary table of `make bench`, and the
 * baseline every cached get is compared with: a golang/oauth2-style cache
 * (ReuseTokenSource: one mutex held across the check and the refresh).
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <apicred/apicred.h>

#define BENCH_DIE(...) bench_die(__VA_ARGS__)
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The program's name for messages; set by bench_init. */
extern const char *bench_prog;
/* Module directory of the build ($APICRED_TEST_MODULEDIR or providers/.libs). */
extern const char *bench_moduledir;

/* Names the program, sets up libcurl, prints the machine's load. */
void bench_init(const char *prog);

/* CLOCK_MONOTONIC in ns. */
int64_t bench_ns(void);
/* The calling thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID, a system
 * call: read it per batch, not per call). On a loaded machine wall time
 * also counts the waits for a CPU; this does not. */
int64_t bench_cpu_ns(void);
/* Median of v[0..n-1] (sorts v). */
double bench_median(double *v, size_t n);
/* Runs per figure: $BENCH_RUNS, default 3. */
int bench_runs(void);

/* ---- bench/bench-env.sh and bench-store-env.sh ----------------------------- */

/* Starts bench/SCRIPT (bench-env.sh, bench-store-env.sh) with its arguments
 * (words: "", "nginx", "many 1000"), waits until it is ready (it prints
 * KEY=VALUE lines, then BENCH-ENV-READY); bench_env("SB") then returns its
 * values ("" if it printed none). bench_env_stop tears it down. */
void bench_env_start(const char *script, const char *args);
const char *bench_env(const char *key);
void bench_env_stop(void);

/* apicred_open_opts on confdir with the build's modules and a logger that
 * prints messages of bench_log_max (syslog level, default 4: warnings) and
 * more severe ones; flags APICRED_OPEN_*. */
extern int bench_log_max;
apicred_ctx *bench_open(const char *confdir, unsigned flags);

/* ---- the sandbox --------------------------------------------------------- */

/* A control request ("POST", "/_ctl/fault?endpoint=token&kind=503&times=-1");
 * dies if the sandbox refuses it. */
void bench_ctl(const char *method, const char *path, const char *json_body);
/* The sandbox's counter of an endpoint ("token"). */
long bench_count(const char *endpoint);

/* ---- the summary table ---------------------------------------------------- */

/* Adds a row of issue 10's table (what, the figure now, its baseline in the
 * same run) to $BENCH_SUMMARY, which `make bench` prints at the end. */
void bench_row(const char *what, const char *now, const char *baseline, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- the mutex cache: the baseline --------------------------------------- */

#define BENCH_TOKEN_LEN 100 /* bytes copied per get, as a ~100-byte token */

/* golang.org/x/oauth2's ReuseTokenSource in C: a mutex held across one clock
 * read, the validity check, the refresh (a client-credentials request to
 * the sandbox's token endpoint, made under the lock as Go does) and the copy
 * of the token into the caller's memory. Valid until expiry - min(10 s,
 * lifetime / 2), the point where apicred refreshes ahead. */
struct bench_mcache {
	pthread_mutex_t mu;
	void *curl;              /* CURL *, used under mu only */
	char token[BENCH_TOKEN_LEN];
	int64_t refresh_ns;      /* monotonic: refresh from here on */
	long fetches, failures;
};

/* fetch 0: a fixed token valid for an hour (the hot-path loops);
 * 1: tokens from the sandbox's /oauth2/token. */
void bench_mcache_init(struct bench_mcache *c, int fetch);
void bench_mcache_fini(struct bench_mcache *c);
/* Copies BENCH_TOKEN_LEN bytes into out; 0, or -1 when the refresh failed. */
int bench_mcache_get(struct bench_mcache *c, char *out);

#endif
