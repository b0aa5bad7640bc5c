/*
 * store_redis.c - the shared store in Redis, for a fleet of hosts
 * (cache.store = "redis://[:password@]host[:port][/db]"), through hiredis.
 *
 * Keys: "apicred:NAME" holds a sealed entry and expires with it;
 * "apicred:NAME:lock" is the entry's lock: SET NX PX with a random owner,
 * released by compare-and-delete (or, for a lease after a failed fetch,
 * compare-and-PEXPIRE), so a holder that dies loses it when it expires and
 * one that outlived it cannot release someone else's.
 *
 * One connection per context, used under a mutex, with short connect and
 * command time-outs. After a failure the store is not tried again until a
 * back-off (1 s, doubling to 30 s) has passed: callers never wait for a
 * server that is down. A forked child opens its own connection.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "store.h"

#define S_CONNECT_TIMEOUT_MS 250
#define S_COMMAND_TIMEOUT_MS 500
#define S_BACKOFF_MIN_MS 1000
#define S_BACKOFF_MAX_MS 30000

/* Compare-and-delete: the value (or its first #ARGV[1] bytes) must match. */
static const char s_cad_prefix[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
	"return 0";
static const char s_cad_exact[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
	"return 0";
static const char s_cap_exact[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then "
	"return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
	"return 0";

struct s_redis {
	char *host;
	int port;
	char *password;   /* a secret: wiped */
	long db;
	pthread_mutex_t mu;
	redisContext *c;  /* under mu */
	int failures;     /* under mu */
	int64_t down_until_ms;
};

static void s_drop_inlock(struct s_redis *r)
{
	if (r->c) {
		redisFree(r->c);
		r->c = NULL;
	}
}

/* Marks the server down (closing the connection) and says why. */
static int s_fail_inlock(struct s_redis *r, const char *what, const char *why)
{
	int64_t wait = S_BACKOFF_MIN_MS;
	int rc;

	for (int i = 0; i < r->failures && wait < S_BACKOFF_MAX_MS; i++)
		wait *= 2;
	if (wait > S_BACKOFF_MAX_MS)
		wait = S_BACKOFF_MAX_MS;

	r->failures++;
	r->down_until_ms = ac_real_ms() + wait;
	/* why may be the context's own errstr: use it before freeing that. */
	rc = ac_error(APICRED_ERR_UNAVAILABLE, "%s: %s (next attempt in %lld ms)", what,
	              why && *why ? why : "no answer", (long long)wait);
	s_drop_inlock(r);
	return rc;
}

static redisReply *s_reply_check_inlock(struct s_redis *r, redisReply *rep, const char *what,
                                        int *rc)
{
	if (!rep) {
		*rc = s_fail_inlock(r, what, r->c ? r->c->errstr : NULL);
		return NULL;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		*rc = ac_error(APICRED_ERR_UNAVAILABLE, "%s: the server said: %.200s", what, rep->str);
		freeReplyObject(rep);
		return NULL;
	}
	*rc = APICRED_OK;
	return rep;
}

static int s_connect_inlock(struct s_redis *r)
{
	struct timeval ct = { 0, S_CONNECT_TIMEOUT_MS * 1000 };
	struct timeval cmd = { 0, S_COMMAND_TIMEOUT_MS * 1000 };
	redisReply *rep;
	int rc;

	if (r->c)
		return APICRED_OK;
	if (ac_real_ms() < r->down_until_ms)
		return ac_error(APICRED_ERR_UNAVAILABLE, "down; next attempt in %lld ms",
		                (long long)(r->down_until_ms - ac_real_ms()));
	r->c = redisConnectWithTimeout(r->host, r->port, ct);
	if (!r->c || r->c->err)
		return s_fail_inlock(r, "cannot connect", r->c ? r->c->errstr : "out of memory");
	if (redisSetTimeout(r->c, cmd) != REDIS_OK)
		return s_fail_inlock(r, "cannot set a time-out", r->c->errstr);
	if (r->password) {
		rep = s_reply_check_inlock(r, redisCommand(r->c, "AUTH %s", r->password), "AUTH", &rc);
		if (!rep) {
			s_drop_inlock(r);
			return rc;
		}
		freeReplyObject(rep);
	}
	if (r->db) {
		rep = s_reply_check_inlock(r, redisCommand(r->c, "SELECT %ld", r->db), "SELECT", &rc);
		if (!rep) {
			s_drop_inlock(r);
			return rc;
		}
		freeReplyObject(rep);
	}
	return APICRED_OK;
}

/* Runs one command; *rep is NULL on error (rc set). */
static int s_command(struct ac_store *st, redisReply **rep, const char *what, int argc,
                     const char **argv, const size_t *lens)
{
	struct s_redis *r = st->impl;
	int rc;

	*rep = NULL;
	pthread_mutex_lock(&r->mu);
	rc = s_connect_inlock(r);
	if (rc == APICRED_OK) {
		*rep = s_reply_check_inlock(r, redisCommandArgv(r->c, argc, argv, lens), what, &rc);
		if (*rep)
			r->failures = 0;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static void s_key(char *buf, size_t size, const char *name, const char *suffix)
{
	snprintf(buf, size, "apicred:%s%s", name, suffix);
}

static int s_get(struct ac_store *st, const char *name, unsigned char **blob, size_t *len)
{
	char key[96];
	const char *argv[] = { "GET", key };
	size_t lens[2] = { 3, 0 };
	redisReply *rep;
	int rc;

	s_key(key, sizeof(key), name, "");
	lens[1] = strlen(key);
	if ((rc = s_command(st, &rep, "GET", 2, argv, lens)) != APICRED_OK)
		return rc;
	if (rep->type != REDIS_REPLY_STRING || rep->len > AC_STORE_MAX_BLOB) {
		rc = rep->type == REDIS_REPLY_NIL ? AC_STORE_MISS
		     : ac_error(APICRED_ERR_UNAVAILABLE, "GET: unexpected reply");
	} else if (!(*blob = malloc(rep->len + 1))) {
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
	} else {
		memcpy(*blob, rep->str, rep->len);
		*len = rep->len;
	}
	if (rep->type == REDIS_REPLY_STRING)
		OPENSSL_cleanse(rep->str, rep->len);
	freeReplyObject(rep);
	return rc;
}

static int s_put(struct ac_store *st, const char *name, const unsigned char *blob, size_t len,
                 int64_t ttl_ms)
{
	char key[96], px[32];
	const char *argv[] = { "SET", key, (const char *)blob, "PX", px };
	size_t lens[5] = { 3, 0, len, 2, 0 };
	redisReply *rep;
	int rc;

	s_key(key, sizeof(key), name, "");
	lens[1] = strlen(key);
	lens[4] = (size_t)snprintf(px, sizeof(px), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
	if ((rc = s_command(st, &rep, "SET", 5, argv, lens)) == APICRED_OK)
		freeReplyObject(rep);
	return rc;
}

/* EVAL of a compare-and-delete script: APICRED_OK if it deleted. */
static int s_cad(struct ac_store *st, const char *script, const char *key, const void *value,
                 size_t len)
{
	const char *argv[] = { "EVAL", script, "1", key, value };
	size_t lens[5] = { 4, strlen(script), 1, strlen(key), len };
	redisReply *rep;
	int rc;

	if ((rc = s_command(st, &rep, "EVAL", 5, argv, lens)) != APICRED_OK)
		return rc;
	rc = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? APICRED_OK : AC_STORE_MISS;
	freeReplyObject(rep);
	return rc;
}

static int s_del(struct ac_store *st, const char *name, const unsigned char *prefix,
                 size_t plen)
{
	char key[96];
	const char *argv[] = { "DEL", key };
	size_t lens[2] = { 3, 0 };
	redisReply *rep;
	int rc;

	s_key(key, sizeof(key), name, "");
	if (plen)
		return s_cad(st, s_cad_prefix, key, prefix, plen);
	lens[1] = strlen(key);
	if ((rc = s_command(st, &rep, "DEL", 2, argv, lens)) != APICRED_OK)
		return rc;
	rc = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? APICRED_OK : AC_STORE_MISS;
	freeReplyObject(rep);
	return rc;
}

static int s_trylock(struct ac_store *st, const char *name, int64_t ttl_ms,
                     struct ac_store_lock *lk)
{
	char key[96], px[32];
	unsigned char r[16];
	const char *argv[] = { "SET", key, lk->owner, "NX", "PX", px };
	size_t lens[6] = { 3, 0, 32, 2, 2, 0 };
	redisReply *rep;
	int rc;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return ac_error(APICRED_ERR_INTERNAL, "RAND_bytes failed");
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(lk->owner + 2 * i, 3, "%02x", r[i]);
	s_key(key, sizeof(key), name, ":lock");
	lens[1] = strlen(key);
	lens[5] = (size_t)snprintf(px, sizeof(px), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
	if ((rc = s_command(st, &rep, "SET NX", 6, argv, lens)) != APICRED_OK)
		return rc;
	rc = rep->type == REDIS_REPLY_NIL ? AC_STORE_BUSY : APICRED_OK;
	freeReplyObject(rep);
	return rc;
}

static void s_unlock(struct ac_store *st, const char *name, struct ac_store_lock *lk,
                     int64_t hold_ms)
{
	char key[96], px[32];
	const char *argv[] = { "EVAL", s_cap_exact, "1", key, lk->owner, px };
	size_t lens[6] = { 4, sizeof(s_cap_exact) - 1, 1, 0, strlen(lk->owner), 0 };
	redisReply *rep;

	s_key(key, sizeof(key), name, ":lock");
	if (hold_ms <= 0) {
		if (s_cad(st, s_cad_exact, key, lk->owner, strlen(lk->owner)) > APICRED_OK)
			ac_error_clear(); /* it expires by itself */
		return;
	}
	lens[3] = strlen(key);
	lens[5] = (size_t)snprintf(px, sizeof(px), "%lld", (long long)hold_ms);
	if (s_command(st, &rep, "EVAL", 6, argv, lens) == APICRED_OK)
		freeReplyObject(rep);
	else
		ac_error_clear(); /* it expires by itself */
}

static void s_after_fork(struct ac_store *st)
{
	struct s_redis *r = st->impl;

	/* The parent's socket is not ours to use; closing our copy is. */
	pthread_mutex_init(&r->mu, NULL);
	s_drop_inlock(r);
}

static void s_free(struct ac_store *st)
{
	struct s_redis *r = st->impl;

	s_drop_inlock(r);
	pthread_mutex_destroy(&r->mu);
	free(r->host);
	if (r->password) {
		OPENSSL_cleanse(r->password, strlen(r->password));
		free(r->password);
	}
	free(r);
	free(st->desc);
	free(st);
}

static const struct ac_store_ops s_ops = {
	.get = s_get,
	.put = s_put,
	.del = s_del,
	.trylock = s_trylock,
	.unlock = s_unlock,
	.after_fork = s_after_fork,
	.free = s_free,
};

/* redis://[:password@]host[:port][/db], parsed by libcurl's URL parser. */
int ac_store_redis_open(struct ac_ctx *ctx, const char *url, struct ac_store **out)
{
	CURLU *u = curl_url();
	struct ac_store *st = calloc(1, sizeof(*st));
	struct s_redis *r = calloc(1, sizeof(*r));
	char *host = NULL, *port = NULL, *path = NULL, *pass = NULL, *end = NULL;
	int rc = APICRED_OK;

	if (!u || !st || !r) {
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		rc = ac_error(APICRED_ERR_CONFIG, "cache.store: not a redis://[:password@]host"
		              "[:port][/db] URL");
		goto out;
	}
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE);
	r->port = port ? atoi(port) : 6379;
	errno = 0;
	r->db = path && path[0] == '/' && path[1] ? strtol(path + 1, &end, 10) : 0;
	if (r->port <= 0 || r->port > 65535 || (end && (*end || errno || r->db < 0))) {
		rc = ac_error(APICRED_ERR_CONFIG, "cache.store: a redis URL's port must be "
		              "1..65535 and its path a database number");
		goto out;
	}
	/* [::1] → ::1 for hiredis. */
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	r->host = ac_strdup(host);
	r->password = pass && *pass ? ac_strdup(pass) : NULL;
	if (!r->host || (pass && *pass && !r->password) ||
	    asprintf(&st->desc, "redis://%s:%d/%ld", host, r->port, r->db) < 0) {
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&r->mu, NULL);
	st->ops = &s_ops;
	st->ctx = ctx;
	st->impl = r;
	atomic_init(&st->warned_ms, 0);
	*out = st;
	st = NULL;
	r = NULL;
out:
	if (r) {
		free(r->host);
		if (r->password)
			OPENSSL_cleanse(r->password, strlen(r->password));
		free(r->password);
		free(r);
	}
	if (st)
		free(st->desc);
	free(st);
	if (pass)
		OPENSSL_cleanse(pass, strlen(pass));
	curl_free(pass);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}
