/*
 * fuzz.c - see fuzz.h.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/internal.h"
#include "fuzz.h"

static struct {
	char dir[256];
	const uint8_t *input;
	size_t input_len;
	const uint8_t *script;
	size_t script_len;
	int requests;
	int64_t mono_ms, wall_ms;
	uint32_t rnd;
} gl;

static void s_die(const char *what)
{
	fprintf(stderr, "fuzz: %s\n", what);
	abort();
}

const char *fz_dir(void)
{
	return gl.dir;
}

void fz_write(const char *rel, const void *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", gl.dir, rel);
	unlink(path);
	if (!(f = fopen(path, "wx")) || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		s_die("cannot write a file in the fuzzing directory");
	chmod(path, 0600);
}

void fz_remove(const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", gl.dir, rel);
	unlink(path);
}

void fz_input(const uint8_t *data, size_t len)
{
	gl.input = data;
	gl.input_len = len;
}

/* Whether hay holds needle. Neither instrumented nor intercepted: libFuzzer
 * learns the operands of comparisons, and would then put the secrets into
 * inputs (URL-encoded, so that the check below could not tell). Clang 14
 * knows this spelling, not no_sanitize_coverage; and inlined, its
 * comparisons would be instrumented as the caller's. */
__attribute__((no_sanitize("coverage"), noinline))
static int s_holds(const void *hay, size_t n, const char *needle)
{
	const char *h = hay;
	size_t m = 0;

	while (needle[m])
		m++;
	for (size_t i = 0; i + m <= n; i++) {
		size_t j = 0;
		while (j < m && h[i + j] == needle[j])
			j++;
		if (j == m)
			return 1;
	}
	return 0;
}

void fz_no_secret(const char *what, const char *s)
{
	static const char *const secrets[] = { FZ_SECRET_ONE, FZ_SECRET_TWO };

	if (!s)
		return;
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		if (s_holds(s, strlen(s), secrets[i]) &&
		    !s_holds(gl.input, gl.input_len, secrets[i])) {
			/* The fuzzer's own secret: showing it helps. */
			fprintf(stderr, "fuzz: a secret leaked into %s: %s\n", what, s);
			abort();
		}
	}
}

char *fz_cut(const uint8_t **data, size_t *len, const char *sep)
{
	size_t n = strlen(sep);
	const uint8_t *at = memmem(*data, *len, sep, n);
	size_t part = at ? (size_t)(at - *data) : *len;
	char *s = malloc(part + 1);

	if (!s)
		s_die("out of memory");
	memcpy(s, *data, part);
	s[part] = '\0';
	if (at) {
		*data = at + n;
		*len -= part + n;
	} else {
		*data += part;
		*len = 0;
	}
	return s;
}

/* ---- HTTP ---------------------------------------------------------------- */

void fz_replies(const uint8_t *data, size_t len)
{
	gl.script = data;
	gl.script_len = len;
	gl.requests = 0;
}

int fz_requests(void)
{
	return gl.requests;
}

/* What the core would send must be well-formed whatever the input was. */
static void s_check_request(const char *method, const char *url, const struct curl_slist *hdrs)
{
	if (!method || !*method || !url)
		s_die("request without method or URL");
	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0)
		s_die("request to a URL that is not http(s)");
	for (const struct curl_slist *h = hdrs; h; h = h->next) {
		const char *colon = strchr(h->data, ':');
		if (strpbrk(h->data, "\r\n") || !colon || colon == h->data)
			s_die("malformed header line in a request (header injection?)");
	}
}

static int s_http(const char *method, const char *url, const struct curl_slist *hdrs,
                  const void *body, size_t body_len, struct ac_fuzz_reply *r)
{
	static char ct[128];
	const uint8_t *p = gl.script, *end = gl.script + gl.script_len, *sep, *line, *blank, *sp;
	size_t n;

	s_check_request(method, url, hdrs);
	gl.requests++;
	if (!gl.script || p >= end)
		return 1;
	/* This reply ends at the next "\n~~~\n" (or the end). */
	sep = memmem(p, (size_t)(end - p), "\n~~~\n", 5);
	if (!sep)
		sep = end;
	gl.script = sep < end ? sep + 5 : end;
	gl.script_len = (size_t)(end - gl.script);

	line = memchr(p, '\n', (size_t)(sep - p));
	if (!line)
		line = sep;
	/* A status of three digits at most: strtol would run past the line. */
	r->status = 0;
	for (const uint8_t *q = p; q < line && q < p + 3 && *q >= '0' && *q <= '9'; q++)
		r->status = r->status * 10 + (*q - '0');
	n = 0;
	if ((sp = memchr(p, ' ', (size_t)(line - p)))) {
		n = (size_t)(line - sp - 1) < sizeof(ct) - 1 ? (size_t)(line - sp - 1) : sizeof(ct) - 1;
		memcpy(ct, sp + 1, n);
	}
	ct[n] = '\0';
	r->content_type = n ? ct : NULL;
	if (line >= sep) {
		r->head = NULL;
		r->head_len = 0;
		r->body = "";
		r->body_len = 0;
		return 0;
	}
	line++;
	/* Headers end at an empty line (which may come first). */
	if (line < sep && *line == '\n')
		blank = line - 1;
	else
		blank = memmem(line, (size_t)(sep - line), "\n\n", 2);
	if (blank) {
		r->head = (const char *)line;
		r->head_len = (size_t)(blank + 1 - line);
		r->body = (const char *)blank + 2;
		r->body_len = (size_t)(sep - (blank + 2));
	} else {
		r->head = NULL;
		r->head_len = 0;
		r->body = (const char *)line;
		r->body_len = (size_t)(sep - line);
	}
	return 0;
}

/* ---- the context --------------------------------------------------------- */

static int64_t s_mono(void *u)
{
	return gl.mono_ms;
}

static int64_t s_wall(void *u)
{
	return gl.wall_ms;
}

/* Deterministic, so a crashing input crashes again. */
static int s_random(void *u, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		gl.rnd = gl.rnd * 1103515245u + 12345u;
		buf[i] = (unsigned char)(gl.rnd >> 16);
	}
	return 0;
}

void fz_clock_advance(int64_t ms)
{
	gl.mono_ms += ms;
	gl.wall_ms += ms;
}

static void s_log(void *user, int level, const char *service, const char *message)
{
	fz_no_secret("a log message", message);
}

apicred_ctx *fz_open(const char *confdir)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx = NULL;
	char conf[300];

	snprintf(conf, sizeof(conf), "%s/%s", gl.dir, confdir);
	o.confdir = conf;
	o.moduledir = FUZZ_MODULEDIR; /* never one from the input */
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	o.log = s_log;
	o.clock_mono_ms = s_mono;
	o.clock_wall_ms = s_wall;
	o.random = s_random;
	gl.rnd = 1;
	if (apicred_open_opts(&ctx, &o) != APICRED_OK) {
		fz_no_secret("apicred_errmsg", apicred_errmsg());
		return NULL;
	}
	return ctx;
}

#define S_NO_STORE "cache = { store = \"none\"; };\n"

void fz_confdir(const char *name)
{
	static const char *const sub[] = { "", "/conf.d", "/secrets" };
	char path[512];

	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s%s", gl.dir, name, sub[i]);
		if (mkdir(path, 0700) != 0)
			s_die("cannot make a confdir");
	}
	/* No shared store: the process's sessions only. The default store is
	 * the host's (/run/apicred for root), and a failed fetch holds an
	 * entry's lock there for a real second, which the next input would
	 * wait out: 1 input a second instead of thousands. */
	snprintf(path, sizeof(path), "%s/apicred.conf", name);
	fz_write(path, S_NO_STORE, strlen(S_NO_STORE));
	snprintf(path, sizeof(path), "%s/secrets/one", name);
	fz_write(path, FZ_SECRET_ONE, strlen(FZ_SECRET_ONE));
	snprintf(path, sizeof(path), "%s/secrets/two", name);
	fz_write(path, FZ_SECRET_TWO "\n", strlen(FZ_SECRET_TWO) + 1);
	snprintf(path, sizeof(path), "%s/secrets/user", name);
	fz_write(path, "3f2b1c9e-5d6a-4e7f-8a9b-0c1d2e3f4a5b", 36);
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void s_cleanup(void)
{
	if (gl.dir[0])
		nftw(gl.dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

void fz_init(void)
{
	const char *tmp = getenv("TMPDIR");
	char path[512];
	DIR *d;
	struct dirent *e;

	if (gl.dir[0])
		return;
	snprintf(gl.dir, sizeof(gl.dir), "%s/apicred-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(gl.dir))
		s_die("mkdtemp failed");
	atexit(s_cleanup);

	/* Loaded once and never unloaded: contexts then only take references. */
	if (!(d = opendir(FUZZ_MODULEDIR)))
		s_die("cannot open the module directory " FUZZ_MODULEDIR);
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > 3 && strcmp(e->d_name + n - 3, ".so") == 0) {
			snprintf(path, sizeof(path), "%s/%s", FUZZ_MODULEDIR, e->d_name);
			if (!dlopen(path, RTLD_NOW | RTLD_NODELETE))
				s_die(dlerror());
		}
	}
	closedir(d);
	gl.mono_ms = 1000000;
	gl.wall_ms = 1764460800000LL; /* 2025-11-30 00:00:00 UTC */
	ac_fuzz_http = s_http;
}
