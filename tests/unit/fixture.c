/*
 * fixture.c - see fixture.h.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

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
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

/* A child forked while another thread logs must not inherit a held lock. */
static void s_log_lock_take(void) { pthread_mutex_lock(&s_log_lock); }
static void s_log_lock_give(void) { pthread_mutex_unlock(&s_log_lock); }
static void s_init_once(void)
{
	pthread_atfork(s_log_lock_take, s_log_lock_give, s_log_lock_give);
}

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
	pthread_once(&s_once, s_init_once);
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
	assert_int_equal(apicred_cred_new(&f->cred), APICRED_OK);
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
	/* One temporary name per thread: two threads may replace one file. */
	snprintf(tmp, sizeof(tmp), "%s.%lx.new", path, (unsigned long)pthread_self());
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
}

int fx_get(fx *f, const char *service)
{
	return apicred_get(f->ctx, service, NULL, f->cred);
}

int fx_request(fx *f, apicred_ctx *ctx, const char *service, const char *method,
               const char *url, const char *body, const char *content_type)
{
	apicred_request req = APICRED_REQUEST_INIT;

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

/* ---- the counter test module ---------------------------------------------- */

struct counter_control *fx_counter(void)
{
	static struct counter_control *ctl;
	const char *top = getenv("top_builddir");
	char path[512];

	if (!ctl) {
		void *h;

		snprintf(path, sizeof(path), "%s/tests/modules/.libs/counter.so", top ? top : ".");
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			fail_msg("cannot load %s: %s", path, dlerror());
		ctl = dlsym(h, "counter_control");
		assert_non_null(ctl);
	}
	atomic_store(&ctl->fetches, 0);
	atomic_store(&ctl->static_apply, false);
	atomic_store(&ctl->applies, 0);
	atomic_store(&ctl->encode, false);
	atomic_store(&ctl->fail, 0);
	atomic_store(&ctl->lifetime_ms, 600000);
	atomic_store(&ctl->retry_after_ms, 0);
	atomic_store(&ctl->block, false);
	atomic_store(&ctl->delay_ms, 0);
	return ctl;
}

/* ---- the sandbox ---------------------------------------------------------- */

extern char **environ;

struct s_buf { char *p; size_t n; };

static size_t s_collect(char *data, size_t size, size_t n, void *user)
{
	struct s_buf *b = user;
	char *np = realloc(b->p, b->n + size * n + 1);

	assert_non_null(np);
	memcpy(np + b->n, data, size * n);
	b->n += size * n;
	np[b->n] = '\0';
	b->p = np;
	return size * n;
}

/* A control request to the sandbox; its 2xx body (free()). */
static char *s_ctl(fx_sandbox *sb, const char *path, const char *body)
{
	struct s_buf b = { NULL, 0 };
	char url[512];
	long status = 0;
	CURLcode rc;
	CURL *c = curl_easy_init();

	assert_non_null(c);
	snprintf(url, sizeof(url), "%s/_ctl/%s", sb->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK || status / 100 != 2)
		fail_msg("sandbox %s: %s, HTTP %ld: %s", path, curl_easy_strerror(rc), status,
		         b.p ? b.p : "");
	return b.p ? b.p : strdup("");
}

fx_sandbox *fx_sandbox_start(void)
{
	const char *top = getenv("top_srcdir"), *py = getenv("PYTHON3");
	const char *tmp = getenv("TMPDIR");
	fx_sandbox *sb = calloc(1, sizeof(*sb));
	char script[600], ports[300], out[300], line[200];
	posix_spawn_file_actions_t fa;
	char *argv[6];
	FILE *fp = NULL;
	int eof[2];

	assert_non_null(sb);
	snprintf(sb->dir, sizeof(sb->dir), "%s/apicred-sandbox.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(sb->dir));
	snprintf(script, sizeof(script), "%s/tests/sandbox/sandbox.py", top ? top : ".");
	snprintf(ports, sizeof(ports), "%s/ports.env", sb->dir);
	snprintf(out, sizeof(out), "%s/sandbox.out", sb->dir);
	argv[0] = (char *)(py && *py ? py : "python3");
	argv[1] = script;
	argv[2] = "--dir";
	argv[3] = sb->dir;
	argv[4] = "--stop-on-eof";
	argv[5] = NULL;
	/* Its stdin is a pipe only this process writes to: should the test
	 * die without stopping it, the end of the pipe does. */
	assert_int_equal(pipe2(eof, O_CLOEXEC), 0);
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_adddup2(&fa, eof[0], 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (posix_spawnp(&sb->pid, argv[0], &fa, NULL, argv, environ) != 0)
		fail_msg("cannot run %s %s: %s", argv[0], script, strerror(errno));
	posix_spawn_file_actions_destroy(&fa);
	close(eof[0]);
	sb->eof_fd = eof[1];
	/* It writes ports.env (renamed into place) once it listens. */
	for (int i = 0; i < 1000 && !(fp = fopen(ports, "r")); i++) {
		struct timespec ts = { 0, 10000000 };

		if (waitpid(sb->pid, NULL, WNOHANG) == sb->pid)
			fail_msg("the sandbox exited at start (see %s)", out);
		nanosleep(&ts, NULL);
	}
	if (!fp)
		fail_msg("the sandbox did not start within 10 s (see %s)", out);
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "SB_HTTP=http://127.0.0.1:%d", &sb->port) == 1)
			break;
	fclose(fp);
	assert_true(sb->port > 0);
	snprintf(sb->url, sizeof(sb->url), "http://127.0.0.1:%d", sb->port);
	return sb;
}

void fx_sandbox_stop(fx_sandbox *sb)
{
	if (!sb)
		return;
	kill(sb->pid, SIGTERM);
	waitpid(sb->pid, NULL, 0);
	close(sb->eof_fd);
	nftw(sb->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
	free(sb);
}

void fx_sandbox_reset(fx_sandbox *sb)
{
	free(s_ctl(sb, "reset", ""));
}

static void s_script(fx_sandbox *sb, int append, int status, const char *headers,
                     const char *body)
{
	json_t *a = json_pack("[{s:i, s:s, s:s}]", "status", status, "headers",
	                      headers ? headers : "", "body", body);
	char *text;

	assert_non_null(a);
	text = json_dumps(a, JSON_COMPACT);
	assert_non_null(text);
	free(s_ctl(sb, append ? "script?append=1" : "script", text));
	free(text);
	json_decref(a);
}

void fx_sandbox_answer(fx_sandbox *sb, int status, const char *headers, const char *body)
{
	s_script(sb, 0, status, headers, body);
}

void fx_sandbox_then(fx_sandbox *sb, int status, const char *headers, const char *body)
{
	s_script(sb, 1, status, headers, body);
}

static json_t *s_requests(fx_sandbox *sb)
{
	char *text = s_ctl(sb, "requests", NULL);
	json_t *list = json_loads(text, 0, NULL);

	free(text);
	assert_true(json_is_array(list));
	return list;
}

size_t fx_sandbox_count(fx_sandbox *sb)
{
	json_t *list = s_requests(sb);
	size_t n = json_array_size(list);

	json_decref(list);
	return n;
}

static const char *s_str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

fx_req fx_sandbox_req(fx_sandbox *sb, size_t i)
{
	json_t *list = s_requests(sb), *r = json_array_get(list, i), *v;
	fx_req out;
	const char *name, *query;
	size_t n = 0;

	memset(&out, 0, sizeof(out));
	if (!r)
		fail_msg("the sandbox got %zu requests, not %zu", json_array_size(list), i + 1);
	snprintf(out.method, sizeof(out.method), "%s", s_str(r, "method"));
	query = s_str(r, "query");
	snprintf(out.target, sizeof(out.target), "%s%s%s", s_str(r, "path"), *query ? "?" : "",
	         query);
	json_object_foreach(json_object_get(r, "headers"), name, v) {
		int k = snprintf(out.headers + n, sizeof(out.headers) - n, "%s: %s\r\n", name,
		                 json_string_value(v) ? json_string_value(v) : "");
		if (k < 0 || (size_t)k >= sizeof(out.headers) - n)
			fail_msg("request %zu: headers longer than %zu bytes", i, sizeof(out.headers));
		n += (size_t)k;
	}
	out.body_len = strlen(s_str(r, "body"));
	if (out.body_len >= sizeof(out.body))
		fail_msg("request %zu: body longer than %zu bytes", i, sizeof(out.body) - 1);
	memcpy(out.body, s_str(r, "body"), out.body_len);
	json_decref(list);
	return out;
}

const char *fx_req_header(const fx_req *r, const char *name)
{
	static __thread char v[2048];
	size_t n = strlen(name);

	for (const char *p = r->headers; *p; p = strstr(p, "\r\n") + 2) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\r"), p);
			return v;
		}
	}
	return NULL;
}

const char *fx_req_query(const fx_req *r, const char *name)
{
	static __thread char v[2048];
	const char *p = strchr(r->target, '?');
	size_t n = strlen(name);

	while (p) {
		p++;
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p + n + 1, "&"), p + n + 1);
			return v;
		}
		p = strchr(p, '&');
	}
	return NULL;
}

/* ---- expected values ------------------------------------------------------ */

static void s_hex(const unsigned char *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

const char *fx_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen)
{
	static __thread char hex[65];
	unsigned char md[32];
	size_t mdlen = 0;

	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, msg, mlen, md,
	                          sizeof(md), &mdlen));
	assert_int_equal(mdlen, 32);
	s_hex(md, 32, hex);
	return hex;
}

const char *fx_base64(const void *in, size_t len)
{
	static __thread char out[4096];

	assert_true(4 * ((len + 2) / 3) < sizeof(out));
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

const char *fx_tcx_pass(const char *j, const char *pub, const char *dyn)
{
	char *plain, hex[41];
	unsigned char md[20];
	unsigned int mdlen = 0;
	const char *b64;

	assert_true(asprintf(&plain, "%s%s%s", j, pub, dyn) >= 0);
	assert_true(EVP_Digest(plain, strlen(plain), md, &mdlen, EVP_sha1(), NULL));
	assert_int_equal(mdlen, 20);
	free(plain);
	s_hex(md, 20, hex);
	assert_true(asprintf(&plain, "%s:%s", hex, dyn) >= 0);
	b64 = fx_base64(plain, strlen(plain));
	free(plain);
	return b64;
}
