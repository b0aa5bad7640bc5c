/*
 * config.c - reads apicred.conf settings and service files, validating each
 * layer against its provider's schema. Every complaint names file:line. It
 * parses; it creates no provider state (lifecycle.c does).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "internal.h"

/* ---- apicred.conf -------------------------------------------------------- */

#define S_DAY (24 * 3600)
#define S_YEAR (366 * S_DAY)
#define S_DEADLINE_TIMEOUTS 2 /* default http.deadline: twice http.timeout */

static int s_global_fail(const char *path, const config_setting_t *s, const char *msg)
{
	return ac_error(APICRED_ERR_CONFIG, "%s:%d: %s", path,
	                s ? config_setting_source_line(s) : 0, msg);
}

/* An integer setting in [min, max] (in its own unit), stored times scale:
 * the range keeps every later computation with it from overflowing. */
static int s_conf_int(const char *path, config_setting_t *grp, const char *key,
                      int64_t min, int64_t max, int64_t scale, int64_t *out)
{
	config_setting_t *s = grp ? config_setting_get_member(grp, key) : NULL;
	char msg[160];
	long long v;

	if (!s)
		return APICRED_OK;
	v = config_setting_get_int64(s);
	if ((config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) ||
	    v < min || v > max) {
		snprintf(msg, sizeof(msg), "'%s' must be an integer from %lld to %lld", key,
		         (long long)min, (long long)max);
		return s_global_fail(path, s, msg);
	}
	*out = (int64_t)v * scale;
	return APICRED_OK;
}

static int s_conf_str(const char *path, config_setting_t *grp, const char *key, char **out)
{
	config_setting_t *s = grp ? config_setting_get_member(grp, key) : NULL;
	char msg[128];

	if (!s)
		return APICRED_OK;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		snprintf(msg, sizeof(msg), "'%s' must be a string", key);
		return s_global_fail(path, s, msg);
	}
	free(*out);
	*out = ac_strdup(config_setting_get_string(s));
	return *out ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "out of memory");
}

/* Rejects keys nobody reads, so typos do not silently do nothing. */
static int s_conf_known(const char *path, config_setting_t *grp, const char *const *keys)
{
	char msg[160];

	for (int i = 0; grp && i < config_setting_length(grp); i++) {
		config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
		const char *name = config_setting_name(s);
		bool ok = strncmp(name, "x-", 2) == 0;
		for (const char *const *k = keys; !ok && *k; k++)
			ok = strcmp(*k, name) == 0;
		if (!ok) {
			snprintf(msg, sizeof(msg), "unknown key '%s'", name);
			return s_global_fail(path, s, msg);
		}
	}
	return APICRED_OK;
}

void ac_config_defaults(struct ac_ctx *ctx)
{
	ctx->http.connect_timeout_ms = 10000;
	ctx->http.timeout_ms = 30000;
	ctx->http.deadline_ms = S_DEADLINE_TIMEOUTS * 30000;
	ctx->http.max_body = 64 * 1024;
	ctx->http.retries = 2;
	ctx->refresh_ahead_ms = 300 * 1000;
	ctx->default_ttl_ms = 3600 * 1000;
	ctx->check_interval_ms = 2 * 1000;
	ctx->backoff_max_ms = 300 * 1000;
}

/* apicred.conf's groups, found once. */
struct s_global {
	const char *path;
	config_setting_t *root, *http, *cache, *log;
};

static int s_global_keys(const struct s_global *g)
{
	static const char *const top[] = { "moduledir", "http", "cache", "log", NULL };
	static const char *const http[] = { "connect_timeout", "timeout", "deadline", "max_body",
	                                    "retries",
	                                    "ca_file", "ca_path", "proxy", NULL };
	static const char *const cache[] = { "refresh_ahead", "default_ttl", "check_interval",
	                                     "backoff_max", "store", NULL };
	static const char *const log[] = { "level", NULL };
	int rc;

	if ((g->http && !config_setting_is_group(g->http)) ||
	    (g->cache && !config_setting_is_group(g->cache)) ||
	    (g->log && !config_setting_is_group(g->log)))
		return s_global_fail(g->path, g->root, "http, cache and log must be groups { ... }");
	if ((rc = s_conf_known(g->path, g->root, top)) || (rc = s_conf_known(g->path, g->http, http)) ||
	    (rc = s_conf_known(g->path, g->cache, cache)) || (rc = s_conf_known(g->path, g->log, log)))
		return rc;
	return APICRED_OK;
}

static int s_global_strings(struct ac_ctx *ctx, const struct s_global *g, char **moduledir,
                            char **level)
{
	const char *path = g->path;
	int rc;

	if ((rc = s_conf_str(path, g->root, "moduledir", moduledir)) ||
	    (rc = s_conf_str(path, g->http, "ca_file", &ctx->http.ca_file)) ||
	    (rc = s_conf_str(path, g->http, "ca_path", &ctx->http.ca_path)) ||
	    (rc = s_conf_str(path, g->http, "proxy", &ctx->http.proxy)) ||
	    (rc = s_conf_str(path, g->log, "level", level)) ||
	    (rc = s_conf_str(path, g->cache, "store", &ctx->store_spec)))
		return rc;
	if (ctx->store_spec && ac_store_spec_check(ctx->store_spec) != APICRED_OK) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", apicred_errmsg());
		return s_global_fail(path, config_setting_get_member(g->cache, "store"), msg);
	}
	return APICRED_OK;
}

/* Seconds unless said otherwise; a day or a year is far beyond any
 * sensible value and far below an overflow. */
static int s_global_numbers(struct ac_ctx *ctx, const struct s_global *g)
{
	const char *path = g->path;
	config_setting_t *h = g->http, *c = g->cache;
	int64_t v;
	int rc;

	v = ctx->http.connect_timeout_ms;
	if ((rc = s_conf_int(path, h, "connect_timeout", 1, S_DAY, 1000, &v)))
		return rc;
	ctx->http.connect_timeout_ms = v;
	v = ctx->http.timeout_ms;
	if ((rc = s_conf_int(path, h, "timeout", 1, S_DAY, 1000, &v)))
		return rc;
	ctx->http.timeout_ms = v;
	/* Without a value of its own the deadline follows the time-out. */
	ctx->http.deadline_ms = S_DEADLINE_TIMEOUTS * ctx->http.timeout_ms;
	if ((rc = s_conf_int(path, h, "deadline", 1, S_DAY, 1000, &ctx->http.deadline_ms)))
		return rc;
	v = (int64_t)ctx->http.max_body;
	if ((rc = s_conf_int(path, h, "max_body", 1, 1 << 30, 1, &v)))
		return rc;
	ctx->http.max_body = (size_t)v;
	v = ctx->http.retries;
	if ((rc = s_conf_int(path, h, "retries", 0, 10, 1, &v)))
		return rc;
	ctx->http.retries = (int)v;
	if ((rc = s_conf_int(path, c, "refresh_ahead", 0, S_YEAR, 1000, &ctx->refresh_ahead_ms)) ||
	    (rc = s_conf_int(path, c, "default_ttl", 1, S_YEAR, 1000, &ctx->default_ttl_ms)) ||
	    (rc = s_conf_int(path, c, "check_interval", 0, S_DAY, 1000, &ctx->check_interval_ms)) ||
	    (rc = s_conf_int(path, c, "backoff_max", 1, S_DAY, 1000, &ctx->backoff_max_ms)))
		return rc;
	return APICRED_OK;
}

/* The CA that decides whom the secrets are sent to. */
static int s_global_ca(struct ac_ctx *ctx)
{
	int rc;

	/* A CA path given relative to the confdir is resolved against it. */
	if (ctx->http.ca_file && ctx->http.ca_file[0] != '/') {
		char *abs;
		if ((rc = ac_path_resolve(ctx, ctx->http.ca_file, &abs)))
			return rc;
		free(ctx->http.ca_file);
		ctx->http.ca_file = abs;
	}
	/* Whoever can change them picks whom the secrets are sent to. */
	if (ctx->http.ca_file &&
	    (rc = ac_path_safe(ctx->http.ca_file, "http.ca_file", AC_PATH_FILE)))
		return rc;
	if (ctx->http.ca_path)
		return ac_path_safe(ctx->http.ca_path, "http.ca_path", AC_PATH_DIR);
	return APICRED_OK;
}

static int s_global_parse(struct ac_ctx *ctx, const char *path, config_t *cfg, char **moduledir)
{
	struct s_global g = { .path = path, .root = config_root_setting(cfg) };
	char *level = NULL;
	int rc;

	g.http = config_setting_get_member(g.root, "http");
	g.cache = config_setting_get_member(g.root, "cache");
	g.log = config_setting_get_member(g.root, "log");
	if ((rc = s_global_keys(&g)) || (rc = s_global_strings(ctx, &g, moduledir, &level)) ||
	    (rc = s_global_numbers(ctx, &g)))
		goto out;
	if (level) {
		int lv = ac_log_level(level);
		if (lv < 0) {
			rc = s_global_fail(path, g.log, "log.level must be error, warning, notice, info or debug");
			goto out;
		}
		ctx->log_level = lv;
	}
	rc = s_global_ca(ctx);
out:
	free(level);
	return rc;
}

int ac_config_global(struct ac_ctx *ctx, char **moduledir)
{
	config_t cfg;
	char *path;
	int rc = APICRED_OK;
	struct stat sb;

	if (asprintf(&path, "%s/apicred.conf", ctx->confdir) < 0)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	if (lstat(path, &sb) != 0 && errno == ENOENT) {
		free(path);
		return APICRED_OK; /* optional */
	}
	/* Its moduledir runs code as the caller, its ca_file picks who is trusted. */
	if ((rc = ac_path_safe(path, "apicred.conf", AC_PATH_FILE)) != APICRED_OK) {
		free(path);
		return rc;
	}
	config_init(&cfg);
	if (!config_read_file(&cfg, path))
		rc = ac_error(APICRED_ERR_CONFIG, "%s:%d: %s", path, config_error_line(&cfg),
		              config_error_type(&cfg) == CONFIG_ERR_FILE_IO ? strerror(errno)
		                                                            : config_error_text(&cfg));
	else
		rc = s_global_parse(ctx, path, &cfg, moduledir);
	config_destroy(&cfg);
	free(path);
	return rc;
}

/* ---- service files ------------------------------------------------------- */

/* Keys of a layer that the core itself handles, for every provider. */
static const apicred_schema s_core_keys[] = {
	{ "provider", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL, "the scheme's module" },
	{ "control", APICRED_T_STRING, 0, "required", "required|optional|sufficient",
	  "what a failure of this layer means" },
	{ "carry", APICRED_T_STRING, 0, "same-origin", "same-origin|always|never",
	  "whether the layer's own requests carry the output of the layers above" },
	{ "insecure_http", APICRED_T_BOOL, 0, "false", NULL,
	  "allow http:// to a loopback host for this layer" },
	{ "default_ttl", APICRED_T_INT, 0, NULL, NULL, "session lifetime when the server gives none (s)" },
	{ "refresh_ahead", APICRED_T_INT, 0, NULL, NULL, "refresh this long before expiry (s)" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

const apicred_schema *ac_schema_find(const apicred_schema *schema, const char *name)
{
	for (; schema && schema->name; schema++)
		if (strcmp(schema->name, name) == 0)
			return schema;
	return NULL;
}

static char *s_problem(struct ac_stack *st, const config_setting_t *where, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int s_fail(struct ac_stack *st, int code, const config_setting_t *where,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records a problem, "service: file:line: message", for apicred check,
 * which shows every one. Returns it (owned by st), or NULL without memory. */
static char *s_problem_at(struct ac_stack *st, int lineno, const char *msg)
{
	char *line = NULL, **p;

	if (asprintf(&line, "%s: %s:%d: %s", st->svc->name, st->svc->path, lineno, msg) < 0)
		return NULL;
	if (!(p = realloc(st->problems, (st->nproblems + 1) * sizeof(*p)))) {
		free(line);
		return NULL;
	}
	st->problems = p;
	st->problems[st->nproblems++] = line;
	return line;
}

/* A problem about a setting; about the whole file (where NULL): line 1. */
static char *s_problem(struct ac_stack *st, const config_setting_t *where, const char *fmt, ...)
{
	int line = where ? config_setting_source_line(where) : 0;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return s_problem_at(st, line > 0 ? line : 1, msg); /* the root has no line */
}

/* A problem of the file: the first one is also the stack's failure. */
static int s_fail(struct ac_stack *st, int code, const config_setting_t *where,
                  const char *fmt, ...)
{
	char msg[768], *line;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line = s_problem(st, where, "%s", msg);
	if (!st->fail_code) {
		st->fail_code = code;
		st->fail_msg = ac_strdup(line);
	}
	return code;
}

/* ---- "did you mean" --------------------------------------------------------- */

/* Damerau-Levenshtein distance (optimal string alignment), capped at 9:
 * a swapped pair of letters is one typo, as people make them. */
static int s_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[32][32];

	if (la > 30 || lb > 30)
		return 9;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1], v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb] < 9 ? d[la][lb] : 9;
}

/* The closest candidate within a typo or two (fewer for short words), or
 * NULL. A prefix also counts: "oauth" -> "oauth2". */
static const char *s_suggest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	int bestd = strlen(word) <= 3 ? 1 : strlen(word) <= 5 ? 2 : 3;

	for (size_t i = 0; i < n; i++) {
		int d = strncmp(cands[i], word, strlen(word)) == 0 ? 1 : s_distance(word, cands[i]);

		if (d <= bestd && (!best || d < bestd)) {
			best = cands[i];
			bestd = d;
		}
	}
	return best;
}

/* "; did you mean 'x'?" for a key unknown to the core's and the schema's. */
static const char *s_key_hint(const char *name, const apicred_schema *schema, char *buf,
                              size_t cap)
{
	const char *cands[64];
	size_t n = 0;
	const char *best;

	for (const apicred_schema *e = s_core_keys; e->name && n < 64; e++)
		cands[n++] = e->name;
	for (const apicred_schema *e = schema; e && e->name && n < 64; e++)
		cands[n++] = e->name;
	best = s_suggest(name, cands, n);
	if (best)
		snprintf(buf, cap, "; did you mean '%s'?", best);
	else
		buf[0] = '\0';
	return buf;
}

static bool s_is_string_list(const config_setting_t *s)
{
	int t = config_setting_type(s);

	if (t == CONFIG_TYPE_STRING)
		return true;
	if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
		return false;
	for (int i = 0; i < config_setting_length(s); i++)
		if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING)
			return false;
	return true;
}

static bool s_in_choices(const char *choices, const char *v)
{
	size_t n = strlen(v);

	for (const char *p = choices; p && *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, v, n) == 0)
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

static const char *const s_type_names[] = {
	[APICRED_T_STRING] = "a string", [APICRED_T_INT] = "an integer",
	[APICRED_T_BOOL] = "true or false", [APICRED_T_LIST] = "a string or a list of strings",
	[APICRED_T_GROUP] = "a group of strings",
	[APICRED_T_URL] = "an http:// or https:// URL", [APICRED_T_HEADER_NAME] = "a header name",
	[APICRED_T_HEADERS] = "a \"Name: value\" header line or a list of them",
};

/* The checks of the string types beyond their libconfig type. */
static bool s_string_ok(const apicred_schema *e, const config_setting_t *s)
{
	const char *v = config_setting_get_string(s);

	switch (e->type) {
	case APICRED_T_URL: return ac_http_url_ok(v);
	case APICRED_T_HEADER_NAME: return ac_header_name_ok(v, strlen(v));
	case APICRED_T_HEADERS:
		for (int i = 0; v == NULL && i < config_setting_length(s); i++)
			if (!ac_header_line_ok(config_setting_get_string_elem(s, i)))
				return false;
		return v == NULL || ac_header_line_ok(v);
	default: return true;
	}
}

static int s_check_value(struct ac_stack *st, int layer, const config_setting_t *s,
                         const apicred_schema *e)
{
	int t = config_setting_type(s);
	bool ok = false;

	switch (e->type) {
	case APICRED_T_STRING: ok = t == CONFIG_TYPE_STRING; break;
	case APICRED_T_URL: case APICRED_T_HEADER_NAME:
		ok = t == CONFIG_TYPE_STRING && s_string_ok(e, s);
		break;
	case APICRED_T_HEADERS: ok = s_is_string_list(s) && s_string_ok(e, s); break;
	case APICRED_T_INT: ok = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64; break;
	case APICRED_T_BOOL: ok = t == CONFIG_TYPE_BOOL; break;
	case APICRED_T_LIST: ok = s_is_string_list(s); break;
	case APICRED_T_GROUP:
		ok = t == CONFIG_TYPE_GROUP;
		for (int i = 0; ok && i < config_setting_length(s); i++)
			ok = config_setting_type(config_setting_get_elem(s, (unsigned)i)) ==
			     CONFIG_TYPE_STRING;
		break;
	}
	if (!ok)
		return s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must be %s", layer,
		              e->name, s_type_names[e->type]);
	if (e->type == APICRED_T_STRING && e->choices &&
	    !s_in_choices(e->choices, config_setting_get_string(s)))
		return s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must be one of %s", layer,
		              e->name, e->choices);
	if ((e->flags & APICRED_F_NONEMPTY) && t == CONFIG_TYPE_STRING &&
	    !*config_setting_get_string(s))
		return (e->flags & APICRED_F_SECRET)
		       ? s_fail(st, APICRED_ERR_SECRET, s, "layer %d: '%s': the secret is empty",
		                layer, e->name)
		       : s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must not be empty",
		                layer, e->name);
	if (e->type == APICRED_T_INT && config_setting_get_int64(s) < 0)
		return s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must not be negative", layer,
		              e->name);
	return APICRED_OK;
}

/* A third-party schema is data the core indexes by type: a type it does
 * not know (a newer minor, a typo) fails the layer closed, before any key
 * of the file is read against it. */
static int s_check_schema(struct ac_stack *st, struct ac_layer *L)
{
	for (const apicred_schema *e = L->mod->vt.schema; e->name; e++)
		if (e->type < APICRED_T_STRING || e->type > APICRED_T_HEADERS)
			return s_fail(st, APICRED_ERR_PROVIDER,
			              config_setting_get_member(L->cfg, "provider"),
			              "layer %d: provider '%s' (%s) declares key '%s' with unknown "
			              "type %d", L->index + 1, L->provider, L->mod->path, e->name,
			              (int)e->type);
	return APICRED_OK;
}

/* Checks every key of a layer group against the core's keys and the
 * provider's schema. */
static int s_check_layer(struct ac_stack *st, struct ac_layer *L)
{
	const apicred_schema *schema = L->mod && L->mod->code == APICRED_OK ? L->mod->vt.schema : NULL;
	int n = config_setting_length(L->cfg), rc = APICRED_OK;

	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(L->cfg, (unsigned)i);
		const char *name = config_setting_name(s);
		const apicred_schema *e = ac_schema_find(s_core_keys, name);

		if (!e)
			e = ac_schema_find(schema, name);
		if (!e && strncmp(name, "x-", 2) == 0)
			continue;
		if (!e && !schema)
			continue; /* provider unusable: the layer fails closed anyway */
		if (!e) {
			char hint[64];

			rc = s_fail(st, APICRED_ERR_CONFIG, s,
			            "layer %d: unknown key '%s' for provider '%s'%s", L->index + 1,
			            name, L->provider, s_key_hint(name, schema, hint, sizeof(hint)));
			continue;
		}
		if (s_check_value(st, L->index + 1, s, e))
			rc = APICRED_ERR_CONFIG;
	}
	for (const apicred_schema *e = schema; e && e->name; e++)
		if ((e->flags & APICRED_F_REQUIRED) && !config_setting_get_member(L->cfg, e->name))
			rc = s_fail(st, APICRED_ERR_CONFIG, L->cfg,
			            "layer %d: missing required key '%s' for provider '%s'",
			            L->index + 1, e->name, L->provider);
	return rc;
}

/* A provider that is not there: the closest name and the ones that are. */
static void s_provider_fail(struct ac_stack *st, struct ac_layer *L)
{
	const config_setting_t *where = config_setting_get_member(L->cfg, "provider");
	char **names = NULL, list[512] = "";
	const char *best;
	size_t n = 0, used = 0;
	struct stat sb;

	if (!ac_name_valid(L->provider) || stat(L->mod->path, &sb) == 0 || errno != ENOENT) {
		s_fail(st, L->mod->code, where, "layer %d (%s): %s", L->index + 1, L->provider,
		       L->mod->why ? L->mod->why : "unusable");
		return;
	}
	ac_module_names(st->ctx, &names, &n);
	for (size_t i = 0; i < n && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
		                         names[i]);
	best = s_suggest(L->provider, (const char *const *)names, n);
	s_fail(st, L->mod->code, where, "layer %d: unknown provider '%s' (%s: %s)%s%s%s "
	       "(available: %s)", L->index + 1, L->provider, L->mod->path, strerror(ENOENT),
	       best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "",
	       n ? list : "none");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* A layer's time in seconds, from min to a year: beyond that nothing is
 * sensible, and the milliseconds derived from it could overflow. */
static int s_seconds(struct ac_stack *st, struct ac_layer *L, const char *key, long long min,
                     int64_t *ms)
{
	const long long max = 366LL * 24 * 3600;
	config_setting_t *s = config_setting_get_member(L->cfg, key);
	long long v;

	if (!s)
		return APICRED_OK;
	v = config_setting_get_int64(s);
	if (v < min || v > max)
		return s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must be from %lld to %lld "
		              "seconds", L->index + 1, key, min, max);
	*ms = (int64_t)v * 1000;
	return APICRED_OK;
}

static int s_layer_setup(struct ac_stack *st, struct ac_layer *L)
{
	struct ac_ctx *ctx = st->ctx;
	const char *v;
	int b, rc;

	if (config_setting_type(L->cfg) != CONFIG_TYPE_GROUP)
		return s_fail(st, APICRED_ERR_CONFIG, L->cfg, "layer %d: must be a group { ... }",
		              L->index + 1);
	if (!config_setting_lookup_string(L->cfg, "provider", &v))
		return s_fail(st, APICRED_ERR_CONFIG, L->cfg,
		              "layer %d: missing required key 'provider' (a string)", L->index + 1);
	L->provider = v;
	L->mod = ac_module_get(ctx, v);
	if (!L->mod)
		return s_fail(st, APICRED_ERR_NOMEM, L->cfg, "out of memory");
	if (L->mod->code != APICRED_OK)
		/* Fail closed whatever the layer's control: a provider that is
		 * missing or will not load is a broken installation, not an
		 * optional credential that happens to be absent. */
		s_provider_fail(st, L);
	else if ((rc = s_check_schema(st, L)) != APICRED_OK)
		return rc;
	rc = s_check_layer(st, L);
	if (rc || L->mod->code != APICRED_OK)
		return rc ? rc : L->mod->code;

	L->control = AC_REQUIRED;
	if (config_setting_lookup_string(L->cfg, "control", &v))
		L->control = strcmp(v, "optional") == 0 ? AC_OPTIONAL :
		             strcmp(v, "sufficient") == 0 ? AC_SUFFICIENT : AC_REQUIRED;
	L->carry = AC_CARRY_SAME_ORIGIN;
	if (config_setting_lookup_string(L->cfg, "carry", &v))
		L->carry = strcmp(v, "always") == 0 ? AC_CARRY_ALWAYS :
		           strcmp(v, "never") == 0 ? AC_CARRY_NEVER : AC_CARRY_SAME_ORIGIN;
	if (config_setting_lookup_bool(L->cfg, "insecure_http", &b))
		L->insecure_http = b;
	L->default_ttl_ms = ctx->default_ttl_ms;
	L->refresh_ahead_ms = ctx->refresh_ahead_ms;
	if ((rc = s_seconds(st, L, "default_ttl", 1, &L->default_ttl_ms)) ||
	    (rc = s_seconds(st, L, "refresh_ahead", 0, &L->refresh_ahead_ms)))
		return rc;
	return APICRED_OK;
}

/* "Name: value" -> two strings; refuses bad names and CR/LF. */
static int s_static_header(struct ac_stack *st, const config_setting_t *s, size_t i)
{
	const char *line = config_setting_get_string(s), *colon;
	size_t nlen;

	if (!line || !(colon = strchr(line, ':')) || colon == line)
		return s_fail(st, APICRED_ERR_CONFIG, s, "headers: expected \"Name: value\"");
	nlen = (size_t)(colon - line);
	for (size_t k = 0; k < nlen; k++)
		if (!strchr("!#$%&'*+-.^_`|~", line[k]) &&
		    !((line[k] >= 'A' && line[k] <= 'Z') || (line[k] >= 'a' && line[k] <= 'z') ||
		      (line[k] >= '0' && line[k] <= '9')))
			return s_fail(st, APICRED_ERR_CONFIG, s, "headers: invalid header name");
	colon++;
	while (*colon == ' ' || *colon == '\t')
		colon++;
	if (!ac_header_value_ok(colon, strlen(colon)))
		return s_fail(st, APICRED_ERR_CONFIG, s,
		              "headers: value contains CR, LF or NUL (header injection)");
	st->headers[2 * i] = strndup(line, nlen);
	st->headers[2 * i + 1] = ac_strdup(colon);
	if (!st->headers[2 * i] || !st->headers[2 * i + 1])
		return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
	st->header_lens[2 * i] = nlen; /* validated once, here: get only copies them */
	st->header_lens[2 * i + 1] = strlen(colon);
	return APICRED_OK;
}

/* The types of the top-level keys: nonzero if one is wrong, and the values
 * cannot be read. */
static int s_check_top(struct ac_stack *st, config_setting_t *root)
{
	int n = config_setting_length(root), bad_type = 0;

	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "insecure_http") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL)
				bad_type = s_fail(st, APICRED_ERR_CONFIG, s,
				                  "'insecure_http' must be true or false");
		} else if (strcmp(name, "description") == 0 || strcmp(name, "url") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_STRING)
				bad_type = s_fail(st, APICRED_ERR_CONFIG, s, "'%s' must be a string", name);
		} else if (strcmp(name, "headers") == 0) {
			if (!s_is_string_list(s))
				bad_type = s_fail(st, APICRED_ERR_CONFIG, s,
				                  "'headers' must be a list of \"Name: value\" strings");
		} else if (strcmp(name, "stack") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_LIST)
				bad_type = s_fail(st, APICRED_ERR_CONFIG, s, "'stack' must be a list of "
				                  "layers: ( { provider = ...; }, ... )");
		} else if (strncmp(name, "x-", 2) != 0) {
			static const char *const top[] = { "description", "url", "insecure_http",
			                                   "headers", "stack" };
			const char *best = s_suggest(name, top, 5);

			s_fail(st, APICRED_ERR_CONFIG, s, "unknown key '%s'%s%s%s", name,
			       best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
		}
	}
	return bad_type;
}

/* Without an origin, credentials would go wherever the application says;
 * over plain http, to whoever listens. */
static void s_parse_url(struct ac_stack *st, config_setting_t *root)
{
	config_setting_t *s = config_setting_get_member(root, "url");
	int b;

	if (!s) {
		s_fail(st, APICRED_ERR_CONFIG, root, "missing 'url': the origin "
		       "(https://host[:port]/) the credentials may be sent to");
	} else if (!(st->origin = ac_url_origin(config_setting_get_string(s)))) {
		s_fail(st, APICRED_ERR_CONFIG, s, "'url' is not an absolute http(s) URL");
	} else {
		bool https = strncmp(st->origin, "https:", 6) == 0;
		size_t olen = strlen(st->origin);
		const char *def = https ? ":443" : ":80";

		if (!https && !(config_lookup_bool(&st->cfg, "insecure_http", &b) && b &&
		                ac_url_loopback(config_setting_get_string(s))))
			s_fail(st, APICRED_ERR_CONFIG, s, "'url' must be https:// (plain http:// "
			       "only to a loopback host, with insecure_http = true; at the top "
			       "of the file)");
		st->origin_len = olen;
		if (olen > strlen(def) && strcmp(st->origin + olen - strlen(def), def) == 0) {
			st->origin_short = strndup(st->origin, olen - strlen(def));
			st->origin_short_len = st->origin_short ? olen - strlen(def) : 0;
		}
	}
}

static int s_parse_layers(struct ac_stack *st, config_setting_t *root)
{
	config_setting_t *s = config_setting_get_member(root, "stack");

	if (!s)
		return s_fail(st, APICRED_ERR_CONFIG, root,
		              "missing 'stack': a service needs at least one layer");
	if (config_setting_length(s) == 0)
		return s_fail(st, APICRED_ERR_CONFIG, s,
		              "'stack' is empty: a service needs at least one layer");
	if (config_setting_length(s) > AC_MAX_LAYERS)
		return s_fail(st, APICRED_ERR_CONFIG, s, "'stack' has more than %d layers",
		              AC_MAX_LAYERS);
	/* nlayers only once the array exists: every walk of the layers trusts it. */
	st->layers = calloc((size_t)config_setting_length(s), sizeof(*st->layers));
	if (!st->layers)
		return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
	st->nlayers = (size_t)config_setting_length(s);
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		L->stack = st;
		L->index = (int)i;
		L->cfg = config_setting_get_elem(s, (unsigned)i);
	}
	for (size_t i = 0; i < st->nlayers; i++)
		if (s_layer_setup(st, &st->layers[i]) == APICRED_OK)
			st->layers[i].setup_ok = true;
	return st->fail_code;
}

static int s_parse_service(struct ac_stack *st)
{
	config_setting_t *root = config_root_setting(&st->cfg), *s;

	/* Wrong types: the values below cannot be read. */
	if (s_check_top(st, root))
		return st->fail_code;
	if ((s = config_setting_get_member(root, "description")))
		st->description = ac_strdup(config_setting_get_string(s));
	s_parse_url(st, root);
	if ((s = config_setting_get_member(root, "headers"))) {
		bool one = config_setting_type(s) == CONFIG_TYPE_STRING;
		st->nheaders = one ? 1 : (size_t)config_setting_length(s);
		st->headers = calloc(2 * st->nheaders + 1, sizeof(char *));
		st->header_lens = calloc(2 * st->nheaders, sizeof(size_t));
		if (!st->headers || !st->header_lens)
			return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
		for (size_t i = 0; i < st->nheaders; i++)
			s_static_header(st, one ? s : config_setting_get_elem(s, (unsigned)i), i);
	}
	return s_parse_layers(st, root);
}

/* The line a provider's complaint is about: the earliest key of the layer
 * it names ('key', "key:" or "(key)"), else the layer's own line. */
static const config_setting_t *s_blame(const struct ac_layer *L, const char *msg)
{
	const config_setting_t *best = L->cfg;
	const char *at = NULL;
	char pat[4][80];

	for (int i = 0; i < config_setting_length(L->cfg); i++) {
		const config_setting_t *s = config_setting_get_elem(L->cfg, (unsigned)i);
		const char *name = config_setting_name(s), *p;

		if (strcmp(name, "provider") == 0)
			continue;
		snprintf(pat[0], sizeof(pat[0]), "'%s'", name);
		snprintf(pat[1], sizeof(pat[1]), " %s:", name);
		snprintf(pat[2], sizeof(pat[2]), "(%s)", name);
		snprintf(pat[3], sizeof(pat[3]), "): %s ", name); /* "layer 1 (p): key ..." */
		for (int k = 0; k < 4; k++)
			if ((p = strstr(msg, pat[k])) && (!at || p < at)) {
				at = p;
				best = s;
			}
	}
	return best;
}

void ac_problem_layer(struct ac_layer *L, const char *msg)
{
	s_problem(L->stack, s_blame(L, msg), "%s", msg);
}

int ac_problem_line(const struct ac_stack *st, const char *msg)
{
	const char *p = strstr(msg, "layer ");
	long n = p ? strtol(p + 6, NULL, 10) : 0;

	if (n < 1 || (size_t)n > st->nlayers)
		return 1;
	return config_setting_source_line(s_blame(&st->layers[n - 1], p));
}

/* Settings pulled in by @include come from files that decide as much as
 * the service file: the same checks, watched the same way, and a literal
 * secret only if every file is private. (libconfig 1.5 has no include hook:
 * the files are found through the settings they hold.) */
static int s_check_includes(struct ac_stack *st, const config_setting_t *s)
{
	const char *file = config_setting_source_file(s);
	char *path = NULL;
	struct stat sb;
	int rc = APICRED_OK;

	/* libconfig keeps the name as written; it read it from the confdir. */
	if (file && strcmp(file, st->svc->path) != 0) {
		bool seen = false;
		if (ac_path_resolve(st->ctx, file, &path) != APICRED_OK)
			return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
		for (struct ac_watch *w = st->watches; w && !seen; w = w->next)
			seen = strcmp(w->path, path) == 0;
		if (!seen && ac_watch_add(st, path) != APICRED_OK)
			rc = s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
		else if (!seen && ac_path_safe(path, "included file", AC_PATH_FILE) != APICRED_OK)
			rc = s_fail(st, APICRED_ERR_CONFIG, s, "%s", apicred_errmsg());
		else if (!seen && (stat(path, &sb) != 0 || (sb.st_mode & (S_IRGRP | S_IROTH))))
			st->literal_ok = false;
		free(path);
	}
	for (int i = 0; !rc && config_setting_is_aggregate(s) && i < config_setting_length(s); i++)
		rc = s_check_includes(st, config_setting_get_elem(s, (unsigned)i));
	return rc;
}

/* In the order of the file (stable: one line's problems keep theirs). */
void ac_problems_sort(struct ac_stack *st)
{
	size_t skip = strlen(st->svc->name) + 2 + strlen(st->svc->path) + 1;

	for (size_t i = 1; i < st->nproblems; i++) {
		char *p = st->problems[i];
		long line = strtol(p + skip, NULL, 10);
		size_t k = i;

		for (; k > 0 && strtol(st->problems[k - 1] + skip, NULL, 10) > line; k--)
			st->problems[k] = st->problems[k - 1];
		st->problems[k] = p;
	}
}

/* The first line, up to upto, that opens a string and does not close it
 * (libconfig strings do not span lines unless closed and reopened), or 0. */
static int s_unclosed_string(const char *path, int upto)
{
	FILE *f = fopen(path, "re");
	int line = 0, found = 0, c;

	if (!f)
		return 0;
	while (!found && line < upto) {
		bool in = false, esc = false, comment = false;
		char prev = 0;

		line++;
		while ((c = getc(f)) != EOF && c != '\n') {
			if (comment)
				continue;
			if (in) {
				if (esc)
					esc = false;
				else if (c == '\\')
					esc = true;
				else if (c == '"')
					in = false;
			} else if (c == '"') {
				in = true;
			} else if (c == '#' || (c == '/' && prev == '/')) {
				comment = true;
			}
			prev = (char)c;
		}
		if (in)
			found = line;
		if (c == EOF)
			break;
	}
	fclose(f);
	return found;
}

/* libconfig's own words ("syntax error") say nothing a reader can act on;
 * its line for a string left open is a later one, where it gave up. */
static void s_syntax_error(struct ac_stack *st)
{
	const char *text = config_error_text(&st->cfg), *file = config_error_file(&st->cfg);
	int line = config_error_line(&st->cfg), open_at = 0;
	char msg[512];

	if ((!file || strcmp(file, st->svc->path) == 0) &&
	    (open_at = s_unclosed_string(st->svc->path, line)) > 0) {
		line = open_at;
		snprintf(msg, sizeof(msg), "syntax error: a string is not closed (a '\"' is "
		         "missing on this line)");
	} else if (file && strcmp(file, st->svc->path) != 0) {
		snprintf(msg, sizeof(msg), "in the included file %s, line %d: %s", file, line,
		         text ? text : "syntax error");
	} else if (text && strcmp(text, "syntax error") == 0) {
		snprintf(msg, sizeof(msg), "syntax error: expected name = value; (is a ';', a "
		         "value after '=', a closing quote, ')' or '}' missing on this line or the "
		         "one before?)");
	} else {
		snprintf(msg, sizeof(msg), "syntax error: %s", text ? text : "unreadable");
	}
	s_problem_at(st, line, msg);
	st->fail_code = APICRED_ERR_CONFIG;
	st->fail_msg = st->nproblems ? ac_strdup(st->problems[st->nproblems - 1]) : NULL;
}

/* Reads st->svc's file after the checks every file that decides where
 * secrets go passes (owner, mode, parents; the same of its included files):
 * whether its settings may be used. */
static bool s_read_service(struct ac_stack *st)
{
	struct ac_ctx *ctx = st->ctx;
	struct ac_service *svc = st->svc;
	struct stat sb;

	ac_watch_add(st, svc->path);
	config_init(&st->cfg);
	st->cfg_loaded = true;
	config_set_include_dir(&st->cfg, ctx->confdir);

	/* Whoever can change it can send the secrets anywhere. */
	if (ac_path_safe(svc->path, "service file", AC_PATH_FILE) != APICRED_OK ||
	    stat(svc->path, &sb) != 0) {
		s_fail(st, APICRED_ERR_CONFIG, NULL, "%s", apicred_errmsg());
		return false;
	}
	if (!config_read_file(&st->cfg, svc->path)) {
		if (config_error_type(&st->cfg) == CONFIG_ERR_FILE_IO)
			s_fail(st, APICRED_ERR_CONFIG, NULL, "cannot read the service file: %s",
			       strerror(errno ? errno : EIO));
		else
			s_syntax_error(st);
		return false;
	}
	/* Literal secrets are only allowed in a file nobody else can read. */
	st->literal_ok = (sb.st_mode & (S_IRGRP | S_IROTH)) == 0;
	/* Settings from an unsafe included file are not used at all. */
	return s_check_includes(st, config_root_setting(&st->cfg)) == APICRED_OK;
}

bool ac_config_service(struct ac_stack *st)
{
	if (!s_read_service(st))
		return false;
	/* Layers whose own keys are right are created even when other parts
	 * of the file are wrong: check reports all at once. */
	s_parse_service(st);
	return true;
}

int ac_config_description(struct ac_stack *st, char **out)
{
	const config_setting_t *s;

	*out = NULL;
	if (s_read_service(st) &&
	    (s = config_setting_get_member(config_root_setting(&st->cfg), "description"))) {
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			s_fail(st, APICRED_ERR_CONFIG, s, "'description' must be a string");
		else if (!(*out = ac_strdup(config_setting_get_string(s))))
			s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
	}
	if (!st->fail_code)
		return APICRED_OK;
	return ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "out of memory");
}

/* ---- describing schemas (apicred providers -v) --------------------------- */

static const char *const s_type_name[] = {
	[APICRED_T_STRING] = "string", [APICRED_T_INT] = "integer", [APICRED_T_BOOL] = "boolean",
	[APICRED_T_LIST] = "list", [APICRED_T_GROUP] = "group",
	/* Strings the core checks: their own names, so a reader knows what passes. */
	[APICRED_T_URL] = "url", [APICRED_T_HEADER_NAME] = "header-name",
	[APICRED_T_HEADERS] = "headers",
};

API int apicred_provider_keys(apicred_ctx *c, const char *provider, apicred_key_fn fn, void *user)
{
	const apicred_schema *e;

	if (!c || !fn)
		return ac_error(APICRED_ERR_INVALID, "apicred_provider_keys: NULL argument");
	if (!provider) {
		e = s_core_keys;
	} else {
		struct ac_module *m = ac_module_get(&c->c, provider);

		if (!m)
			return ac_error(APICRED_ERR_NOMEM, "out of memory");
		if (m->code != APICRED_OK)
			return ac_error(m->code, "%s", m->why ? m->why : "provider failed to load");
		e = m->vt.schema;
	}
	for (; e && e->name; e++) {
		apicred_key k = {
			.size = sizeof(k), .name = e->name,
			.type = e->type >= APICRED_T_STRING && e->type <= APICRED_T_HEADERS
			        ? s_type_name[e->type] : "unknown",
			.required = (e->flags & APICRED_F_REQUIRED) != 0,
			.secret = (e->flags & APICRED_F_SECRET) != 0,
			.def = e->def, .choices = e->choices, .help = e->help,
		};
		fn(user, &k);
	}
	return APICRED_OK;
}
