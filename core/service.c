/*
 * service.c - what an application asks of a service by name: credentials
 * (apicred_get, apicred_curl_apply), feedback on a response (the report
 * functions), checks, provisioning, its description; and which providers
 * are installed. Each finds the service (ctx.c), reloads it if a file
 * changed (lifecycle.c) and walks its stack (stack.c).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "internal.h"

/* Same origin as the service's url: a prefix test first, so the common
 * case parses nothing; anything unusual goes through libcurl's parser. */
AC_HOT static bool s_origin_ok(const struct ac_stack *st, const char *url)
{
	const char *o[2] = { st->origin, st->origin_short };
	size_t len[2] = { st->origin_len, st->origin_short_len };

	for (int i = 0; i < 2; i++) {
		size_t n = len[i];
		if (n && strncasecmp(url, o[i], n) == 0 && strchr("/?#", url[n]))
			return true;
	}
	return ac_url_same_origin(st->origin, url);
}

/* Copies an application request of any (older, shorter) version. */
static const apicred_request *s_request(const apicred_request *req, apicred_request *tmp)
{
	static const apicred_request empty = APICRED_REQUEST_INIT;

	if (!req)
		return &empty;
	if (req->size >= sizeof(*req))
		return req;
	*tmp = empty;
	memcpy(tmp, req, req->size > sizeof(size_t) ? req->size : sizeof(size_t));
	tmp->size = sizeof(*tmp);
	return tmp;
}

/* The service, loaded on first use, its files looked at again when due
 * (now: ac_now_fast). */
__attribute__((always_inline)) static inline int s_service(struct ac_ctx *ctx, const char *name,
                                                           int64_t now, struct ac_service **out)
{
	struct ac_service *svc;
	int rc;

	ac_fork_check(ctx);
	if (!(*out = svc = ac_service_find(ctx, name)))
		return ac_name_valid(name) ? APICRED_ERR_NO_SERVICE : APICRED_ERR_BAD_NAME;
	if (!atomic_load_explicit(&svc->stack, memory_order_acquire)) {
		if ((rc = ac_service_load(ctx, svc)) != APICRED_OK)
			*out = NULL;
		return rc;
	}
	if (now >= atomic_load_explicit(&svc->next_check_ms, memory_order_relaxed))
		ac_service_maybe_reload(ctx, svc, false);
	return APICRED_OK;
}

/* Whether apicred_get may answer req from the kept output: a request of
 * this version whose URL, if any, is within the service's origin. */
static inline bool s_fast_request_ok(const struct ac_stack *st, const apicred_request *req)
{
	return !req || (req->size >= sizeof(*req) &&
	                (!req->url || !st->origin || s_origin_ok(st, req->url)));
}

/* Everything but the kept output's copy: a request to check (its origin
 * unless checked already) or walk. */
__attribute__((noinline)) static int s_get_walk(struct ac_stack *st, const char *service,
                                                const apicred_request *req,
                                                apicred_cred *cred, int64_t now,
                                                bool checked)
{
	apicred_request tmp;

	req = s_request(req, &tmp);
	ac_cred_reset(cred);
	if (st->fail_code)
		return ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "service failed");
	if (!checked && st->origin && req->url && !s_origin_ok(st, req->url))
		return ac_error(APICRED_ERR_ORIGIN, "%s: refusing to send credentials outside the "
		                "service's origin %s", service,
		                st->origin_short ? st->origin_short : st->origin);
	return ac_stack_get(st, req, cred, now);
}

AC_HOT API int apicred_get(apicred_ctx *ctx, const char *service, const apicred_request *req,
                           apicred_cred *cred)
{
	struct ac_service *svc;
	struct ac_stack *st;
	bool checked = false;
	int64_t now;
	int rc;

	if (!ctx || !service || !cred)
		return ac_error(APICRED_ERR_INVALID, "apicred_get: NULL argument");
	now = ac_now_fast(&ctx->c); /* the call's one clock reading */
	if ((rc = s_service(&ctx->c, service, now, &svc)) != APICRED_OK) {
		ac_cred_reset(cred);
		return rc;
	}
	ac_ebr_enter();
	st = atomic_load_explicit(&svc->stack, memory_order_acquire);
	/* The common case: a copy of the output the stack keeps (stack.c). */
	if (!st->fail_code && (checked = s_fast_request_ok(st, req)) && ac_snap_get(st, cred, now))
		rc = APICRED_OK;
	else
		rc = s_get_walk(st, service, req, cred, now, checked);
	ac_ebr_leave();
	if (rc != APICRED_OK)
		ac_cred_reset(cred);
	return rc;
}

static int s_report(apicred_ctx *ctx, const char *service, const apicred_cred *cred,
                    long http_status, const char *const *headers, const void *body,
                    size_t body_len, int *retry)
{
	struct ac_service *svc;
	struct ac_stack *st;
	bool changed = false, ours = cred == NULL;
	int rc;

	if (retry)
		*retry = 0;
	if (!ctx || !service)
		return ac_error(APICRED_ERR_INVALID, "apicred_report: NULL argument");
	if ((rc = s_service(&ctx->c, service, ac_now_fast(&ctx->c), &svc)) != APICRED_OK)
		return rc;

	ac_ebr_enter();
	st = atomic_load_explicit(&svc->stack, memory_order_acquire);
	if (st->fail_code) { /* its layers may not even have a provider */
		rc = ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "service failed");
		ac_ebr_leave();
		return rc;
	}
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		struct ac_session *s = atomic_load(&L->session);
		uint64_t gen = s ? s->gen : 0;
		bool used = cred == NULL;

		for (size_t k = 0; cred && k < cred->nlayers; k++)
			if (cred->layers[k].layer == L) {
				used = ours = true;
				gen = cred->layers[k].gen;
			}
		if (!used || L->fail_code || (!L->mod->vt.feedback && !L->mod->vt.feedback_headers))
			continue;
		/* NULL cred: the credentials a get would give now, which may come
		 * from the shared store (a tok failover, say) before any get here. */
		if (!cred && !s && ac_layer_fetches(L) &&
		    ac_layer_session(L, ac_now_mono(&ctx->c), &s) == APICRED_OK)
			gen = s->gen;
		if (ac_layer_fetches(L) && (!s || s->gen != gen)) {
			AC_TRACE(L, "HTTP %ld for session generation %llu, already replaced: "
			         "nothing dropped", http_status, (unsigned long long)gen);
			changed = true; /* already replaced since: just retry */
			continue;
		}
		switch (L->mod->vt.feedback_headers
		        ? L->mod->vt.feedback_headers(L->state, &L->host, s ? s->data : NULL,
		                                      http_status, headers, body, body_len)
		        : L->mod->vt.feedback(L->state, &L->host, s ? s->data : NULL, http_status,
		                              body, body_len)) {
		case APICRED_FEEDBACK_INVALIDATE:
			ac_log(&ctx->c, LOG_INFO, service, "layer %d (%s): HTTP %ld: dropping the "
			       "cached session (generation %llu)", L->index + 1, L->provider,
			       http_status, (unsigned long long)gen);
			ac_layer_invalidate(L, gen);
			changed = true;
			break;
		case APICRED_FEEDBACK_CHANGED:
			AC_TRACE(L, "HTTP %ld: the provider changed its credentials", http_status);
			changed = true;
			break;
		default:
			if (http_status >= 400)
				AC_TRACE(L, "HTTP %ld: nothing to drop", http_status);
			break;
		}
	}
	ac_ebr_leave();
	/* Credentials from a stack replaced since (config reload): new ones differ. */
	if (!ours)
		changed = true;
	if (retry)
		*retry = changed;
	return APICRED_OK;
}

API int apicred_report(apicred_ctx *ctx, const char *service, const apicred_cred *cred,
                       long http_status, const void *body, size_t body_len, int *retry)
{
	return s_report(ctx, service, cred, http_status, NULL, body, body_len, retry);
}

API int apicred_report_headers(apicred_ctx *ctx, const char *service,
                               const apicred_cred *cred, long http_status,
                               const char *const *headers, const void *body,
                               size_t body_len, int *retry)
{
	return s_report(ctx, service, cred, http_status, headers, body, body_len, retry);
}

/* The final response's headers (not a 100 Continue's, nor a proxy's) as
 * "Name: value" lines, in one block of *size bytes: the array, then the
 * text (wiped when freed: Set-Cookie and the like may be secrets). */
static char **s_curl_headers(CURL *easy, size_t *size)
{
	struct curl_header *h = NULL;
	size_t n = 0, text = 0, off;
	char **lines;

	while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, h))) {
		n++;
		text += strlen(h->name) + 2 + strlen(h->value) + 1;
	}
	if (!(lines = malloc((n + 1) * sizeof(*lines) + text)))
		return NULL;
	off = (n + 1) * sizeof(*lines);
	n = 0;
	while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, h))) {
		lines[n] = (char *)lines + off;
		off += (size_t)sprintf(lines[n++], "%s: %s", h->name, h->value) + 1;
	}
	lines[n] = NULL;
	*size = off;
	return lines;
}

API int apicred_curl_report(apicred_ctx *ctx, const char *service, void *curl_easy,
                            const apicred_cred *cred, const void *body, size_t body_len,
                            int *retry)
{
	long status = 0;
	size_t size = 0;
	char **lines;
	int rc;

	if (retry)
		*retry = 0;
	if (!curl_easy)
		return ac_error(APICRED_ERR_INVALID, "apicred_curl_report: NULL CURL handle");
	if (curl_easy_getinfo(curl_easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
	    status == 0)
		return ac_error(APICRED_ERR_INVALID, "apicred_curl_report: the handle holds no "
		                "response (call it after curl_easy_perform)");
	if (!(lines = s_curl_headers(curl_easy, &size)))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	rc = s_report(ctx, service, cred, status, (const char *const *)lines, body, body_len,
	              retry);
	OPENSSL_cleanse(lines, size);
	free(lines);
	return rc;
}

/* The Content-Type the signing layers saw is the one the server gets
 * (ac_content_type), unless the application's own header lines carry it:
 * *ct is NULL when none is due. */
static int s_content_type(const apicred_request *req, const char **ct)
{
	bool in_headers;

	*ct = ac_content_type(req, &in_headers);
	if (in_headers)
		*ct = NULL;
	if (*ct && !ac_header_value_ok(*ct, strlen(*ct)))
		return ac_error(APICRED_ERR_INVALID, "apicred_curl_apply: content_type contains "
		                "CR, LF or NUL");
	return APICRED_OK;
}

AC_HOT API int apicred_curl_apply(apicred_ctx *ctx, const char *service, void *curl_easy,
                                  const apicred_request *req, apicred_cred *cred)
{
	const char *const *lines;
	struct curl_slist *list;
	const char *ct = NULL;
	char *url = NULL, ct_buf[256], *ct_line = NULL;
	int rc;

	if (!curl_easy || !req || !req->url) {
		rc = ac_error(APICRED_ERR_INVALID, "apicred_curl_apply: a CURL handle and a "
		              "request with a url are required");
		goto fail;
	}
	if ((rc = apicred_get(ctx, service, req, cred)) != APICRED_OK)
		goto fail;
	lines = req->size >= sizeof(*req) ? req->headers : NULL;
	/* Without header lines, a type or a body no Content-Type is due. */
	if ((lines || req->content_type || req->body) &&
	    (rc = s_content_type(req, &ct)) != APICRED_OK)
		goto fail;
	if (ct) {
		size_t n = sizeof("Content-Type: ") + strlen(ct);
		if (!(ct_line = n <= sizeof(ct_buf) ? ct_buf : malloc(n))) {
			rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
			goto fail;
		}
		snprintf(ct_line, n, "Content-Type: %s", ct);
	}
	/* In cred, reused call after call: see apicred_curl_apply(3) for how
	 * long it must stay untouched. */
	if ((rc = ac_cred_slist(cred, lines, ct_line, &list)) != APICRED_OK)
		goto fail;
	if ((rc = ac_curl_tls(curl_easy, cred, ctx->c.http.ca_file, ctx->c.http.ca_path)) !=
	    APICRED_OK) {
		rc = ac_error(rc, "%s: %s", service, apicred_errmsg());
		goto fail;
	}
	/* The URL as given once the origin check passed (libcurl copies it);
	 * parsed and rebuilt only when query parameters must be added. It
	 * goes last of what may fail: a failure never leaves a URL carrying
	 * credentials on the handle. */
	if (cred->nquery && (rc = apicred_cred_url(cred, req->url, &url)) != APICRED_OK)
		goto fail;
	if (curl_easy_setopt(curl_easy, CURLOPT_URL, url ? url : req->url) != CURLE_OK) {
		rc = ac_error(APICRED_ERR_INVALID, "%s: libcurl refused the URL", service);
		goto fail;
	}
	curl_easy_setopt(curl_easy, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl_easy, CURLOPT_FOLLOWLOCATION, 0L);
	/* A setuid program takes no proxy from its caller's environment. */
	if (ac_secure())
		curl_easy_setopt(curl_easy, CURLOPT_PROXY, ac_proxy_for(ctx->c.http.proxy, true));
	goto out;
fail:
	/* The list on the handle may be the one this cred held, about to be
	 * wiped (or freed by a cred that grows): whatever failed, the handle
	 * is left with no header list at all, so running it anyway sends no
	 * credential, stale or wiped (apicred_curl_apply(3)). */
	if (curl_easy)
		curl_easy_setopt(curl_easy, CURLOPT_HTTPHEADER, NULL);
	if (cred)
		ac_cred_reset(cred);
out:
	if (ct_line && ct_line != ct_buf)
		free(ct_line);
	if (url) {
		OPENSSL_cleanse(url, strlen(url)); /* it carries the query's credentials */
		free(url);
	}
	return rc;
}

/* Two settings with the same type and value (groups: the same members). */
static bool s_setting_equal(const config_setting_t *a, const config_setting_t *b)
{
	int t = config_setting_type(a), n;

	if (t != config_setting_type(b))
		return false;
	switch (t) {
	case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64:
		return config_setting_get_int64(a) == config_setting_get_int64(b);
	case CONFIG_TYPE_FLOAT:
		return config_setting_get_float(a) == config_setting_get_float(b);
	case CONFIG_TYPE_BOOL:
		return config_setting_get_bool(a) == config_setting_get_bool(b);
	case CONFIG_TYPE_STRING:
		return strcmp(config_setting_get_string(a), config_setting_get_string(b)) == 0;
	default:
		if ((n = config_setting_length(a)) != config_setting_length(b))
			return false;
		for (int i = 0; i < n; i++) {
			const config_setting_t *ea = config_setting_get_elem(a, (unsigned)i), *eb;
			eb = t == CONFIG_TYPE_GROUP ? config_setting_get_member(b, config_setting_name(ea))
			                            : config_setting_get_elem(b, (unsigned)i);
			if (!eb || !s_setting_equal(ea, eb))
				return false;
		}
		return true;
	}
}

/* What apicred_get would find wrong with a layer, without the network:
 * every secret resolves, every endpoint may be used, and a layer that needs
 * no session produces header values without CR, LF or NUL. */
static int s_check_layer(struct ac_layer *L, const char *url)
{
	const apicred_schema *schema = L->mod->vt.schema;
	int rc, n = config_setting_length(L->cfg);

	for (const apicred_schema *e = schema; e && e->name; e++) {
		const char *ref;
		if ((e->flags & APICRED_F_SECRET) &&
		    config_setting_lookup_string(L->cfg, e->name, &ref) &&
		    (rc = ac_secret_check(L, e->name, ref)) != APICRED_OK)
			return rc;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(L->cfg, (unsigned)i);
		const char *v = config_setting_get_string(s);
		if (v && strncasecmp(v, "http://", 7) == 0 && ac_url_allowed(L, v) != APICRED_OK)
			return ac_layer_error(L, APICRED_ERR_CONFIG, "'%s' (line %d) is plain "
			                      "http:// (set insecure_http = true, allowed for "
			                      "loopback hosts only)", config_setting_name(s),
			                      config_setting_source_line(s));
	}
	if (!ac_layer_fetches(L)) {
		apicred_request r = APICRED_REQUEST_INIT;
		struct ac_request R;
		apicred_cred *cred;
		r.method = "GET";
		r.url = url;
		if ((rc = apicred_cred_new(&cred)) != APICRED_OK)
			return rc;
		ac_request_init(&R, &r);
		rc = ac_layer_apply(L, &R, cred, ac_now_mono(L->stack->ctx));
		ac_request_fini(&R);
		apicred_cred_free(cred);
		if (rc != APICRED_OK)
			return rc;
	}
	return APICRED_OK;
}

static int s_check_stack(struct ac_stack *st)
{
	char *url = NULL;
	int rc;

	if ((rc = ac_stack_error(st)) != APICRED_OK)
		return rc;
	if (st->origin && asprintf(&url, "%s/", st->origin) < 0)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];

		for (size_t j = 0; j < i; j++)
			if (s_setting_equal(st->layers[j].cfg, L->cfg))
				ac_log(st->ctx, LOG_WARNING, st->svc->name, "layers %zu and %zu are "
				       "identical: both are sent with every request", j + 1, i + 1);
		if (L->fail_code) /* not required: get skips it, and so says */
			continue;
		rc = s_check_layer(L, url);
		if (rc != APICRED_OK && L->control == AC_REQUIRED)
			break;
		if (rc != APICRED_OK)
			ac_log(st->ctx, LOG_WARNING, st->svc->name, "%s layer %d (%s) would be "
			       "skipped: %s", ac_control_name(L->control), L->index + 1, L->provider,
			       apicred_errmsg());
		rc = APICRED_OK;
	}
	free(url);
	return rc;
}

API int apicred_check(apicred_ctx *ctx, const char *service)
{
	struct ac_service *svc;
	int rc;

	if (!ctx)
		return ac_error(APICRED_ERR_INVALID, "apicred_check: ctx is NULL");
	if (!service) /* the configuration directory itself */
		return ctx->c.scan_code ? ac_error(ctx->c.scan_code, "%s", ctx->c.scan_msg ?
		                                   ctx->c.scan_msg : "configuration directory")
		                        : APICRED_OK;
	if ((rc = s_service(&ctx->c, service, ac_now_fast(&ctx->c), &svc)) != APICRED_OK)
		return rc;
	ac_ebr_enter();
	rc = s_check_stack(atomic_load(&svc->stack));
	ac_ebr_leave();
	return rc;
}

API int apicred_check_report(apicred_ctx *ctx, const char *service, apicred_problem_fn fn,
                             void *user)
{
	struct ac_service *svc;
	struct ac_stack *st;
	int rc;

	if (!ctx || !service || !fn)
		return ac_error(APICRED_ERR_INVALID, "apicred_check_report: NULL argument");
	if ((rc = s_service(&ctx->c, service, ac_now_fast(&ctx->c), &svc)) != APICRED_OK)
		return rc;
	ac_ebr_enter();
	st = atomic_load(&svc->stack);
	for (size_t i = 0; i < st->nproblems; i++)
		fn(user, st->problems[i]);
	/* The files' problems, else what apicred_check finds beyond them
	 * (secrets, headers, endpoints), or out of memory. */
	rc = st->nproblems ? ac_stack_error(st) : s_check_stack(st);
	if (rc != APICRED_OK && !st->nproblems) {
		const char *m = apicred_errmsg();
		size_t n = strlen(st->svc->name);
		char *line = NULL;

		if (strncmp(m, st->svc->name, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
			m += n + 2;
		if (asprintf(&line, "%s: %s:%d: %s", st->svc->name, st->svc->path,
		             ac_problem_line(st, m), m) < 0)
			line = NULL;
		fn(user, line ? line : apicred_errmsg());
		free(line);
	}
	ac_ebr_leave();
	return rc;
}

API int apicred_check_all(apicred_ctx *ctx, apicred_problem_fn fn, void *user)
{
	int first = APICRED_OK, rc;
	char msg[1024] = "";

	if (!ctx)
		return ac_error(APICRED_ERR_INVALID, "apicred_check_all: ctx is NULL");
	if ((rc = apicred_check(ctx, NULL)) != APICRED_OK) {
		first = rc;
		snprintf(msg, sizeof(msg), "%s", apicred_errmsg());
		if (fn)
			fn(user, msg);
	}
	/* Every service, even after a failure: fn hears of all of them. */
	for (size_t i = 0; i < ctx->c.nservices; i++) {
		const char *name = ac_service_at(&ctx->c, i)->name;

		rc = fn ? apicred_check_report(ctx, name, fn, user) : apicred_check(ctx, name);
		if (rc != APICRED_OK && first == APICRED_OK) {
			first = rc;
			snprintf(msg, sizeof(msg), "%s", apicred_errmsg());
		}
	}
	if (first != APICRED_OK)
		return ac_error(first, "%s", msg);
	ac_error_clear();
	return APICRED_OK;
}

/* The description of a service that works (copied if copy), or its error. */
static int s_description(struct ac_ctx *ctx, const char *service, const char *fn,
                         const char **out, char **copy)
{
	struct ac_service *svc;
	struct ac_stack *st;
	int rc = APICRED_OK;

	*out = NULL;
	if (!service)
		return ac_error(APICRED_ERR_INVALID, "%s: NULL argument", fn);
	if ((rc = s_service(ctx, service, ac_now_fast(ctx), &svc)) != APICRED_OK)
		return rc;
	ac_ebr_enter();
	st = atomic_load_explicit(&svc->stack, memory_order_acquire);
	if (st->fail_code)
		rc = ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "service failed");
	else if (copy && st->description && !(*copy = ac_strdup(st->description)))
		rc = ac_error(APICRED_ERR_NOMEM, "%s: out of memory", service);
	ac_ebr_leave();
	/* Never freed before apicred_close, unlike the stack (a reload frees it). */
	if (rc == APICRED_OK)
		*out = atomic_load_explicit(&svc->desc, memory_order_acquire);
	return rc;
}

API const char *apicred_service_description(apicred_ctx *ctx, const char *service)
{
	const char *d = NULL;

	if (!ctx)
		ac_error(APICRED_ERR_INVALID, "apicred_service_description: NULL argument");
	else if (s_description(&ctx->c, service, "apicred_service_description", &d, NULL) ==
	         APICRED_OK)
		ac_error_clear();
	return d;
}

API int apicred_service_description_copy(apicred_ctx *ctx, const char *service, char **out)
{
	const char *d;

	if (!out)
		return ac_error(APICRED_ERR_INVALID, "apicred_service_description_copy: NULL argument");
	*out = NULL;
	if (!ctx)
		return ac_error(APICRED_ERR_INVALID, "apicred_service_description_copy: NULL argument");
	return s_description(&ctx->c, service, "apicred_service_description_copy", &d, out);
}

API int apicred_service_description_read(apicred_ctx *ctx, const char *service, char **out)
{
	struct ac_service *svc;
	struct ac_stack *st;
	int rc;

	if (!out)
		return ac_error(APICRED_ERR_INVALID, "apicred_service_description_read: NULL argument");
	*out = NULL;
	if (!ctx || !service)
		return ac_error(APICRED_ERR_INVALID, "apicred_service_description_read: NULL argument");
	ac_fork_check(&ctx->c);
	if (!(svc = ac_service_find(&ctx->c, service)))
		return ac_name_valid(service) ? APICRED_ERR_NO_SERVICE : APICRED_ERR_BAD_NAME;
	/* A stack of the file alone, never published: nobody else sees it. */
	if (!(st = calloc(1, sizeof(*st))))
		return ac_error(APICRED_ERR_NOMEM, "%s: out of memory", service);
	st->ctx = &ctx->c;
	st->svc = svc;
	rc = ac_config_description(st, out);
	ac_stack_free(st);
	return rc;
}

API int apicred_provision(apicred_ctx *ctx, const char *service, unsigned flags, char **report)
{
	struct ac_service *svc;
	struct ac_stack *st;
	char *all = NULL;
	int rc = APICRED_OK, done = 0;

	if (report)
		*report = NULL;
	if (!ctx || !service)
		return ac_error(APICRED_ERR_INVALID, "apicred_provision: NULL argument");
	if ((rc = s_service(&ctx->c, service, ac_now_fast(&ctx->c), &svc)) != APICRED_OK)
		return rc;
	ac_ebr_enter();
	st = atomic_load(&svc->stack);
	if (st->fail_code)
		rc = ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "service failed");
	for (size_t i = 0; rc == APICRED_OK && i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		char *part = NULL;

		if (L->fail_code || !L->mod->vt.provision)
			continue;
		done++;
		rc = L->mod->vt.provision(L->state, &L->host, flags, &part);
		if (part) {
			char *joined;
			if (asprintf(&joined, "%s%s", all ? all : "", part) >= 0) {
				free(all);
				all = joined;
			}
			free(part);
		}
	}
	ac_ebr_leave();
	if (rc == APICRED_OK && !done)
		rc = ac_error(APICRED_ERR_UNSUPPORTED, "%s: no layer of this service can provision",
		              service);
	if (rc == APICRED_OK && !(flags & APICRED_PROVISION_SHOW))
		ac_service_maybe_reload(&ctx->c, svc, true); /* pick up the new secrets */
	if (report)
		*report = all;
	else
		free(all);
	return rc;
}

API int apicred_providers(apicred_ctx *ctx, apicred_provider_fn fn, void *user)
{
	char **names = NULL;
	size_t n = 0;
	int rc;

	if (!ctx || !fn)
		return ac_error(APICRED_ERR_INVALID, "apicred_providers: NULL argument");
	ac_fork_check(&ctx->c);
	if ((rc = ac_module_names(&ctx->c, &names, &n)) != APICRED_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct ac_module *m = ac_module_get(&ctx->c, names[i]);
		if (m)
			fn(user, m->name, m->path, m->code, m->why ? m->why : "");
		free(names[i]);
	}
	free(names);
	return APICRED_OK;
}

/* ---- apicred cache list | clear ------------------------------------------ */

/* One service's layers that share their sessions; a layer that fails does
 * not stop the others. The first failure's code, its reason naming the
 * service. */
static int s_cache_walk_one(struct ac_ctx *ctx, struct ac_service *svc, apicred_cache_fn fn,
                            void *user, size_t *cleared)
{
	struct ac_stack *stk;
	char msg[512] = "";
	int first, rc;

	if ((first = ac_service_load(ctx, svc)) != APICRED_OK) /* its entries' names */
		return first;
	ac_ebr_enter();
	stk = atomic_load(&svc->stack);
	for (size_t k = 0; k < stk->nlayers; k++) {
		struct ac_layer *L = &stk->layers[k];
		apicred_cache_entry e;

		if (!L->store.on)
			continue;
		rc = ac_store_entry(L, &e, cleared);
		if (rc == APICRED_OK && !cleared)
			fn(user, &e);
		if (rc != APICRED_OK && first == APICRED_OK) {
			first = rc;
			snprintf(msg, sizeof(msg), "%s", apicred_errmsg());
		}
	}
	ac_ebr_leave();
	return first == APICRED_OK ? APICRED_OK : ac_error(first, "%s: %s", svc->name, msg);
}

/* Every service (or the one named): one that fails is no reason to leave
 * the others unlisted or uncleared. The first failure's code; the message
 * gives every failed service with its reason. */
static int s_cache_walk(apicred_ctx *c, const char *service, apicred_cache_fn fn, void *user,
                        size_t *cleared)
{
	struct ac_ctx *ctx = &c->c;
	char msg[1024] = "";
	size_t used = 0;
	int first = APICRED_OK, rc;

	if (!ctx->store)
		return ac_error(APICRED_ERR_UNSUPPORTED, "cache.store is \"none\": no shared store");
	if (service && !ac_service_find(ctx, service))
		return ac_name_valid(service) ? APICRED_ERR_NO_SERVICE : APICRED_ERR_BAD_NAME;
	ac_fork_check(ctx);
	for (size_t i = 0; i < ctx->nservices; i++) {
		struct ac_service *svc = ac_service_at(ctx, i);

		if (service && strcmp(service, svc->name) != 0)
			continue;
		if ((rc = s_cache_walk_one(ctx, svc, fn, user, cleared)) == APICRED_OK)
			continue;
		if (first == APICRED_OK)
			first = rc;
		if (used < sizeof(msg))
			used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s%s",
			                         used ? "; " : "", apicred_errmsg());
	}
	if (first == APICRED_OK)
		ac_error_clear();
	return first == APICRED_OK ? APICRED_OK : ac_error(first, "%s", msg);
}

API int apicred_cache_list(apicred_ctx *ctx, const char *service, apicred_cache_fn fn,
                           void *user)
{
	if (!ctx || !fn)
		return ac_error(APICRED_ERR_INVALID, "apicred_cache_list: NULL argument");
	return s_cache_walk(ctx, service, fn, user, NULL);
}

API int apicred_cache_clear(apicred_ctx *ctx, const char *service, size_t *cleared)
{
	size_t n = 0;
	int rc;

	if (!ctx)
		return ac_error(APICRED_ERR_INVALID, "apicred_cache_clear: NULL argument");
	rc = s_cache_walk(ctx, service, NULL, NULL, &n);
	if (cleared)
		*cleared = n;
	return rc;
}
