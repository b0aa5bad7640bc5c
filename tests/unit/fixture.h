/*
 * fixture.h - a throw-away configuration for the foundation's unit tests.
 *
 * Each fixture is a temp directory holding a confdir (apicred.conf, conf.d/,
 * secrets/) and a module directory into which the test links the provider
 * modules it needs: the real ones from $APICRED_TEST_MODULEDIR
 * (providers/.libs) and the test ones from $top_builddir/tests/modules/.libs.
 * The context is opened with a logger that keeps every message, so tests can
 * check what was logged and that no secret ever was.
 */
#ifndef APICRED_TEST_FIXTURE_H
#define APICRED_TEST_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <apicred/apicred.h>

typedef struct fx {
	char dir[256];      /* the temp directory */
	char conf[300];     /* dir/conf: the confdir */
	char mod[300];      /* dir/modules: the moduledir */
	apicred_ctx *ctx;   /* after fx_open */
	apicred_cred *cred;
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
/* Writes conf/secrets/<name> with exactly value (mode); remembers value as
 * a secret that must not leak. Returns the path. */
const char *fx_secret(fx *f, const char *name, const char *value, mode_t mode);
/* Replaces conf/secrets/<name> atomically (new inode, mode 0600). */
void fx_secret_replace(fx *f, const char *name, const char *value);
/* Remembers a secret value used some other way (literal, env:). */
void fx_remember(fx *f, const char *value);

/* Opens f->ctx on the confdir and moduledir (no background thread, the
 * fixture's logger) and allocates f->cred. */
void fx_open(fx *f);

/* apicred_get(f->ctx, service, NULL, f->cred). */
int fx_get(fx *f, const char *service);

/* Asserts rc == expected; and that apicred_errmsg() mentions the service
 * and every string of the NULL-terminated list, and holds no secret. */
void fx_assert_err(fx *f, int rc, int expected, const char *service, ...);

/* Asserts the credential holds exactly the given headers, in any order:
 * "Name: value" strings, NULL-terminated. */
void fx_assert_headers(fx *f, ...);

/* Asserts that neither s nor the log contains a remembered secret. */
void fx_assert_no_secret(fx *f, const char *s);

/* Whether the log contains s. */
int fx_logged(const fx *f, const char *s);

#endif
