/*
 * apicred - command-line front end of libapicred.
 *
 *   apicred [-c CONFDIR] [-m MODULEDIR] [-v] COMMAND [ARGS]
 *
 * Uses only the public application ABI (apicred.h), so it is also the
 * reference for how an application is meant to drive the library.
 *
 * Exit status: 0 success, 1 failure (bad configuration, network, ...),
 * 2 bad command line, 22 `request` got a non-2xx answer (as curl -f).
 *
 * Logging: with -v the library's own stderr logger is used (level from
 * apicred.conf's log.level). Without it nothing goes to syslog, and the
 * warnings and errors about the service at hand (or about no service) are
 * held back and shown only if the command succeeds: a failure is reported
 * once, by its apicred_errmsg(), while a success still shows what went wrong
 * on the way (a failover to a backup token, a certificate about to expire).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <jansson.h>

#include <apicred/apicred.h>

#include "../core/secure.h"

enum {
	EXIT_USAGE = 2,
	EXIT_HTTP = 22 /* like curl --fail */
};

static const char s_usage[] =
	"usage: apicred [-c CONFDIR] [-m MODULEDIR] [-v] COMMAND [ARGS]\n"
	"\n"
	"commands:\n"
	"  get SERVICE [-X METHOD] [-u URL] [-d DATA|@FILE] [--json]\n"
	"        print the credentials a request to SERVICE must carry\n"
	"  request SERVICE URL [-X METHOD] [-d DATA|@FILE] [-H 'Name: value']... [-o FILE]\n"
	"        make the request with libcurl and print the response body\n"
	"  check [SERVICE...]      load and validate services (default: all)\n"
	"  list                    list services with their descriptions\n"
	"  providers               list provider modules and whether they load\n"
	"  provision SERVICE [--force] [--show]\n"
	"        create the account and secret files the service refers to\n"
	"\n"
	"options:\n"
	"  -c, --confdir DIR       configuration directory (default: $APICRED_CONFDIR\n"
	"                          or " APICRED_CONFDIR ")\n"
	"  -m, --moduledir DIR     provider directory (default: apicred.conf,\n"
	"                          $APICRED_MODULEDIR or " APICRED_MODULEDIR ")\n"
	"  -v, --verbose           show the library's log messages on stderr\n"
	"  -h, --help              show this help\n"
	"  -V, --version           show the version\n"
	"\n"
	"exit status: 0 ok, 1 error, 2 bad usage, 22 HTTP status not 2xx\n";

/* Options shared by every command. */
static struct {
	const char *confdir;
	const char *moduledir;
	int verbose;
} gl;

/* ---- small helpers --------------------------------------------------- */

static int s_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int s_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("apicred: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	fputs(s_usage, stderr);
	return EXIT_USAGE;
}

/* "apicred: SERVICE: message". The library's detail message usually starts
 * with the service name already; do not say it twice. */
static void s_fail(const char *service, int code)
{
	const char *msg = apicred_errmsg();
	size_t n = service ? strlen(service) : 0;

	if (!msg || !*msg)
		msg = apicred_strerror(code);
	else if (service && strncmp(msg, service, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		msg += n + 2;
	if (service)
		fprintf(stderr, "apicred: %s: %s\n", service, msg);
	else
		fprintf(stderr, "apicred: %s\n", msg);
}

/* getopt's own messages would name the command as the program; say it ours. */
static int s_bad_option(const char *cmd, char **argv, int c)
{
	const char *sep = cmd ? ": " : "";

	if (!cmd)
		cmd = "";
	if (c == ':')
		return s_usage_error("%s%soption '%s' needs an argument", cmd, sep, argv[optind - 1]);
	if (optopt)
		return s_usage_error("%s%sunknown option '-%c'", cmd, sep, optopt);
	return s_usage_error("%s%sunknown option '%s'", cmd, sep, argv[optind - 1]);
}

/* The quiet logger's held-back lines (see the top of the file). */
struct s_line {
	int level;
	char *service; /* NULL: about no service in particular */
	char *text;
};

static struct {
	pthread_mutex_t lock;
	struct s_line *v;
	size_t n;
} s_held = { PTHREAD_MUTEX_INITIALIZER, NULL, 0 };

static void s_log_quiet(void *user, int level, const char *service, const char *message)
{
	struct s_line l = { level, NULL, NULL }, *p;

	if (level > LOG_WARNING)
		return;
	if (asprintf(&l.text, "apicred: %s%s%s\n", service ? service : "",
	             service ? ": " : "", message) < 0)
		return;
	if (service && !(l.service = strdup(service))) {
		free(l.text);
		return;
	}
	pthread_mutex_lock(&s_held.lock);
	p = realloc(s_held.v, (s_held.n + 1) * sizeof(*p));
	if (p) {
		s_held.v = p;
		s_held.v[s_held.n++] = l;
	}
	pthread_mutex_unlock(&s_held.lock);
	if (!p) {
		free(l.service);
		free(l.text);
	}
}

/* Shows the held lines about service (NULL: none) and, with globals, the
 * warnings about no service in particular. Errors about no service (a
 * provider that does not load) always come back as some service's error,
 * and other services' lines were only logged because the library loads
 * every service: both stay held. */
static void s_log_show(const char *service, int globals)
{
	pthread_mutex_lock(&s_held.lock);
	for (size_t i = 0; i < s_held.n; i++) {
		struct s_line *l = &s_held.v[i];

		if (!l->text)
			continue;
		if (l->service ? !service || strcmp(l->service, service) != 0
		               : !globals || l->level != LOG_WARNING)
			continue;
		fputs(l->text, stderr);
		free(l->text);
		l->text = NULL;
	}
	pthread_mutex_unlock(&s_held.lock);
}

static void s_log_free(void)
{
	for (size_t i = 0; i < s_held.n; i++) {
		free(s_held.v[i].service);
		free(s_held.v[i].text);
	}
	free(s_held.v);
	s_held.v = NULL;
	s_held.n = 0;
}

static int s_open(apicred_ctx **ctx)
{
	apicred_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.confdir = gl.confdir;
	o.moduledir = gl.moduledir;
	/* A one-shot command: no background refresh threads. */
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	if (gl.verbose)
		o.flags |= APICRED_OPEN_LOG_STDERR;
	else
		o.log = s_log_quiet;
	rc = apicred_open_opts(ctx, &o);
	if (rc != APICRED_OK) {
		s_fail(NULL, rc); /* the message names the file */
		*ctx = NULL;
	}
	return rc;
}

/* Reads -d's argument: literal text, @FILE, or @- for standard input. */
static int s_read_data(const char *arg, char **data, size_t *len)
{
	FILE *f;
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (arg[0] != '@') {
		*len = strlen(arg);
		*data = strdup(arg);
		return *data ? 0 : -1;
	}
	errno = 0;
	f = strcmp(arg + 1, "-") == 0 ? stdin : fopen(arg + 1, "rb");
	if (!f) {
		fprintf(stderr, "apicred: %s: %s\n", arg + 1, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t got;

		if (cap - n < 4096) {
			char *p = realloc(buf, cap ? cap * 2 : 8192);

			if (!p) {
				errno = ENOMEM;
				break;
			}
			buf = p;
			cap = cap ? cap * 2 : 8192;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f) || errno == ENOMEM || !buf) {
		fprintf(stderr, "apicred: %s: cannot read: %s\n", arg + 1, strerror(errno));
		if (f != stdin)
			fclose(f);
		free(buf);
		return -1;
	}
	if (f != stdin)
		fclose(f);
	buf[n] = '\0';
	*data = buf;
	*len = n;
	return 0;
}

/* An HTTP method is a token (RFC 9110); letters, - and _ keep junk out of curl. */
static int s_valid_method(const char *m)
{
	if (!*m)
		return 0;
	for (; *m; m++)
		if (!((*m >= 'A' && *m <= 'Z') || (*m >= 'a' && *m <= 'z') || *m == '-' || *m == '_'))
			return 0;
	return 1;
}

/* Text that fits on one line of output. */
static int s_printable(const char *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return 0;
	return 1;
}

/* Request options common to get and request. */
struct s_reqopt {
	const char *method;
	const char *url;
	char *data;
	size_t data_len;
	int have_data;
};

static int s_reqopt_data(struct s_reqopt *r, const char *arg)
{
	free(r->data);
	r->data = NULL;
	if (s_read_data(arg, &r->data, &r->data_len) != 0)
		return -1;
	r->have_data = 1;
	return 0;
}

static void s_reqopt_fill(const struct s_reqopt *r, apicred_request *req,
                          const char *content_type)
{
	req->method = r->method ? r->method : r->have_data ? "POST" : "GET";
	req->url = r->url;
	req->body = r->have_data ? r->data : NULL;
	req->body_len = r->have_data ? r->data_len : 0;
	req->content_type = content_type;
}

/* A body that looks like JSON is sent as JSON; otherwise curl's form default. */
static const char *s_guess_type(const struct s_reqopt *r)
{
	const char *p;

	if (!r->have_data)
		return NULL;
	for (p = r->data; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'; p++)
		;
	return (*p == '{' || *p == '[') ? "application/json" : "application/x-www-form-urlencoded";
}

/* ---- get ------------------------------------------------------------- */

static void s_print_text(const apicred_cred *cred)
{
	const char *name, *value;
	size_t len;

	for (size_t i = 0; i < apicred_cred_count(cred, APICRED_HEADER); i++)
		if (apicred_cred_item(cred, APICRED_HEADER, i, &name, &value, &len) == APICRED_OK)
			printf("%s: %s\n", name, value);
	for (size_t i = 0; i < apicred_cred_count(cred, APICRED_QUERY); i++)
		if (apicred_cred_item(cred, APICRED_QUERY, i, &name, &value, &len) == APICRED_OK)
			printf("?%s=%s\n", name, value);
	for (size_t i = 0; i < apicred_cred_count(cred, APICRED_TLS); i++) {
		if (apicred_cred_item(cred, APICRED_TLS, i, &name, &value, &len) != APICRED_OK)
			continue;
		if (strcmp(name, "key") == 0)
			printf("TLS key: (in memory)\n");
		else if (!s_printable(value, len))
			printf("TLS %s: (%zu bytes)\n", name, len); /* a PEM certificate */
		else
			printf("TLS %s: %.*s\n", name, (int)len, value);
	}
}

/* name -> string, or -> array of strings when the name repeats. */
static int s_json_add(json_t *obj, const char *name, const char *value, size_t len)
{
	json_t *v = json_stringn(value, len), *old;

	if (!v)
		return 0; /* not UTF-8: leave it out rather than mangle it */
	old = json_object_get(obj, name);
	if (!old)
		return json_object_set_new(obj, name, v);
	if (json_is_array(old))
		return json_array_append_new(old, v);
	json_t *arr = json_array();
	if (!arr || json_array_append(arr, old) || json_array_append_new(arr, v)) {
		json_decref(arr);
		return -1;
	}
	return json_object_set_new(obj, name, arr);
}

static int s_print_json(const apicred_cred *cred)
{
	static const apicred_kind kinds[] = { APICRED_HEADER, APICRED_QUERY, APICRED_TLS };
	static const char *const keys[] = { "headers", "query", "tls" };
	json_t *root = json_object();
	int64_t exp = apicred_cred_expires_at(cred);
	char *text;
	int rc = 0;

	if (!root)
		return -1;
	for (size_t k = 0; k < 3 && rc == 0; k++) {
		json_t *obj = json_object();
		const char *name, *value;
		size_t len;

		if (!obj || json_object_set_new(root, keys[k], obj)) {
			rc = -1;
			break;
		}
		for (size_t i = 0; i < apicred_cred_count(cred, kinds[k]) && rc == 0; i++) {
			if (apicred_cred_item(cred, kinds[k], i, &name, &value, &len) != APICRED_OK)
				continue;
			if (kinds[k] == APICRED_TLS && strcmp(name, "key") == 0)
				continue; /* never the private key */
			rc = s_json_add(obj, name, value, len);
		}
	}
	if (rc == 0)
		rc = json_object_set_new(root, "expires_at",
		                         exp > 0 ? json_integer(exp) : json_null());
	text = rc == 0 ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (!text)
		return -1;
	puts(text);
	free(text);
	return 0;
}

static int s_cmd_get(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "request", required_argument, NULL, 'X' },
		{ "url", required_argument, NULL, 'u' },
		{ "data", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct s_reqopt ro = { 0 };
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	const char *service;
	int json = 0, c, rc, ret = EXIT_FAILURE;

	optind = 0;
	while ((c = getopt_long(argc, argv, ":X:u:d:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'X':
			if (!s_valid_method(optarg)) {
				ret = s_usage_error("get: bad method '%s'", optarg);
				goto out;
			}
			ro.method = optarg;
			break;
		case 'u': ro.url = optarg; break;
		case 'd':
			if (s_reqopt_data(&ro, optarg) != 0)
				goto out;
			break;
		case 'j': json = 1; break;
		case 'h': fputs(s_usage, stdout); ret = EXIT_SUCCESS; goto out;
		default: ret = s_bad_option("get", argv, c); goto out;
		}
	}
	if (argc - optind != 1) {
		ret = s_usage_error(argc - optind < 1 ? "get: SERVICE missing"
		                                      : "get: one SERVICE only");
		goto out;
	}
	service = argv[optind];
	s_reqopt_fill(&ro, &req, s_guess_type(&ro));

	if (s_open(&ctx) != APICRED_OK)
		goto out;
	if (apicred_cred_new(&cred) != APICRED_OK) {
		s_fail(service, APICRED_ERR_NOMEM);
		goto out;
	}
	rc = apicred_get(ctx, service, &req, cred);
	if (rc != APICRED_OK) {
		s_fail(service, rc);
		goto out;
	}
	if (json ? s_print_json(cred) != 0 : (s_print_text(cred), 0)) {
		fprintf(stderr, "apicred: %s: cannot build JSON output\n", service);
		goto out;
	}
	s_log_show(service, 0);
	ret = EXIT_SUCCESS;
out:
	apicred_cred_free(cred);
	apicred_close(ctx);
	free(ro.data);
	return ret;
}

/* ---- request --------------------------------------------------------- */

struct s_buf {
	char *data;
	size_t len, cap;
};

static size_t s_write(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct s_buf *b = user;
	size_t n = size * nmemb;

	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 16384;
		char *p;

		while (cap - b->len < n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return 0; /* curl reports CURLE_WRITE_ERROR */
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* One attempt: get credentials, decorate a fresh handle, perform, and
 * report the answer (status, headers, body) to the library. Returns 0 with
 * *status and *retry set, or 1 after printing the error. */
static int s_perform(apicred_ctx *ctx, const char *service, const apicred_request *req,
                     apicred_cred *cred, struct s_buf *body, long *status, int *retry)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *h;
	CURLcode cc;
	int rc, ret = 1;

	h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "apicred: %s: cannot initialise libcurl\n", service);
		return 1;
	}
	/* URL, headers (ours and the credential's) and TLS material. */
	rc = apicred_curl_apply(ctx, service, h, req, cred);
	if (rc != APICRED_OK) {
		s_fail(service, rc);
		goto out;
	}
	if (req->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
	}
	if (strcasecmp(req->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->method, req->body ? "POST" : "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "apicred/" PACKAGE_VERSION);

	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "apicred: %s: %s\n", service,
		        errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	rc = apicred_curl_report(ctx, service, h, cred, body->data, body->len, retry);
	if (rc != APICRED_OK) {
		s_fail(service, rc);
		goto out;
	}
	ret = 0;
out:
	curl_easy_cleanup(h);
	return ret;
}

static int s_cmd_request(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "request", required_argument, NULL, 'X' },
		{ "data", required_argument, NULL, 'd' },
		{ "header", required_argument, NULL, 'H' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct s_reqopt ro = { 0 };
	apicred_request req = APICRED_REQUEST_INIT;
	const char **hdrs;   /* -H lines, a guessed Content-Type, NULL */
	size_t nhdrs = 0;
	char ctype_line[64];
	struct s_buf body = { 0 };
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	const char *service, *output = NULL, *ctype = NULL;
	long status = 0;
	int c, retry = 0, ret = EXIT_FAILURE;

	hdrs = calloc((size_t)argc + 1, sizeof(*hdrs));
	if (!hdrs) {
		fprintf(stderr, "apicred: out of memory\n");
		return EXIT_FAILURE;
	}
	optind = 0;
	while ((c = getopt_long(argc, argv, ":X:d:H:o:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'X':
			if (!s_valid_method(optarg)) {
				ret = s_usage_error("request: bad method '%s'", optarg);
				goto out;
			}
			ro.method = optarg;
			break;
		case 'd':
			if (s_reqopt_data(&ro, optarg) != 0)
				goto out;
			break;
		case 'H': {
			const char *colon = strchr(optarg, ':');

			if (!colon || colon == optarg || strpbrk(optarg, "\r\n")) {
				ret = s_usage_error("request: bad header '%s' (want 'Name: value')", optarg);
				goto out;
			}
			if ((size_t)(colon - optarg) == 12 && strncasecmp(optarg, "Content-Type", 12) == 0) {
				for (ctype = colon + 1; *ctype == ' ' || *ctype == '\t'; ctype++)
					;
			}
			hdrs[nhdrs++] = optarg;
			break;
		}
		case 'o': output = optarg; break;
		case 'h': fputs(s_usage, stdout); ret = EXIT_SUCCESS; goto out;
		default: ret = s_bad_option("request", argv, c); goto out;
		}
	}
	if (argc - optind != 2) {
		ret = s_usage_error(argc - optind < 2 ? "request: SERVICE and URL required"
		                                      : "request: too many arguments");
		goto out;
	}
	service = argv[optind];
	ro.url = argv[optind + 1];
	s_reqopt_fill(&ro, &req, ctype ? ctype : s_guess_type(&ro));
	if (req.body && !ctype) {
		/* What signing schemes were told is what the server gets. */
		snprintf(ctype_line, sizeof(ctype_line), "Content-Type: %s", req.content_type);
		hdrs[nhdrs++] = ctype_line;
	}
	req.headers = hdrs;

	if (s_open(&ctx) != APICRED_OK)
		goto out;
	if (apicred_cred_new(&cred) != APICRED_OK) {
		s_fail(service, APICRED_ERR_NOMEM);
		goto out;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		body.len = 0;
		if (body.data)
			body.data[0] = '\0';
		retry = 0;
		if (s_perform(ctx, service, &req, cred, &body, &status, &retry) != 0)
			goto out;
		if (!retry || attempt == 1)
			break;
		if (gl.verbose)
			fprintf(stderr, "apicred: %s: HTTP %ld, credentials renewed, retrying once\n",
			        service, status);
	}

	if (body.len) {
		FILE *f = output ? fopen(output, "wb") : stdout;

		if (!f) {
			fprintf(stderr, "apicred: %s: %s\n", output, strerror(errno));
			goto out;
		}
		if (fwrite(body.data, 1, body.len, f) != body.len ||
		    (f == stdout ? fflush(f) : fclose(f)) != 0) {
			fprintf(stderr, "apicred: %s: write error\n", output ? output : "stdout");
			goto out;
		}
	}
	s_log_show(service, 0); /* e.g. the failover that made it work */
	if (status < 200 || status > 299) {
		fprintf(stderr, "apicred: %s: HTTP %ld\n", service, status);
		ret = EXIT_HTTP;
		goto out;
	}
	ret = EXIT_SUCCESS;
out:
	apicred_cred_free(cred);
	apicred_close(ctx);
	free(hdrs);
	free(body.data);
	free(ro.data);
	return ret;
}

/* ---- check, list, providers, provision ------------------------------ */

/* Subcommands without options still accept --help and refuse others. */
static int s_no_options(const char *cmd, int argc, char **argv, int *done)
{
	static const struct option lopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*done = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		*done = 1;
		if (c == 'h') {
			fputs(s_usage, stdout);
			return EXIT_SUCCESS;
		}
		return s_bad_option(cmd, argv, c);
	}
	return EXIT_SUCCESS;
}

static int s_cmd_check(int argc, char **argv)
{
	apicred_ctx *ctx;
	int done, ret = s_no_options("check", argc, argv, &done), failed = 0, rc;
	size_t n;

	if (done)
		return ret;
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	/* All services: conf.d itself too (missing, empty, a bad file name). */
	if (optind < argc) {
		s_log_show(NULL, 1);
	} else if ((rc = apicred_check(ctx, NULL)) != APICRED_OK) {
		failed = 1;
		s_fail(NULL, rc);
	}
	n = optind < argc ? (size_t)(argc - optind) : apicred_service_count(ctx);
	for (size_t i = 0; i < n; i++) {
		const char *svc = optind < argc ? argv[optind + i] : apicred_service_name(ctx, i);

		if (!svc)
			continue;
		rc = apicred_check(ctx, svc);
		if (rc == APICRED_OK) {
			printf("%s: ok\n", svc);
			fflush(stdout);
			s_log_show(svc, 0);
		} else {
			failed = 1;
			s_fail(svc, rc);
		}
		fflush(stdout);
	}
	apicred_close(ctx);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int s_cmd_list(int argc, char **argv)
{
	apicred_ctx *ctx;
	int done, ret = s_no_options("list", argc, argv, &done);
	size_t n, width = 0;

	if (done)
		return ret;
	if (optind < argc)
		return s_usage_error("list: no arguments expected");
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	s_log_show(NULL, 1);
	n = apicred_service_count(ctx);
	if (n == 0)
		fprintf(stderr, "apicred: no services configured\n");
	for (size_t i = 0; i < n; i++) {
		const char *s = apicred_service_name(ctx, i);

		if (s && strlen(s) > width)
			width = strlen(s);
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = apicred_service_name(ctx, i), *d;

		if (!s)
			continue;
		d = apicred_service_description(ctx, s);
		if (d && *d)
			printf("%-*s  %s\n", (int)width, s, d);
		else
			printf("%s\n", s);
	}
	apicred_close(ctx);
	return EXIT_SUCCESS;
}

struct s_prov {
	int failed;
};

static void s_provider_cb(void *user, const char *name, const char *path, int status,
                          const char *detail)
{
	struct s_prov *pv = user;

	if (status == APICRED_OK) {
		printf("%-8s  %s  ok\n", name, path);
		return;
	}
	pv->failed = 1;
	printf("%-8s  %s  %s\n", name, path,
	       detail && *detail ? detail : apicred_strerror(status));
}

static int s_cmd_providers(int argc, char **argv)
{
	struct s_prov pv = { 0 };
	apicred_ctx *ctx;
	int done, ret = s_no_options("providers", argc, argv, &done), rc;

	if (done)
		return ret;
	if (optind < argc)
		return s_usage_error("providers: no arguments expected");
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	rc = apicred_providers(ctx, s_provider_cb, &pv);
	if (rc != APICRED_OK)
		s_fail("providers", rc);
	apicred_close(ctx);
	return rc != APICRED_OK || pv.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int s_cmd_provision(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "show", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	apicred_ctx *ctx;
	unsigned flags = 0;
	char *report = NULL;
	const char *service;
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, ":fsh", lopts, NULL)) != -1) {
		switch (c) {
		case 'f': flags |= APICRED_PROVISION_FORCE; break;
		case 's': flags |= APICRED_PROVISION_SHOW; break;
		case 'h': fputs(s_usage, stdout); return EXIT_SUCCESS;
		default: return s_bad_option("provision", argv, c);
		}
	}
	if (argc - optind != 1)
		return s_usage_error(argc - optind < 1 ? "provision: SERVICE missing"
		                                       : "provision: one SERVICE only");
	if ((flags & APICRED_PROVISION_FORCE) && (flags & APICRED_PROVISION_SHOW))
		return s_usage_error("provision: --force and --show exclude each other");
	service = argv[optind];
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	rc = apicred_provision(ctx, service, flags, &report);
	if (rc == APICRED_OK) {
		s_log_show(service, 0);
		if (report && *report)
			printf("%s%s", report, report[strlen(report) - 1] == '\n' ? "" : "\n");
	} else {
		s_fail(service, rc);
	}
	free(report);
	apicred_close(ctx);
	return rc == APICRED_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- main ------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} s_cmds[] = {
	{ "get", s_cmd_get },
	{ "request", s_cmd_request },
	{ "check", s_cmd_check },
	{ "list", s_cmd_list },
	{ "providers", s_cmd_providers },
	{ "provision", s_cmd_provision },
};

/* Output that did not reach its destination (a full disk) is a failure. */
static int s_finish(int ret)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "apicred: standard output: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "confdir", required_argument, NULL, 'c' },
		{ "moduledir", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c, ret;

	/* It holds and prints credentials: no core dump, no ptrace by others
	 * of the same user, no /proc/PID/mem or environ. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	opterr = 0;
	/* '+': stop at the command; its own options are parsed after it. */
	while ((c = getopt_long(argc, argv, "+:c:m:vhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'c': gl.confdir = optarg; break;
		case 'm': gl.moduledir = optarg; break;
		case 'v': gl.verbose = 1; break;
		case 'h': fputs(s_usage, stdout); return s_finish(EXIT_SUCCESS);
		case 'V':
			printf("apicred %s (application ABI %d.%d)\n", PACKAGE_VERSION,
			       APICRED_VERSION_MAJOR, APICRED_VERSION_MINOR);
			return s_finish(EXIT_SUCCESS);
		default: return s_bad_option(NULL, argv, c);
		}
	}
	if (optind >= argc)
		return s_usage_error("COMMAND missing");
	{
		/* A setuid or setgid apicred must not load its caller's modules. */
		const char *why = ac_dirs_refused(ac_secure(), gl.confdir != NULL,
		                                  gl.moduledir != NULL);
		if (why) {
			fprintf(stderr, "apicred: %s\n", why);
			return EXIT_USAGE;
		}
	}
	for (size_t i = 0; i < sizeof(s_cmds) / sizeof(s_cmds[0]); i++) {
		if (strcmp(argv[optind], s_cmds[i].name) != 0)
			continue;
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			fprintf(stderr, "apicred: cannot initialise libcurl\n");
			return EXIT_FAILURE;
		}
		/* The command sees itself as argv[0]. */
		ret = s_cmds[i].run(argc - optind, argv + optind);
		curl_global_cleanup();
		s_log_free();
		return s_finish(ret);
	}
	return s_usage_error("unknown command '%s'", argv[optind]);
}
