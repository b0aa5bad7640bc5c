/*
 * test_allocfail.c - allocation-failure torture around open, get, report
 * and close, for the shipped network-free samples (apikey, tok, mtls), with
 * the real providers and libraries.
 *
 * This program defines malloc, calloc, realloc, strdup and strndup: they
 * count every allocation of the process (libapicred, libconfig, jansson,
 * OpenSSL, libcurl, the loader) and forward to the next definition, the C
 * library's or the sanitizer's (which still tracks leaks). For each sample,
 * a reference run counts K allocations; then for N = 1..K a run fails the
 * Nth one only. Every run must end without a crash or a leak (ASan checks
 * at exit), every failing call must leave a message, and a call that
 * succeeds must give exactly the reference's credential.
 *
 * `test_allocfail CONFDIR SERVICE URL` does the same for one service of a
 * prepared confdir, e.g. one that fetches a token from the sandbox
 * (tests/integration/allocfail.sh): tokens differ from run to run, so
 * credentials are compared by shape (kinds, names, value lengths and
 * punctuation).
 *
 * Output is TAP, two lines per service.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apicred/apicred.h>

#define S_RUNS 300 /* failing runs per sample, at most */

/* ---- the counting allocator ---------------------------------------------- */

/* Exported, so that they interpose for every library of the process; not
 * instrumented, since a sanitizer's runtime calls them before it is ready. */
#define S_RAW __attribute__((no_sanitize("address", "undefined", "thread")))
#define S_EXPORT __attribute__((visibility("default"))) S_RAW

static void *(*s_real_malloc)(size_t);
static void *(*s_real_calloc)(size_t, size_t);
static void *(*s_real_realloc)(void *, size_t);
static void (*s_real_free)(void *);

static atomic_long s_count;   /* allocations since armed */
static atomic_long s_fail_at; /* fail this one (1-based); 0: never */
static atomic_bool s_armed;
static atomic_long s_failed;  /* how many were failed */
static const void *s_failed_caller;

/* dlsym itself may allocate before the real functions are known. */
static _Alignas(16) char s_boot[4096];
static size_t s_boot_used;

S_RAW static void *s_boot_alloc(size_t n)
{
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (s_boot_used + n > sizeof(s_boot))
		return NULL;
	p = s_boot + s_boot_used;
	s_boot_used += n;
	return p;
}

S_RAW static bool s_is_boot(const void *p)
{
	return (const char *)p >= s_boot && (const char *)p < s_boot + sizeof(s_boot);
}

S_RAW static void s_resolve(void)
{
	static _Thread_local bool busy;

	if (s_real_free || busy)
		return;
	busy = true;
	s_real_malloc = dlsym(RTLD_NEXT, "malloc");
	s_real_calloc = dlsym(RTLD_NEXT, "calloc");
	s_real_realloc = dlsym(RTLD_NEXT, "realloc");
	s_real_free = dlsym(RTLD_NEXT, "free");
	busy = false;
}

/* libconfig (1.7) uses most of its allocations unchecked (config_init,
 * scanctx_init, the parser's strdup): failing one crashes inside the
 * library, which apicred cannot prevent. Allocations made by libconfig's
 * code, directly or through the C library, are counted but never failed;
 * their turn passes to the next one. */
S_RAW static bool s_exempt(void)
{
	void *bt[8];
	int n = backtrace(bt, 8);

	for (int i = 0; i < n; i++) {
		Dl_info di;
		if (dladdr(bt[i], &di) && di.dli_fname && strstr(di.dli_fname, "/libconfig.so"))
			return true;
	}
	return false;
}

/* True if this allocation (made from caller) must fail. */
S_RAW static bool s_fail_now(const void *caller)
{
	long n;

	if (!atomic_load_explicit(&s_armed, memory_order_relaxed))
		return false;
	n = atomic_fetch_add(&s_count, 1) + 1;
	if (n != atomic_load(&s_fail_at))
		return false;
	if (s_exempt()) {
		atomic_fetch_add(&s_fail_at, 1);
		return false;
	}
	atomic_fetch_add(&s_failed, 1);
	s_failed_caller = caller;
	if (getenv("ALLOCFAIL_TRACE")) { /* where it failed, to debug a crash */
		void *bt[32];
		backtrace_symbols_fd(bt, backtrace(bt, 32), 2);
	}
	errno = ENOMEM;
	return true;
}

S_EXPORT void *malloc(size_t n)
{
	s_resolve();
	if (!s_real_malloc)
		return s_boot_alloc(n);
	return s_fail_now(__builtin_return_address(0)) ? NULL : s_real_malloc(n);
}

S_EXPORT void *calloc(size_t a, size_t b)
{
	s_resolve();
	if (!s_real_calloc)
		return s_boot_alloc(a * b); /* static: already zero */
	return s_fail_now(__builtin_return_address(0)) ? NULL : s_real_calloc(a, b);
}

S_EXPORT void *realloc(void *p, size_t n)
{
	s_resolve();
	if (s_is_boot(p)) {
		void *q = malloc(n);
		if (q)
			memcpy(q, p, n < sizeof(s_boot) - (size_t)((char *)p - s_boot)
			             ? n : sizeof(s_boot) - (size_t)((char *)p - s_boot));
		return q;
	}
	return s_fail_now(__builtin_return_address(0)) ? NULL : s_real_realloc(p, n);
}

S_EXPORT void free(void *p)
{
	if (!p || s_is_boot(p))
		return;
	s_resolve();
	s_real_free(p);
}

S_EXPORT char *strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = s_fail_now(__builtin_return_address(0)) ? NULL : s_real_malloc(n);

	return d ? memcpy(d, s, n) : NULL;
}

S_EXPORT char *strndup(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	char *d = s_fail_now(__builtin_return_address(0)) ? NULL : s_real_malloc(n + 1);

	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* ---- TAP ----------------------------------------------------------------- */

static int s_tap_n, s_tap_failed;

static void s_ok(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_ok(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", ok ? "ok" : "not ok", ++s_tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		s_tap_failed++;
}

static void s_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- the confdir ----------------------------------------------------------- */

static char s_dir[256], s_conf[400], s_mods[300];

static void s_die(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(1);
}

static void s_write(const char *rel, const char *text, mode_t mode)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", s_conf, rel);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, mode) != 0)
		s_die(path);
}

static void s_copy_sample(const char *name)
{
	const char *src = getenv("top_srcdir");
	char from[600], to[600], buf[8192];
	FILE *in, *out;
	size_t n;

	snprintf(from, sizeof(from), "%s/conf.d/%s.conf", src ? src : ".", name);
	snprintf(to, sizeof(to), "%s/conf.d/%s.conf", s_conf, name);
	if (!(in = fopen(from, "r")) || !(out = fopen(to, "w")))
		s_die(from);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			s_die(to);
	fclose(in);
	if (fclose(out) != 0 || chmod(to, 0600) != 0)
		s_die(to);
}

static void s_mkdir(const char *rel)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", s_conf, rel);
	if (mkdir(path, 0700) != 0)
		s_die(path);
}

/* The module directory, shared by every sample. */
static void s_setup(void)
{
	const char *mods = getenv("APICRED_TEST_MODULEDIR");
	static const char *const providers[] = { "apikey", "tok", "mtls" };
	char path[700];

	snprintf(s_dir, sizeof(s_dir), "%s/apicred-allocfail-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(s_dir))
		s_die("mkdtemp");
	snprintf(s_mods, sizeof(s_mods), "%s/modules", s_dir);
	if (mkdir(s_mods, 0700))
		s_die("mkdir");
	for (size_t i = 0; i < sizeof(providers) / sizeof(*providers); i++) {
		char src[600];
		snprintf(src, sizeof(src), "%s/%s.so", mods ? mods : "providers/.libs", providers[i]);
		snprintf(path, sizeof(path), "%s/%s.so", s_mods, providers[i]);
		if (symlink(src, path))
			s_die(path);
	}
}

/* A confdir holding just this sample and what it reads. */
static void s_confdir(const char *svc)
{
	snprintf(s_conf, sizeof(s_conf), "%s/%s", s_dir, svc);
	if (mkdir(s_conf, 0700) != 0)
		s_die(s_conf);
	s_mkdir("conf.d");
	s_mkdir("secrets");
	/* Each run is one process's own: no session may come from a run
	 * before it (a TOK: failover would). */
	s_write("apicred.conf", "cache = { store = \"none\"; };\n", 0600);
	s_copy_sample(svc);
	if (strcmp(svc, "apikey-example") == 0) {
		s_write("secrets/example.apikey", "sample-key-0123", 0600);
	} else if (strcmp(svc, "totsco-apikey") == 0) {
		s_write("secrets/totsco.apikey", "totsco-key-4567", 0600);
	} else if (strcmp(svc, "edgecast") == 0) {
		s_write("secrets/edgecast.token", "11111111-2222-3333-4444-555555555555", 0600);
		s_write("secrets/edgecast.backup", "99999999-8888-7777-6666-555555555555", 0600);
	} else if (strcmp(svc, "mtls-only") == 0) {
		/* A self-signed client certificate, also its own CA. */
		const char *openssl = getenv("OPENSSL");
		char cmd[4096];
		s_mkdir("certs");
		snprintf(cmd, sizeof(cmd),
		         "'%s' req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		         "-keyout '%s/certs/client.key' -out '%s/certs/client.pem' -days 30 "
		         "-subj /CN=allocfail >/dev/null 2>&1 && "
		         "cp '%s/certs/client.pem' '%s/certs/server-ca.pem' && "
		         "chmod 0600 '%s/certs/client.key'",
		         openssl ? openssl : "openssl", s_conf, s_conf, s_conf, s_conf, s_conf);
		if (system(cmd) != 0)
			s_die("openssl req");
	}
}

static void s_teardown(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s_dir);
	if (system(cmd) != 0)
		s_diag("could not remove %s", s_dir);
}

/* ---- one run --------------------------------------------------------------- */

static bool s_volatile; /* compare values by shape only */

/* Every item of the credential, in order, as one string (NULL: none). */
static char *s_flatten(const apicred_cred *cred)
{
	static const apicred_kind kinds[] = { APICRED_HEADER, APICRED_QUERY, APICRED_TLS };
	char *all = NULL;
	size_t len = 0;
	FILE *f;

	s_armed = false; /* the test's own allocations never fail */
	f = open_memstream(&all, &len);
	if (!f)
		s_die("open_memstream");
	for (size_t k = 0; k < 3; k++) {
		size_t n = apicred_cred_count(cred, kinds[k]);
		for (size_t i = 0; i < n; i++) {
			const char *name, *value;
			size_t vlen;
			if (apicred_cred_item(cred, kinds[k], i, &name, &value, &vlen) != APICRED_OK) {
				fputs("(item failed)", f);
				continue;
			}
			fprintf(f, "%d %s=", (int)kinds[k], name);
			for (size_t c = 0; c < vlen; c++) {
				bool word = (value[c] >= '0' && value[c] <= '9') ||
				            ((value[c] | 0x20) >= 'a' && (value[c] | 0x20) <= 'z') ||
				            value[c] == '_' || value[c] == '-';
				fputc(s_volatile && word ? '#' : value[c], f);
			}
			fputc('\n', f);
		}
	}
	fclose(f);
	return all;
}

struct s_result {
	char *get1, *get2;  /* flattened credentials, NULL if the call failed */
	int report;         /* its return code */
	int retry;
	bool open_ok;
	char why[512];      /* the first broken rule, "" if none */
};

static void s_rule(struct s_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_rule(struct s_result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* A failed call must say why. */
static void s_check_fail(struct s_result *r, const char *call, int rc)
{
	if (rc == APICRED_OK)
		return;
	if (!*apicred_errmsg())
		s_rule(r, "%s returned %d (%s) with an empty apicred_errmsg()", call, rc,
		       apicred_strerror(rc));
}

/* open, get, report 403 (a TOK: layer fails over), get, close; allocation
 * fail_at fails (0: none). */
static void s_run(const char *svc, const char *url, long fail_at, struct s_result *r)
{
	apicred_options o = { .size = sizeof(o), .confdir = s_conf, .moduledir = s_mods,
	                      .flags = APICRED_OPEN_NO_BACKGROUND };
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	req.url = url;
	s_count = 0;
	s_fail_at = fail_at;
	s_armed = true;

	rc = apicred_open_opts(&ctx, &o);
	s_check_fail(r, "apicred_open", rc);
	r->open_ok = rc == APICRED_OK;
	if (rc != APICRED_OK)
		goto out;
	rc = apicred_cred_new(&cred);
	s_check_fail(r, "apicred_cred_new", rc);
	if (rc != APICRED_OK)
		goto out;
	rc = apicred_get(ctx, svc, &req, cred);
	s_check_fail(r, "apicred_get", rc);
	if (rc == APICRED_OK)
		r->get1 = s_flatten(cred);
	s_armed = true;
	r->report = apicred_report(ctx, svc, rc == APICRED_OK ? cred : NULL, 403, NULL, 0,
	                           &r->retry);
	s_check_fail(r, "apicred_report", r->report);
	rc = apicred_get(ctx, svc, &req, cred);
	s_check_fail(r, "apicred_get (after the report)", rc);
	if (rc == APICRED_OK)
		r->get2 = s_flatten(cred);
	s_armed = true;
out:
	apicred_cred_free(cred);
	apicred_close(ctx);
	s_armed = false;
}

static void s_result_free(struct s_result *r)
{
	s_real_free(r->get1);
	s_real_free(r->get2);
}

static void s_sample(const char *svc, const char *url)
{
	struct s_result ref, r;
	long k, step, failed_runs = 0, bad = 0;

	/* The libraries' one-time initialisation is not counted. */
	s_run(svc, url, 0, &ref);
	s_result_free(&ref);
	s_run(svc, url, 0, &ref);
	k = s_count;
	s_ok(ref.open_ok && ref.get1 && ref.get2 && ref.report == APICRED_OK && !ref.why[0],
	     "%s: the reference run succeeds (%ld allocations)", svc, k);
	if (!ref.get1 || !ref.get2) {
		s_diag("%s", apicred_errmsg());
		s_result_free(&ref);
		return;
	}
	/* Every allocation when there are few; else an even spread of about
	 * S_RUNS of them (OpenSSL's PEM and X.509 parsing make thousands), or
	 * all of them with ALLOCFAIL_ALL=1. */
	step = getenv("ALLOCFAIL_ALL") || k <= S_RUNS ? 1 : (k + S_RUNS - 1) / S_RUNS;
	for (long n = 1; n <= k; n += step) {
		s_failed = 0;
		s_failed_caller = NULL;
		if (getenv("ALLOCFAIL_TRACE"))
			fprintf(stderr, "%s: failing allocation %ld\n", svc, n);
		s_run(svc, url, n, &r);
		if (s_failed)
			failed_runs++;
		/* Success means the whole credential: exactly the reference's. */
		if (r.get1 && strcmp(r.get1, ref.get1) != 0)
			s_rule(&r, "apicred_get succeeded with a different credential:\n%s", r.get1);
		/* After a successful report, the second get is the reference's
		 * second (a TOK: layer failed over); after a failed one, either. */
		if (r.get2 && strcmp(r.get2, ref.get2) != 0 &&
		    (r.report == APICRED_OK || strcmp(r.get2, ref.get1) != 0))
			s_rule(&r, "the second apicred_get succeeded with a different credential:\n%s",
			       r.get2);
		if (r.why[0] && bad++ < 5) {
			Dl_info di = { 0 };
			dladdr(s_failed_caller, &di);
			s_diag("%s: allocation %ld (in %s, %s) failed: %s", svc, n,
			       di.dli_fname ? di.dli_fname : "?", di.dli_sname ? di.dli_sname : "?",
			       r.why);
		}
		s_result_free(&r);
	}
	s_ok(bad == 0, "%s: allocation N of %ld failed, N = 1..%ld step %ld (%ld runs hit one): "
	     "no wrong success, every failure explained", svc, k, k, step, failed_runs);
	s_result_free(&ref);
}

int main(int argc, char **argv)
{
	void *bt[2];

	s_resolve();
	backtrace(bt, 2); /* loads what backtrace needs, before anything fails */
	if (argc == 4) {
		const char *mods = getenv("APICRED_TEST_MODULEDIR");
		snprintf(s_conf, sizeof(s_conf), "%s", argv[1]);
		snprintf(s_mods, sizeof(s_mods), "%s", mods ? mods : "providers/.libs");
		s_volatile = true;
		printf("1..2\n");
		s_sample(argv[2], argv[3]);
		return s_tap_failed ? 1 : 0;
	}
	s_setup();
	printf("1..8\n");
	s_confdir("apikey-example");
	s_sample("apikey-example", "https://api.example.com/v1/x");
	s_confdir("totsco-apikey");
	s_sample("totsco-apikey", "https://hub.totsco.example/x");
	s_confdir("edgecast");
	s_sample("edgecast", "https://api.transactcdn.com/x");
	s_confdir("mtls-only");
	s_sample("mtls-only", "https://api.example.com/x");
	s_teardown();
	return s_tap_failed ? 1 : 0;
}
