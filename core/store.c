/*
 * store.c - the shared store behind the in-process cache (cache.store):
 * entry names and keys, sealing, and the single flight across processes
 * that cache.c asks for when a process has no valid session or one is due.
 *
 * An entry's identity is everything that decides which session a fetch
 * gets: the service's origin, the provider, its configuration with every
 * secret resolved, the layer's carry rule and the identities of the layers
 * above (their output reaches the token endpoint). HKDF turns it into the
 * entry's name and its AEAD key: only a process holding the same secrets
 * can find, read or forge an entry, and no secret shows in a name.
 *
 * Entry: version (1) | nonce (12) | AES-256-GCM ciphertext | tag (16), with
 * the name as associated data. Plaintext: issued and expires (wall-clock
 * ms, big-endian) | the provider's session_export bytes. Version and nonce
 * also name the entry's contents, for compare-and-delete after a 401.
 *
 * A store that fails never fails a get: the layer fetches for itself and
 * the store is named in a warning at most once a minute.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "internal.h"
#include "store.h"

#define S_VERSION 1
#define S_NONCE 12
#define S_TAG 16
#define S_HEAD (1 + S_NONCE)
#define S_TIMES 16
#define S_WARN_EVERY_MS 60000
#define S_POLL_MAX_MS 50

static const char s_salt[] = "apicred shared store v1";

static void s_sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Says why the store was skipped, once a minute (debug otherwise), and
 * clears the detail: the get goes on without the store. */
static void s_warn(struct ac_store *st, const char *service)
{
	int64_t now = ac_real_ms(), last = atomic_load(&st->warned_ms);
	bool loud = last == 0 || now - last >= S_WARN_EVERY_MS;

	if (loud && !atomic_compare_exchange_strong(&st->warned_ms, &last, now))
		loud = false;
	ac_log(st->ctx, loud ? LOG_WARNING : LOG_DEBUG, service,
	       "shared store %s: %s; using this process's own cache", st->desc,
	       *apicred_errmsg() ? apicred_errmsg() : "failed");
	ac_error_clear();
}

/* ---- opening --------------------------------------------------------------- */

int ac_store_spec_check(const char *spec)
{
	if (strcmp(spec, "none") == 0 || strcmp(spec, "file") == 0)
		return APICRED_OK;
	if (strncmp(spec, "file:", 5) == 0) {
		if (spec[5] != '/')
			return ac_error(APICRED_ERR_CONFIG, "cache.store: \"file:DIR\" needs an "
			                "absolute DIR");
		return APICRED_OK;
	}
	if (strncmp(spec, "redis://", 8) == 0)
		return APICRED_OK; /* parsed by ac_store_redis_open */
	return ac_error(APICRED_ERR_CONFIG, "cache.store must be \"none\", \"file\", "
	                "\"file:DIR\" or \"redis://[:password@]host[:port][/db]\"");
}

/* $XDG_RUNTIME_DIR/apicred, else /run/apicred for root, else /tmp/apicred-UID. */
static char *s_default_dir(void)
{
	const char *xdg = secure_getenv("XDG_RUNTIME_DIR");
	char *dir = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&dir, "%s/apicred", xdg) < 0)
			dir = NULL;
	} else if (geteuid() == 0) {
		dir = ac_strdup("/run/apicred");
	} else if (asprintf(&dir, "/tmp/apicred-%u", (unsigned)geteuid()) < 0) {
		dir = NULL;
	}
	return dir;
}

int ac_store_open(struct ac_ctx *ctx)
{
	const char *spec = ctx->store_spec ? ctx->store_spec : "file";
	char *dir;
	int rc;

	if ((rc = ac_store_spec_check(spec)) != APICRED_OK)
		return rc;
	if (strcmp(spec, "none") == 0)
		return APICRED_OK;
	if (strncmp(spec, "redis://", 8) == 0) {
		rc = ac_store_redis_open(ctx, spec, &ctx->store);
	} else {
		dir = spec[4] == ':' ? ac_strdup(spec + 5) : s_default_dir();
		if (!dir)
			return ac_error(APICRED_ERR_NOMEM, "out of memory");
		rc = ac_store_file_open(ctx, dir, &ctx->store);
		free(dir);
	}
	return rc;
}

void ac_store_close(struct ac_ctx *ctx)
{
	if (ctx->store) {
		EVP_CIPHER_free(atomic_load(&ctx->store->aead));
		ctx->store->ops->free(ctx->store);
		ctx->store = NULL;
	}
}

void ac_store_after_fork(struct ac_ctx *ctx)
{
	if (ctx->store)
		ctx->store->ops->after_fork(ctx->store);
}

/* ---- identity, names and keys ---------------------------------------------- */

/* One length-prefixed field of the identity, so no two field lists collide. */
static bool s_field(EVP_MD_CTX *md, const void *p, size_t len)
{
	unsigned char n[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
	                       (unsigned char)(len >> 8), (unsigned char)len };

	return EVP_DigestUpdate(md, n, 4) == 1 && EVP_DigestUpdate(md, p ? p : "", len) == 1;
}

static bool s_str(EVP_MD_CTX *md, const char *s)
{
	return s ? s_field(md, s, strlen(s)) : s_field(md, "\377unset", 6);
}

/* The provider's configuration as the provider sees it (defaults applied,
 * secrets resolved), in schema order: canonical whatever the file's layout. */
static bool s_config(EVP_MD_CTX *md, struct ac_layer *L)
{
	const apicred_host *h = &L->host;
	char num[32];

	for (const apicred_schema *e = L->mod->vt.schema; e->name; e++) {
		long long ll;
		bool ok = s_str(md, e->name);

		switch (e->type) {
		case APICRED_T_STRING: case APICRED_T_URL: case APICRED_T_HEADER_NAME:
			if ((e->flags & APICRED_F_SECRET) && h->cfg_str(h, e->name)) {
				char *v;
				size_t len;
				if (h->secret(h, e->name, &v, &len) != APICRED_OK)
					return false;
				ok = ok && s_field(md, v, len);
				h->secret_free(h, v, len);
			} else {
				ok = ok && s_str(md, h->cfg_str(h, e->name));
			}
			break;
		case APICRED_T_INT:
			if (h->cfg_int(h, e->name, &ll))
				snprintf(num, sizeof(num), "%lld", ll);
			ok = ok && s_str(md, h->cfg_int(h, e->name, &ll) ? num : NULL);
			break;
		case APICRED_T_BOOL:
			ok = ok && s_str(md, h->cfg_bool(h, e->name) ? "true" : "false");
			break;
		default: /* lists and groups */
			snprintf(num, sizeof(num), "%zu", h->cfg_count(h, e->name));
			ok = ok && s_str(md, num);
			for (size_t i = 0; ok && i < h->cfg_count(h, e->name); i++) {
				const char *name = NULL, *value = NULL;
				h->cfg_item(h, e->name, i, &name, &value);
				ok = s_str(md, name) && s_str(md, value);
			}
			break;
		}
		if (!ok)
			return false;
	}
	return true;
}

static bool s_hkdf(const unsigned char *ikm, size_t len, const char *info, unsigned char *out,
                   size_t outlen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)s_salt,
		                                  sizeof(s_salt) - 1),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
		OSSL_PARAM_construct_end()
	};
	bool ok = kctx && EVP_KDF_derive(kctx, out, outlen, params) == 1;

	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok;
}

/* Whether a layer's sessions can go to the store: it fetches them and
 * its provider exports and imports them. */
static bool s_shareable(const struct ac_layer *L)
{
	const apicred_vtable_v1 *vt = L->mod ? &L->mod->vt : NULL;

	return vt && vt->fetch && vt->session_export && vt->session_import;
}

/* The store's AEAD, fetched on first need; false if OpenSSL has none. */
static bool s_aead_ready(struct ac_store *s)
{
	EVP_CIPHER *none = NULL, *c;

	if (atomic_load_explicit(&s->aead, memory_order_acquire))
		return true;
	if (!(c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)))
		return false;
	if (!atomic_compare_exchange_strong(&s->aead, &none, c))
		EVP_CIPHER_free(c); /* another layer's was first */
	return true;
}

void ac_store_layer_init(struct ac_layer *L)
{
	struct ac_stack *st = L->stack;
	static const char *const carry[] = { "same-origin", "always", "never" };
	unsigned char ikm[32], name[32];
	bool later = false;
	EVP_MD_CTX *md;
	bool ok;

	memset(&L->store, 0, sizeof(L->store));
	/* Its identity serves only this layer's entry and those below it: none
	 * of them shares sessions (API keys, signatures), no digest. */
	for (size_t i = L->index; i < st->nlayers && !later; i++)
		later = s_shareable(&st->layers[i]);
	if (!st->ctx->store || !later || !(md = EVP_MD_CTX_new()))
		return;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && s_str(md, s_salt) &&
	     s_str(md, st->origin) && s_str(md, L->provider) && s_str(md, carry[L->carry]);
	for (int i = 0; ok && i < L->index; i++)
		ok = s_field(md, st->layers[i].store.chain, sizeof(st->layers[i].store.chain));
	ok = ok && s_config(md, L) && EVP_DigestFinal_ex(md, ikm, NULL) == 1;
	EVP_MD_CTX_free(md);
	if (!ok) {
		ac_error_clear();
		ac_log(st->ctx, LOG_DEBUG, st->svc->name, "layer %d (%s): no identity for the "
		       "shared store; sessions stay in this process", L->index + 1, L->provider);
		OPENSSL_cleanse(ikm, sizeof(ikm));
		return;
	}
	memcpy(L->store.chain, ikm, sizeof(ikm));
	if (s_shareable(L) && !s_aead_ready(st->ctx->store))
		ac_log(st->ctx, LOG_WARNING, st->svc->name, "layer %d (%s): OpenSSL offers no "
		       "AES-256-GCM to seal sessions for the shared store; they stay in this "
		       "process", L->index + 1, L->provider);
	else if (s_shareable(L) && s_hkdf(ikm, sizeof(ikm), "entry name", name, sizeof(name)) &&
	         s_hkdf(ikm, sizeof(ikm), "entry key", L->store.key, sizeof(L->store.key))) {
		for (size_t i = 0; i < sizeof(name); i++)
			snprintf(L->store.name + 2 * i, 3, "%02x", name[i]);
		L->store.on = true;
	}
	OPENSSL_cleanse(ikm, sizeof(ikm));
}

/* ---- sealing --------------------------------------------------------------- */

static bool s_aad(EVP_CIPHER_CTX *c, const struct ac_layer *L, bool enc)
{
	char aad[96];
	int n = snprintf(aad, sizeof(aad), "apicred entry v%d %s", S_VERSION, L->store.name), out;

	return enc ? EVP_EncryptUpdate(c, NULL, &out, (unsigned char *)aad, n) == 1
	           : EVP_DecryptUpdate(c, NULL, &out, (unsigned char *)aad, n) == 1;
}

static int s_seal(const struct ac_layer *L, const unsigned char *pt, size_t len,
                  unsigned char **out, size_t *outlen)
{
	size_t total = S_HEAD + len + S_TAG;
	unsigned char *b = malloc(total);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	bool ok;

	/* RAND_bytes, not the injectable hook: a nonce must never repeat. */
	ok = b && c && len <= AC_STORE_MAX_BLOB && RAND_bytes(b + 1, S_NONCE) == 1 &&
	     EVP_EncryptInit_ex2(c, atomic_load(&L->stack->ctx->store->aead), L->store.key, b + 1, NULL) == 1 &&
	     s_aad(c, L, true) && EVP_EncryptUpdate(c, b + S_HEAD, &n, pt, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(c, b + S_HEAD + n, &fin) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, S_TAG, b + S_HEAD + len) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		free(b);
		return ac_error(APICRED_ERR_INTERNAL, "sealing a shared session failed");
	}
	b[0] = S_VERSION;
	*out = b;
	*outlen = total;
	return APICRED_OK;
}

/* Opens a blob; false when it is not ours, was changed or is garbled. */
static bool s_open(const struct ac_layer *L, unsigned char *b, size_t len, unsigned char **pt,
                   size_t *ptlen)
{
	EVP_CIPHER_CTX *c;
	size_t n = len - S_HEAD - S_TAG;
	int out = 0, fin = 0;
	bool ok;

	/* One more byte, zero: a provider that treats the bytes as a string
	 * cannot read past them. */
	if (len < S_HEAD + S_TAG + S_TIMES || b[0] != S_VERSION || !(*pt = calloc(1, n + 1)))
		return false;
	c = EVP_CIPHER_CTX_new();
	ok = c && EVP_DecryptInit_ex2(c, atomic_load(&L->stack->ctx->store->aead), L->store.key, b + 1, NULL) == 1 &&
	     s_aad(c, L, false) && EVP_DecryptUpdate(c, *pt, &out, b + S_HEAD, (int)n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, S_TAG, b + S_HEAD + n) == 1 &&
	     EVP_DecryptFinal_ex(c, *pt + out, &fin) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		OPENSSL_cleanse(*pt, n);
		free(*pt);
		*pt = NULL;
		return false;
	}
	*ptlen = n;
	return true;
}

static void s_put64(unsigned char *p, int64_t v)
{
	for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
		p[i] = (unsigned char)v;
}

static int64_t s_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return (int64_t)v;
}

static void s_wipe_free(void *p, size_t len)
{
	if (p) {
		OPENSSL_cleanse(p, len);
		free(p);
	}
}

/* ---- entries --------------------------------------------------------------- */

/* Reads L's entry into a new session: APICRED_OK, AC_STORE_MISS (none, or
 * one that is not usable: tampered, expired, the one cur already holds,
 * or due for refresh when refreshing) or a store error. */
static int s_load(struct ac_layer *L, const struct ac_session *cur, bool refresh,
                  struct ac_session **out)
{
	struct ac_ctx *ctx = L->stack->ctx;
	const char *svc = L->stack->svc->name;
	unsigned char *b = NULL, *pt = NULL;
	size_t len = 0, ptlen = 0;
	int64_t issued, expires, life, now = ac_now_wall(ctx), ahead;
	void *data = NULL;
	const char *why = NULL;
	int rc;

	rc = ctx->store->ops->get(ctx->store, L->store.name, &b, &len);
	if (rc == AC_STORE_MISS)
		ac_log(ctx, LOG_DEBUG, svc, "layer %d (%s): no entry in the shared store %s",
		       L->index + 1, L->provider, ctx->store->desc);
	if (rc != APICRED_OK)
		return rc;
	rc = AC_STORE_MISS;
	if (!s_open(L, b, len, &pt, &ptlen)) {
		why = "cannot be opened (tampered with, or sealed with other secrets)";
		goto out;
	}
	issued = s_get64(pt);
	expires = s_get64(pt + 8);
	life = expires - issued;
	ahead = L->refresh_ahead_ms < life / 2 ? L->refresh_ahead_ms : life / 2;
	if (life <= 0 || expires <= now) {
		why = "expired";
		goto out;
	}
	if (cur && cur->shared && memcmp(cur->sid, b, S_HEAD) == 0)
		goto out; /* the session this process has, and wants replaced */
	if (refresh && now >= expires - ahead)
		goto out; /* due: this process refreshes it, under the lock */
	if (L->mod->vt.session_import(L->state, &L->host, pt + S_TIMES, ptlen - S_TIMES,
	                              &data) != APICRED_OK) {
		ac_error_clear();
		why = "refused by the provider";
		goto out;
	}
	*out = ac_session_new(L, data, ac_now_mono(ctx) - (now - issued), issued, life);
	if (!*out) {
		L->mod->vt.session_free(L->state, data);
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	(*out)->shared = true;
	memcpy((*out)->sid, b, S_HEAD);
	ac_log(ctx, LOG_DEBUG, svc, "layer %d (%s): session from the shared store %s",
	       L->index + 1, L->provider, ctx->store->desc);
	rc = APICRED_OK;
out:
	if (why)
		ac_log(ctx, LOG_DEBUG, svc, "layer %d (%s): ignoring the shared entry: it %s",
		       L->index + 1, L->provider, why);
	s_wipe_free(pt, ptlen);
	s_wipe_free(b, len);
	return rc;
}

/* Shares a session this process fetched. */
static void s_save(struct ac_layer *L, struct ac_session *s)
{
	struct ac_ctx *ctx = L->stack->ctx;
	void *bytes = NULL;
	unsigned char *pt = NULL, *b = NULL;
	size_t n = 0, blen = 0;
	int64_t ttl = s->wall_expires_ms - ac_now_wall(ctx);
	int rc;

	if (!s->data || ttl <= 0) /* nothing to share, or nothing left of it */
		return;
	rc = L->mod->vt.session_export(L->state, &L->host, s->data, &bytes, &n);
	if (rc != APICRED_OK) {
		ac_error_clear();
		return; /* the provider keeps this one local */
	}
	if (n > AC_STORE_MAX_BLOB || !(pt = malloc(S_TIMES + n))) {
		s_wipe_free(bytes, n);
		return;
	}
	s_put64(pt, s->wall_issued_ms);
	s_put64(pt + 8, s->wall_expires_ms);
	memcpy(pt + S_TIMES, bytes, n);
	s_wipe_free(bytes, n);
	rc = s_seal(L, pt, S_TIMES + n, &b, &blen);
	s_wipe_free(pt, S_TIMES + n);
	if (rc == APICRED_OK)
		rc = ctx->store->ops->put(ctx->store, L->store.name, b, blen, ttl);
	if (rc == APICRED_OK) {
		s->shared = true;
		memcpy(s->sid, b, S_HEAD);
	} else {
		s_warn(ctx->store, L->stack->svc->name);
	}
	free(b);
}

/* How long one fetch may hold an entry's lock: its http.deadline, and a
 * second for the store. A holder killed meanwhile costs the others at most
 * this. A failed fetch holds it AC_ATTEMPT_GAP_MS more: every process
 * waiting for a session through an outage then tries once per gap between
 * them all, not once per gap each. */
static int64_t s_lock_ms(const struct ac_ctx *ctx)
{
	return ctx->http.deadline_ms + 1000;
}

int ac_store_fetch(struct ac_layer *L, struct ac_session *cur, bool refresh, ac_fetch_fn fetch,
                   struct ac_session **out, int64_t *retry_after_ms)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_store *st = ctx->store;
	const void *prev = cur ? cur->data : NULL;
	struct ac_store_lock lk = { .fd = -1 };
	int64_t lock_ms, deadline, delay = 2;
	int rc;

	if (!st || !L->store.on)
		return fetch(L, prev, out, retry_after_ms);
	lock_ms = s_lock_ms(ctx);
	deadline = ac_real_ms() + lock_ms;
	for (;;) {
		rc = s_load(L, cur, refresh, out);
		if (rc == APICRED_OK)
			return rc;
		if (rc != AC_STORE_MISS)
			goto local;
		rc = st->ops->trylock(st, L->store.name, lock_ms, &lk);
		if (rc == APICRED_OK)
			break;
		if (rc != AC_STORE_BUSY)
			goto local;
		if (refresh)
			return AC_STORE_BUSY; /* another process refreshes; we keep ours */
		if (ac_real_ms() >= deadline) {
			ac_error(APICRED_ERR_UNAVAILABLE, "an entry's lock was held for more "
			         "than %lld ms", (long long)lock_ms);
			goto local;
		}
		s_sleep_ms(delay); /* another process fetches: wait for its entry */
		delay = delay * 2 > S_POLL_MAX_MS ? S_POLL_MAX_MS : delay * 2;
	}
	/* It may have finished just before we took the lock. */
	rc = s_load(L, cur, refresh, out);
	if (rc != APICRED_OK) {
		rc = fetch(L, prev, out, retry_after_ms);
		if (rc == APICRED_OK)
			s_save(L, *out);
	}
	st->ops->unlock(st, L->store.name, &lk, rc == APICRED_OK ? 0 : AC_ATTEMPT_GAP_MS);
	return rc;
local:
	s_warn(st, L->stack->svc->name);
	return fetch(L, prev, out, retry_after_ms);
}

void ac_store_invalidate(struct ac_layer *L, const struct ac_session *s)
{
	struct ac_store *st = L->stack->ctx->store;
	int rc;

	if (!st || !L->store.on || !s->shared)
		return;
	rc = st->ops->del(st, L->store.name, s->sid, S_HEAD);
	if (rc == APICRED_OK)
		ac_log(st->ctx, LOG_DEBUG, L->stack->svc->name, "layer %d (%s): the shared entry "
		       "held the refused session: deleted", L->index + 1, L->provider);
	else if (rc > APICRED_OK)
		s_warn(st, L->stack->svc->name);
}

/* ---- apicred cache list | clear: one layer's entry ------------------------- */

int ac_store_entry(struct ac_layer *L, apicred_cache_entry *e, size_t *cleared)
{
	struct ac_ctx *ctx = L->stack->ctx;
	struct ac_store *st = ctx->store;
	unsigned char *b = NULL, *pt = NULL;
	size_t len = 0, ptlen = 0;
	int rc = APICRED_OK, got;

	if (cleared) {
		got = st->ops->del(st, L->store.name, NULL, 0);
		if (got == APICRED_OK)
			(*cleared)++;
		else if (got != AC_STORE_MISS)
			rc = got;
		goto out;
	}
	*e = (apicred_cache_entry){ sizeof(*e), L->stack->svc->name, L->index + 1, L->provider,
	                            st->desc, APICRED_ENTRY_ABSENT, 0 };
	got = st->ops->get(st, L->store.name, &b, &len);
	if (got == APICRED_OK && s_open(L, b, len, &pt, &ptlen)) {
		e->expires_at = s_get64(pt + 8) / 1000;
		e->state = s_get64(pt + 8) > ac_now_wall(ctx) ? APICRED_ENTRY_VALID
		                                              : APICRED_ENTRY_EXPIRED;
	} else if (got == APICRED_OK) {
		e->state = APICRED_ENTRY_UNREADABLE;
	} else if (got != AC_STORE_MISS) {
		rc = got;
	}
	s_wipe_free(pt, ptlen);
	s_wipe_free(b, len);
out:
	if (rc != APICRED_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", apicred_errmsg());
		rc = ac_error(rc, "shared store %s: %s", st->desc, msg);
	}
	return rc;
}
