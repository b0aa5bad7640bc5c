/*
 * signing_util.h - what the hmac, tcx and oauth2 unit tests (and bench_apply) share:
 * a private confdir, a ctx with an injected clock and random source, a tiny
 * HTTP/1.1 server on 127.0.0.1 that plays the login endpoints, and the
 * expected values computed with OpenSSL directly (never with the provider).
 */
#ifndef SIGNING_UTIL_H
#define SIGNING_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <apicred/apicred.h>

/* ---- clock and random hooks --------------------------------------------- */

/* Both clocks read these (milliseconds); tests move them forward. */
extern int64_t sg_mono_ms;
extern int64_t sg_wall_ms;

/* Random bytes: sg_random_pattern[i % sg_random_len], restarting at 0 on
 * every call, so each request's dyn is predictable. Default: 0, 1, ... 35. */
extern unsigned char sg_random_pattern[256];
extern size_t sg_random_len;
void sg_random_reset(void);

/* ---- confdir and ctx ----------------------------------------------------- */

/* A fresh private confdir with conf.d/ (and an apicred.conf that turns
 * fetch retries off so failures are reported at once). free() the path. */
char *sg_confdir_new(void);
/* Writes confdir/conf.d/NAME.conf, mode 0600. */
void sg_service(const char *confdir, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sg_rmrf(const char *path);
/* apicred_open_opts with the hooks above, no background thread, moduledir
 * $APICRED_TEST_MODULEDIR; log lines are kept in sg_log_text. */
apicred_ctx *sg_open(const char *confdir);
extern char sg_log_text[16384];

/* ---- the HTTP server ----------------------------------------------------- */

#define SG_MAX_REQS 32

struct sg_req {
	char method[16];
	char target[2048];   /* path?query as sent */
	char headers[4096];  /* raw header lines */
	char body[4096];
	size_t body_len;
};

struct sg_server {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t mu;
	/* Answers, consumed in order; once used up, the last one repeats. */
	struct { int status; char headers[512]; char body[2048]; } answers[16];
	size_t nanswers, next;
	struct sg_req reqs[SG_MAX_REQS];
	size_t nreqs;        /* requests served so far */
};

void sg_server_start(struct sg_server *s);
void sg_server_stop(struct sg_server *s);
/* Replaces the answer list with one answer... */
void sg_server_answer(struct sg_server *s, int status, const char *body);
/* ...or appends one to it. */
void sg_server_then(struct sg_server *s, int status, const char *body);
/* Both with extra response header lines, each ending in CRLF. */
void sg_server_answer_headers(struct sg_server *s, int status, const char *headers,
                              const char *body);
void sg_server_then_headers(struct sg_server *s, int status, const char *headers,
                            const char *body);
size_t sg_server_count(struct sg_server *s);
/* Copy of the i-th request (0-based). */
struct sg_req sg_server_req(struct sg_server *s, size_t i);
/* A header's value in a recorded request, or NULL (static buffer). */
const char *sg_req_header(const struct sg_req *r, const char *name);
/* A query parameter of a recorded request, raw (static buffer), or NULL. */
const char *sg_req_query(const struct sg_req *r, const char *name);

/* ---- expected values, with OpenSSL --------------------------------------- */

/* Lowercase hex HMAC-SHA256; returns a per-thread static buffer. */
const char *sg_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen);
/* base64(hex(sha1(j + pub + dyn)) ":" dyn); returns a static buffer. */
const char *sg_tcx_pass(const char *j, const char *pub, const char *dyn);
/* Standard base64; returns a per-thread static buffer. */
const char *sg_base64(const void *in, size_t len);

/* apicred_get into sg_cred (reused); body may be NULL. */
extern apicred_cred *sg_cred;
int sg_get(apicred_ctx *ctx, const char *service, const char *method, const char *url,
           const char *body, const char *content_type);
/* Items of sg_cred, or NULL. */
const char *sg_header(const char *name);
const char *sg_query(const char *name);

#endif
