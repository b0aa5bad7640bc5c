/*
 * config.c - reads apicred.conf settings and service files, validating each
 * layer against its provider's schema. Every complaint names file:line.
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

/* Keys of a layer that the core itself handles, for every provider. */
const apicred_schema ac_core_keys[] = {
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

static int s_fail(struct ac_stack *st, int code, const config_setting_t *where,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records the stack's first file-level failure: "file:line: message". */
static int s_fail(struct ac_stack *st, int code, const config_setting_t *where,
                  const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	int line = where ? config_setting_source_line(where) : 0;

	if (st->fail_code)
		return st->fail_code;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->fail_code = code;
	if (asprintf(&st->fail_msg, "%s: %s:%d: %s", st->svc->name, st->svc->path, line, msg) < 0)
		st->fail_msg = NULL;
	return code;
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
};

static int s_check_value(struct ac_stack *st, int layer, const config_setting_t *s,
                         const apicred_schema *e)
{
	int t = config_setting_type(s);
	bool ok = false;

	switch (e->type) {
	case APICRED_T_STRING: ok = t == CONFIG_TYPE_STRING; break;
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
	if (e->type == APICRED_T_INT && config_setting_get_int64(s) < 0)
		return s_fail(st, APICRED_ERR_CONFIG, s, "layer %d: '%s' must not be negative", layer,
		              e->name);
	return APICRED_OK;
}

/* Checks every key of a layer group against the core's keys and the
 * provider's schema. */
static int s_check_layer(struct ac_stack *st, struct ac_layer *L)
{
	const apicred_schema *schema = L->mod && L->mod->code == APICRED_OK ? L->mod->vt.schema : NULL;
	int n = config_setting_length(L->cfg), rc;

	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(L->cfg, (unsigned)i);
		const char *name = config_setting_name(s);
		const apicred_schema *e = ac_schema_find(ac_core_keys, name);

		if (!e)
			e = ac_schema_find(schema, name);
		if (!e && strncmp(name, "x-", 2) == 0)
			continue;
		if (!e && !schema)
			continue; /* provider unusable: the layer fails closed anyway */
		if (!e)
			return s_fail(st, APICRED_ERR_CONFIG, s,
			              "layer %d: unknown key '%s' for provider '%s'", L->index + 1,
			              name, L->provider);
		rc = s_check_value(st, L->index + 1, s, e);
		if (rc)
			return rc;
	}
	for (const apicred_schema *e = schema; e && e->name; e++)
		if ((e->flags & APICRED_F_REQUIRED) && !config_setting_get_member(L->cfg, e->name))
			return s_fail(st, APICRED_ERR_CONFIG, L->cfg,
			              "layer %d: missing required key '%s' for provider '%s'",
			              L->index + 1, e->name, L->provider);
	return APICRED_OK;
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
	rc = s_check_layer(st, L);
	if (rc)
		return rc;

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
	return APICRED_OK;
}

static int s_parse_service(struct ac_stack *st)
{
	config_setting_t *root = config_root_setting(&st->cfg), *s;
	int n = config_setting_length(root), rc;

	for (int i = 0; i < n; i++) {
		s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "description") == 0 || strcmp(name, "url") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_STRING)
				return s_fail(st, APICRED_ERR_CONFIG, s, "'%s' must be a string", name);
		} else if (strcmp(name, "headers") == 0) {
			if (!s_is_string_list(s))
				return s_fail(st, APICRED_ERR_CONFIG, s,
				              "'headers' must be a list of \"Name: value\" strings");
		} else if (strcmp(name, "stack") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_LIST)
				return s_fail(st, APICRED_ERR_CONFIG, s,
				              "'stack' must be a list of layers: ( { provider = ...; }, ... )");
		} else if (strncmp(name, "x-", 2) != 0) {
			return s_fail(st, APICRED_ERR_CONFIG, s, "unknown key '%s'", name);
		}
	}

	if ((s = config_setting_get_member(root, "description")))
		st->description = ac_strdup(config_setting_get_string(s));
	if ((s = config_setting_get_member(root, "url"))) {
		st->origin = ac_url_origin(config_setting_get_string(s));
		if (!st->origin)
			return s_fail(st, APICRED_ERR_CONFIG, s,
			              "'url' is not an absolute http(s) URL");
		size_t olen = strlen(st->origin);
		bool https = strncmp(st->origin, "https:", 6) == 0;
		const char *def = https ? ":443" : ":80";
		if (olen > strlen(def) && strcmp(st->origin + olen - strlen(def), def) == 0)
			st->origin_short = strndup(st->origin, olen - strlen(def));
	}
	if ((s = config_setting_get_member(root, "headers"))) {
		bool one = config_setting_type(s) == CONFIG_TYPE_STRING;
		st->nheaders = one ? 1 : (size_t)config_setting_length(s);
		st->headers = calloc(2 * st->nheaders + 1, sizeof(char *));
		if (!st->headers)
			return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
		for (size_t i = 0; i < st->nheaders; i++) {
			rc = s_static_header(st, one ? s : config_setting_get_elem(s, (unsigned)i), i);
			if (rc)
				return rc;
		}
	}

	s = config_setting_get_member(root, "stack");
	if (!s || config_setting_length(s) == 0)
		return s_fail(st, APICRED_ERR_CONFIG, s ? s : root,
		              "missing 'stack': a service needs at least one layer");
	if (config_setting_length(s) > AC_MAX_LAYERS)
		return s_fail(st, APICRED_ERR_CONFIG, s, "'stack' has more than %d layers",
		              AC_MAX_LAYERS);
	st->nlayers = (size_t)config_setting_length(s);
	st->layers = calloc(st->nlayers, sizeof(*st->layers));
	if (!st->layers)
		return s_fail(st, APICRED_ERR_NOMEM, s, "out of memory");
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		L->stack = st;
		L->index = (int)i;
		L->cfg = config_setting_get_elem(s, (unsigned)i);
		ac_layer_cache_init(L);
	}
	for (size_t i = 0; i < st->nlayers; i++) {
		rc = s_layer_setup(st, &st->layers[i]);
		if (rc)
			return rc;
	}
	return APICRED_OK;
}

/* Creates each layer's provider state. A layer that cannot be created fails
 * closed: it keeps the reason and fails every request that reaches it. */
static void s_init_layers(struct ac_stack *st)
{
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];

		if (L->mod->code != APICRED_OK) {
			/* Fail closed whatever the layer's control: a provider that is
			 * missing or will not load is a broken installation, not an
			 * optional credential that happens to be absent. */
			st->fail_code = L->mod->code;
			if (asprintf(&st->fail_msg, "%s: layer %d (%s): %s", st->svc->name, L->index + 1,
			             L->provider, L->mod->why ? L->mod->why : "unusable") < 0)
				st->fail_msg = NULL;
			return;
		}
		ac_host_setup(L);
		ac_error_clear();
		int rc = L->mod->vt.init(&L->host, &L->state);
		if (rc != APICRED_OK) {
			L->state = NULL;
			L->fail_code = rc;
			L->fail_msg = ac_strdup(*apicred_errmsg() ? apicred_errmsg() : apicred_strerror(rc));
			/* fail_msg already names service and layer. */
			ac_log(st->ctx, LOG_ERR, NULL, "%s", L->fail_msg ? L->fail_msg : "layer failed");
		}
	}
}

struct ac_stack *ac_stack_load(struct ac_ctx *ctx, struct ac_service *svc)
{
	struct ac_stack *st = calloc(1, sizeof(*st));
	struct stat sb;

	if (!st)
		return NULL;
	st->ctx = ctx;
	st->svc = svc;
	ac_watch_add(st, svc->path);
	config_init(&st->cfg);
	st->cfg_loaded = true;
	config_set_include_dir(&st->cfg, ctx->confdir);

	if (stat(svc->path, &sb) != 0) {
		s_fail(st, APICRED_ERR_CONFIG, NULL, "cannot read the service file: %s",
		       strerror(errno));
	} else if (!config_read_file(&st->cfg, svc->path)) {
		if (config_error_type(&st->cfg) == CONFIG_ERR_FILE_IO) {
			s_fail(st, APICRED_ERR_CONFIG, NULL, "cannot read the service file: %s",
			       strerror(errno ? errno : EIO));
		} else {
			st->fail_code = APICRED_ERR_CONFIG;
			if (asprintf(&st->fail_msg, "%s: %s:%d: syntax error: %s", svc->name,
			             config_error_file(&st->cfg) ? config_error_file(&st->cfg) : svc->path,
			             config_error_line(&st->cfg), config_error_text(&st->cfg)) < 0)
				st->fail_msg = NULL;
		}
	} else if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		/* Whoever can write it can send the secrets anywhere. */
		s_fail(st, APICRED_ERR_CONFIG, NULL, "the service file is group or world writable "
		       "(mode %04o); refusing to use it", (unsigned)(sb.st_mode & 07777));
	} else {
		/* Literal secrets are only allowed in a file nobody else can read. */
		st->literal_ok = (sb.st_mode & (S_IRGRP | S_IROTH)) == 0;
		if (s_parse_service(st) == APICRED_OK)
			s_init_layers(st);
	}
	if (st->fail_code)
		ac_log(ctx, LOG_ERR, NULL, "%s",
		       st->fail_msg ? st->fail_msg : apicred_strerror(st->fail_code));
	return st;
}

int ac_stack_error(struct ac_stack *st)
{
	if (st->fail_code)
		return ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "out of memory");
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		if (L->fail_code && L->control == AC_REQUIRED)
			return ac_error(L->fail_code, "%s", L->fail_msg ? L->fail_msg : "layer failed");
	}
	return APICRED_OK;
}

void ac_stack_free(void *p)
{
	struct ac_stack *st = p;

	if (!st)
		return;
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		ac_layer_cache_fini(L);
		if (L->state)
			L->mod->vt.fini(L->state);
		free(L->fail_msg);
	}
	free(st->layers);
	for (size_t i = 0; st->headers && i < 2 * st->nheaders; i++)
		free(st->headers[i]);
	free(st->headers);
	while (st->watches) {
		struct ac_watch *w = st->watches;
		st->watches = w->next;
		free(w->path);
		free(w);
	}
	if (st->cfg_loaded)
		config_destroy(&st->cfg);
	free(st->description);
	free(st->origin);
	free(st->origin_short);
	free(st->fail_msg);
	free(st);
}

/* ---- watching files for changes ----------------------------------------- */

static void s_watch_stat(struct ac_watch *w)
{
	struct stat sb;

	if (stat(w->path, &sb) != 0) {
		w->missing = true;
		w->dev = 0;
		w->ino = 0;
		w->size = 0;
		w->mtime_ns = 0;
		return;
	}
	w->missing = false;
	w->dev = sb.st_dev;
	w->ino = sb.st_ino;
	w->size = sb.st_size;
	w->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
}

int ac_watch_add(struct ac_stack *st, const char *path)
{
	struct ac_watch *w;

	for (w = st->watches; w; w = w->next)
		if (strcmp(w->path, path) == 0)
			return APICRED_OK;
	w = calloc(1, sizeof(*w));
	if (!w || !(w->path = ac_strdup(path))) {
		free(w);
		return APICRED_ERR_NOMEM;
	}
	s_watch_stat(w);
	w->next = st->watches;
	st->watches = w;
	return APICRED_OK;
}

bool ac_watch_changed(struct ac_stack *st)
{
	for (struct ac_watch *w = st->watches; w; w = w->next) {
		struct ac_watch now = { .path = w->path };
		s_watch_stat(&now);
		if (now.missing != w->missing || now.dev != w->dev || now.ino != w->ino ||
		    now.size != w->size || now.mtime_ns != w->mtime_ns)
			return true;
	}
	return false;
}
