/*
 * host.c - the services the core offers each provider layer (provider.h's
 * struct apicred_host). The host is embedded first in struct ac_layer, so
 * every service finds its layer with a cast.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"

static struct ac_layer *s_layer(const apicred_host *h)
{
	return (struct ac_layer *)(uintptr_t)h;
}

/* ---- configuration ------------------------------------------------------- */

static const apicred_schema *s_entry(const struct ac_layer *L, const char *key)
{
	return ac_schema_find(L->mod->vt.schema, key);
}

static const char *s_cfg_str(const apicred_host *h, const char *key)
{
	struct ac_layer *L = s_layer(h);
	const apicred_schema *e;
	const char *v;

	if (config_setting_lookup_string(L->cfg, key, &v))
		return v;
	e = s_entry(L, key);
	return e ? e->def : NULL;
}

static int s_cfg_int(const apicred_host *h, const char *key, long long *value)
{
	struct ac_layer *L = s_layer(h);
	const apicred_schema *e;
	long long ll;

	if (config_setting_lookup_int64(L->cfg, key, &ll)) {
		*value = ll;
		return 1;
	}
	e = s_entry(L, key);
	if (e && e->def) {
		*value = strtoll(e->def, NULL, 10);
		return 1;
	}
	return 0;
}

static int s_cfg_bool(const apicred_host *h, const char *key)
{
	struct ac_layer *L = s_layer(h);
	const apicred_schema *e;
	int b;

	if (config_setting_lookup_bool(L->cfg, key, &b))
		return b != 0;
	e = s_entry(L, key);
	return e && e->def && strcmp(e->def, "true") == 0;
}

static size_t s_cfg_count(const apicred_host *h, const char *key)
{
	config_setting_t *s = config_setting_get_member(s_layer(h)->cfg, key);

	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return 1;
	return (size_t)config_setting_length(s);
}

static int s_cfg_item(const apicred_host *h, const char *key, size_t i,
                      const char **name, const char **value)
{
	config_setting_t *s = config_setting_get_member(s_layer(h)->cfg, key), *e;

	if (!s)
		return APICRED_ERR_INVALID;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (i != 0)
			return APICRED_ERR_INVALID;
		e = s;
	} else {
		e = config_setting_get_elem(s, (unsigned)i);
	}
	if (!e || config_setting_type(e) != CONFIG_TYPE_STRING)
		return APICRED_ERR_INVALID;
	if (name)
		*name = config_setting_type(s) == CONFIG_TYPE_GROUP ? config_setting_name(e) : NULL;
	if (value)
		*value = config_setting_get_string(e);
	return APICRED_OK;
}

static int s_cfg_line(const apicred_host *h, const char *key)
{
	struct ac_layer *L = s_layer(h);
	config_setting_t *s = key ? config_setting_get_member(L->cfg, key) : L->cfg;

	return s ? config_setting_source_line(s) : config_setting_source_line(L->cfg);
}

/* ---- secrets and files --------------------------------------------------- */

static int s_secret(const apicred_host *h, const char *key, char **value, size_t *len)
{
	struct ac_layer *L = s_layer(h);
	const char *ref = s_cfg_str(h, key);
	const apicred_schema *e = s_entry(L, key);
	int rc;

	if (!ref)
		return ac_layer_error(L, APICRED_ERR_CONFIG, "secret '%s' is not configured", key);
	rc = ac_secret_resolve(L, key, ref, value, len);
	if (rc == APICRED_OK && *len == 0 && e && (e->flags & APICRED_F_NONEMPTY)) {
		ac_secret_free(*value, 0);
		*value = NULL;
		return ac_layer_error(L, APICRED_ERR_SECRET, "%s (line %d): the secret is empty",
		                      key, s_cfg_line(h, key));
	}
	return rc;
}

static void s_secret_free(const apicred_host *h, char *value, size_t len)
{
	ac_secret_free(value, len);
}

static int s_secret_store(const apicred_host *h, const char *key, const char *value,
                          size_t len, int force)
{
	return ac_secret_store(s_layer(h), key, value, len, force);
}

static int s_secret_store_all(const apicred_host *h, size_t n, const char *const *keys,
                              const char *const *values, const size_t *lens, int force)
{
	return ac_secret_store_all(s_layer(h), n, keys, values, lens, force);
}

static int s_path(const apicred_host *h, const char *key, char **path)
{
	struct ac_layer *L = s_layer(h);
	const char *ref = s_cfg_str(h, key);
	const apicred_schema *e;
	char what[160];
	int rc;

	*path = NULL;
	if (!ref)
		return ac_layer_error(L, APICRED_ERR_CONFIG, "'%s' is not configured", key);
	rc = ac_path_resolve(L->stack->ctx, ref, path);
	if (rc != APICRED_OK)
		return rc;
	ac_watch_add(L->stack, *path);
	/* The core's rule, so that no provider keeps a copy of it. */
	snprintf(what, sizeof(what), "'%s'", key);
	e = s_entry(L, key);
	rc = ac_path_safe(*path, what, e && (e->flags & APICRED_F_SECRET_FILE) ? AC_PATH_SECRET
	                                                                        : AC_PATH_ANY);
	if (rc != APICRED_OK) {
		free(*path);
		*path = NULL;
		return ac_layer_error(L, rc, "%s", apicred_errmsg());
	}
	return APICRED_OK;
}

#define S_FILE_MAX (1024 * 1024) /* read_file: no certificate or key is larger */

static int s_read_file(const apicred_host *h, const char *key, char **data, size_t *len)
{
	struct ac_layer *L = s_layer(h);
	const apicred_schema *e = s_entry(L, key);
	bool secret = e && (e->flags & APICRED_F_SECRET_FILE);
	char *path, what[160];
	int rc;

	*data = NULL;
	*len = 0;
	if ((rc = s_path(h, key, &path)) != APICRED_OK)
		return rc;
	snprintf(what, sizeof(what), "'%s'", key);
	rc = ac_read_file(path, S_FILE_MAX, data, len, secret, what);
	free(path);
	return rc == APICRED_OK ? rc : ac_layer_error(L, rc, "%s", apicred_errmsg());
}

static void s_wipe_free(const apicred_host *h, void *p, size_t len)
{
	if (p) {
		OPENSSL_cleanse(p, len == APICRED_WIPE_STR ? strlen(p) : len);
		free(p);
	}
}

static int s_check_text(const apicred_host *h, int code, const char *what, const void *s,
                        size_t len)
{
	const unsigned char *p = s;

	if (len == 0)
		return ac_layer_error(s_layer(h), code, "%s: empty", what);
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return ac_layer_error(s_layer(h), code, "%s: control characters (CR, LF or "
			                      "the like) refused", what);
	return APICRED_OK;
}

static int s_url_join(const apicred_host *h, const char *base, const char *path, char **out)
{
	size_t n = strlen(base);

	while (n && base[n - 1] == '/')
		n--;
	path += strspn(path, "/");
	if (asprintf(out, "%.*s/%s", (int)n, base, path) < 0) {
		*out = NULL;
		return ac_layer_error(s_layer(h), APICRED_ERR_NOMEM, "out of memory");
	}
	return APICRED_OK;
}

/* ---- the request as apply receives it ------------------------------------ */

/* The query as sent: after '?', before '#' (single-byte searches, which
 * glibc vectorises; strcspn with a set of two is far slower). */
static void s_find_query(struct ac_request *R)
{
	const char *url = R->r.url, *q = url ? strchr(url, '?') : NULL;

	R->query = "";
	R->query_len = 0;
	if (q && !memchr(url, '#', (size_t)(q - url))) {
		R->query = q + 1;
		R->query_len = (size_t)(strchrnul(R->query, '#') - R->query);
	}
	R->parsed = true;
}

/* Its items, split at '&' (empty ones skipped), only for a layer that asks. */
static int s_split_query(struct ac_request *R)
{
	size_t n = 0, cap = sizeof(R->inline_items) / sizeof(R->inline_items[0]);
	apicred_query_item *it = R->inline_items;

	for (const char *p = R->query, *end = p + R->query_len; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
		if (!amp)
			amp = end;
		if (amp > p) {
			if (n == cap) {
				apicred_query_item *more = malloc(2 * cap * sizeof(*more));
				if (!more) {
					if (it != R->inline_items)
						free(it);
					return ac_error(APICRED_ERR_NOMEM, "out of memory");
				}
				memcpy(more, it, n * sizeof(*it));
				if (it != R->inline_items)
					free(it);
				it = more;
				cap *= 2;
			}
			eq = memchr(p, '=', (size_t)(amp - p));
			it[n++] = (apicred_query_item){ p, (size_t)((eq ? eq : amp) - p),
			                                eq ? eq + 1 : NULL,
			                                eq ? (size_t)(amp - eq - 1) : 0 };
		}
		p = amp + 1;
	}
	R->items = it;
	R->nitems = n;
	return APICRED_OK;
}

static int s_request_query(const apicred_host *h, const apicred_request *req,
                           const char **query, size_t *len,
                           const apicred_query_item **items, size_t *n)
{
	/* Only the core makes the request apply receives (ac_request_init). */
	struct ac_request *R = (struct ac_request *)(uintptr_t)req;
	int rc;

	if (!req || R->self != R)
		return ac_layer_error(s_layer(h), APICRED_ERR_INVALID,
		                      "request_query: not the request apply received");
	if (!R->parsed)
		s_find_query(R);
	if ((items || n) && !R->items && (rc = s_split_query(R)) != APICRED_OK)
		return ac_layer_error(s_layer(h), rc, "%s", apicred_errmsg());
	if (query)
		*query = R->query;
	if (len)
		*len = R->query_len;
	if (items)
		*items = R->items;
	if (n)
		*n = R->nitems;
	return APICRED_OK;
}

/* ---- sessions ------------------------------------------------------------ */

static int s_fetch_reason(const apicred_host *h, const void *previous)
{
	struct ac_layer *L = s_layer(h);
	struct ac_session *s = atomic_load(&L->session);

	if (!previous)
		return APICRED_FETCH_FIRST;
	if (s && s->data == previous) {
		if (atomic_load(&s->invalid))
			return APICRED_FETCH_INVALIDATED;
		if (ac_now_mono(L->stack->ctx) >= s->expires_ms)
			return APICRED_FETCH_EXPIRED;
	}
	return APICRED_FETCH_REFRESH;
}

static int s_no_session(const apicred_host *h)
{
	s_layer(h)->no_session = true;
	return APICRED_OK;
}

static int s_apply_static(const apicred_host *h, int64_t until_wall_ms)
{
	struct ac_layer *L = s_layer(h);

	L->apply_static = true;
	L->static_until_wall_ms = until_wall_ms;
	return APICRED_OK;
}

/* ---- HTTP, JSON, encodings ----------------------------------------------- */

static int s_http(const apicred_host *h, const apicred_http_request *req,
                  apicred_http_response *resp)
{
	struct ac_layer *L = s_layer(h);
	apicred_cred *carried = NULL;
	int rc;

	/* What the layers above add goes along when this request may carry it
	 * (and may go there at all: their sessions are not fetched for nothing). */
	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	if (req && req->url && req->method &&
	    ((rc = ac_url_allowed(L, req->url)) != APICRED_OK ||
	     (rc = ac_stack_carried(L, req->method, req->url, &carried)) != APICRED_OK))
		return rc;
	rc = ac_http(L, req, carried, resp);
	apicred_cred_free(carried);
	return rc;
}

static void s_http_free(const apicred_host *h, apicred_http_response *resp)
{
	ac_http_free(resp);
}

static int s_http_error(const apicred_host *h, const apicred_http_response *resp,
                        const char *what)
{
	return ac_http_error(s_layer(h), resp, what);
}

static size_t s_safe_text(const apicred_host *h, const char *in, size_t len, char *out,
                          size_t cap)
{
	return ac_text_copy(out, cap, in ? in : "", in ? len : 0);
}

/* The body as a JSON object in *root, or the error, detail set. */
static int s_json_object(struct ac_layer *L, const char *body, size_t len, json_t **root)
{
	json_error_t jerr;

	ac_json_oom_take();
	*root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (ac_json_oom_take()) { /* the parse may have lost characters */
		json_decref(*root);
		*root = NULL;
		return ac_layer_error(L, APICRED_ERR_NOMEM, "out of memory parsing a reply");
	}
	if (!*root || !json_is_object(*root)) {
		bool parsed = *root != NULL;
		json_decref(*root);
		*root = NULL;
		return ac_layer_error(L, APICRED_ERR_PROTOCOL, "reply is not a JSON object%s%s",
		                      parsed ? "" : ": ", parsed ? "" : jerr.text);
	}
	return APICRED_OK;
}

/* The text at a dotted path: APICRED_OK, APICRED_ABSENT or _NOMEM. */
static int s_json_path(const json_t *root, const char *path, char **value)
{
	const json_t *v = root;
	char key[128];

	*value = NULL;
	for (const char *p = path; v && *p;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(key) || !json_is_object(v)) {
			v = NULL;
			break;
		}
		memcpy(key, p, n);
		key[n] = '\0';
		v = json_object_get(v, key);
		p = dot ? dot + 1 : p + n;
	}
	if (json_is_string(v)) {
		*value = strndup(json_string_value(v), json_string_length(v));
	} else if (json_is_integer(v)) {
		if (asprintf(value, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			*value = NULL;
	} else if (json_is_real(v)) {
		if (asprintf(value, "%.17g", json_real_value(v)) < 0)
			*value = NULL;
	} else if (json_is_boolean(v)) {
		*value = ac_strdup(json_is_true(v) ? "true" : "false");
	} else {
		return APICRED_ABSENT; /* absent, null or a container */
	}
	return *value ? APICRED_OK : APICRED_ERR_NOMEM;
}

static int s_json_get(const apicred_host *h, const char *body, size_t len,
                      const char *path, char **value)
{
	struct ac_layer *L = s_layer(h);
	json_t *root;
	int rc;

	*value = NULL;
	if ((rc = s_json_object(L, body, len, &root)) != APICRED_OK)
		return rc;
	rc = s_json_path(root, path, value);
	json_decref(root);
	return rc == APICRED_ERR_NOMEM ? ac_layer_error(L, rc, "out of memory") : rc;
}

static int s_json_get_many(const apicred_host *h, const char *body, size_t len, size_t n,
                           const char *const *paths, char **values)
{
	struct ac_layer *L = s_layer(h);
	json_t *root;
	int rc;

	for (size_t i = 0; i < n; i++)
		values[i] = NULL;
	if ((rc = s_json_object(L, body, len, &root)) != APICRED_OK)
		return rc;
	for (size_t i = 0; i < n && rc == APICRED_OK; i++)
		if (s_json_path(root, paths[i], &values[i]) == APICRED_ERR_NOMEM)
			rc = ac_layer_error(L, APICRED_ERR_NOMEM, "out of memory");
	json_decref(root);
	for (size_t i = 0; rc != APICRED_OK && i < n; i++) {
		s_wipe_free(h, values[i], APICRED_WIPE_STR); /* values may be tokens */
		values[i] = NULL;
	}
	return rc;
}

static int s_base64(const apicred_host *h, const void *in, size_t len, char **out)
{
	size_t cap = 4 * ((len + 2) / 3) + 1;

	if (len > INT32_MAX)
		return ac_error(APICRED_ERR_INVALID, "base64: input too long");
	*out = malloc(cap);
	if (!*out)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	EVP_EncodeBlock((unsigned char *)*out, in, (int)len);
	return APICRED_OK;
}

/* The two lowercase hex digits of each byte value, built by the compiler
 * (OPENSSL_buf2hexstr puts ':' between bytes, its _ex form is uppercase):
 * one 2-byte copy per byte. */
#define S_XD(n) ((n) < 10 ? '0' + (n) : 'a' - 10 + (n))
#define S_X1(b) { S_XD((b) >> 4), S_XD((b) & 15) }
#define S_X4(b) S_X1(b), S_X1((b) + 1), S_X1((b) + 2), S_X1((b) + 3)
#define S_X16(b) S_X4(b), S_X4((b) + 4), S_X4((b) + 8), S_X4((b) + 12)
#define S_X64(b) S_X16(b), S_X16((b) + 16), S_X16((b) + 32), S_X16((b) + 48)
static const char s_hexpair[256][2] = { S_X64(0), S_X64(64), S_X64(128), S_X64(192) };

static size_t s_hex_into(const apicred_host *h, const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	size_t i = 0;

	/* 8 bytes per load: a digest just stored in narrower pieces makes
	 * byte loads wait for each store to forward. */
	for (uint64_t w; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		for (int b = 0; b < 8; b++) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			unsigned v = (unsigned)(w >> (8 * b)) & 255;
#else
			unsigned v = (unsigned)(w >> (56 - 8 * b)) & 255;
#endif
			memcpy(out + 2 * (i + b), s_hexpair[v], 2);
		}
	}
	for (; i < len; i++)
		memcpy(out + 2 * i, s_hexpair[p[i]], 2);
	out[2 * len] = '\0';
	return 2 * len;
}

static int s_hex(const apicred_host *h, const void *in, size_t len, char **out)
{
	if (!(*out = malloc(2 * len + 1)))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	s_hex_into(h, in, len, *out);
	return APICRED_OK;
}

static int s_form_escape(const apicred_host *h, const char *in, char **out)
{
	/* curl_easy_escape gives RFC 3986 (%20); forms want '+' for spaces. */
	char *e = curl_easy_escape(NULL, in, 0), *w;
	size_t n = 0;

	*out = NULL;
	if (!e)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	for (const char *p = e; *p; n++)
		p += strncmp(p, "%20", 3) == 0 ? 3 : 1;
	*out = w = malloc(n + 1);
	if (w) {
		for (const char *p = e; *p;) {
			if (strncmp(p, "%20", 3) == 0) {
				*w++ = '+';
				p += 3;
			} else {
				*w++ = *p++;
			}
		}
		*w = '\0';
	}
	OPENSSL_cleanse(e, strlen(e));
	curl_free(e);
	return *out ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "out of memory");
}

/* ---- clocks, random, log ------------------------------------------------- */

static int64_t s_now_mono(const apicred_host *h)
{
	return ac_now_mono(s_layer(h)->stack->ctx);
}

static int64_t s_now_wall(const apicred_host *h)
{
	return ac_now_wall(s_layer(h)->stack->ctx);
}

static int s_random(const apicred_host *h, unsigned char *buf, size_t len)
{
	return ac_random(s_layer(h)->stack->ctx, buf, len);
}

__attribute__((format(printf, 3, 4)))
static void s_log(const apicred_host *h, int level, const char *fmt, ...)
{
	struct ac_layer *L = s_layer(h);
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ac_log(L->stack->ctx, level, L->stack->svc->name, "layer %d (%s): %s", L->index + 1,
	       L->provider, msg);
}

__attribute__((format(printf, 3, 4)))
static int s_error(const apicred_host *h, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ac_layer_verror(s_layer(h), code, fmt, ap);
	va_end(ap);
	return code;
}

static int s_header_new(const apicred_host *h, const char *name, const char *value,
                        apicred_header **out)
{
	return ac_header_new(s_layer(h), name, value, out);
}

static int s_add_prepared(const apicred_host *h, apicred_out *out, const apicred_header *hdr)
{
	return ac_out_prepared(out, hdr);
}

static void s_header_free(const apicred_host *h, apicred_header *hdr)
{
	ac_header_free(hdr);
}

/* A header whose value the core encodes: hex and base64 text holds no CR,
 * LF or NUL, and hdr was checked by header_new, so nothing is checked. */
static int s_add_encoded(const apicred_host *h, apicred_out *out, const apicred_header *hdr,
                         int encoding, const void *in, size_t len)
{
	char buf[512], *v = buf;
	size_t n = encoding == APICRED_ENC_HEX ? 2 * len : 4 * ((len + 2) / 3);
	int rc;

	if (!hdr || (encoding != APICRED_ENC_HEX && encoding != APICRED_ENC_BASE64) ||
	    len > INT32_MAX / 2)
		return ac_layer_error(s_layer(h), APICRED_ERR_INVALID,
		                      "add_encoded: no header, an unknown encoding or too long");
	n += hdr->value_len;
	if (n >= sizeof(buf) && !(v = malloc(n + 1)))
		return ac_layer_error(s_layer(h), APICRED_ERR_NOMEM, "out of memory");
	memcpy(v, hdr->text + hdr->name_len + 1, hdr->value_len);
	if (encoding == APICRED_ENC_HEX)
		s_hex_into(h, in, len, v + hdr->value_len);
	else
		EVP_EncodeBlock((unsigned char *)v + hdr->value_len, in, (int)len);
	rc = ac_cred_add(out->cred, APICRED_HEADER, hdr->text, hdr->name_len, v, n);
	if (v != buf)
		free(v);
	return rc;
}

/* One pin rule for the core's appliers and for providers (mtls). */
static int s_tls_pin_ok(const apicred_host *h, const char *pin, size_t len)
{
	(void)h;
	return ac_tls_pin(pin, len, NULL);
}

static const apicred_host s_template = {
	.size = sizeof(apicred_host),
	.cfg_str = s_cfg_str,
	.cfg_int = s_cfg_int,
	.cfg_bool = s_cfg_bool,
	.cfg_count = s_cfg_count,
	.cfg_item = s_cfg_item,
	.cfg_line = s_cfg_line,
	.secret = s_secret,
	.secret_free = s_secret_free,
	.secret_store = s_secret_store,
	.path = s_path,
	.http = s_http,
	.http_free = s_http_free,
	.http_error = s_http_error,
	.json_get = s_json_get,
	.base64 = s_base64,
	.hex = s_hex,
	.form_escape = s_form_escape,
	.now_mono_ms = s_now_mono,
	.now_wall_ms = s_now_wall,
	.random = s_random,
	.log = s_log,
	.error = s_error,
	.add_header = ac_out_header,
	.add_query = ac_out_query,
	.add_tls = ac_out_tls,
	.safe_text = s_safe_text,
	.secret_store_all = s_secret_store_all,
	.wipe_free = s_wipe_free,
	.read_file = s_read_file,
	.check_text = s_check_text,
	.url_join = s_url_join,
	.request_query = s_request_query,
	.fetch_reason = s_fetch_reason,
	.no_session = s_no_session,
	.json_get_many = s_json_get_many,
	.header_new = s_header_new,
	.add_prepared = s_add_prepared,
	.header_free = s_header_free,
	.tls_pin_ok = s_tls_pin_ok,
	.apply_static = s_apply_static,
	.hex_into = s_hex_into,
	.add_encoded = s_add_encoded,
};

void ac_host_setup(struct ac_layer *L)
{
	L->host = s_template;
	L->host.service = L->stack->svc->name;
	L->host.layer = L->index + 1;
}
