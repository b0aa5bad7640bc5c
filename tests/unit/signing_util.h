/*
 * signing_util.h - what bench_apply and bench_dpop use: a private confdir and
 * a tiny HTTP/1.1 server on 127.0.0.1 that answers their one login each.
 * The unit tests do not: their harness is tests/unit/fixture.h, and their
 * login endpoints are the sandbox's scripted endpoint. This goes once the
 * benchmarks use that too.
 */
#ifndef SIGNING_UTIL_H
#define SIGNING_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <apicred/apicred.h>

/* ---- confdir -------------------------------------------------------------- */

/* A fresh private confdir with conf.d/ (and an apicred.conf that turns
 * fetch retries off so failures are reported at once). free() the path. */
char *sg_confdir_new(void);
/* Writes confdir/conf.d/NAME.conf, mode 0600. */
void sg_service(const char *confdir, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sg_rmrf(const char *path);

/* ---- the HTTP server ----------------------------------------------------- */

struct sg_server {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t mu;
	/* Answers, consumed in order; once used up, the last one repeats. */
	struct { int status; char body[2048]; } answers[16];
	size_t nanswers, next;
	size_t nreqs;        /* requests served so far */
};

void sg_server_start(struct sg_server *s);
void sg_server_stop(struct sg_server *s);
/* Replaces the answer list with one answer... */
void sg_server_answer(struct sg_server *s, int status, const char *body);
/* ...or appends one to it. */
void sg_server_then(struct sg_server *s, int status, const char *body);
size_t sg_server_count(struct sg_server *s);

#endif
