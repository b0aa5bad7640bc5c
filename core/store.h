/*
 * store.h - what the shared store's backends (store_file.c, store_redis.c)
 * offer store.c. Nothing here is ABI.
 *
 * A backend stores opaque sealed blobs under names (64 hex digits) and
 * keeps one lock per name. Every operation is bounded in time: a backend
 * that cannot answer quickly returns an error, and store.c falls back to
 * the process's own cache. Backends report errors with ac_error(), naming
 * the store, never a value.
 */
#ifndef APICRED_STORE_H
#define APICRED_STORE_H

#include <openssl/evp.h>

#include "internal.h"

#define AC_STORE_MAX_BLOB (64 * 1024)

struct ac_store_lock {
	int fd;          /* file: the locked lock file */
	char owner[33];  /* redis: our random lock value */
};

struct ac_store_ops {
	/* APICRED_OK and a malloc'ed copy, AC_STORE_MISS, or an error. */
	int (*get)(struct ac_store *s, const char *name, unsigned char **blob, size_t *len);
	/* Replaces the entry atomically; it may vanish after ttl_ms. */
	int (*put)(struct ac_store *s, const char *name, const unsigned char *blob, size_t len,
	           int64_t ttl_ms);
	/* Deletes the entry if it starts with prefix (plen 0: whatever it holds). */
	int (*del)(struct ac_store *s, const char *name, const unsigned char *prefix, size_t plen);
	/* Takes the entry's lock without waiting: APICRED_OK, AC_STORE_BUSY or an
	 * error. A holder that dies loses it after ttl_ms at the latest. */
	int (*trylock)(struct ac_store *s, const char *name, int64_t ttl_ms,
	               struct ac_store_lock *lk);
	/* Releases it; with hold_ms > 0 (after a failed fetch) nobody takes it
	 * for hold_ms more, so the next fetch, anywhere, waits that long. */
	void (*unlock)(struct ac_store *s, const char *name, struct ac_store_lock *lk,
	               int64_t hold_ms);
	/* In a forked child: forget the parent's connections and locks. */
	void (*after_fork)(struct ac_store *s);
	void (*free)(struct ac_store *s);
};

struct ac_store {
	const struct ac_store_ops *ops;
	struct ac_ctx *ctx;
	char *desc;                /* "file:DIR" or "redis://host:port/db": no password */
	_Atomic int64_t warned_ms; /* last warning, to say it once a minute */
	/* Fetched once, by the first layer that shares sessions (not by open:
	 * a process of API keys alone never sets OpenSSL up). */
	_Atomic(EVP_CIPHER *) aead;
	void *impl;
};

int ac_store_file_open(struct ac_ctx *ctx, const char *dir, struct ac_store **out);
int ac_store_redis_open(struct ac_ctx *ctx, const char *url, struct ac_store **out);

/* Store time-outs are real time (ac_real_ms) even when a test drives the
 * cache's clock. */

#endif /* APICRED_STORE_H */
