/*
 * cache.c - the session cache every layer with a fetch method shares.
 *
 *  - fresh session: one atomic load, no lock (the apicred_get hot path);
 *  - inside the refresh-ahead window: callers keep the valid session while
 *    one refresh runs in the background thread (or, without it, in the one
 *    caller that noticed first);
 *  - no valid session: single flight, one caller fetches, the rest wait on
 *    the layer's condition variable; nobody holds a lock during the fetch;
 *  - failures: the old session is served until its hard expiry (stale-if-
 *    error) while retries back off exponentially with jitter, honouring
 *    Retry-After; 4xx answers are not retried in the background.
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
#define S_LIFE_MAX_MS (INT64_C(100) * 366 * 24 * 3600 * 1000) /* a century */
#define S_STORE_POLL_MS 250 /* while another process refreshes a shared session */

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
	/* A server's Retry-After never locks the layer beyond backoff_max. */
	if (retry_after_ms > ctx->backoff_max_ms)
		retry_after_ms = ctx->backoff_max_ms;
	return retry_after_ms > full ? retry_after_ms : full;
}

struct ac_session *ac_session_new(struct ac_layer *L, void *data, int64_t mono_start,
                                  int64_t wall_start, int64_t life_ms)
{
	struct ac_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	/* Saturated so that no sum below overflows. */
	if (life_ms > S_LIFE_MAX_MS)
		life_ms = S_LIFE_MAX_MS;
	s->data = data;
	s->layer = L;
	s->expires_ms = mono_start + life_ms;
	s->refresh_at_ms = s->expires_ms - (L->refresh_ahead_ms < life_ms / 2 ? L->refresh_ahead_ms
	                                                                      : life_ms / 2);
	s->wall_expires_s = (wall_start + life_ms) / 1000;
	s->wall_issued_ms = wall_start;
	s->wall_expires_ms = wall_start + life_ms;
	atomic_init(&s->invalid, false);
	return s;
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

/* Publishes the outcome of a fetch; the caller holds L->mu. */
static void s_publish_inlock(struct ac_layer *L, int rc, struct ac_session *s,
                             int64_t retry_after_ms)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *old;

	L->fetching = false;
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
		atomic_store(&L->quiet_until_ms, 0);
		L->last_code = 0;
		free(L->last_msg);
		L->last_msg = NULL;
		if (ctx->log_level >= LOG_DEBUG) {
			int64_t now = ac_now_mono(ctx);
			char at[16];

			AC_TRACE(L, "new session (generation %llu), expires in %lld s, refresh "
			         "scheduled in %lld s (at %s)", (unsigned long long)s->gen,
			         (long long)((s->expires_ms - now) / 1000),
			         (long long)((s->refresh_at_ms - now) / 1000),
			         ac_mono_clock(ctx, s->refresh_at_ms, at));
		}
	} else {
		L->failures++;
		L->retry_at_ms = ac_now_mono(ctx) + s_backoff(ctx, L->failures, retry_after_ms);
		atomic_store(&L->quiet_until_ms, L->retry_at_ms);
		L->last_code = rc;
		free(L->last_msg);
		L->last_msg = ac_strdup(apicred_errmsg());
		ac_log(ctx, LOG_WARNING, L->stack->svc->name,
		       "%s (attempt %d; back-off: next in %lld ms)",
		       L->last_msg ? L->last_msg : apicred_strerror(rc), L->failures,
		       (long long)(L->retry_at_ms - ac_now_mono(ctx)));
	}
	pthread_cond_broadcast(&L->cv);
}

static bool s_valid(const struct ac_session *s, int64_t now)
{
	return s && now < s->expires_ms && !atomic_load_explicit(&s->invalid, memory_order_relaxed);
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
			/* The injectable clock may be virtual: look again every 50 ms. */
			struct timespec ts;
			int64_t wait = due - now;
			clock_gettime(CLOCK_REALTIME, &ts);
			if (wait > 50)
				wait = 50;
			ts.tv_nsec += (long)(wait % 1000) * 1000000;
			ts.tv_sec += wait / 1000 + ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&ctx->bg.cv, &ctx->bg.mu, &ts);
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

/* Queues L for the refresher at due_ms; false if that is not possible. */
static bool s_bg_enqueue(struct ac_layer *L, int64_t due_ms)
{
	struct ac_ctx *ctx = L->stack->ctx;
	bool ok = true;

	if (ctx->flags & APICRED_OPEN_NO_BACKGROUND)
		return false;
	pthread_mutex_lock(&ctx->bg.mu);
	if (L->stack->retired || ctx->bg.stop) {
		ok = false;
	} else if (!L->queued) {
		if (!ctx->bg.running) {
			if (pthread_create(&ctx->bg.thread, NULL, s_bg_main, ctx) != 0) {
				ok = false;
				goto out;
			}
			ctx->bg.running = true;
		}
		L->queued = true;
		L->due_ms = due_ms;
		L->qnext = ctx->bg.queue;
		ctx->bg.queue = L;
		pthread_cond_signal(&ctx->bg.cv);
	}
out:
	pthread_mutex_unlock(&ctx->bg.mu);
	return ok;
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
	for (struct ac_layer *L = ctx->bg.queue; L; L = L->qnext)
		L->queued = false;
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

/* Refreshes a session that is still valid: the callers never wait for it. */
static void s_refresh(struct ac_layer *L)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *prev, *s = NULL;
	int64_t retry_after = 0;
	int rc;

	pthread_mutex_lock(&L->mu);
	prev = atomic_load(&L->session);
	if (L->fetching || (s_valid(prev, ac_now_mono(ctx)) &&
	                    ac_now_mono(ctx) < prev->refresh_at_ms)) {
		pthread_mutex_unlock(&L->mu);
		return;
	}
	L->fetching = true;
	atomic_store(&L->quiet_until_ms, INT64_MAX);
	pthread_mutex_unlock(&L->mu);

	AC_TRACE(L, "fetch started: %s", !s_valid(prev, ac_now_mono(ctx)) ? "no valid session"
	         : L->failures ? "retrying a failed refresh while the session lasts"
	                       : "refresh ahead of expiry");
	rc = ac_store_fetch(L, prev, true, s_fetch_refresh, &s, &retry_after);

	pthread_mutex_lock(&L->mu);
	if (rc == AC_STORE_BUSY) {
		/* Another process refreshes: keep ours, look at its entry soon. */
		L->fetching = false;
		L->retry_at_ms = ac_now_mono(ctx) + S_STORE_POLL_MS;
		atomic_store(&L->quiet_until_ms, L->retry_at_ms);
		s_bg_enqueue(L, L->retry_at_ms);
		pthread_cond_broadcast(&L->cv);
		pthread_mutex_unlock(&L->mu);
		return;
	}
	s_publish_inlock(L, rc, s, retry_after);
	prev = atomic_load(&L->session);
	/* Stale-if-error: keep retrying in the background while the old
	 * session lasts, but only for failures a retry can cure. */
	if (rc != APICRED_OK && s_retryable(rc) && s_valid(prev, ac_now_mono(ctx)))
		s_bg_enqueue(L, L->retry_at_ms);
	pthread_mutex_unlock(&L->mu);
	s_collect(L);
}

/* ---- the caller's path --------------------------------------------------- */

/* Fetches while callers wait (no valid session): retries what is worth
 * retrying, within the call, for short waits only. */
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
		int64_t wait = s_backoff(ctx, attempt + 1, *retry_after) / 4;
		if (*retry_after > 0)
			wait = *retry_after;
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

static int s_session_slow(struct ac_layer *L, struct ac_session **out)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_session *s, *fresh = NULL;
	int64_t now, retry_after = 0;
	int rc;

	pthread_mutex_lock(&L->mu);
	for (;;) {
		now = ac_now_mono(ctx);
		s = atomic_load(&L->session);
		if (s_valid(s, now)) {
			bool refresh = now >= s->refresh_at_ms && !L->fetching && now >= L->retry_at_ms;
			*out = s;
			AC_TRACE(L, "cache hit, %lld s left%s", (long long)((s->expires_ms - now) / 1000),
			         refresh ? ", refresh due" : L->fetching ? ", refresh running"
			                                              : ", refresh backing off");
			if (refresh && s_bg_enqueue(L, now)) {
				atomic_store(&L->quiet_until_ms, INT64_MAX);
				refresh = false;
			}
			pthread_mutex_unlock(&L->mu);
			if (refresh)
				s_refresh(L); /* no refresher thread: this caller does it */
			return APICRED_OK;
		}
		if (!L->fetching)
			break;
		pthread_cond_wait(&L->cv, &L->mu);
	}
	if (L->last_code && now < L->retry_at_ms) {
		rc = ac_error(L->last_code, "%s (next attempt in %lld s)",
		              L->last_msg ? L->last_msg : apicred_strerror(L->last_code),
		              (long long)((L->retry_at_ms - now + 999) / 1000));
		pthread_mutex_unlock(&L->mu);
		return rc;
	}
	L->fetching = true;
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

int ac_layer_session(struct ac_layer *L, int64_t now, struct ac_session **out)
{
	struct ac_session *s = atomic_load_explicit(&L->session, memory_order_acquire);

	if (s && !atomic_load_explicit(&s->invalid, memory_order_relaxed) &&
	    (now < s->refresh_at_ms ||
	     (now < s->expires_ms &&
	      now < atomic_load_explicit(&L->quiet_until_ms, memory_order_relaxed)))) {
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
