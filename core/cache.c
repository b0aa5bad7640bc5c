/*
 * cache.c - the session cache every layer with a fetch method shares.
 *
 *  - fresh session: one atomic load, no lock (the apicred_get hot path);
 *  - inside the refresh-ahead window: callers keep the valid session while
 *    one refresh runs in the background thread (or, without it, in the one
 *    caller that noticed first). A refresh the thread has not started
 *    halfway from when it was due to expiry (the thread is busy with another
 *    layer, or starved of CPU) is run by the next caller instead. A caller
 *    holding a valid session never waits, for a fetch or for a lock: it
 *    only ever try-locks;
 *  - no valid session: single flight, one caller fetches, the rest wait on
 *    the layer's condition variable, each for at most http.deadline;
 *    nobody holds a lock during the fetch;
 *  - failures: the old session is served until its hard expiry (stale-if-
 *    error) while refreshes back off exponentially with jitter, honouring
 *    Retry-After; 4xx answers are not retried in the background. Callers
 *    with no valid session do not sit out that back-off: through an outage
 *    they try once per AC_ATTEMPT_GAP_MS (or after the server's capped
 *    Retry-After), so they have a session again within about a second of
 *    its end, without hammering the endpoint.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/crypto.h>

#include "internal.h"

#define S_BACKOFF_BASE_MS 1000
#define S_WAIT_MAX_MS 5000 /* longest a cold caller sleeps between retries */
#define S_STORE_POLL_MS 250 /* while another process refreshes a shared session */
#define S_CLOCK_POLL_MS 50  /* an injected clock may be virtual: look at it this often */

static bool s_retryable(int code)
{
	return code == APICRED_ERR_HTTP || code == APICRED_ERR_UNAVAILABLE ||
	       code == APICRED_ERR_PROTOCOL;
}

void ac_layer_cache_init(struct ac_layer *L)
{
	pthread_mutex_init(&L->mu, NULL);
	pthread_cond_init(&L->cv, NULL);
	atomic_init(&L->session, NULL);
	atomic_init(&L->quiet_until_ms, 0);
}

/*
 * Lifetime of sessions. A replaced session goes to its own layer's dead
 * list, never to the global EBR list, and only two parties ever free one:
 *  - s_collect, run by a thread inside a read section that reached the
 *    layer through its stack: the stack cannot be freed before that thread
 *    leaves, so L->mod and L->state are alive while it frees;
 *  - ac_layer_cache_fini, when the stack itself is freed: no reader is left,
 *    and it frees the dead list and the current session before the
 *    provider's fini runs (ac_stack_free).
 * So no session outlives its layer's state, whatever the order of reloads
 * and fetches. Both free after unlocking L->mu: destructors never run under
 * the layer's lock.
 */
static void s_session_free(struct ac_layer *L, struct ac_session *s)
{
	L->mod->vt.session_free(L->state, s->data);
	free(s);
}

static void s_free_chain(struct ac_layer *L, struct ac_session *s)
{
	while (s) {
		struct ac_session *next = s->dead_next;
		s_session_free(L, s);
		s = next;
	}
}

/* A stack's replaced snapshots (stack.c) wait in its snap_dead, tagged
 * like sessions, and go with the sessions they were made of: freed by the
 * thread that next fetches, so that whoever makes one never takes a lock
 * nor waits for readers. */
void ac_snap_collect(struct ac_stack *st, uint64_t safe)
{
	struct ac_snap **pp, *done = NULL;

	if (atomic_exchange_explicit(&st->snap_busy, true, memory_order_acquire))
		return;
	for (pp = &st->snap_dead; *pp;) {
		struct ac_snap *sn = *pp;
		if (sn->tag < safe) {
			*pp = sn->dead_next;
			sn->dead_next = done;
			done = sn;
		} else {
			pp = &sn->dead_next;
		}
	}
	atomic_store_explicit(&st->snap_busy, false, memory_order_release);
	while (done) {
		struct ac_snap *next = done->dead_next;
		ac_snap_free(done);
		done = next;
	}
}

/* Frees the dead sessions no reader can still hold; caller in a read section. */
static void s_collect(struct ac_layer *L)
{
	struct ac_session *done = NULL, **pp;
	uint64_t safe;

	pthread_mutex_lock(&L->mu);
	safe = ac_ebr_safe(); /* after every tag in the list was taken */
	for (pp = &L->dead; *pp;) {
		struct ac_session *s = *pp;
		if (s->tag < safe) {
			*pp = s->dead_next;
			s->dead_next = done;
			done = s;
		} else {
			pp = &s->dead_next;
		}
	}
	pthread_mutex_unlock(&L->mu);
	s_free_chain(L, done);
	ac_snap_collect(L->stack, safe);
}

void ac_layer_cache_fini(struct ac_layer *L)
{
	struct ac_session *s = atomic_load(&L->session);

	s_free_chain(L, L->dead);
	if (s)
		s_session_free(L, s);
	free(L->last_msg);
	OPENSSL_cleanse(&L->store, sizeof(L->store)); /* holds the entry's key */
	pthread_cond_destroy(&L->cv);
	pthread_mutex_destroy(&L->mu);
}

static void s_sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

#ifdef APICRED_FUZZING
	return; /* the fuzzers answer at once: waiting would only slow them */
#endif
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Waits on cv (mu held) for at most ms of ctx's clock, which may be an
 * injected, virtual one: then it wakes every S_CLOCK_POLL_MS to look. */
static void s_timedwait(struct ac_ctx *ctx, pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
	struct timespec ts;

	if (ctx->clock_mono_ms && ms > S_CLOCK_POLL_MS)
		ms = S_CLOCK_POLL_MS;
	if (ms > 60000) /* the callers look again: no overflow, whatever ms */
		ms = 60000;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_cond_timedwait(cv, mu, &ts);
}

/* A server's Retry-After never locks the layer beyond backoff_max. */
static int64_t s_retry_after(const struct ac_ctx *ctx, int64_t retry_after_ms)
{
	return retry_after_ms > ctx->backoff_max_ms ? ctx->backoff_max_ms : retry_after_ms;
}

/* Exponential back-off with jitter in [half, full], at least Retry-After. */
static int64_t s_backoff(struct ac_ctx *ctx, int failures, int64_t retry_after_ms)
{
	int64_t full = S_BACKOFF_BASE_MS, span;
	unsigned char r[2] = { 0, 0 };

	for (int i = 1; i < failures && full < ctx->backoff_max_ms; i++)
		full *= 2;
	if (full > ctx->backoff_max_ms)
		full = ctx->backoff_max_ms;
	ac_random(ctx, r, sizeof(r));
	span = full / 2;
	full = full - span + (span * (r[0] << 8 | r[1])) / 65535;
	retry_after_ms = s_retry_after(ctx, retry_after_ms);
	return retry_after_ms > full ? retry_after_ms : full;
}

/* One fetch by the provider, timed from when it started. */
static int s_fetch_once(struct ac_layer *L, const void *prev, struct ac_session **out,
                        int64_t *retry_after_ms)
{
	struct ac_ctx *ctx = L->stack->ctx;
	apicred_session ps = { 0 };
	int64_t start = ac_now_mono(ctx), wall = ac_now_wall(ctx), life;
	struct ac_session *s;
	int rc;

	ac_error_clear();
	rc = L->mod->vt.fetch(L->state, &L->host, prev, &ps);
	*retry_after_ms = ps.retry_after_ms;
	if (rc != APICRED_OK) {
		if (ps.data)
			L->mod->vt.session_free(L->state, ps.data);
		if (!*apicred_errmsg())
			ac_layer_error(L, rc, "fetch failed: %s", apicred_strerror(rc));
		return rc;
	}
	/* Never "forever": a session without a lifetime gets default_ttl; a
	 * server's lifetime is saturated (ac_session_new). */
	life = ps.lifetime_ms > 0 ? ps.lifetime_ms : L->default_ttl_ms;
	s = ac_session_new(L, ps.data, start, wall, life);
	if (!s) {
		L->mod->vt.session_free(L->state, ps.data);
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	*out = s;
	return APICRED_OK;
}

static bool s_valid(const struct ac_session *s, int64_t now)
{
	return s && now < s->expires_ms && !atomic_load_explicit(&s->invalid, memory_order_relaxed);
}

/* Publishes the outcome of a fetch; the caller holds L->mu. */
static void s_publish_inlock(struct ac_layer *L, int rc, struct ac_session *s,
                             int64_t retry_after_ms)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *old;
	int64_t now = ac_now_mono(ctx);

	L->fetching = false;
	L->takeover_ms = 0;
	if (rc == APICRED_OK) {
		s->gen = ++L->gen;
		old = atomic_exchange_explicit(&L->session, s, memory_order_acq_rel);
		if (old) { /* retired here, freed by s_collect after unlocking */
			old->tag = ac_ebr_advance();
			old->dead_next = L->dead;
			L->dead = old;
		}
		L->failures = 0;
		L->retry_at_ms = 0;
		L->cold_at_ms = 0;
		atomic_store(&L->quiet_until_ms, 0);
		L->last_code = 0;
		free(L->last_msg);
		L->last_msg = NULL;
		if (ctx->log_level >= LOG_DEBUG) {
			char at[16];

			AC_TRACE(L, "new session (generation %llu), expires in %lld s, refresh "
			         "scheduled in %lld s (at %s)", (unsigned long long)s->gen,
			         (long long)((s->expires_ms - now) / 1000),
			         (long long)((s->refresh_at_ms - now) / 1000),
			         ac_mono_clock(ctx, s->refresh_at_ms, at));
		}
	} else {
		int64_t ra = s_retry_after(ctx, retry_after_ms);

		L->failures++;
		L->retry_at_ms = now + s_backoff(ctx, L->failures, retry_after_ms);
		/* Callers with no valid session try an outage again once a gap
		 * (or the server's Retry-After) has passed, not after the back-off:
		 * they are back within about a second of its end. What retrying
		 * cannot cure (a 4xx) backs off for them too. */
		L->cold_at_ms = !s_retryable(rc) ? L->retry_at_ms
		                : now + (ra > AC_ATTEMPT_GAP_MS ? ra : AC_ATTEMPT_GAP_MS);
		atomic_store(&L->quiet_until_ms, L->retry_at_ms);
		L->last_code = rc;
		free(L->last_msg);
		L->last_msg = ac_strdup(apicred_errmsg());
		ac_log(ctx, LOG_WARNING, L->stack->svc->name,
		       "%s (attempt %d; back-off: next in %lld ms)",
		       L->last_msg ? L->last_msg : apicred_strerror(rc), L->failures,
		       (long long)((s_valid(atomic_load(&L->session), now) ? L->retry_at_ms
		                                                           : L->cold_at_ms) - now));
	}
	pthread_cond_broadcast(&L->cv);
}

/* Whether L may start a fetch now (L->mu held): a valid session once it is
 * due and the back-off has passed; none, at the pace set for the callers. */
static bool s_may_fetch_inlock(const struct ac_layer *L, const struct ac_session *s, int64_t now)
{
	if (L->fetching)
		return false;
	if (s_valid(s, now))
		return now >= s->refresh_at_ms && now >= L->retry_at_ms;
	return !L->last_code || now >= L->cold_at_ms;
}

/* This thread fetches (L->mu held): the others keep the valid session, if
 * any, without looking, or wait for this fetch. */
static void s_claim_inlock(struct ac_layer *L)
{
	L->fetching = true;
	L->takeover_ms = 0;
	atomic_store(&L->quiet_until_ms, INT64_MAX);
}

/* ---- the background refresher -------------------------------------------- */

static void s_refresh(struct ac_layer *L);

static void *s_bg_main(void *arg)
{
	struct ac_ctx *ctx = arg;

	pthread_mutex_lock(&ctx->bg.mu);
	while (!ctx->bg.stop) {
		int64_t now = ac_now_mono(ctx), due = INT64_MAX;
		struct ac_layer **pp, *L = NULL;

		for (pp = &ctx->bg.queue; *pp; pp = &(*pp)->qnext) {
			if ((*pp)->due_ms <= now) {
				L = *pp;
				*pp = L->qnext;
				break;
			}
			if ((*pp)->due_ms < due)
				due = (*pp)->due_ms;
		}
		if (!L && due == INT64_MAX) {
			pthread_cond_wait(&ctx->bg.cv, &ctx->bg.mu);
			continue;
		}
		if (!L) {
			s_timedwait(ctx, &ctx->bg.cv, &ctx->bg.mu, due - now);
			continue;
		}
		L->queued = false;
		/* Entered before unlocking: a stack retired meanwhile stays alive. */
		ac_ebr_enter();
		pthread_mutex_unlock(&ctx->bg.mu);
		s_refresh(L);
		ac_ebr_leave();
		pthread_mutex_lock(&ctx->bg.mu);
	}
	pthread_mutex_unlock(&ctx->bg.mu);
	return NULL;
}

enum s_queued {
	S_QUEUED,    /* the refresher will run it */
	S_BUSY,      /* its lock was taken: someone else will queue it */
	S_NO_THREAD  /* no refresher: the caller runs it */
};

/* Queues L for the refresher at due_ms (or moves it there). A caller that
 * holds a valid session does not wait for the refresher's lock (!wait). */
static enum s_queued s_bg_enqueue(struct ac_layer *L, int64_t due_ms, bool wait)
{
	struct ac_ctx *ctx = L->stack->ctx;
	enum s_queued q = S_QUEUED;

	if (ctx->flags & APICRED_OPEN_NO_BACKGROUND)
		return S_NO_THREAD;
	if (!wait && pthread_mutex_trylock(&ctx->bg.mu) != 0)
		return S_BUSY;
	if (wait)
		pthread_mutex_lock(&ctx->bg.mu);
	if (L->stack->retired || ctx->bg.stop) {
		q = S_NO_THREAD;
		goto out;
	}
	if (!ctx->bg.running) {
		if (pthread_create(&ctx->bg.thread, NULL, s_bg_main, ctx) != 0) {
			q = S_NO_THREAD;
			goto out;
		}
		ctx->bg.running = true;
	}
	if (!L->queued) {
		L->queued = true;
		L->qnext = ctx->bg.queue;
		ctx->bg.queue = L;
	}
	L->due_ms = due_ms;
	pthread_cond_signal(&ctx->bg.cv);
out:
	pthread_mutex_unlock(&ctx->bg.mu);
	return q;
}

/* Queues a refresh of the valid session s at due_ms (L->mu held). Callers
 * take the lock-free path until the takeover time, halfway from due_ms to
 * s's expiry: if the refresher has not started by then, a caller that
 * still holds s runs the refresh itself. */
static enum s_queued s_schedule_inlock(struct ac_layer *L, const struct ac_session *s,
                                       int64_t due_ms, bool wait)
{
	enum s_queued q = s_bg_enqueue(L, due_ms, wait);

	if (q == S_QUEUED) {
		L->takeover_ms = due_ms < s->expires_ms ? due_ms + (s->expires_ms - due_ms) / 2
		                                        : due_ms;
		atomic_store(&L->quiet_until_ms, L->takeover_ms);
	}
	return q;
}

void ac_bg_dequeue_stack(struct ac_ctx *ctx, struct ac_stack *st)
{
	pthread_mutex_lock(&ctx->bg.mu);
	st->retired = true;
	for (struct ac_layer **pp = &ctx->bg.queue; *pp;) {
		if ((*pp)->stack == st) {
			(*pp)->queued = false;
			*pp = (*pp)->qnext;
		} else {
			pp = &(*pp)->qnext;
		}
	}
	pthread_mutex_unlock(&ctx->bg.mu);
}

void ac_bg_stop(struct ac_ctx *ctx)
{
	bool running;

	pthread_mutex_lock(&ctx->bg.mu);
	ctx->bg.stop = true;
	running = ctx->bg.running;
	pthread_cond_broadcast(&ctx->bg.cv);
	pthread_mutex_unlock(&ctx->bg.mu);
	if (running)
		pthread_join(ctx->bg.thread, NULL);
	ctx->bg.running = false;
}

/* In a forked child only the forking thread exists: the refresher is gone
 * and a lock held by another thread at fork time would never be released. */
void ac_bg_after_fork(struct ac_ctx *ctx)
{
	pthread_mutex_init(&ctx->bg.mu, NULL);
	pthread_cond_init(&ctx->bg.cv, NULL);
	ctx->bg.running = false;
	for (struct ac_layer *L = ctx->bg.queue; L; L = L->qnext) {
		L->queued = false;
		L->takeover_ms = 0; /* the next caller queues it anew */
	}
	ctx->bg.queue = NULL;
}

/* One fetch within one http.deadline. */
static int s_fetch_refresh(struct ac_layer *L, const void *prev, struct ac_session **out,
                           int64_t *retry_after_ms)
{
	bool began = ac_deadline_begin(L->stack->ctx->http.deadline_ms);
	int rc = s_fetch_once(L, prev, out, retry_after_ms);

	ac_deadline_end(began);
	return rc;
}

/* Refreshes ahead of expiry, or for a session that expired meanwhile; the
 * caller claimed the fetch (s_claim_inlock). Whoever holds a valid session
 * never waits for it. */
static void s_refresh_run(struct ac_layer *L, struct ac_session *prev)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *s = NULL, *cur;
	int64_t retry_after = 0;
	int rc;

	AC_TRACE(L, "fetch started: %s", !s_valid(prev, ac_now_mono(ctx)) ? "no valid session"
	         : L->failures ? "retrying a failed refresh while the session lasts"
	                       : "refresh ahead of expiry");
	rc = ac_store_fetch(L, prev, true, s_fetch_refresh, &s, &retry_after);

	pthread_mutex_lock(&L->mu);
	cur = atomic_load(&L->session);
	if (rc == AC_STORE_BUSY) {
		/* Another process refreshes: keep ours, look at its entry soon. */
		L->fetching = false;
		L->retry_at_ms = ac_now_mono(ctx) + S_STORE_POLL_MS;
		atomic_store(&L->quiet_until_ms, L->retry_at_ms);
		if (s_valid(cur, ac_now_mono(ctx)))
			s_schedule_inlock(L, cur, L->retry_at_ms, true);
		pthread_cond_broadcast(&L->cv);
		pthread_mutex_unlock(&L->mu);
		return;
	}
	s_publish_inlock(L, rc, s, retry_after);
	cur = atomic_load(&L->session);
	/* Stale-if-error: keep retrying in the background while the old
	 * session lasts, but only for failures a retry can cure. */
	if (rc != APICRED_OK && s_retryable(rc) && s_valid(cur, ac_now_mono(ctx)))
		s_schedule_inlock(L, cur, L->retry_at_ms, true);
	pthread_mutex_unlock(&L->mu);
	s_collect(L);
}

/* The refresher's part: the refresh, unless a caller took it over or it is
 * no longer due. */
static void s_refresh(struct ac_layer *L)
{
	struct ac_session *prev;
	bool run;

	pthread_mutex_lock(&L->mu);
	prev = atomic_load(&L->session);
	if ((run = s_may_fetch_inlock(L, prev, ac_now_mono(L->stack->ctx))))
		s_claim_inlock(L);
	pthread_mutex_unlock(&L->mu);
	if (run)
		s_refresh_run(L, prev);
}

/* ---- the caller's path --------------------------------------------------- */

/* Fetches while callers wait (no valid session): retries what is worth
 * retrying, within the call, for short waits only, one attempt per
 * AC_ATTEMPT_GAP_MS at most. */
static int s_fetch_cold(struct ac_layer *L, const void *prev, struct ac_session **out,
                        int64_t *retry_after)
{
	struct ac_ctx *ctx = L->stack->ctx;
	bool late = false, began;
	int rc;

	/* One deadline for all the attempts, not attempts x http.timeout. */
	began = ac_deadline_begin(ctx->http.deadline_ms);
	for (int attempt = 0;; attempt++) {
		rc = s_fetch_once(L, prev, out, retry_after);
		if (rc == APICRED_OK || !s_retryable(rc) || attempt >= ctx->http.retries)
			break;
		int64_t wait = *retry_after > AC_ATTEMPT_GAP_MS ? *retry_after : AC_ATTEMPT_GAP_MS;
		if (wait > S_WAIT_MAX_MS || (late = wait >= ac_deadline_left()))
			break;
		ac_log(ctx, LOG_INFO, L->stack->svc->name, "layer %d (%s): retrying in %lld ms",
		       L->index + 1, L->provider, (long long)wait);
		s_sleep_ms(wait);
	}
	if (rc != APICRED_OK && began)
		rc = ac_deadline_error(L, rc, late);
	ac_deadline_end(began);
	return rc;
}

/* A valid session s: returned at once. The caller takes L->mu only if it
 * is free, to queue a refresh that is due, or to run one the refresher has
 * not started by the takeover time (or that has no refresher). */
static int s_session_valid(struct ac_layer *L, struct ac_session *s, int64_t now,
                           struct ac_session **out)
{
	bool run = false;

	*out = s;
	if (pthread_mutex_trylock(&L->mu) != 0)
		return APICRED_OK; /* another thread is deciding */
	if (atomic_load(&L->session) == s && s_may_fetch_inlock(L, s, now)) {
		if (L->takeover_ms)
			run = now >= L->takeover_ms; /* the refresher is late */
		else
			run = s_schedule_inlock(L, s, now, false) == S_NO_THREAD;
		if (run)
			s_claim_inlock(L);
	}
	AC_TRACE(L, "cache hit, %lld s left%s", (long long)((s->expires_ms - now) / 1000),
	         run ? ", refresh due: this caller runs it"
	         : L->fetching ? ", refresh running"
	         : L->takeover_ms ? ", refresh queued"
	         : now >= s->refresh_at_ms ? ", refresh backing off" : "");
	pthread_mutex_unlock(&L->mu);
	if (run)
		s_refresh_run(L, s);
	return APICRED_OK;
}

/* No valid session: wait for the fetch under way, or fetch, or say when the
 * next attempt is. Waiting ends after http.deadline, with an error: real
 * time, like every http.deadline, whatever the injected clock does. */
static int s_session_cold(struct ac_layer *L, struct ac_session **out)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *s, *fresh = NULL;
	int64_t now, until = ac_real_ms() + ctx->http.deadline_ms, left, retry_after = 0;
	int rc;

	pthread_mutex_lock(&L->mu);
	for (;;) {
		now = ac_now_mono(ctx);
		s = atomic_load(&L->session);
		if (s_valid(s, now)) { /* the fetch it waited for */
			*out = s;
			pthread_mutex_unlock(&L->mu);
			return APICRED_OK;
		}
		if (!L->fetching)
			break;
		if ((left = until - ac_real_ms()) <= 0) {
			rc = ac_layer_error(L, APICRED_ERR_HTTP, "no session: the fetch under way "
			                    "has not finished within http.deadline (%lld ms)",
			                    (long long)ctx->http.deadline_ms);
			pthread_mutex_unlock(&L->mu);
			return rc;
		}
		s_timedwait(ctx, &L->cv, &L->mu, left);
	}
	if (!s_may_fetch_inlock(L, s, now)) {
		rc = ac_error(L->last_code, "%s (next attempt in %lld s)",
		              L->last_msg ? L->last_msg : apicred_strerror(L->last_code),
		              (long long)((L->cold_at_ms - now + 999) / 1000));
		pthread_mutex_unlock(&L->mu);
		return rc;
	}
	s_claim_inlock(L);
	pthread_mutex_unlock(&L->mu);

	AC_TRACE(L, "fetch started, the caller waits: %s", !s ? "no session yet"
	         : atomic_load(&s->invalid) ? "the session was dropped (a 401 or 403 reported)"
	                                    : "the session expired");
	rc = ac_store_fetch(L, s, false, s_fetch_cold, &fresh, &retry_after);

	pthread_mutex_lock(&L->mu);
	s_publish_inlock(L, rc, fresh, retry_after);
	pthread_mutex_unlock(&L->mu);
	s_collect(L);
	*out = fresh;
	return rc;
}

static int s_session_slow(struct ac_layer *L, struct ac_session **out)
{
	struct ac_session *s = atomic_load(&L->session);
	int64_t now = ac_now_mono(L->stack->ctx);

	return s_valid(s, now) ? s_session_valid(L, s, now, out) : s_session_cold(L, out);
}

int ac_layer_session(struct ac_layer *L, int64_t now, struct ac_session **out)
{
	struct ac_session *s = atomic_load_explicit(&L->session, memory_order_acquire);

	if (s && ac_session_fresh(L, s, now)) {
		*out = s;
		AC_TRACE(L, "cache hit, %lld s left", (long long)((s->expires_ms - now) / 1000));
		return APICRED_OK;
	}
	return s_session_slow(L, out);
}

/* Drops the session of generation gen, if it is still the current one:
 * a 401 for a token that was already replaced must not cause a refetch. */
void ac_layer_invalidate(struct ac_layer *L, uint64_t gen)
{
	struct ac_session *s;
	bool dropped = false;

	pthread_mutex_lock(&L->mu);
	s = atomic_load(&L->session);
	if (s && s->gen == gen) {
		atomic_store(&s->invalid, true);
		L->retry_at_ms = 0; /* the next caller fetches at once */
		atomic_store(&L->quiet_until_ms, 0);
		L->last_code = 0;
		dropped = true;
	}
	pthread_mutex_unlock(&L->mu);
	/* Other processes drop it too, unless it was replaced there already;
	 * s stays alive: the caller is inside an EBR read section. */
	if (dropped)
		ac_store_invalidate(L, s);
}
