/*
 * apicred - command-line front end of libapicred.
 *
 *   apicred [OPTIONS] COMMAND [ARGS]      options may come anywhere
 *
 * Uses only the public application ABI (apicred.h), so it is also the
 * reference for how an application is meant to drive the library.
 *
 * Exit status: 0 success, 1 failure (bad configuration, network, ...),
 * 2 bad command line, 22 `request` got a non-2xx answer (as curl -f).
 *
 * Logging: with -v the library's own stderr logger is used, at level info
 * (-vv: debug; apicred.conf's log.level if higher). Without it nothing goes
 * to syslog, and the warnings and errors about the service at hand (or
 * about no service) are held back and shown only if the command succeeds:
 * a failure is reported once, by its apicred_errmsg(), while a success
 * still shows what went wrong on the way (a failover to a backup token, a
 * certificate about to expire).
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
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include <apicred/apicred.h>

#include "../core/secure.h"

enum {
	EXIT_USAGE = 2,
	EXIT_HTTP = 22, /* like curl --fail */
	S_GO = -1       /* s_parse: run the command */
};

/* A command: its options (getopt syntax; the global ones are added to
 * every command, and may come before or after it, anywhere on the line),
 * one synopsis line and the help `apicred help NAME` prints. */
struct s_cmd {
	const char *name;
	int (*run)(const struct s_cmd *cmd, int argc, char **argv);
	const char *opts;
	const struct option *lopts;
	const char *synopsis;
	const char *summary;
	const char *help;
};

/* The command table (at the end of the file). */
static const struct s_cmd *s_cmds;
static size_t s_ncmds;

#define S_GLOBAL_OPTS "c:m:vhV"
static const struct option s_global_lopts[] = {
	{ "confdir", required_argument, NULL, 'c' },
	{ "moduledir", required_argument, NULL, 'm' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 }
};

static const char s_global_help[] =
	"options (anywhere on the line):\n"
	"  -c, --confdir DIR       configuration directory (default: $APICRED_CONFDIR\n"
	"                          or " APICRED_CONFDIR ")\n"
	"  -m, --moduledir DIR     provider directory (default: $APICRED_MODULEDIR,\n"
	"                          apicred.conf's moduledir or " APICRED_MODULEDIR ")\n"
	"  -v, --verbose           the library's log on stderr (-vv: with debug traces)\n"
	"  -h, --help              show help (apicred help COMMAND: a command's)\n"
	"  -V, --version           show the version\n";

/* Options shared by every command. */
static struct {
	const char *confdir;
	const char *moduledir;
	int verbose;
} gl;

/* ---- help and usage errors --------------------------------------------- */

static void s_help(const struct s_cmd *cmd, FILE *f)
{
	if (cmd) {
		fprintf(f, "usage: apicred %s %s\n\n%s\n%s%s", cmd->name, cmd->synopsis, cmd->summary,
		        cmd->help ? "\n" : "", cmd->help ? cmd->help : "");
		fprintf(f, "\n%s", s_global_help);
		return;
	}
	fputs("usage: apicred [OPTIONS] COMMAND [ARGS]\n\ncommands:\n", f);
	for (size_t i = 0; i < s_ncmds; i++)
		fprintf(f, "  %s %s\n        %s\n", s_cmds[i].name, s_cmds[i].synopsis,
		        s_cmds[i].summary);
	fprintf(f, "\n%s\nexit status: 0 ok, 1 error, 2 bad usage, 22 HTTP status not 2xx\n",
	        s_global_help);
}

static int s_usage_error(const struct s_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One line saying what is wrong, one line saying what would be right. */
static int s_usage_error(const struct s_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "apicred: %s%s", cmd ? cmd->name : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nusage: apicred %s %s (more: apicred help %s)\n", cmd->name,
		        cmd->synopsis, cmd->name);
	else
		fputs("\nusage: apicred [OPTIONS] COMMAND [ARGS] (more: apicred help)\n", stderr);
	return EXIT_USAGE;
}

/* Parses the whole command line, global options included, for cmd (NULL:
 * none was given), calling opt for each of the command's own options; opt
 * returns S_GO or an exit status. Returns S_GO with the arguments after
 * the command name in *pos, or the status to exit with. */
static int s_parse(const struct s_cmd *cmd, int argc, char **argv,
                   int (*opt)(void *user, int c, char *arg), void *user,
                   char ***pos, int *npos)
{
	char shortopts[64];
	struct option lopts[32];
	size_t n = 0;
	int c, rc;

	snprintf(shortopts, sizeof(shortopts), ":%s%s", S_GLOBAL_OPTS,
	         cmd && cmd->opts ? cmd->opts : "");
	for (const struct option *o = s_global_lopts; o->name; o++)
		lopts[n++] = *o;
	for (const struct option *o = cmd ? cmd->lopts : NULL; o && o->name && n < 31; o++)
		lopts[n++] = *o;
	memset(&lopts[n], 0, sizeof(lopts[n]));

	optind = 0; /* glibc: start afresh */
	opterr = 0; /* our own messages, naming the command */
	while ((c = getopt_long(argc, argv, shortopts, lopts, NULL)) != -1) {
		switch (c) {
		case 'c': gl.confdir = optarg; break;
		case 'm': gl.moduledir = optarg; break;
		case 'v': gl.verbose++; break;
		case 'h': s_help(cmd, stdout); return EXIT_SUCCESS;
		case 'V':
			printf("apicred %s (application ABI %d.%d)\n", PACKAGE_VERSION,
			       APICRED_VERSION_MAJOR, APICRED_VERSION_MINOR);
			return EXIT_SUCCESS;
		case ':':
			return s_usage_error(cmd, "option '%s' needs an argument", argv[optind - 1]);
		case '?':
			if (optopt && optopt < 0x100)
				return s_usage_error(cmd, "unknown option '-%c'", optopt);
			return s_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		default:
			if (!opt)
				return s_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
			if ((rc = opt(user, c, optarg)) != S_GO)
				return rc;
		}
	}
	/* A setuid or setgid apicred must not load its caller's modules. */
	const char *why = ac_dirs_refused(ac_secure(), gl.confdir != NULL, gl.moduledir != NULL);
	if (why) {
		fprintf(stderr, "apicred: %s\n", why);
		return EXIT_USAGE;
	}
	/* Arguments keep their order: the command's name comes first. */
	*pos = argv + optind + (cmd ? 1 : 0);
	*npos = argc - optind - (cmd ? 1 : 0);
	return S_GO;
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
 * and other services' lines belong to those services (each loads on first
 * use, when checked): both stay held. */
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
	if (gl.verbose) {
		/* The library's own knob (apicred.conf(5)); it only ever raises
		 * the level, so -v does not quieten a debug apicred.conf. */
		const char *env = getenv("APICRED_DEBUG");

		if (gl.verbose > 1)
			setenv("APICRED_DEBUG", "debug", 1);
		else if (!env || !*env)
			setenv("APICRED_DEBUG", "info", 1);
		o.flags |= APICRED_OPEN_LOG_STDERR;
	} else {
		o.log = s_log_quiet;
	}
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

/* The content type stays NULL: the library resolves it for a body (a
 * Content-Type among the header lines, else JSON or form by its look), as
 * apicred_curl_apply sends it. */
static void s_reqopt_fill(const struct s_reqopt *r, apicred_request *req)
{
	req->method = r->method ? r->method : r->have_data ? "POST" : "GET";
	req->url = r->url;
	req->body = r->have_data ? r->data : NULL;
	req->body_len = r->have_data ? r->data_len : 0;
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

/* One value for scripts: ITEM's (a header, else a query parameter), else
 * the token of Authorization (its value without the scheme word), else the
 * only item there is. */
static int s_print_value(const char *service, const apicred_cred *cred, const char *item)
{
	size_t nh = apicred_cred_count(cred, APICRED_HEADER), nq = apicred_cred_count(cred, APICRED_QUERY);
	const char *v = NULL, *name, *sp;

	if (item) {
		v = apicred_cred_find(cred, APICRED_HEADER, item);
		if (!v)
			v = apicred_cred_find(cred, APICRED_QUERY, item);
	} else if ((v = apicred_cred_find(cred, APICRED_HEADER, "Authorization"))) {
		if ((sp = strchr(v, ' ')) && sp[1] && !strchr(sp + 1, ' '))
			v = sp + 1; /* "Bearer abc" -> "abc"; "TOK:abc" stays whole */
	} else if (nh + nq == 1) {
		apicred_cred_item(cred, nh ? APICRED_HEADER : APICRED_QUERY, 0, &name, &v, NULL);
	}
	if (v) {
		printf("%s\n", v);
		return EXIT_SUCCESS;
	}
	fprintf(stderr, "apicred: %s: ", service);
	if (item)
		fprintf(stderr, "no header or query parameter '%s'", item);
	else if (nh + nq == 0)
		fprintf(stderr, "no header or query parameter to print");
	else
		fprintf(stderr, "%zu values; name one with --value=NAME", nh + nq);
	for (size_t k = 0; k < 2; k++) {
		apicred_kind kind = k ? APICRED_QUERY : APICRED_HEADER;

		for (size_t i = 0; i < apicred_cred_count(cred, kind); i++)
			if (apicred_cred_item(cred, kind, i, &name, &v, NULL) == APICRED_OK)
				fprintf(stderr, "%s%s", k + i ? ", " : " (there are: ", name);
	}
	fputs(nh + nq ? ")\n" : "\n", stderr);
	return EXIT_FAILURE;
}

enum { S_OPT_JSON = 0x100, S_OPT_VALUE, S_OPT_ONLINE };

struct s_get {
	const struct s_cmd *cmd;
	struct s_reqopt ro;
	int json, value;
	const char *item;
	int ret;
};

static int s_get_opt(void *user, int c, char *arg)
{
	struct s_get *g = user;

	switch (c) {
	case 'X':
		if (!s_valid_method(arg))
			return s_usage_error(g->cmd, "bad method '%s'", arg);
		g->ro.method = arg;
		return S_GO;
	case 'u': g->ro.url = arg; return S_GO;
	case 'd': return s_reqopt_data(&g->ro, arg) == 0 ? S_GO : EXIT_FAILURE;
	case S_OPT_JSON: g->json = 1; return S_GO;
	case S_OPT_VALUE: g->value = 1; g->item = arg; return S_GO;
	}
	return EXIT_USAGE;
}

static int s_cmd_get(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_get g = { .cmd = cmd };
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	const char *service;
	char **pos;
	int npos, rc, ret;

	ret = s_parse(cmd, argc, argv, s_get_opt, &g, &pos, &npos);
	if (ret != S_GO)
		goto out;
	ret = EXIT_FAILURE;
	/* --value ITEM as well as --value=ITEM */
	if (g.value && !g.item && npos == 2)
		g.item = pos[--npos];
	if (npos != 1) {
		ret = s_usage_error(cmd, npos < 1 ? "SERVICE missing" : "one SERVICE only");
		goto out;
	}
	if (g.json && g.value) {
		ret = s_usage_error(cmd, "--json and --value exclude each other");
		goto out;
	}
	service = pos[0];
	s_reqopt_fill(&g.ro, &req);

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
	if (g.value) {
		ret = s_print_value(service, cred, g.item);
	} else if (g.json ? s_print_json(cred) != 0 : (s_print_text(cred), 0)) {
		fprintf(stderr, "apicred: %s: cannot build JSON output\n", service);
		goto out;
	} else {
		ret = EXIT_SUCCESS;
	}
	s_log_show(service, 0);
out:
	apicred_cred_free(cred);
	apicred_close(ctx);
	free(g.ro.data);
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

/* The headers of the last response only (a 100 Continue or a retry's
 * earlier answer starts over). */
static size_t s_write_header(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct s_buf *b = user;

	if (size * nmemb > 5 && strncmp(ptr, "HTTP/", 5) == 0)
		b->len = 0;
	return s_write(ptr, size, nmemb, user);
}

/* What a request to the server says back, for -w and the messages. */
struct s_answer {
	long status;
	char *content_type;  /* copies: the handle is gone by then */
	char *location;      /* redacted */
	double time_total;
	int retry;           /* from apicred_curl_report */
	struct s_buf body, headers;
};

/* A URL without user info, query or fragment: a Location may echo the
 * credentials the request carried in its query. */
static char *s_redact_url(const char *url)
{
	CURLU *u = curl_url();
	char *out = NULL, *copy = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		char *q = NULL;
		int had_query = curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK;

		curl_free(q);
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
		curl_url_set(u, CURLUPART_USER, NULL, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK &&
		    asprintf(&copy, "%s%s", out, had_query ? "?(query not shown)" : "") < 0)
			copy = NULL;
		curl_free(out);
	}
	curl_url_cleanup(u);
	return copy;
}

/* One attempt: get credentials, decorate a fresh handle, perform. Returns
 * 0 with the answer filled, or 1 after printing the error. */
static int s_perform(apicred_ctx *ctx, const char *service, const apicred_request *req,
                     apicred_cred *cred, struct s_answer *a)
{
	char errbuf[CURL_ERROR_SIZE] = "", *ct = NULL, *loc = NULL;
	CURL *h;
	CURLcode cc;
	int rc, ret = 1;

	a->body.len = a->headers.len = 0;
	free(a->content_type);
	free(a->location);
	a->content_type = a->location = NULL;
	h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "apicred: %s: cannot initialise libcurl\n", service);
		return 1;
	}
	/* URL, headers (ours, the content type and the credential's), TLS. */
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
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &a->body);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s_write_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &a->headers);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "apicred/" PACKAGE_VERSION);

	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "apicred: %s: %s%s\n", service,
		        errbuf[0] ? errbuf : curl_easy_strerror(cc),
		        cc == CURLE_PEER_FAILED_VERIFICATION
		        ? " (is the CA that signed the server's certificate in http.ca_file of "
		          "apicred.conf, or the mtls layer's ca?)" : "");
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &a->time_total);
	if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		a->content_type = strdup(ct);
	if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
		a->location = s_redact_url(loc);
	/* The status, the headers (WWW-Authenticate, DPoP-Nonce) and the body. */
	a->retry = 0;
	rc = apicred_curl_report(ctx, service, h, cred, a->body.data, a->body.len, &a->retry);
	if (rc != APICRED_OK) {
		s_fail(service, rc);
		goto out;
	}
	ret = 0;
out:
	curl_easy_cleanup(h);
	return ret;
}

/* -w's variables: the subset of curl's that make sense here. */
static const char *const s_wvars[] = {
	"http_code", "response_code", "content_type", "redirect_url", "size_download",
	"size_header", "time_total", "url", "method", NULL
};

/* Checks a -w format: NULL if fine, else the unknown variable's name. */
static const char *s_wformat_bad(const char *fmt, char *bad, size_t cap)
{
	for (const char *p = fmt; (p = strstr(p, "%{")); p++) {
		const char *end = strchr(p, '}');
		size_t n = end ? (size_t)(end - p - 2) : strlen(p + 2);
		int known = 0;

		for (const char *const *v = s_wvars; end && *v; v++)
			known |= strlen(*v) == n && strncmp(*v, p + 2, n) == 0;
		if (!known) {
			snprintf(bad, cap, "%.*s", (int)n, p + 2);
			return bad;
		}
	}
	return NULL;
}

static void s_wprint(const char *fmt, const struct s_answer *a, const apicred_request *req)
{
	for (const char *p = fmt; *p; p++) {
		if (p[0] == '\\' && p[1]) {
			p++;
			putchar(*p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p);
		} else if (p[0] == '%' && p[1] == '%') {
			putchar('%');
			p++;
		} else if (p[0] == '%' && p[1] == '{') {
			const char *v = p + 2, *end = strchr(v, '}');
			size_t n = (size_t)(end - v);

#define S_IS(name) (n == strlen(name) && strncmp(v, name, n) == 0)
			if (S_IS("http_code") || S_IS("response_code"))
				printf("%03ld", a->status);
			else if (S_IS("content_type"))
				fputs(a->content_type ? a->content_type : "", stdout);
			else if (S_IS("redirect_url"))
				fputs(a->location ? a->location : "", stdout);
			else if (S_IS("size_download"))
				printf("%zu", a->body.len);
			else if (S_IS("size_header"))
				printf("%zu", a->headers.len);
			else if (S_IS("time_total"))
				printf("%.6f", a->time_total);
			else if (S_IS("url"))
				fputs(req->url, stdout); /* the caller's: no credential in it */
			else if (S_IS("method"))
				fputs(req->method, stdout);
#undef S_IS
			p = end;
		} else {
			putchar(*p);
		}
	}
}

struct s_request {
	const struct s_cmd *cmd;
	struct s_reqopt ro;
	const char **hdrs; /* -H lines, NULL-terminated */
	size_t nhdrs;
	const char *output, *wformat;
	int include, silent, fail;
};

static int s_request_opt(void *user, int c, char *arg)
{
	struct s_request *r = user;
	char bad[64];

	switch (c) {
	case 'X':
		if (!s_valid_method(arg))
			return s_usage_error(r->cmd, "bad method '%s'", arg);
		r->ro.method = arg;
		return S_GO;
	case 'd': return s_reqopt_data(&r->ro, arg) == 0 ? S_GO : EXIT_FAILURE;
	case 'H': {
		const char *colon = strchr(arg, ':');

		if (!colon || colon == arg || strpbrk(arg, "\r\n"))
			return s_usage_error(r->cmd, "bad header '%s' (want 'Name: value')", arg);
		r->hdrs[r->nhdrs++] = arg;
		return S_GO;
	}
	case 'o': r->output = arg; return S_GO;
	case 'i': r->include = 1; return S_GO;
	case 's': r->silent = 1; return S_GO;
	case 'f': r->fail = 1; return S_GO;
	case 'w':
		if (s_wformat_bad(arg, bad, sizeof(bad)))
			return s_usage_error(r->cmd, "-w: unknown variable '%%{%s}'", bad);
		r->wformat = arg;
		return S_GO;
	}
	return EXIT_USAGE;
}

/* Writes what -i and the body ask for; -f: nothing for an error status. */
static int s_output(const struct s_request *r, const struct s_answer *a)
{
	FILE *f;
	int err;

	if (r->fail && a->status >= 400)
		return 0;
	if (!a->body.len && !(r->include && a->headers.len))
		return 0;
	f = r->output ? fopen(r->output, "wb") : stdout;
	if (!f) {
		fprintf(stderr, "apicred: %s: %s\n", r->output, strerror(errno));
		return -1;
	}
	err = r->include && fwrite(a->headers.data, 1, a->headers.len, f) != a->headers.len;
	err |= a->body.len && fwrite(a->body.data, 1, a->body.len, f) != a->body.len;
	err |= (f == stdout ? fflush(f) : fclose(f)) != 0;
	if (err) {
		fprintf(stderr, "apicred: %s: write error\n", r->output ? r->output : "stdout");
		return -1;
	}
	return 0;
}

static int s_cmd_request(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_request r = { .cmd = cmd };
	struct s_answer a = { 0 };
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	const char *service;
	char **pos;
	int npos, retry = 0, ret;

	r.hdrs = calloc((size_t)argc + 1, sizeof(*r.hdrs));
	if (!r.hdrs) {
		fprintf(stderr, "apicred: out of memory\n");
		return EXIT_FAILURE;
	}
	ret = s_parse(cmd, argc, argv, s_request_opt, &r, &pos, &npos);
	if (ret != S_GO)
		goto out;
	ret = EXIT_FAILURE;
	if (npos != 2) {
		ret = s_usage_error(cmd, npos < 2 ? "SERVICE and URL required" : "too many arguments");
		goto out;
	}
	service = pos[0];
	r.ro.url = pos[1];
	s_reqopt_fill(&r.ro, &req);
	req.headers = r.hdrs;

	if (s_open(&ctx) != APICRED_OK)
		goto out;
	if (apicred_cred_new(&cred) != APICRED_OK) {
		s_fail(service, APICRED_ERR_NOMEM);
		goto out;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		if (s_perform(ctx, service, &req, cred, &a) != 0)
			goto out;
		retry = a.retry;
		if (!retry || attempt == 1)
			break;
		if (gl.verbose)
			fprintf(stderr, "apicred: %s: HTTP %ld, credentials renewed, retrying once\n",
			        service, a.status);
	}

	if (s_output(&r, &a) != 0)
		goto out;
	if (r.wformat)
		s_wprint(r.wformat, &a, &req);
	s_log_show(service, 0); /* e.g. the failover that made it work */
	if (a.status < 200 || a.status > 299) {
		if (!r.silent && a.location)
			fprintf(stderr, "apicred: %s: HTTP %ld: redirected to %s (not followed)\n",
			        service, a.status, a.location);
		else if (!r.silent)
			fprintf(stderr, "apicred: %s: HTTP %ld\n", service, a.status);
		ret = EXIT_HTTP;
		goto out;
	}
	ret = EXIT_SUCCESS;
out:
	apicred_cred_free(cred);
	apicred_close(ctx);
	free(r.hdrs);
	free(a.body.data);
	free(a.headers.data);
	free(a.content_type);
	free(a.location);
	free(r.ro.data);
	return ret;
}

/* ---- check, list, providers, provision, help -------------------------- */

/* Prints a JSON value (compact for scripts, one line), then a newline. */
static int s_json_out(json_t *v)
{
	char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	json_decref(v);
	if (!text) {
		fprintf(stderr, "apicred: cannot build JSON output\n");
		return -1;
	}
	puts(text);
	free(text);
	return 0;
}

static json_t *s_jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* Options of the commands that only have --json (and --online for check). */
struct s_flags {
	int json, online;
};

static int s_flags_opt(void *user, int c, char *arg)
{
	struct s_flags *f = user;

	if (c == S_OPT_JSON)
		f->json = 1;
	else if (c == S_OPT_ONLINE)
		f->online = 1;
	else
		return EXIT_USAGE;
	return S_GO;
}

/* The message of apicred_errmsg() without the "service: " it may start with. */
static const char *s_errtext(const char *service, int code)
{
	const char *msg = apicred_errmsg();
	size_t n = strlen(service);

	if (!msg || !*msg)
		return apicred_strerror(code);
	if (strncmp(msg, service, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		msg += n + 2;
	return msg;
}

/* check --online: a session fetched from the servers proves the
 * credentials (a layer without a session has nothing to prove online). */
static int s_check_online(apicred_ctx *ctx, const char *service, char *note, size_t cap)
{
	apicred_cred *cred = NULL;
	int64_t exp;
	int rc = apicred_cred_new(&cred);

	if (rc == APICRED_OK)
		rc = apicred_get(ctx, service, NULL, cred);
	if (rc == APICRED_OK && (exp = apicred_cred_expires_at(cred)) > 0) {
		time_t t = (time_t)exp;
		struct tm tm;
		char when[32];

		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		snprintf(note, cap, " (online: session valid until %s)", when);
	} else if (rc == APICRED_OK) {
		snprintf(note, cap, " (online: no session to fetch)");
	}
	apicred_cred_free(cred);
	return rc;
}

/* Each problem of a service: a line on stderr, or into the JSON array. */
struct s_problems {
	const char *service;
	json_t *arr;
};

static void s_problem_cb(void *user, const char *message)
{
	struct s_problems *p = user;
	size_t n = strlen(p->service);

	if (strncmp(message, p->service, n) == 0 && message[n] == ':' && message[n + 1] == ' ')
		message += n + 2;
	if (p->arr)
		json_array_append_new(p->arr, json_string(message));
	else
		fprintf(stderr, "apicred: %s: %s\n", p->service, message);
}

static int s_cmd_check(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_flags fl = { 0 };
	apicred_ctx *ctx;
	json_t *arr = NULL;
	char **pos;
	int npos, ret, failed = 0, rc;
	size_t n;

	if ((ret = s_parse(cmd, argc, argv, s_flags_opt, &fl, &pos, &npos)) != S_GO)
		return ret;
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	/* All services: conf.d itself too (missing, empty, a bad file name). */
	if (npos > 0) {
		s_log_show(NULL, 1);
	} else if ((rc = apicred_check(ctx, NULL)) != APICRED_OK) {
		failed = 1;
		s_fail(NULL, rc);
	}
	n = npos > 0 ? (size_t)npos : apicred_service_count(ctx);
	if (fl.json && !(arr = json_array())) {
		apicred_close(ctx);
		return EXIT_FAILURE;
	}
	for (size_t i = 0; i < n; i++) {
		const char *svc = npos > 0 ? pos[i] : apicred_service_name(ctx, i);
		char note[96] = "";

		if (!svc)
			continue;
		struct s_problems pr = { svc, fl.json ? json_array() : NULL };

		rc = apicred_check_report(ctx, svc, s_problem_cb, &pr);
		if (rc == APICRED_ERR_NO_SERVICE || rc == APICRED_ERR_BAD_NAME) {
			if (!fl.json)
				s_fail(svc, rc); /* no file, hence no problem of one */
			else
				json_array_append_new(pr.arr, json_string(s_errtext(svc, rc)));
		}
		if (rc == APICRED_OK && fl.online) {
			rc = s_check_online(ctx, svc, note, sizeof(note));
			if (rc != APICRED_OK && !fl.json)
				s_fail(svc, rc);
			else if (rc != APICRED_OK)
				json_array_append_new(pr.arr, json_string(s_errtext(svc, rc)));
		}
		failed |= rc != APICRED_OK;
		if (fl.json) {
			json_t *o = json_pack("{s:s, s:b, s:o, s:o}", "service", svc, "ok",
			                      rc == APICRED_OK, "error",
			                      rc == APICRED_OK ? json_null()
			                                       : json_string(s_errtext(svc, rc)),
			                      "problems", pr.arr ? pr.arr : json_null());
			if (!o || json_array_append_new(arr, o) != 0)
				failed = 1;
		} else if (rc == APICRED_OK) {
			printf("%s: ok%s\n", svc, note);
			fflush(stdout);
			s_log_show(svc, 0);
		}
		fflush(stdout);
	}
	apicred_close(ctx);
	if (fl.json && s_json_out(arr) != 0)
		return EXIT_FAILURE;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int s_cmd_list(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_flags fl = { 0 };
	apicred_ctx *ctx;
	json_t *arr = NULL;
	char **pos;
	int npos, ret, failed = 0;
	size_t n, width = 0;

	if ((ret = s_parse(cmd, argc, argv, s_flags_opt, &fl, &pos, &npos)) != S_GO)
		return ret;
	if (npos > 0)
		return s_usage_error(cmd, "no arguments expected");
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	s_log_show(NULL, 1);
	n = apicred_service_count(ctx);
	if (n == 0)
		fprintf(stderr, "apicred: no services configured\n");
	if (fl.json)
		arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const char *s = apicred_service_name(ctx, i);

		if (s && strlen(s) > width)
			width = strlen(s);
	}
	/* The descriptions alone: no provider loaded, no secret read. A service
	 * whose file cannot be read is listed with its error. */
	for (size_t i = 0; i < n; i++) {
		const char *s = apicred_service_name(ctx, i);
		char *d = NULL;
		int rc;

		if (!s)
			continue;
		rc = apicred_service_description_read(ctx, s, &d);
		failed |= rc != APICRED_OK;
		if (arr)
			json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "name", s,
			                                     "description", s_jstr(d), "error",
			                                     rc == APICRED_OK
			                                     ? json_null()
			                                     : json_string(s_errtext(s, rc))));
		else if (d && *d)
			printf("%-*s  %s\n", (int)width, s, d);
		else
			printf("%s\n", s);
		if (rc != APICRED_OK && !arr) {
			fflush(stdout);
			s_fail(s, rc);
		}
		free(d);
	}
	apicred_close(ctx);
	if (fl.json && s_json_out(arr) != 0)
		return EXIT_FAILURE;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

struct s_prov {
	apicred_ctx *ctx;
	json_t *arr;      /* --json: the providers */
	json_t *keys;     /* --json: the keys being collected */
	int failed;
};

static void s_key_cb(void *user, const apicred_key *k)
{
	struct s_prov *pv = user;

	if (pv->keys) {
		json_t *choices = k->choices ? json_array() : NULL;

		for (const char *p = k->choices; choices && p && *p;) {
			const char *bar = strchr(p, '|');
			size_t len = bar ? (size_t)(bar - p) : strlen(p);

			json_array_append_new(choices, json_stringn(p, len));
			p = bar ? bar + 1 : NULL;
		}
		json_array_append_new(pv->keys,
		                      json_pack("{s:s, s:s, s:b, s:b, s:o, s:o, s:o}", "name", k->name,
		                                "type", k->type, "required", k->required, "secret",
		                                k->secret, "default", s_jstr(k->def), "choices",
		                                choices ? choices : json_null(), "help",
		                                s_jstr(k->help)));
		return;
	}
	printf("    %s (%s%s%s%s%s%s%s)\n", k->name, k->type, k->required ? ", required" : "",
	       k->secret ? ", secret" : "", k->choices ? ", one of " : "",
	       k->choices ? k->choices : "", k->def ? ", default " : "", k->def ? k->def : "");
	if (k->help && *k->help)
		printf("        %s\n", k->help);
}

static void s_provider_cb(void *user, const char *name, const char *path, int status,
                          const char *detail)
{
	struct s_prov *pv = user;
	const char *why = detail && *detail ? detail : apicred_strerror(status);

	pv->failed |= status != APICRED_OK;
	if (pv->arr) {
		json_t *o = json_pack("{s:s, s:s, s:b, s:o}", "name", name, "path", path, "ok",
		                      status == APICRED_OK, "error",
		                      status == APICRED_OK ? json_null() : json_string(why));

		if (o && status == APICRED_OK && (pv->keys = json_array())) {
			apicred_provider_keys(pv->ctx, name, s_key_cb, pv);
			json_object_set_new(o, "keys", pv->keys);
			pv->keys = NULL;
		}
		json_array_append_new(pv->arr, o);
		return;
	}
	printf("%-8s  %s  %s\n", name, path, status == APICRED_OK ? "ok" : why);
	if (gl.verbose && status == APICRED_OK)
		apicred_provider_keys(pv->ctx, name, s_key_cb, pv);
}

static int s_cmd_providers(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_flags fl = { 0 };
	struct s_prov pv = { 0 };
	json_t *root = NULL;
	char **pos;
	int npos, ret, rc;

	if ((ret = s_parse(cmd, argc, argv, s_flags_opt, &fl, &pos, &npos)) != S_GO)
		return ret;
	if (npos > 0)
		return s_usage_error(cmd, "no arguments expected");
	if (s_open(&pv.ctx) != APICRED_OK)
		return EXIT_FAILURE;
	if (fl.json) {
		root = json_object();
		pv.arr = json_array();
		pv.keys = json_array();
		apicred_provider_keys(pv.ctx, NULL, s_key_cb, &pv);
		json_object_set_new(root, "layer_keys", pv.keys);
		json_object_set_new(root, "providers", pv.arr);
		pv.keys = NULL;
	} else if (gl.verbose) {
		printf("keys of every layer:\n");
		apicred_provider_keys(pv.ctx, NULL, s_key_cb, &pv);
	}
	rc = apicred_providers(pv.ctx, s_provider_cb, &pv);
	if (rc != APICRED_OK)
		s_fail("providers", rc);
	apicred_close(pv.ctx);
	if (fl.json && rc == APICRED_OK && s_json_out(root) != 0)
		return EXIT_FAILURE;
	if (rc != APICRED_OK)
		json_decref(root);
	return rc != APICRED_OK || pv.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

struct s_provision {
	unsigned flags;
};

static int s_provision_opt(void *user, int c, char *arg)
{
	struct s_provision *p = user;

	if (c == 'f')
		p->flags |= APICRED_PROVISION_FORCE;
	else if (c == 's')
		p->flags |= APICRED_PROVISION_SHOW;
	else
		return EXIT_USAGE;
	return S_GO;
}

static int s_cmd_provision(const struct s_cmd *cmd, int argc, char **argv)
{
	struct s_provision p = { 0 };
	apicred_ctx *ctx;
	char *report = NULL, **pos;
	const char *service;
	int npos, rc;

	if ((rc = s_parse(cmd, argc, argv, s_provision_opt, &p, &pos, &npos)) != S_GO)
		return rc;
	if (npos != 1)
		return s_usage_error(cmd, npos < 1 ? "SERVICE missing" : "one SERVICE only");
	if ((p.flags & APICRED_PROVISION_FORCE) && (p.flags & APICRED_PROVISION_SHOW))
		return s_usage_error(cmd, "--force and --show exclude each other");
	service = pos[0];
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	rc = apicred_provision(ctx, service, p.flags, &report);
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

static const char *const s_entry_state[] = { "absent", "valid", "expired", "unreadable" };

static void s_cache_cb(void *user, const apicred_cache_entry *e)
{
	char when[32] = "-";
	time_t t = (time_t)e->expires_at;
	struct tm tm;

	if (e->expires_at && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s\t%d\t%s\t%s\t%s\t%s\n", e->service, e->layer, e->provider, e->store,
	       e->state >= 0 && e->state <= 3 ? s_entry_state[e->state] : "?", when);
}

/* One service's entries (NULL: the library's walk of every service);
 * *cleared adds up the entries deleted. */
static int s_cache_one(apicred_ctx *ctx, int list, const char *svc, size_t *cleared)
{
	size_t n = 0;
	int rc;

	if (list)
		return apicred_cache_list(ctx, svc, s_cache_cb, NULL);
	rc = apicred_cache_clear(ctx, svc, &n);
	*cleared += n;
	return rc;
}

/* cache list|clear [SERVICE]: the shared store, seen through this confdir.
 * Service by service, as check goes: each failure is said with its
 * service's name and the others are still listed or cleared. */
static int s_cmd_cache(const struct s_cmd *cmd, int argc, char **argv)
{
	apicred_ctx *ctx;
	char **pos;
	const char *op, *svc;
	size_t cleared = 0, n, nok = 0;
	int npos, rc, list, failed = 0;

	if ((rc = s_parse(cmd, argc, argv, NULL, NULL, &pos, &npos)) != S_GO)
		return rc;
	op = npos > 0 ? pos[0] : NULL;
	if (!op || (strcmp(op, "list") != 0 && strcmp(op, "clear") != 0))
		return s_usage_error(cmd, "list or clear expected");
	if (npos > 2)
		return s_usage_error(cmd, "at most one SERVICE");
	svc = npos == 2 ? pos[1] : NULL;
	list = strcmp(op, "list") == 0;
	if (s_open(&ctx) != APICRED_OK)
		return EXIT_FAILURE;
	n = svc ? 1 : apicred_service_count(ctx);
	if (n == 0) { /* still says when there is no store ("none") */
		if ((rc = s_cache_one(ctx, list, NULL, &cleared)) == APICRED_OK)
			nok++;
		else
			s_fail("cache", rc);
		failed = rc != APICRED_OK;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = svc ? svc : apicred_service_name(ctx, i);

		if (!name)
			continue;
		if ((rc = s_cache_one(ctx, list, name, &cleared)) == APICRED_OK) {
			nok++;
			continue;
		}
		failed = 1;
		if (rc == APICRED_ERR_UNSUPPORTED) { /* the store, not this service */
			s_fail("cache", rc);
			break;
		}
		s_fail(name, rc);
	}
	if (!list && nok)
		printf("%zu %s deleted\n", cleared, cleared == 1 ? "entry" : "entries");
	apicred_close(ctx);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static const struct s_cmd *s_cmd_find(const char *name)
{
	for (size_t i = 0; i < s_ncmds; i++)
		if (strcmp(name, s_cmds[i].name) == 0)
			return &s_cmds[i];
	return NULL;
}

static int s_cmd_help(const struct s_cmd *cmd, int argc, char **argv)
{
	const struct s_cmd *about = NULL;
	char **pos;
	int npos, rc;

	if ((rc = s_parse(cmd, argc, argv, NULL, NULL, &pos, &npos)) != S_GO)
		return rc;
	if (npos > 1)
		return s_usage_error(cmd, "one COMMAND at most");
	if (npos == 1 && !(about = s_cmd_find(pos[0])))
		return s_usage_error(cmd, "unknown command '%s'", pos[0]);
	s_help(about, stdout);
	return EXIT_SUCCESS;
}

/* ---- main ------------------------------------------------------------ */

static const struct option s_get_lopts[] = {
	{ "request", required_argument, NULL, 'X' },
	{ "url", required_argument, NULL, 'u' },
	{ "data", required_argument, NULL, 'd' },
	{ "json", no_argument, NULL, S_OPT_JSON },
	{ "value", optional_argument, NULL, S_OPT_VALUE },
	{ NULL, 0, NULL, 0 }
};
static const struct option s_request_lopts[] = {
	{ "request", required_argument, NULL, 'X' },
	{ "data", required_argument, NULL, 'd' },
	{ "header", required_argument, NULL, 'H' },
	{ "output", required_argument, NULL, 'o' },
	{ "include", no_argument, NULL, 'i' },
	{ "silent", no_argument, NULL, 's' },
	{ "fail", no_argument, NULL, 'f' },
	{ "write-out", required_argument, NULL, 'w' },
	{ NULL, 0, NULL, 0 }
};
static const struct option s_json_lopts[] = {
	{ "json", no_argument, NULL, S_OPT_JSON },
	{ NULL, 0, NULL, 0 }
};
static const struct option s_check_lopts[] = {
	{ "json", no_argument, NULL, S_OPT_JSON },
	{ "online", no_argument, NULL, S_OPT_ONLINE },
	{ NULL, 0, NULL, 0 }
};
static const struct option s_provision_lopts[] = {
	{ "force", no_argument, NULL, 'f' },
	{ "show", no_argument, NULL, 's' },
	{ NULL, 0, NULL, 0 }
};

static const struct s_cmd s_cmd_table[] = {
	{ "get", s_cmd_get, "X:u:d:", s_get_lopts,
	  "SERVICE [-X METHOD] [-u URL] [-d DATA|@FILE] [--json | --value [ITEM]]",
	  "print the credentials a request to SERVICE must carry",
	  "  -X, --request METHOD    the request's method (default GET, POST with -d)\n"
	  "  -u, --url URL           the request's URL (signing schemes cover it)\n"
	  "  -d, --data DATA|@FILE   the request's body (@-: standard input)\n"
	  "      --json              one JSON object: headers, query, tls, expires_at\n"
	  "      --value [ITEM]      only one value: ITEM's (a header or query parameter),\n"
	  "                          else Authorization's token, else the only one there is\n"
	  "\nFor schemes that only add headers: curl -H @<(apicred get SERVICE) URL\n" },
	{ "request", s_cmd_request, "X:d:H:o:isfw:", s_request_lopts,
	  "SERVICE URL [-X METHOD] [-d DATA|@FILE] [-H 'Name: value']... [-o FILE] [-i] [-s] "
	  "[-f] [-w FORMAT]",
	  "make the request with libcurl and print the response body",
	  "  -X, --request METHOD    the method (default GET, POST with -d)\n"
	  "  -d, --data DATA|@FILE   the body (@-: standard input); JSON when it starts\n"
	  "                          with { or [, else a form, unless -H says\n"
	  "  -H, --header LINE       add a header (repeatable)\n"
	  "  -o, --output FILE       write the body to FILE\n"
	  "  -i, --include           print the response headers before the body\n"
	  "  -s, --silent            no 'HTTP <status>' line on stderr for a non-2xx answer\n"
	  "  -f, --fail              print no body for an HTTP error (status >= 400)\n"
	  "  -w, --write-out FORMAT  then print FORMAT: %{http_code} %{content_type}\n"
	  "                          %{redirect_url} %{size_download} %{size_header}\n"
	  "                          %{time_total} %{url} %{method}, \\n, \\t, %%\n"
	  "\nRedirects are not followed (credentials go to the service's origin only);\n"
	  "a redirect's Location is shown. After a 401 or 403 that renewed the\n"
	  "credentials the request is repeated once. Exit 22 for a non-2xx status.\n" },
	{ "check", s_cmd_check, "", s_check_lopts, "[SERVICE...] [--online] [--json]",
	  "load and validate services (default: all)",
	  "      --online            also fetch a session from each service's servers,\n"
	  "                          proving the credentials\n"
	  "      --json              one JSON array: service, ok, error, problems\n"
	  "\nEvery problem of a file is shown, as file:line: message.\n" },
	{ "list", s_cmd_list, "", s_json_lopts, "[--json]",
	  "list services with their descriptions",
	  "      --json              one JSON array: name, description\n" },
	{ "providers", s_cmd_providers, "", s_json_lopts, "[-v] [--json]",
	  "list provider modules and whether they load",
	  "  -v, --verbose           also each provider's keys: type, default, choices, help\n"
	  "      --json              one JSON object: layer_keys, providers (with keys)\n" },
	{ "provision", s_cmd_provision, "fs", s_provision_lopts, "SERVICE [--force | --show]",
	  "create the account and secret files the service refers to",
	  "  -f, --force             replace existing secret files\n"
	  "  -s, --show              only show what exists\n" },
	{ "cache", s_cmd_cache, "", NULL, "list|clear [SERVICE]",
	  "show or delete the shared store's entries (never values)",
	  "\nlist: one line per layer that shares its sessions (cache.store in\n"
	  "apicred.conf): service, layer, provider, store, state (valid, expired,\n"
	  "absent, unreadable) and expiry, tab-separated. clear: delete them.\n" },
	{ "help", s_cmd_help, "", NULL, "[COMMAND]", "show the help of apicred or of a command",
	  NULL },
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

/* The command is the first word that is neither an option nor the
 * argument of a global one ("--" ends the options). */
static int s_command_index(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0)
			return i + 1 < argc ? i + 1 : -1;
		if (a[0] != '-' || a[1] == '\0')
			return i;
		if (strcmp(a, "-c") == 0 || strcmp(a, "-m") == 0 || strcmp(a, "--confdir") == 0 ||
		    strcmp(a, "--moduledir") == 0)
			i++;
	}
	return -1;
}

int main(int argc, char **argv)
{
	const struct s_cmd *cmd;
	char **pos;
	int i = s_command_index(argc, argv), npos, ret;

	/* It holds and prints credentials: no core dump, no ptrace by others
	 * of the same user, no /proc/PID/mem or environ. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	s_cmds = s_cmd_table;
	s_ncmds = sizeof(s_cmd_table) / sizeof(s_cmd_table[0]);

	if (i < 0) {
		/* No command: --help, --version, or a usage error. */
		ret = s_parse(NULL, argc, argv, NULL, NULL, &pos, &npos);
		return s_finish(ret != S_GO ? ret : s_usage_error(NULL, "COMMAND missing"));
	}
	if (!(cmd = s_cmd_find(argv[i])))
		return s_usage_error(NULL, "unknown command '%s'", argv[i]);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "apicred: cannot initialise libcurl\n");
		return EXIT_FAILURE;
	}
	ret = cmd->run(cmd, argc, argv);
	curl_global_cleanup();
	s_log_free();
	return s_finish(ret);
}
