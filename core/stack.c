/*
 * stack.c - walking a service's stack: the service's static headers, then
 * each layer in order (its session from the cache, its provider's apply)
 * under its control (required, optional, sufficient); and what the layers
 * above a layer add to that layer's own requests.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "internal.h"

static const char *const s_control_name[] = { "required", "optional", "sufficient" };

const char *ac_control_name(enum ac_control c)
{
	return s_control_name[c];
}

int ac_layer_apply(struct ac_layer *L, struct ac_request *req, apicred_cred *cred,
                   int64_t now)
{
	apicred_out out = { cred, L };
	struct ac_session *s = NULL;
	int rc;

	if (L->fail_code)
		return ac_error(L->fail_code, "%s", L->fail_msg ? L->fail_msg : "layer failed");
	if (ac_layer_fetches(L) && (rc = ac_layer_session(L, now, &s)) != APICRED_OK)
		return rc;
	rc = L->mod->vt.apply(L->state, &L->host, s ? s->data : NULL, &req->r, &out);
	if (rc != APICRED_OK)
		return rc;
	if (cred->nlayers < AC_MAX_LAYERS)
		cred->layers[cred->nlayers++] = (struct ac_used){ L, s ? s->gen : 0 };
	/* A session without data carries no expiry worth telling. */
	if (s && s->data && (cred->expires_at == 0 || s->wall_expires_s < cred->expires_at))
		cred->expires_at = s->wall_expires_s;
	return APICRED_OK;
}

static void s_url_free(char *url)
{
	if (url) {
		OPENSSL_cleanse(url, strlen(url));
		free(url);
	}
}

/* Walks layers [0, upto); *skipped counts the optional layers skipped. */
static int s_walk(struct ac_stack *st, size_t upto, const apicred_request *req,
                  apicred_cred *cred, int64_t now, size_t *skipped)
{
	struct ac_request R;
	char *url = NULL;
	size_t nquery = 0;
	int rc;

	for (size_t i = 0; i < st->nheaders; i++) {
		rc = ac_cred_add(cred, APICRED_HEADER, st->headers[2 * i], st->header_lens[2 * i],
		                 st->headers[2 * i + 1], st->header_lens[2 * i + 1]);
		if (rc != APICRED_OK)
			return rc;
	}
	rc = APICRED_OK;
	ac_request_init(&R, req);
	for (size_t i = 0; i < upto; i++) {
		struct ac_layer *L = &st->layers[i];
		size_t mark = cred->nitems, q = cred->nquery;

		/* Query parameters from the layers above are part of the URL the
		 * layers below sign (hmac, tcx): show them the URL as it is sent. */
		if (q != nquery && req->url) {
			char *prev = url;
			if ((rc = apicred_cred_url(cred, req->url, &url)) != APICRED_OK) {
				s_url_free(prev);
				break;
			}
			ac_request_set_url(&R, url);
			s_url_free(prev);
			nquery = q;
		}
		rc = ac_layer_apply(L, &R, cred, now);
		if (rc == APICRED_OK) {
			if (L->control == AC_SUFFICIENT)
				break;
			continue;
		}
		ac_cred_truncate(cred, mark);
		if (L->control == AC_REQUIRED)
			break;
		/* Never a silent skip: say which layer and why. */
		ac_log(st->ctx, LOG_NOTICE, st->svc->name, "%s layer %d (%s) skipped: %s",
		       s_control_name[L->control], L->index + 1, L->provider, apicred_errmsg());
		++*skipped;
		rc = APICRED_OK;
	}
	ac_request_fini(&R);
	s_url_free(url);
	return rc;
}

int ac_stack_apply(struct ac_stack *st, size_t upto, const apicred_request *req,
                   apicred_cred *cred, int64_t now)
{
	size_t skipped = 0;

	return s_walk(st, upto, req, cred, now, &skipped);
}

/* ---- the stack's output, kept -----------------------------------------------
 * When every layer's apply depends on its state and session alone
 * (host->apply_static), what a get adds changes only with a session: a get
 * copies the output the last walk kept for as long as the sessions it came
 * from are current and fresh, without calling a provider. Each snapshot is
 * immutable and replaced whole, by one thread at a time, which neither
 * locks nor waits: the one that next fetches frees the replaced ones. */

/* Whether the sessions a snapshot came from still serve a get at now. */
AC_HOT static bool s_sessions_fresh(const struct ac_used *sess, size_t n, int64_t now)
{
	for (size_t i = 0; i < n; i++) {
		const struct ac_layer *L = sess[i].layer;
		struct ac_session *s = atomic_load_explicit(&L->session, memory_order_acquire);

		if (!s || s->gen != sess[i].gen || !ac_session_fresh(L, s, now))
			return false;
	}
	return true;
}

AC_HOT static bool s_snap_valid(struct ac_stack *st, const struct ac_snap *sn, int64_t now)
{
	if (!s_sessions_fresh(sn->sess, sn->nsess, now))
		return false;
	/* The wall clock, as apply reads it: it may jump (mtls's expiry). */
	return sn->until_wall_ms == INT64_MAX || ac_now_wall(st->ctx) < sn->until_wall_ms;
}

bool ac_snap_get(struct ac_stack *st, apicred_cred *cred, int64_t now)
{
	struct ac_snap *sn = atomic_load_explicit(&st->snap, memory_order_acquire);

	if (!sn || !s_snap_valid(st, sn, now))
		return false;
	/* A loop that hands the same cred back gets the same bytes: nothing
	 * to wipe, nothing to copy (its curl header lines included: they
	 * hold what its arena holds, and ac_cred_slist reuses them). */
	if (cred->snap_serial == sn->serial)
		return true;
	return ac_cred_from_snap(cred, sn);
}

void ac_snap_fini(struct ac_stack *st)
{
	ac_snap_free(atomic_load(&st->snap));
	while (st->snap_dead) {
		struct ac_snap *next = st->snap_dead->dead_next;
		ac_snap_free(st->snap_dead);
		st->snap_dead = next;
	}
}

/* Whether st's output may be kept at all: no layer's output changes
 * without its session, none failed, and debug traces are off (they show
 * each layer's decisions). */
static bool s_snap_possible(const struct ac_stack *st)
{
	if (st->ctx->log_level >= LOG_DEBUG)
		return false;
	for (size_t i = 0; i < st->nlayers; i++)
		if (!st->layers[i].apply_static || st->layers[i].fail_code)
			return false;
	return true;
}

/* A snapshot of cred, the output of a whole walk at now that skipped no
 * layer, of a stack where s_snap_possible; NULL when a session was
 * replaced or fell due meanwhile (it would never serve). */
static struct ac_snap *s_snap_make(struct ac_stack *st, const apicred_cred *cred,
                                   int64_t now)
{
	struct ac_used sess[AC_MAX_LAYERS];
	struct ac_snap *sn;
	int64_t until = INT64_MAX;
	size_t nsess = 0;

	for (size_t i = 0; i < st->nlayers; i++) {
		const struct ac_layer *L = &st->layers[i];

		if (L->static_until_wall_ms && L->static_until_wall_ms < until)
			until = L->static_until_wall_ms;
	}
	for (size_t k = 0; k < cred->nlayers; k++) {
		const struct ac_layer *L = cred->layers[k].layer;
		if (ac_layer_fetches(L))
			sess[nsess++] = cred->layers[k];
	}
	if (!s_sessions_fresh(sess, nsess, now) || !(sn = ac_snap_new(cred)))
		return NULL;
	sn->until_wall_ms = until;
	sn->nsess = nsess;
	memcpy(sn->sess, sess, nsess * sizeof(sess[0]));
	return sn;
}

int ac_stack_get(struct ac_stack *st, const apicred_request *req, apicred_cred *cred,
                 int64_t now)
{
	struct ac_snap *sn, *old;
	size_t skipped = 0;
	int rc = s_walk(st, st->nlayers, req, cred, now, &skipped);

	/* A stack that signs each request never keeps its output: its gets
	 * skip the atomic exchange below, a write to a line all threads share. */
	if (rc != APICRED_OK || skipped || !s_snap_possible(st))
		return rc;
	/* One thread at a time makes the next one; the others go on. */
	if (atomic_exchange_explicit(&st->snap_busy, true, memory_order_acquire))
		return rc;
	old = atomic_load_explicit(&st->snap, memory_order_acquire);
	if ((!old || !s_snap_valid(st, old, now)) && (sn = s_snap_make(st, cred, now))) {
		atomic_store_explicit(&st->snap, sn, memory_order_release);
		if (old) {
			old->tag = ac_ebr_advance();
			old->dead_next = st->snap_dead;
			st->snap_dead = old;
		}
	}
	atomic_store_explicit(&st->snap_busy, false, memory_order_release);
	return rc;
}

int ac_stack_carried(struct ac_layer *L, const char *method, const char *url,
                     apicred_cred **out)
{
	struct ac_stack *st = L->stack;
	apicred_request r = APICRED_REQUEST_INIT;
	int rc;

	*out = NULL;
	if (L->carry == AC_CARRY_NEVER ||
	    (L->carry == AC_CARRY_SAME_ORIGIN && !ac_url_same_origin(st->origin, url)))
		return APICRED_OK;
	if ((rc = apicred_cred_new(out)) != APICRED_OK)
		return rc;
	r.method = method;
	r.url = url;
	rc = ac_stack_apply(st, (size_t)L->index, &r, *out, ac_now_fast(st->ctx));
	if (rc != APICRED_OK) {
		apicred_cred_free(*out);
		*out = NULL;
	}
	return rc;
}

const char *ac_content_type(const apicred_request *req, bool *in_headers)
{
	const char *const *h = req->size >= sizeof(*req) ? req->headers : NULL;
	const unsigned char *b = req->body;
	size_t i = 0;

	if (in_headers)
		*in_headers = false;
	for (; h && *h; h++) {
		if (strncasecmp(*h, "Content-Type:", 13) == 0) {
			if (in_headers)
				*in_headers = true;
			return *h + 13 + strspn(*h + 13, " \t");
		}
	}
	if (req->content_type || !b || !req->body_len)
		return req->content_type;
	/* What libcurl would send: a form, unless the body looks like JSON. */
	while (i < req->body_len && b[i] && strchr(" \t\r\n", b[i]))
		i++;
	return i < req->body_len && (b[i] == '{' || b[i] == '[')
	       ? "application/json" : "application/x-www-form-urlencoded";
}

void ac_request_init(struct ac_request *R, const apicred_request *req)
{
	R->r = *req;
	R->self = R;
	R->parsed = false;
	R->items = NULL;
	R->nitems = 0;
	if (req->body && req->body_len)
		R->r.content_type = ac_content_type(req, NULL);
}

void ac_request_set_url(struct ac_request *R, const char *url)
{
	ac_request_fini(R);
	R->r.url = url;
}

void ac_request_fini(struct ac_request *R)
{
	if (R->items != R->inline_items)
		free(R->items);
	R->items = NULL;
	R->parsed = false;
}
