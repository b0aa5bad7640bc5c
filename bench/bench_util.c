/*
 * bench_util.c - shared by the bench programs (see bench_util.h).
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#ifndef BENCH_SRCDIR
#define BENCH_SRCDIR "."
#endif
#ifndef BENCH_BUILDDIR
#define BENCH_BUILDDIR "."
#endif
#ifndef BENCH_PYTHON3
#define BENCH_PYTHON3 "python3"
#endif
#ifndef BENCH_OPENSSL
#define BENCH_OPENSSL "openssl"
#endif

const char *bench_prog = "bench";
const char *bench_moduledir;

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void bench_init(const char *prog)
{
	FILE *f;
	char line[128];

	bench_prog = prog;
	setenv("top_srcdir", BENCH_SRCDIR, 0);
	setenv("top_builddir", BENCH_BUILDDIR, 0);
	setenv("PYTHON3", BENCH_PYTHON3, 0);
	setenv("OPENSSL", BENCH_OPENSSL, 0);
	setenv("APICRED_TEST_MODULEDIR", BENCH_BUILDDIR "/providers/.libs", 0);
	bench_moduledir = getenv("APICRED_TEST_MODULEDIR");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	f = fopen("/proc/loadavg", "r");
	if (f && fgets(line, sizeof(line), f)) {
		char *p = line;
		for (int i = 0; i < 3 && p; i++)
			p = strchr(p + 1, ' ');
		printf("%s: load average %.*s on %ld CPUs (other work skews the figures)\n",
		       prog, p ? (int)(p - line) : 0, line, sysconf(_SC_NPROCESSORS_ONLN));
	}
	if (f)
		fclose(f);
	fflush(stdout);
}

int64_t bench_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int s_cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), s_cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int bench_runs(void)
{
	const char *s = getenv("BENCH_RUNS");
	int n = s ? atoi(s) : 3;

	return n < 1 ? 1 : n > 15 ? 15 : n;
}

/* ---- bench/bench-env.sh ------------------------------------------------------ */

static struct {
	pid_t pid;
	int in;                 /* its stdin: closing it tears it down */
	size_t n;
	struct { char key[32]; char value[1600]; } kv[16];
} s_env = { .in = -1 };

void bench_env_start(const char *script, const char *args)
{
	char path[1024], *argv[16] = { "sh", path }, *words, *save = NULL;
	size_t argc = 2;
	int in[2], out[2];
	char line[1700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/bench/%s", BENCH_SRCDIR, script);
	if (!(words = strdup(args)))
		BENCH_DIE("out of memory");
	for (char *w = strtok_r(words, " ", &save); w && argc < 15; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	argv[argc] = NULL;
	if (pipe(in) || pipe(out))
		BENCH_DIE("pipe: %s", strerror(errno));
	fflush(NULL);
	if ((s_env.pid = fork()) < 0)
		BENCH_DIE("fork: %s", strerror(errno));
	if (s_env.pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]); close(in[1]); close(out[0]); close(out[1]);
		execv("/bin/sh", argv);
		_exit(127);
	}
	free(words);
	close(in[0]);
	close(out[1]);
	s_env.in = in[1];
	f = fdopen(out[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '=');

		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "BENCH-ENV-READY") == 0)
			break;
		if (eq && s_env.n < sizeof(s_env.kv) / sizeof(s_env.kv[0])) {
			snprintf(s_env.kv[s_env.n].key, sizeof(s_env.kv[0].key), "%.*s",
			         (int)(eq - line), line);
			snprintf(s_env.kv[s_env.n].value, sizeof(s_env.kv[0].value), "%s", eq + 1);
			s_env.n++;
		}
	}
	/* The script prints nothing more; its pipe stays open until exit. */
	if (!*bench_env("SB"))
		BENCH_DIE("the environment did not start (bench/%s)", script);
}

const char *bench_env(const char *key)
{
	for (size_t i = 0; i < s_env.n; i++)
		if (strcmp(s_env.kv[i].key, key) == 0)
			return s_env.kv[i].value;
	return "";
}

void bench_env_stop(void)
{
	int status;

	if (s_env.in >= 0)
		close(s_env.in);
	if (s_env.pid > 0)
		waitpid(s_env.pid, &status, 0);
	s_env.in = -1;
	s_env.pid = 0;
}

int bench_log_max = 4;

static void s_log(void *user, int level, const char *service, const char *message)
{
	if (level <= bench_log_max)
		fprintf(stderr, "  (%s: log %d %s: %s)\n", bench_prog, level,
		        service ? service : "-", message);
}

apicred_ctx *bench_open(const char *confdir, unsigned flags)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx;

	o.confdir = confdir;
	o.moduledir = bench_moduledir;
	o.flags = flags;
	o.log = s_log;
	if (apicred_open_opts(&ctx, &o) != APICRED_OK)
		BENCH_DIE("apicred_open %s: %s", confdir, apicred_errmsg());
	return ctx;
}

/* ---- the sandbox ------------------------------------------------------------- */

struct s_buf { char *p; size_t n; };

static size_t s_write(char *data, size_t size, size_t n, void *user)
{
	struct s_buf *b = user;
	char *np = realloc(b->p, b->n + size * n + 1);

	if (!np)
		return 0;
	memcpy(np + b->n, data, size * n);
	b->n += size * n;
	np[b->n] = '\0';
	b->p = np;
	return size * n;
}

/* The answer's body (free it), or dies. */
static char *s_request(const char *method, const char *path, const char *json_body)
{
	struct s_buf b = { NULL, 0 };
	struct curl_slist *h = NULL;
	char url[2048];
	CURL *c = curl_easy_init();
	long status = 0;

	snprintf(url, sizeof(url), "%s%s", bench_env("SB"), path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, bench_env("SB_CA"));
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body ? json_body : "");
		if (json_body)
			h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	}
	if (curl_easy_perform(c) != CURLE_OK)
		BENCH_DIE("sandbox: %s %s: no answer", method, path);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		BENCH_DIE("sandbox: %s %s: HTTP %ld %s", method, path, status, b.p ? b.p : "");
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return b.p ? b.p : strdup("");
}

void bench_ctl(const char *method, const char *path, const char *json_body)
{
	free(s_request(method, path, json_body));
}

long bench_count(const char *endpoint)
{
	char path[128], *body;
	json_t *j;
	long n;

	snprintf(path, sizeof(path), "/_ctl/count?endpoint=%s", endpoint);
	body = s_request("GET", path, NULL);
	j = json_loads(body, 0, NULL);
	if (!j || !json_is_integer(json_object_get(j, "count")))
		BENCH_DIE("sandbox: bad count answer: %s", body);
	n = (long)json_integer_value(json_object_get(j, "count"));
	json_decref(j);
	free(body);
	return n;
}

/* ---- the summary table ---------------------------------------------------------- */

void bench_row(const char *what, const char *now, const char *baseline, ...)
{
	const char *path = getenv("BENCH_SUMMARY");
	char text[512];
	va_list ap;
	FILE *f;

	va_start(ap, baseline);
	vsnprintf(text, sizeof(text), baseline, ap);
	va_end(ap);
	if (!path || !*path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "| %s | %s | %s |\n", what, now, text);
	fclose(f);
}

/* ---- the mutex cache ------------------------------------------------------------ */

static int s_mcache_fetch_inlock(struct bench_mcache *c, int64_t now)
{
	struct s_buf b = { NULL, 0 };
	json_t *j;
	const char *tok;
	int64_t life_ns, ahead_ns;
	long status = 0;
	int rc = -1;

	c->fetches++;
	if (!c->curl) { /* the hot-path loops: a fixed token for an hour */
		memset(c->token, 't', sizeof(c->token));
		c->refresh_ns = now + INT64_C(3600) * 1000000000;
		return 0;
	}
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(c->curl) == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	j = status == 200 && b.p ? json_loads(b.p, 0, NULL) : NULL;
	tok = json_string_value(json_object_get(j, "access_token"));
	if (tok && json_is_integer(json_object_get(j, "expires_in"))) {
		life_ns = json_integer_value(json_object_get(j, "expires_in")) * 1000000000;
		ahead_ns = life_ns / 2 < INT64_C(10000000000) ? life_ns / 2 : INT64_C(10000000000);
		memset(c->token, 0, sizeof(c->token));
		memcpy(c->token, tok, strnlen(tok, sizeof(c->token)));
		c->refresh_ns = now + life_ns - ahead_ns;
		rc = 0;
	} else {
		c->failures++;
	}
	json_decref(j);
	free(b.p);
	return rc;
}

void bench_mcache_init(struct bench_mcache *c, int fetch)
{
	static const char form[] = "grant_type=client_credentials&client_id=sb-client"
	                           "&client_secret=s3cr%3At%2B%2F%25%26%3D%C3%A9";
	char url[1700];

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	if (!fetch)
		return;
	c->curl = curl_easy_init();
	snprintf(url, sizeof(url), "%s/oauth2/token", bench_env("SB"));
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_CAINFO, bench_env("SB_CA"));
	curl_easy_setopt(c->curl, CURLOPT_COPYPOSTFIELDS, form);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 30L);
}

void bench_mcache_fini(struct bench_mcache *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	pthread_mutex_destroy(&c->mu);
}

int bench_mcache_get(struct bench_mcache *c, char *out)
{
	int64_t now;
	int rc = 0;

	pthread_mutex_lock(&c->mu);
	now = bench_ns();
	if (now >= c->refresh_ns || c->fetches == 0)
		rc = s_mcache_fetch_inlock(c, now);
	if (rc == 0)
		memcpy(out, c->token, sizeof(c->token));
	pthread_mutex_unlock(&c->mu);
	return rc;
}
