/*
 * fixture.c - see fixture.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

static void s_write(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		fail_msg("cannot create %s: %s", path, strerror(errno));
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* ---- injected clock and random bytes ------------------------------------- */

_Atomic int64_t fx_mono_ms = FX_MONO0, fx_wall_ms = FX_WALL0;
unsigned char fx_random_pattern[256];
size_t fx_random_len;

void fx_advance(int64_t ms)
{
	atomic_fetch_add(&fx_mono_ms, ms);
	atomic_fetch_add(&fx_wall_ms, ms);
}

void fx_random_reset(void)
{
	for (size_t i = 0; i < 36; i++)
		fx_random_pattern[i] = (unsigned char)i;
	fx_random_len = 36;
}

static int64_t s_mono(void *user) { return atomic_load(&fx_mono_ms); }
static int64_t s_wall(void *user) { return atomic_load(&fx_wall_ms); }

static int s_random(void *user, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = fx_random_pattern[i % fx_random_len];
	return 0;
}

/* ---- the fixture --------------------------------------------------------- */

static pthread_mutex_t s_log_lock = PTHREAD_MUTEX_INITIALIZER;

/* The library may log from any thread. */
static void s_log(void *user, int level, const char *service, const char *message)
{
	fx *f = user;
	char line[2048];
	int n = snprintf(line, sizeof(line), "%d %s: %s\n", level,
	                 service ? service : "-", message);
	char *grown;

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	pthread_mutex_lock(&s_log_lock);
	grown = realloc(f->log, f->log_len + n + 1);
	assert_non_null(grown);
	memcpy(grown + f->log_len, line, n + 1);
	f->log = grown;
	f->log_len += n;
	if (level <= LOG_WARNING)
		f->log_warnings++;
	pthread_mutex_unlock(&s_log_lock);
}

fx *fx_new(void)
{
	fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	char sub[400];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/apicred-unit.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/conf", f->dir);
	snprintf(f->mod, sizeof(f->mod), "%s/modules", f->dir);
	assert_int_equal(mkdir(f->conf, 0700), 0);
	assert_int_equal(mkdir(f->mod, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/conf.d", f->conf);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/secrets", f->conf);
	assert_int_equal(mkdir(sub, 0700), 0);
	f->moddir = f->mod;
	atomic_store(&fx_mono_ms, FX_MONO0);
	atomic_store(&fx_wall_ms, FX_WALL0);
	fx_random_reset();
	/* The shared store's default directory: this fixture's own, so no
	 * session outlives the test or reaches another one. */
	assert_int_equal(setenv("XDG_RUNTIME_DIR", f->dir, 1), 0);
	return f;
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP)
		chmod(path, 0700);
	return remove(path);
}

void fx_free(fx *f)
{
	if (!f)
		return;
	apicred_cred_free(f->cred);
	apicred_close(f->ctx);
	nftw(f->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
	free(f->log);
	free(f);
}

void fx_module(fx *f, const char *name)
{
	const char *top = getenv("top_builddir");
	const char *real = getenv("APICRED_TEST_MODULEDIR");
	char src[600], dst[400];

	snprintf(dst, sizeof(dst), "%s/%s.so", f->mod, name);
	snprintf(src, sizeof(src), "%s/tests/modules/.libs/%s.so", top ? top : ".", name);
	if (access(src, R_OK) != 0)
		snprintf(src, sizeof(src), "%s/%s.so", real ? real : "providers/.libs", name);
	if (access(src, R_OK) != 0)
		fail_msg("module %s not built (looked in tests/modules/.libs and %s)", name,
		         real ? real : "providers/.libs");
	if (src[0] != '/') {
		char cwd[300], abs[1000];

		assert_non_null(getcwd(cwd, sizeof(cwd)));
		snprintf(abs, sizeof(abs), "%s/%s", cwd, src);
		assert_int_equal(symlink(abs, dst), 0);
		return;
	}
	assert_int_equal(symlink(src, dst), 0);
}

/* A top-level url setting: a line that starts with it. */
static bool s_has_url(const char *text)
{
	for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		p += strspn(p, " \t");
		if (strncmp(p, "url", 3) == 0 && strchr(" \t=:", p[3]))
			return true;
	}
	return false;
}

void fx_service(fx *f, const char *name, mode_t mode, const char *fmt, ...)
{
	char path[600], *text;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	snprintf(path, sizeof(path), "%s/conf.d/%s.conf", f->conf, name);
	if (!s_has_url(text)) {
		/* Appended, so that the lines a test asserts stay where they are. */
		char *with;
		n = asprintf(&with, "%s\n%s", text, FX_URL);
		assert_true(n >= 0);
		free(text);
		text = with;
	}
	s_write(path, text, n, mode);
	free(text);
}

void fx_service_raw(fx *f, const char *name, mode_t mode, const char *text)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/conf.d/%s.conf", f->conf, name);
	s_write(path, text, strlen(text), mode);
}

void fx_global(fx *f, const char *text)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/apicred.conf", f->conf);
	s_write(path, text, strlen(text), 0600);
}

void fx_remember(fx *f, const char *value)
{
	if (!*value)
		return; /* "" is in every string */
	assert_true(f->nsecrets < (int)(sizeof(f->secrets) / sizeof(f->secrets[0])));
	f->secrets[f->nsecrets++] = value;
}

const char *fx_secret(fx *f, const char *name, const char *value, mode_t mode)
{
	static __thread char path[600];

	snprintf(path, sizeof(path), "%s/secrets/%s", f->conf, name);
	s_write(path, value, strlen(value), mode);
	fx_remember(f, value);
	return path;
}

void fx_replace(fx *f, const char *rel, const char *text)
{
	char path[600], tmp[700];

	snprintf(path, sizeof(path), "%s/%s", f->conf, rel);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	s_write(tmp, text, strlen(text), 0600);
	assert_int_equal(rename(tmp, path), 0);
}

void fx_secret_replace(fx *f, const char *name, const char *value)
{
	char rel[300];

	snprintf(rel, sizeof(rel), "secrets/%s", name);
	fx_replace(f, rel, value);
	fx_remember(f, value);
}

void fx_modules_built(fx *f)
{
	f->moddir = getenv("APICRED_TEST_MODULEDIR");
	if (!f->moddir)
		fail_msg("APICRED_TEST_MODULEDIR is not set");
}

apicred_ctx *fx_ctx(fx *f, unsigned flags)
{
	apicred_options o;
	apicred_ctx *ctx = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.confdir = f->conf;
	o.moduledir = f->moddir;
	o.flags = flags;
	o.log = s_log;
	o.log_user = f;
	if (f->hooks & FX_CLOCK) {
		o.clock_mono_ms = s_mono;
		o.clock_wall_ms = s_wall;
	}
	if (f->hooks & FX_RANDOM)
		o.random = s_random;
	rc = apicred_open_opts(&ctx, &o);
	if (rc != APICRED_OK)
		fail_msg("apicred_open_opts: %s: %s", apicred_strerror(rc), apicred_errmsg());
	return ctx;
}

void fx_open(fx *f)
{
	f->ctx = fx_ctx(f, APICRED_OPEN_NO_BACKGROUND);
	if (!f->cred)
		assert_int_equal(apicred_cred_new(&f->cred), APICRED_OK);
}

int fx_get(fx *f, const char *service)
{
	return apicred_get(f->ctx, service, NULL, f->cred);
}

int fx_request(fx *f, apicred_ctx *ctx, const char *service, const char *method,
               const char *url, const char *body, const char *content_type)
{
	apicred_request req = APICRED_REQUEST_INIT;

	if (!f->cred)
		assert_int_equal(apicred_cred_new(&f->cred), APICRED_OK);
	req.method = method;
	req.url = url;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.content_type = content_type;
	return apicred_get(ctx, service, &req, f->cred);
}

const char *fx_header(const fx *f, const char *name)
{
	return apicred_cred_find(f->cred, APICRED_HEADER, name);
}

const char *fx_query(const fx *f, const char *name)
{
	return apicred_cred_find(f->cred, APICRED_QUERY, name);
}

void fx_assert_no_secret(fx *f, const char *s)
{
	for (int i = 0; i < f->nsecrets; i++) {
		/* Say where, never what. */
		if (s && strstr(s, f->secrets[i]))
			fail_msg("secret #%d leaked into a message", i);
		if (f->log && strstr(f->log, f->secrets[i]))
			fail_msg("secret #%d leaked into the log", i);
	}
}

void fx_assert_err(fx *f, int rc, int expected, const char *service, ...)
{
	const char *msg = apicred_errmsg();
	const char *want;
	va_list ap;

	if (rc != expected)
		fail_msg("%s: expected %d (%s), got %d (%s): %s", service, expected,
		         apicred_strerror(expected), rc, apicred_strerror(rc), msg);
	assert_non_null(msg);
	if (!strstr(msg, service))
		fail_msg("message does not name the service \"%s\": %s", service, msg);
	va_start(ap, service);
	while ((want = va_arg(ap, const char *)))
		if (!strstr(msg, want))
			fail_msg("message does not mention \"%s\": %s", want, msg);
	va_end(ap);
	fx_assert_no_secret(f, msg);
}

void fx_assert_headers(fx *f, ...)
{
	size_t n = apicred_cred_count(f->cred, APICRED_HEADER), want = 0;
	char seen[64] = { 0 };
	const char *line;
	va_list ap;

	va_start(ap, f);
	while ((line = va_arg(ap, const char *))) {
		const char *colon = strchr(line, ':');
		size_t i;

		assert_non_null(colon);
		want++;
		for (i = 0; i < n && i < sizeof(seen); i++) {
			const char *name, *value;
			size_t len;

			assert_int_equal(apicred_cred_item(f->cred, APICRED_HEADER, i, &name,
			                                   &value, &len), APICRED_OK);
			if (!seen[i] && strlen(name) == (size_t)(colon - line) &&
			    strncasecmp(name, line, colon - line) == 0 &&
			    strcmp(value, colon + 2) == 0 && len == strlen(value)) {
				seen[i] = 1;
				break;
			}
		}
		/* Only names: values may be secrets. */
		if (i == n || i == sizeof(seen))
			fail_msg("header %.*s with the expected value missing (have %zu headers)",
			         (int)(colon - line), line, n);
	}
	va_end(ap);
	if (n != want) {
		for (size_t i = 0; i < n; i++) {
			const char *name, *value;
			size_t len;

			apicred_cred_item(f->cred, APICRED_HEADER, i, &name, &value, &len);
			print_message("# have header %s\n", name);
		}
		fail_msg("expected %zu headers, have %zu", want, n);
	}
}

int fx_logged(fx *f, const char *s)
{
	int found;

	pthread_mutex_lock(&s_log_lock);
	found = f->log && strstr(f->log, s) != NULL;
	pthread_mutex_unlock(&s_log_lock);
	return found;
}

void fx_log_clear(fx *f)
{
	pthread_mutex_lock(&s_log_lock);
	free(f->log);
	f->log = NULL;
	f->log_len = 0;
	f->log_warnings = 0;
	pthread_mutex_unlock(&s_log_lock);
}
