/*
 * test_cache.c - the core's session cache, through the public API and the
 * real loader, with the `counter` test provider (tests/modules/counter.c)
 * and an injected clock: single flight, refresh ahead without waiting (a
 * late background refresh taken over by a caller), lifetime rules,
 * stale-if-error with back-off, one attempt a second through an outage,
 * 401 reports, reloads under load, fork. Every case runs twice: the second
 * time the provider says its apply is static, so gets copy the output the
 * core keeps (stack.c) instead of calling apply, and must see the same.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <apicred/apicred.h>
#include <apicred/provider.h> /* apicred_fetch_reason */

#include "fixture.h"

static fx *s_fx;
static struct counter_control *s_ctl;

static apicred_ctx *s_open(unsigned flags)
{
	return fx_ctx(s_fx, flags);
}

static const char *s_get_svc(apicred_ctx *ctx, const char *svc, apicred_cred *cred)
{
	int rc = apicred_get(ctx, svc, NULL, cred);
	if (rc != APICRED_OK)
		return NULL;
	return apicred_cred_find(cred, APICRED_HEADER, "Authorization");
}

static const char *s_get(apicred_ctx *ctx, apicred_cred *cred)
{
	return s_get_svc(ctx, "svc", cred);
}

/* Waits (bounded) for a background event: never for an expiry. */
static void s_wait_fetches(int n)
{
	for (int i = 0; i < 5000 && atomic_load(&s_ctl->fetches) < n; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&s_ctl->fetches), n);
}

static void s_wait_token_svc(apicred_ctx *ctx, const char *svc, apicred_cred *cred,
                             const char *want)
{
	const char *got = NULL;

	for (int i = 0; i < 5000; i++) {
		got = s_get_svc(ctx, svc, cred);
		if (got && strcmp(got, want) == 0)
			return;
		usleep(1000);
	}
	assert_string_equal(got ? got : "(none)", want);
}

static void s_wait_token(apicred_ctx *ctx, apicred_cred *cred, const char *want)
{
	s_wait_token_svc(ctx, "svc", cred, want);
}

static int s_setup(void **state)
{
	s_ctl = fx_counter();
	s_fx = fx_new(); /* the clock starts at FX_MONO0 */
	s_fx->hooks = FX_CLOCK;
	fx_module(s_fx, "counter");
	fx_replace(s_fx, "apicred.conf", "cache = { refresh_ahead = 300; default_ttl = 100; "
	                                 "check_interval = 0; backoff_max = 60; };\n"
	                                 "http = { retries = 0; };\n");
	fx_replace(s_fx, "conf.d/svc.conf", "url = \"https://127.0.0.1/\";\n"
	                                    "stack = ( { provider = \"counter\"; } );\n");
	return 0;
}

/* The same, with the provider's apply static (host->apply_static). */
static int s_setup_static(void **state)
{
	s_setup(state);
	atomic_store(&s_ctl->static_apply, true);
	return 0;
}

static int s_teardown(void **state)
{
	fx_free(s_fx);
	s_fx = NULL;
	return 0;
}

/* ---- single flight ------------------------------------------------------- */

struct s_many { apicred_ctx *ctx; atomic_int ok; atomic_int same; };

static void *s_many_main(void *arg)
{
	struct s_many *m = arg;
	apicred_cred *cred;
	const char *tok;

	apicred_cred_new(&cred);
	tok = s_get(m->ctx, cred);
	if (tok) {
		atomic_fetch_add(&m->ok, 1);
		atomic_fetch_add(&m->same, strcmp(tok, "tok-1") == 0);
	}
	apicred_cred_free(cred);
	return NULL;
}

static void test_cold_64_threads_one_fetch(void **state)
{
	struct s_many m = { .ctx = s_open(0) };
	pthread_t t[64];

	atomic_store(&s_ctl->delay_ms, 50); /* the callers overlap the fetch */
	for (int i = 0; i < 64; i++)
		assert_int_equal(pthread_create(&t[i], NULL, s_many_main, &m), 0);
	for (int i = 0; i < 64; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	assert_int_equal(atomic_load(&m.ok), 64);
	assert_int_equal(atomic_load(&m.same), 64);
	apicred_close(m.ctx);
}

/* ---- lifetimes and refresh ahead ----------------------------------------- */

static void test_fresh_cache_does_not_fetch(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	for (int i = 0; i < 1000; i++)
		assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	/* expires_at is wall time + lifetime */
	assert_int_equal(apicred_cred_expires_at(cred), (FX_WALL0 + 600000) / 1000);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_refresh_ahead_nobody_waits(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	/* 600 s token, refresh_ahead 300 s: refresh starts at 300 s. */
	fx_advance(299000);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);

	atomic_store(&s_ctl->block, true); /* the refresh hangs on the network */
	fx_advance(2000);
	for (int i = 0; i < 100; i++) /* returns at once with the valid token */
		assert_string_equal(s_get(ctx, cred), "tok-1");
	s_wait_fetches(2);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	atomic_store(&s_ctl->block, false);
	s_wait_token(ctx, cred, "tok-2");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_refresh_ahead_without_thread(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	fx_advance(301000);
	/* The caller that notices refreshes; its result is the new token. */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_string_equal(s_get(ctx, cred), "tok-2");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* fetch learns why it runs (host->fetch_reason): first, ahead of expiry,
 * after expiry, after a 401 dropped the session. */
static void test_fetch_reason(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;
	int retry = 0;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->reason), APICRED_FETCH_FIRST);
	fx_advance(301000); /* within refresh_ahead of the 600 s */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	assert_int_equal(atomic_load(&s_ctl->reason), APICRED_FETCH_REFRESH);
	fx_advance(601000); /* tok-2 has expired */
	assert_string_equal(s_get(ctx, cred), "tok-3");
	assert_int_equal(atomic_load(&s_ctl->reason), APICRED_FETCH_EXPIRED);
	assert_int_equal(apicred_report(ctx, "svc", cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_string_equal(s_get(ctx, cred), "tok-4");
	assert_int_equal(atomic_load(&s_ctl->reason), APICRED_FETCH_INVALIDATED);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_short_token_refreshes_at_half_life(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	atomic_store(&s_ctl->lifetime_ms, 300000); /* VDMS: 300 s tokens */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	fx_advance(149000);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->fetches), 1); /* not every call */
	fx_advance(2000);
	s_get(ctx, cred);
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_no_lifetime_gets_default_ttl(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	atomic_store(&s_ctl->lifetime_ms, 0); /* server gave no expires_in */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	/* default_ttl 100 s: refresh from 50 s, hard expiry at 100 s */
	fx_advance(49000);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	fx_advance(52000);
	assert_string_equal(s_get(ctx, cred), "tok-2");
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* ---- failures ------------------------------------------------------------ */

static void test_stale_if_error(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
	fx_advance(400000); /* in the refresh window */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	s_wait_fetches(2);
	/* The refresh failed: the old token is still served until expiry. */
	for (int i = 0; i < 10; i++)
		assert_string_equal(s_get(ctx, cred), "tok-1");
	/* Past hard expiry: a clear error naming service and layer, and inside
	 * the back-off no new fetch (no storm). */
	fx_advance(199999 + 1);
	assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
	assert_non_null(strstr(apicred_errmsg(), "svc: layer 1 (counter)"));
	int before = atomic_load(&s_ctl->fetches);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
		assert_non_null(strstr(apicred_errmsg(), "next attempt in"));
	}
	assert_int_equal(atomic_load(&s_ctl->fetches), before);
	/* The server recovers; after the back-off the next caller fetches. */
	atomic_store(&s_ctl->fail, 0);
	fx_advance(61000);
	const char *t = s_get(ctx, cred);
	assert_non_null(t);
	assert_string_not_equal(t, "tok-1");
	char want[32];
	snprintf(want, sizeof(want), "tok-%d", atomic_load(&s_ctl->fetches));
	assert_string_equal(t, want); /* the one fetch that succeeded */
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_retry_after_honoured(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
	atomic_store(&s_ctl->retry_after_ms, 50000); /* longer than the first back-off */
	assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
	atomic_store(&s_ctl->fail, 0);
	fx_advance(20000); /* back-off (<= 1 s) over, Retry-After not */
	assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
	assert_non_null(strstr(apicred_errmsg(), "next attempt in 30 s"));
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	fx_advance(31000);
	assert_string_equal(s_get(ctx, cred), "tok-2");
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A Retry-After of millennia (or one that would overflow) waits no longer
 * than cache.backoff_max (60 s here). */
static void test_retry_after_capped(void **state)
{
	static const long long huge[] = { 99999999999LL * 1000, INT64_MAX };
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	for (int i = 0; i < 2; i++) {
		atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
		atomic_store(&s_ctl->retry_after_ms, huge[i]);
		fx_advance(1000000); /* past the token of the round before */
		assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
		atomic_store(&s_ctl->fail, 0);
		fx_advance(59000);
		assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
		assert_non_null(strstr(apicred_errmsg(), "next attempt in 1 s"));
		fx_advance(1000);
		assert_non_null(s_get(ctx, cred));
	}
	assert_int_equal(atomic_load(&s_ctl->fetches), 4);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A 4xx is not cured by retrying: after one in the background nothing is
 * scheduled. Shown without waiting for time to pass: "bar" has a retry
 * scheduled (a 503 with Retry-After) before svc fails, so a retry of svc,
 * were one scheduled, would be queued ahead of bar's and due no later;
 * once bar's retry has run, so would svc's have. */
static void test_auth_failure_not_retried_in_background(void **state)
{
	apicred_ctx *ctx;
	apicred_cred *cred;

	fx_replace(s_fx, "conf.d/bar.conf", "url = \"https://127.0.0.1/\";\n"
	           "stack = ( { provider = \"counter\"; label = \"bar\"; } );\n");
	ctx = s_open(0);
	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_string_equal(s_get_svc(ctx, "bar", cred), "bar-2");
	fx_advance(400000); /* both in their refresh window */

	/* bar's refresh fails with a 503 and Retry-After: 30 s ... */
	atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
	atomic_store(&s_ctl->retry_after_ms, 30000);
	atomic_store(&s_ctl->block, true);
	assert_string_equal(s_get_svc(ctx, "bar", cred), "bar-2");
	for (int i = 0; i < 5000 && atomic_load(&s_ctl->blocked) < 1; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&s_ctl->blocked), 1);
	/* ... and then svc's with an auth failure (the refresher runs one
	 * fetch at a time: svc's waits for bar's). */
	atomic_store(&s_ctl->fail, APICRED_ERR_AUTH);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	atomic_store(&s_ctl->block, false);
	s_wait_fetches(4);
	for (int i = 0; i < 5000 && !fx_logged(s_fx, "fetch 4 failed as told"); i++)
		usleep(1000);
	assert_true(fx_logged(s_fx, "fetch 4 failed as told"));
	assert_string_equal(s_get(ctx, cred), "tok-1"); /* the old token still serves */

	/* Past both back-offs: bar's retry runs; svc was not retried. */
	atomic_store(&s_ctl->fail, 0);
	fx_advance(100000);
	s_wait_token_svc(ctx, "bar", cred, "bar-5");
	assert_int_equal(atomic_load(&s_ctl->fetches), 5);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

static void test_report_401_drops_only_the_failed_token(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *old, *cur;
	int retry = 0;

	apicred_cred_new(&old);
	apicred_cred_new(&cur);
	assert_string_equal(s_get(ctx, old), "tok-1");
	assert_int_equal(apicred_report(ctx, "svc", old, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_string_equal(s_get(ctx, cur), "tok-2");
	/* Late 401s for tok-1 (other threads' requests) do not drop tok-2. */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(apicred_report(ctx, "svc", old, 401, NULL, 0, &retry), APICRED_OK);
		assert_int_equal(retry, 1);
	}
	assert_string_equal(s_get(ctx, cur), "tok-2");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	/* A 200 changes nothing. */
	assert_int_equal(apicred_report(ctx, "svc", cur, 200, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 0);
	apicred_cred_free(old);
	apicred_cred_free(cur);
	apicred_close(ctx);
}

/* ---- nobody with a valid session waits ------------------------------------ */

/* n gets of service in another thread, which must all return want while a
 * fetch is stalled: a caller that waited for it would never come back (the
 * bounded wait fails the test instead). The calls must not block at all:
 * no voluntary context switch in the thread, as the benchmark counts them. */
struct s_burst {
	apicred_ctx *ctx;
	const char *service, *want;
	int n;
	atomic_int good;
	atomic_bool done;
	long nvcsw;
};

static void *s_burst_main(void *arg)
{
	struct s_burst *b = arg;
	struct rusage before, after;
	apicred_cred *cred;

	apicred_cred_new(&cred);
	s_get_svc(b->ctx, b->service, cred); /* the cred's first allocation */
	getrusage(RUSAGE_THREAD, &before);
	for (int i = 0; i < b->n; i++) {
		const char *t = s_get_svc(b->ctx, b->service, cred);
		atomic_fetch_add(&b->good, t && strcmp(t, b->want) == 0);
	}
	getrusage(RUSAGE_THREAD, &after);
	b->nvcsw = after.ru_nvcsw - before.ru_nvcsw;
	apicred_cred_free(cred);
	atomic_store(&b->done, true);
	return NULL;
}

static void s_burst(apicred_ctx *ctx, const char *service, const char *want, int n)
{
	struct s_burst b = { .ctx = ctx, .service = service, .want = want, .n = n };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, s_burst_main, &b), 0);
	for (int i = 0; i < 5000 && !atomic_load(&b.done); i++)
		usleep(1000);
	if (!atomic_load(&b.done))
		atomic_store(&s_ctl->block, false); /* unstick it, then fail */
	pthread_join(t, NULL);
	assert_true(atomic_load(&b.done));
	assert_int_equal(atomic_load(&b.good), n);
	assert_int_equal(b.nvcsw, 0);
}

/* The background refresh stalls on the network past the takeover time
 * and up to a second before expiry: every caller keeps the valid token at
 * once, and nobody starts a second fetch (single flight). */
static void test_stalled_refresh_nobody_waits(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	atomic_store(&s_ctl->block, true);
	fx_advance(301000); /* refresh window: 300 s to 600 s */
	assert_string_equal(s_get(ctx, cred), "tok-1");
	s_wait_fetches(2);
	fx_advance(298000); /* 599 s: the takeover time (450 s) is past */
	s_burst(ctx, "svc", "tok-1", 1000);
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	assert_int_equal(atomic_load(&s_ctl->blocked), 1);
	atomic_store(&s_ctl->block, false);
	s_wait_token(ctx, cred, "tok-2");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* One get in a thread of its own: what it returned, and the message. */
struct s_one {
	apicred_ctx *ctx;
	const char *service;
	char tok[64];
	int rc;
	char msg[512];
	atomic_bool done;
};

static void *s_one_main(void *arg)
{
	struct s_one *o = arg;
	apicred_cred *cred;
	const char *t;

	apicred_cred_new(&cred);
	o->rc = apicred_get(o->ctx, o->service, NULL, cred);
	t = o->rc == APICRED_OK ? apicred_cred_find(cred, APICRED_HEADER, "Authorization") : NULL;
	snprintf(o->tok, sizeof(o->tok), "%s", t ? t : "(none)");
	snprintf(o->msg, sizeof(o->msg), "%s", apicred_errmsg());
	apicred_cred_free(cred);
	atomic_store(&o->done, true);
	return NULL;
}

/* The refresher is busy (another service's refresh hangs): "svc"'s refresh
 * waits in its queue. Halfway from when it was due to expiry, one caller
 * that still holds the valid token runs it; the others keep the token,
 * and the refresher does not fetch it again. */
static void test_late_refresh_taken_over(void **state)
{
	apicred_ctx *ctx;
	apicred_cred *cred;
	struct s_one taker = { .service = "svc" };
	pthread_t t;

	fx_replace(s_fx, "conf.d/other.conf", "url = \"https://127.0.0.1/\";\n"
	                             "stack = ( { provider = \"counter\"; label = \"o\"; } );\n");
	ctx = s_open(0);
	taker.ctx = ctx;
	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_string_equal(s_get_svc(ctx, "other", cred), "o-2");

	atomic_store(&s_ctl->block, true);
	fx_advance(301000); /* both due: refresh window 300 s to 600 s */
	assert_string_equal(s_get_svc(ctx, "other", cred), "o-2");
	s_wait_fetches(3); /* the refresher hangs in "other"'s fetch */
	assert_string_equal(s_get(ctx, cred), "tok-1"); /* queued behind it */
	fx_advance(100000); /* 401 s: not yet the takeover time (450.5 s) */
	s_burst(ctx, "svc", "tok-1", 100);
	assert_int_equal(atomic_load(&s_ctl->fetches), 3);

	fx_advance(50000); /* 451 s */
	assert_int_equal(pthread_create(&t, NULL, s_one_main, &taker), 0);
	s_wait_fetches(4); /* that caller fetches (and hangs too) */
	s_burst(ctx, "svc", "tok-1", 1000);
	s_burst(ctx, "other", "o-2", 1000); /* its fetch is under way: nobody takes it over */
	assert_int_equal(atomic_load(&s_ctl->fetches), 4);
	assert_int_equal(atomic_load(&s_ctl->blocked), 2);

	atomic_store(&s_ctl->block, false);
	pthread_join(t, NULL);
	assert_string_equal(taker.tok, "tok-1"); /* it had a valid token */
	s_wait_token(ctx, cred, "tok-4");
	s_wait_token_svc(ctx, "other", cred, "o-3");
	usleep(200000); /* give the refresher, now free, the chance to fetch "svc" wrongly */
	assert_int_equal(atomic_load(&s_ctl->fetches), 4);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* ---- one attempt a second through an outage ------------------------------- */

/* Callers with no valid session, through an outage long enough for the
 * back-off to reach backoff_max (60 s): one attempt a second, never more,
 * so the first success comes within a second of the outage's end. */
static void test_outage_one_attempt_a_second(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;
	int n;

	apicred_cred_new(&cred);
	atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
	assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	for (n = 2; n <= 12; n++) {
		for (int i = 0; i < 10; i++) { /* within the second: told when, no attempt */
			assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
			assert_non_null(strstr(apicred_errmsg(), "svc: layer 1 (counter)"));
			assert_non_null(strstr(apicred_errmsg(), "next attempt in 1 s"));
			fx_advance(99);
		}
		assert_int_equal(atomic_load(&s_ctl->fetches), n - 1);
		fx_advance(10); /* a second after the last attempt */
		assert_int_equal(apicred_get(ctx, "svc", NULL, cred), APICRED_ERR_UNAVAILABLE);
		assert_int_equal(atomic_load(&s_ctl->fetches), n);
	}
	/* The endpoint is back: the next second's attempt succeeds. */
	atomic_store(&s_ctl->fail, 0);
	fx_advance(1000);
	assert_string_equal(s_get(ctx, cred), "tok-13");
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* Nobody waits (the session is valid): failed refreshes keep backing off
 * exponentially (jitter in [half, full] of 1, 2, 4 ... s), not once a
 * second. */
static void test_refresh_backs_off_while_nobody_waits(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;
	int64_t full = 1000;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	atomic_store(&s_ctl->fail, APICRED_ERR_UNAVAILABLE);
	fx_advance(301000);
	assert_string_equal(s_get(ctx, cred), "tok-1"); /* refresh 1 fails */
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	for (int k = 1; k <= 6; k++, full *= 2) {
		fx_advance(full / 2 - 1); /* inside the back-off */
		assert_string_equal(s_get(ctx, cred), "tok-1");
		assert_int_equal(atomic_load(&s_ctl->fetches), k + 1);
		fx_advance(full / 2 + 1); /* past it */
		assert_string_equal(s_get(ctx, cred), "tok-1"); /* refresh k + 1 fails */
		assert_int_equal(atomic_load(&s_ctl->fetches), k + 2);
	}
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A caller waiting for a fetch that never ends gives up after its own
 * http.deadline (1 s here: real time, like every http.deadline, so that
 * clock jumps in other tests cannot cut a wait short) with a clear error. */
static void test_waiter_gives_up_at_its_deadline(void **state)
{
	struct s_one first = { .service = "svc" }, second = { .service = "svc" };
	pthread_t a, b;
	apicred_ctx *ctx;

	fx_replace(s_fx, "apicred.conf", "cache = { refresh_ahead = 300; default_ttl = 100; "
	                        "check_interval = 0; backoff_max = 60; };\n"
	                        "http = { retries = 0; deadline = 1; };\n");
	ctx = s_open(0);
	first.ctx = second.ctx = ctx;
	atomic_store(&s_ctl->block, true);
	assert_int_equal(pthread_create(&a, NULL, s_one_main, &first), 0);
	s_wait_fetches(1); /* it fetches, and hangs */
	assert_int_equal(pthread_create(&b, NULL, s_one_main, &second), 0);
	/* Bounded: a hang fails the test. */
	for (int i = 0; i < 5000 && !atomic_load(&second.done); i++)
		usleep(1000);
	if (!atomic_load(&second.done))
		atomic_store(&s_ctl->block, false); /* unstick it, then fail */
	pthread_join(b, NULL);
	assert_int_equal(second.rc, APICRED_ERR_HTTP);
	assert_non_null(strstr(second.msg, "svc: layer 1 (counter)"));
	assert_non_null(strstr(second.msg, "http.deadline"));
	atomic_store(&s_ctl->block, false);
	pthread_join(a, NULL);
	assert_string_equal(first.tok, "tok-1"); /* the fetch itself went on */
	assert_int_equal(atomic_load(&s_ctl->fetches), 1);
	apicred_close(ctx);
}

/* ---- reload under load, fork --------------------------------------------- */

struct s_load { apicred_ctx *ctx; atomic_bool stop; atomic_int bad; };

static void *s_load_main(void *arg)
{
	struct s_load *l = arg;
	apicred_cred *cred;

	apicred_cred_new(&cred);
	while (!atomic_load(&l->stop)) {
		const char *t = s_get(l->ctx, cred);
		if (!t || (strncmp(t, "a-", 2) != 0 && strncmp(t, "b-", 2) != 0))
			atomic_fetch_add(&l->bad, 1);
	}
	apicred_cred_free(cred);
	return NULL;
}

static void test_reload_while_in_use(void **state)
{
	struct s_load l = { .ctx = NULL };
	pthread_t t[4];

	fx_replace(s_fx, "conf.d/svc.conf", "url = \"https://127.0.0.1/\";\n"
	        "stack = ( { provider = \"counter\"; label = \"a\"; } );\n");
	l.ctx = s_open(0);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, s_load_main, &l);
	for (int i = 0; i < 200; i++) {
		/* Each rewrite changes the size or mtime: the stack is replaced while
		 * readers use it; the sanitizers catch any use after free. */
		fx_replace(s_fx, "conf.d/svc.conf", i % 2 ? "url = \"https://127.0.0.1/\";\n"
		                                   "stack = ( { provider = \"counter\"; label = \"a\"; } );\n"
		                                 : "url = \"https://127.0.0.1/\";\n"
		                                   "stack = ( { provider = \"counter\"; label = \"b\"; } ); # b\n");
		assert_int_equal(apicred_reload(l.ctx), APICRED_OK);
	}
	atomic_store(&l.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&l.bad), 0);
	assert_true(atomic_load(&s_ctl->fetches) > 1);
	apicred_close(l.ctx);
}

static void test_fork_child_keeps_working(void **state)
{
	apicred_ctx *ctx = s_open(0);
	apicred_cred *cred;
	int status;
	pid_t pid;

	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	fx_advance(400000);
	assert_string_equal(s_get(ctx, cred), "tok-1"); /* starts the refresher */
	s_wait_fetches(2);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child has no refresher thread; it must start its own. */
		fx_advance(400000);
		const char *t = s_get(ctx, cred);
		int ok = t && strncmp(t, "tok-", 4) == 0;
		for (int i = 0; i < 2000 && atomic_load(&s_ctl->fetches) < 3; i++)
			usleep(1000);
		_exit(ok && atomic_load(&s_ctl->fetches) >= 3 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A provider without session_export/session_import (a minor-0 provider)
 * keeps its sessions in the process, whatever the store. */
static void test_provider_without_export_stays_in_process(void **state)
{
	char conf[600], store[300];
	apicred_ctx *a, *b;
	apicred_cred *cred;
	struct stat sb;

	snprintf(store, sizeof(store), "%s/store", s_fx->dir);
	snprintf(conf, sizeof(conf), "cache = { store = \"file:%s\"; };\n", store);
	fx_replace(s_fx, "apicred.conf", conf);
	apicred_cred_new(&cred);
	a = s_open(APICRED_OPEN_NO_BACKGROUND);
	b = s_open(APICRED_OPEN_NO_BACKGROUND);
	assert_string_equal(s_get(a, cred), "tok-1");
	assert_string_equal(s_get(b, cred), "tok-2");
	assert_int_equal(atomic_load(&s_ctl->fetches), 2);
	assert_int_not_equal(stat(store, &sb), 0); /* never even created */
	apicred_cred_free(cred);
	apicred_close(a);
	apicred_close(b);
}

/* ---- a static apply's output, kept ----------------------------------------- */

/* The kept output stands for apply while the session lasts, and only
 * then: a refresh, a 401 and a reload each show through at once. */
static void test_static_output_kept(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;
	int retry = 0, n;

	apicred_cred_new(&cred);
	for (int i = 0; i < 1000; i++)
		assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->applies), 1);
	assert_int_equal(apicred_cred_expires_at(cred), (FX_WALL0 + 600000) / 1000);
	/* Due for a refresh: the caller that notices refreshes, and the new
	 * token shows from the next get on, kept again. */
	fx_advance(301 * 1000);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	for (int i = 0; i < 10; i++)
		assert_string_equal(s_get(ctx, cred), "tok-2");
	n = atomic_load(&s_ctl->applies);
	assert_int_equal(n, 3);
	assert_int_equal(apicred_report(ctx, "svc", cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	for (int i = 0; i < 10; i++)
		assert_string_equal(s_get(ctx, cred), "tok-3");
	assert_int_equal(atomic_load(&s_ctl->applies), n + 1);
	/* A new file: a new stack, its own fetch. */
	fx_replace(s_fx, "conf.d/svc.conf", "url = \"https://127.0.0.1/\";\n"
	                                    "stack = ( { provider = \"counter\"; label = \"new\"; } );\n");
	assert_string_equal(s_get(ctx, cred), "new-4");
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* Without apply_static, every get calls apply; with it, one cred going
 * from service to service always holds the one it was last asked for. */
static void test_static_cred_between_services(void **state)
{
	apicred_ctx *ctx;
	apicred_cred *cred;

	fx_replace(s_fx, "conf.d/two.conf", "url = \"https://127.0.0.1/\";\n"
	                                    "stack = ( { provider = \"counter\"; label = \"two\"; } );\n");
	ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred_new(&cred);
	for (int i = 0; i < 10; i++)
		assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->applies), 10);
	apicred_close(ctx);

	atomic_store(&s_ctl->static_apply, true);
	atomic_store(&s_ctl->applies, 0);
	atomic_store(&s_ctl->fetches, 0);
	ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	for (int i = 0; i < 10; i++) {
		assert_string_equal(s_get(ctx, cred), "tok-1");
		assert_string_equal(s_get_svc(ctx, "two", cred), "two-2");
		assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 1);
	}
	/* A failed get leaves the cred empty, and the next one fills it. */
	assert_int_equal(apicred_get(ctx, "none", NULL, cred), APICRED_ERR_NO_SERVICE);
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 0);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	assert_int_equal(atomic_load(&s_ctl->applies), 2);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* A URL outside the origin is refused even when the output is kept. */
static void test_static_origin_still_checked(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred;

	apicred_cred_new(&cred);
	req.url = "https://127.0.0.1/api";
	assert_int_equal(apicred_get(ctx, "svc", &req, cred), APICRED_OK);
	assert_int_equal(apicred_get(ctx, "svc", &req, cred), APICRED_OK);
	assert_int_equal(atomic_load(&s_ctl->applies), 1);
	req.url = "https://127.0.0.2/api";
	assert_int_equal(apicred_get(ctx, "svc", &req, cred), APICRED_ERR_ORIGIN);
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 0);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* host->hex_into and add_encoded (host services the counter module calls
 * in apply when told): lowercase hex of every byte value, NUL-terminated in
 * the caller's buffer with nothing written past it (the module checks that
 * and the length, and that add_encoded refuses no header or an unknown
 * encoding); hex of all but the last byte after a prefix, through the
 * core's allocation path, and base64 of a few bytes through its buffer. */
static void test_host_encodings(void **state)
{
	apicred_ctx *ctx = s_open(APICRED_OPEN_NO_BACKGROUND);
	apicred_cred *cred;
	char want[520] = "sha256=";
	const char *got;

	for (int i = 0; i < 256; i++)
		snprintf(want + 7 + 2 * i, 3, "%02x", i);
	atomic_store(&s_ctl->encode, true);
	apicred_cred_new(&cred);
	assert_string_equal(s_get(ctx, cred), "tok-1");
	got = apicred_cred_find(cred, APICRED_HEADER, "X-Hex");
	assert_non_null(got);
	assert_string_equal(got, want + 7);
	got = apicred_cred_find(cred, APICRED_HEADER, "X-Enc-Hex");
	assert_non_null(got);
	want[7 + 2 * 255] = '\0'; /* bytes 0..254 */
	assert_string_equal(got, want);
	got = apicred_cred_find(cred, APICRED_HEADER, "X-Enc-B64");
	assert_non_null(got);
	assert_string_equal(got, "AAECAwQ=");
	assert_int_equal(apicred_cred_count(cred, APICRED_HEADER), 4);
	apicred_cred_free(cred);
	apicred_close(ctx);
}

/* Each case of the file, then each again with a static apply. */
#define S_CASE(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown), \
	{ "static: " #f, f, s_setup_static, s_teardown, NULL }

int main(void)
{
	const struct CMUnitTest tests[] = {
		S_CASE(test_provider_without_export_stays_in_process),
		S_CASE(test_cold_64_threads_one_fetch),
		S_CASE(test_fresh_cache_does_not_fetch),
		S_CASE(test_refresh_ahead_nobody_waits),
		S_CASE(test_refresh_ahead_without_thread),
		S_CASE(test_fetch_reason),
		S_CASE(test_short_token_refreshes_at_half_life),
		S_CASE(test_no_lifetime_gets_default_ttl),
		S_CASE(test_stale_if_error),
		S_CASE(test_retry_after_honoured),
		S_CASE(test_retry_after_capped),
		S_CASE(test_stalled_refresh_nobody_waits),
		S_CASE(test_late_refresh_taken_over),
		S_CASE(test_outage_one_attempt_a_second),
		S_CASE(test_refresh_backs_off_while_nobody_waits),
		S_CASE(test_waiter_gives_up_at_its_deadline),
		S_CASE(test_auth_failure_not_retried_in_background),
		S_CASE(test_report_401_drops_only_the_failed_token),
		S_CASE(test_reload_while_in_use),
		S_CASE(test_fork_child_keeps_working),
		cmocka_unit_test_setup_teardown(test_static_output_kept, s_setup_static, s_teardown),
		cmocka_unit_test_setup_teardown(test_static_cred_between_services, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_static_origin_still_checked, s_setup_static, s_teardown),
		cmocka_unit_test_setup_teardown(test_host_encodings, s_setup, s_teardown),
	};

	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
