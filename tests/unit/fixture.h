/*
 * fixture.h - the unit tests' one harness: a throw-away configuration, and
 * contexts opened on it with an injected clock and random source.
 *
 * Each fixture is a 0700 temp directory holding a confdir (apicred.conf,
 * conf.d/, secrets/) and a module directory into which the test links the
 * provider modules it needs: the real ones from $APICRED_TEST_MODULEDIR
 * (providers/.libs) and the test ones from $top_builddir/tests/modules/.libs
 * (or it uses the built providers directory as it is: fx_modules_built).
 * Contexts are opened with a logger that keeps every message, so tests can
 * check what was logged and that no secret ever was.
 */
#ifndef APICRED_TEST_FIXTURE_H
#define APICRED_TEST_FIXTURE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <apicred/apicred.h>

/* ---- injected clock and random bytes ------------------------------------- */

/* Contexts opened with FX_CLOCK read these (milliseconds); tests move them
 * forward (fx_advance moves both). fx_new resets them to FX_MONO0/FX_WALL0. */
#define FX_MONO0 1000000
#define FX_WALL0 1546214399000LL /* 2018-12-30 23:59:59 UTC */
extern _Atomic int64_t fx_mono_ms, fx_wall_ms;
void fx_advance(int64_t ms);

/* With FX_RANDOM, random bytes are fx_random_pattern[i % fx_random_len],
 * restarting at 0 on every call, so each request's nonce is predictable.
 * fx_random_reset (and fx_new): 0, 1, ... 35. */
extern unsigned char fx_random_pattern[256];
extern size_t fx_random_len;
void fx_random_reset(void);

/* fx.hooks: the test hooks every context of the fixture is opened with. */
#define FX_CLOCK 1u
#define FX_RANDOM 2u

typedef struct fx {
	char dir[256];      /* the temp directory */
	char conf[300];     /* dir/conf: the confdir */
	char mod[300];      /* dir/modules: the moduledir */
	const char *moddir; /* what contexts are opened with: mod, or the built one */
	unsigned hooks;     /* FX_CLOCK | FX_RANDOM, before opening */
	apicred_ctx *ctx;   /* after fx_open */
	apicred_cred *cred; /* made by fx_new; what fx_get and fx_request fill */
	char *log;          /* every logged line, "LEVEL service: message\n" */
	size_t log_len;
	int log_warnings;   /* lines logged at LOG_WARNING or more severe */
	const char *secrets[16]; /* values that must never show up anywhere */
	int nsecrets;
} fx;

/* Creates the directories (0700); aborts the test on failure. */
fx *fx_new(void);
/* Closes the context and removes the directory tree. */
void fx_free(fx *f);

/* Links $moddir/<name>.so to the real provider or the test module. */
void fx_module(fx *f, const char *name);
/* Every service needs a url; the tests that do not care about the origin
 * get this one. */
#define FX_URL "url = \"https://127.0.0.1/\";\n"
/* Writes conf/conf.d/<name>.conf (mode) from a printf format, with FX_URL
 * appended unless the text sets url on a line of its own. */
void fx_service(fx *f, const char *name, mode_t mode, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Writes conf/conf.d/<name>.conf (mode) exactly as given. */
void fx_service_raw(fx *f, const char *name, mode_t mode, const char *text);
/* Writes conf/apicred.conf. */
void fx_global(fx *f, const char *text);
/* Replaces conf/REL (mode 0600) as a careful admin does: a new file renamed
 * over the old one, so a reader never sees it missing or half written. */
void fx_replace(fx *f, const char *rel, const char *text);
/* Writes conf/secrets/<name> with exactly value (mode); remembers value as
 * a secret that must not leak. Returns the path. */
const char *fx_secret(fx *f, const char *name, const char *value, mode_t mode);
/* Replaces conf/secrets/<name> atomically (new inode, mode 0600). */
void fx_secret_replace(fx *f, const char *name, const char *value);
/* Remembers a secret value used some other way (literal, env:). */
void fx_remember(fx *f, const char *value);

/* Uses $APICRED_TEST_MODULEDIR itself (every provider as built) as the
 * moduledir instead of dir/modules. */
void fx_modules_built(fx *f);

/* Opens a context on the confdir and moduledir with flags (APICRED_OPEN_*),
 * the fixture's logger and f->hooks; the caller closes it. */
apicred_ctx *fx_ctx(fx *f, unsigned flags);
/* Opens f->ctx (no background thread). */
void fx_open(fx *f);

/* apicred_get(f->ctx, service, NULL, f->cred). */
int fx_get(fx *f, const char *service);
/* apicred_get(ctx, service, request, f->cred) for a request of method, url,
 * body (may be NULL) and content type (may be NULL). */
int fx_request(fx *f, apicred_ctx *ctx, const char *service, const char *method,
               const char *url, const char *body, const char *content_type);
/* A header or query parameter of f->cred, or NULL. */
const char *fx_header(const fx *f, const char *name);
const char *fx_query(const fx *f, const char *name);

/* Asserts rc == expected; and that apicred_errmsg() mentions the service
 * and every string of the NULL-terminated list, and holds no secret. */
void fx_assert_err(fx *f, int rc, int expected, const char *service, ...);

/* Asserts the credential holds exactly the given headers, in any order:
 * "Name: value" strings, NULL-terminated. */
void fx_assert_headers(fx *f, ...);

/* Asserts that neither s nor the log contains a remembered secret. */
void fx_assert_no_secret(fx *f, const char *s);

/* Whether the log contains s (safe while the library logs from other
 * threads). */
int fx_logged(fx *f, const char *s);

/* ---- the counter test module -------------------------------------------- */

/* tests/modules/counter.c's control block (counter.h): the test counts,
 * fails, delays and blocks the module's fetches through it. */
#include "../modules/counter.h"

/* The control block of the counter module fx_module(f, "counter") links:
 * one copy, as the core's dlopen of the link finds the module loaded. Its
 * settings are reset: 600 s lifetimes, no failure, no block, no delay. */
struct counter_control *fx_counter(void);

/* ---- the sandbox ---------------------------------------------------------- */

/* tests/sandbox/sandbox.py on its plain HTTP listener only: the unit tests'
 * login endpoints. Its scripted endpoint, fx_sandbox.url + "/script/...",
 * answers what the test sets (in order; once used up, the last answer
 * repeats; 500 "{}" until set) and keeps every request (SPEC.md: script). */
typedef struct fx_sandbox {
	pid_t pid;
	int eof_fd;          /* its stdin's other end: closing it stops it */
	char dir[256];       /* its temp directory: ports.env, logs */
	char url[64];        /* http://127.0.0.1:PORT */
	int port;
} fx_sandbox;

/* A request the scripted endpoint got. */
typedef struct fx_req {
	char method[16];
	char target[2048];   /* path?query as sent */
	char headers[4096];  /* "name: value\r\n" lines, names in lower case */
	char body[4096];
	size_t body_len;
} fx_req;

/* Starts one (waits at most 10 s for it to listen); aborts the test if it
 * cannot. Stop stops it (SIGTERM) and removes its directory. */
fx_sandbox *fx_sandbox_start(void);
void fx_sandbox_stop(fx_sandbox *sb);
/* Forgets every answer, request, count and setting (POST /_ctl/reset). */
void fx_sandbox_reset(fx_sandbox *sb);
/* Replaces the scripted answers with one... */
void fx_sandbox_answer(fx_sandbox *sb, int status, const char *headers, const char *body);
/* ...or appends one. headers: NULL or "Name: value\r\n" lines. */
void fx_sandbox_then(fx_sandbox *sb, int status, const char *headers, const char *body);
/* Requests the scripted endpoint got since the last reset; the i-th one
 * (0-based; a test failure if there is none). */
size_t fx_sandbox_count(fx_sandbox *sb);
fx_req fx_sandbox_req(fx_sandbox *sb, size_t i);
/* A header of a request (any case), or a raw query parameter, or NULL
 * (per-thread static buffer). */
const char *fx_req_header(const fx_req *r, const char *name);
const char *fx_req_query(const fx_req *r, const char *name);

/* ---- expected values, computed with OpenSSL (never with the provider) ------- */

/* Lowercase hex HMAC-SHA256; per-thread static buffer. */
const char *fx_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen);
/* Standard base64; per-thread static buffer. */
const char *fx_base64(const void *in, size_t len);
/* TCX's app password: base64(hex(sha1(j + pub + dyn)) ":" dyn); per-thread
 * static buffer. */
const char *fx_tcx_pass(const char *j, const char *pub, const char *dyn);

#endif
