/*
 * http.c - the core's HTTP(S) client for providers' own requests (token
 * endpoints, logins). Peer verification is always on; plain
 * http:// is refused unless the layer allows it and the host is loopback;
 * redirects are never followed, so credentials cannot be bounced elsewhere.
 */
#include "config.h"

#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "internal.h"

static pthread_once_t s_once = PTHREAD_ONCE_INIT;

/* The end of the current cold fetch on this thread (CLOCK_MONOTONIC ms), or
 * 0: every request it makes gets only the time that is left. Real time, not
 * the injectable clock: it bounds how long a caller really waits. */
static _Thread_local int64_t s_deadline_ms;
static _Thread_local int64_t s_deadline_len_ms;

/* jansson's free gets no size: malloc_usable_size gives it, so the wiping
 * free works for any block, even one allocated before it was installed. */
static void s_json_free(void *p)
{
	if (p) {
		OPENSSL_cleanse(p, malloc_usable_size(p));
		free(p);
	}
}

/* jansson's lexer ignores a failed allocation while it copies a string
 * and goes on without the character (a token one character short): so a
 * parse during which an allocation failed is not trusted. */
static _Thread_local bool s_json_oom;

static void *s_json_malloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		s_json_oom = true;
	return p;
}

bool ac_json_oom_take(void)
{
	bool oom = s_json_oom;

	s_json_oom = false;
	return oom;
}

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

/* libcurl sets up OpenSSL, which reads its configuration: about a
 * millisecond that a context whose services make no request of their own
 * (API keys, signatures) never needs. */
static void s_curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void ac_curl_init(void)
{
	pthread_once(&s_curl_once, s_curl_init);
}

static void s_global_init(void)
{
	json_malloc_t m;
	json_free_t f;

	/* A libcurl built thread-safe (CURL_VERSION_THREADSAFE, 7.84 and later)
	 * may be set up by any thread at any time: on the first request. An
	 * older one only while no other thread of the application uses libcurl:
	 * at the first open, as its documentation asks of a library. */
#ifdef CURL_VERSION_THREADSAFE
	if (!(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_THREADSAFE))
#endif
		ac_curl_init();
	/* Token replies parsed by jansson leave copies of the secrets in its
	 * strings: wipe them when they are freed. An application that chose
	 * its own allocator for jansson keeps it. */
	json_get_alloc_funcs(&m, &f);
	if (m == malloc && f == free)
		json_set_alloc_funcs(s_json_malloc, s_json_free);
}

void ac_http_global_init(void)
{
	pthread_once(&s_once, s_global_init);
}

bool ac_deadline_begin(int64_t len_ms)
{
	if (s_deadline_ms) /* a fetch inside a fetch (a layer above): one deadline */
		return false;
	s_deadline_len_ms = len_ms;
	s_deadline_ms = ac_real_ms() + len_ms;
	return true;
}

void ac_deadline_end(bool began)
{
	if (began)
		s_deadline_ms = 0;
}

int64_t ac_deadline_left(void)
{
	return s_deadline_ms ? s_deadline_ms - ac_real_ms() : INT64_MAX;
}

int ac_deadline_error(struct ac_layer *L, int code, bool late)
{
	if (!s_deadline_ms || (!late && ac_deadline_left() > 0))
		return code;
	if (strstr(apicred_errmsg(), "http.deadline")) /* said so already */
		return APICRED_ERR_HTTP;
	return ac_layer_error(L, APICRED_ERR_HTTP, "%s (gave up: http.deadline of %lld ms "
	                      "reached)", apicred_errmsg(), (long long)s_deadline_len_ms);
}

/* ---- URLs ---------------------------------------------------------------- */

struct s_url {
	char *scheme, *host, *port, *path;
};

static void s_url_free(struct s_url *u)
{
	curl_free(u->scheme);
	curl_free(u->host);
	curl_free(u->port);
	curl_free(u->path);
}

static bool s_url_parse(const char *url, struct s_url *out)
{
	CURLU *u = curl_url();
	bool ok;

	memset(out, 0, sizeof(*out));
	if (!u)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_SCHEME, &out->scheme, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_HOST, &out->host, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_PORT, &out->port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_PATH, &out->path, 0) == CURLUE_OK &&
	     (strcmp(out->scheme, "https") == 0 || strcmp(out->scheme, "http") == 0);
	curl_url_cleanup(u);
	if (!ok)
		s_url_free(out);
	else
		for (char *p = out->host; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return ok;
}

char *ac_url_origin(const char *url)
{
	struct s_url u;
	char *o;

	if (!url || !s_url_parse(url, &u))
		return NULL;
	if (asprintf(&o, "%s://%s:%s", u.scheme, u.host, u.port) < 0)
		o = NULL;
	s_url_free(&u);
	return o;
}

bool ac_url_same_origin(const char *origin, const char *url)
{
	char *o;
	bool same;

	if (!origin || !url)
		return false;
	o = ac_url_origin(url);
	same = o && strcmp(o, origin) == 0;
	free(o);
	return same;
}

static char *s_url_redact(const char *url)
{
	struct s_url u;
	char *r;

	if (!url || !s_url_parse(url, &u))
		return ac_strdup("(invalid URL)");
	/* The query may hold secrets (signatures, tokens): never print it. */
	if (asprintf(&r, "%s://%s:%s%s", u.scheme, u.host, u.port, u.path) < 0)
		r = NULL;
	s_url_free(&u);
	return r;
}

static bool s_loopback(const char *host)
{
	return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
	       strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

int ac_url_allowed(struct ac_layer *L, const char *url)
{
	struct s_url u;
	bool plain;

	if (!s_url_parse(url, &u))
		return ac_layer_error(L, APICRED_ERR_CONFIG, "not an absolute http(s) URL");
	plain = strcmp(u.scheme, "http") == 0 && !(L->insecure_http && s_loopback(u.host));
	s_url_free(&u);
	if (plain)
		return ac_layer_error(L, APICRED_ERR_CONFIG, "refusing plain http:// (set "
		                      "insecure_http = true, allowed for loopback hosts only)");
	return APICRED_OK;
}

bool ac_url_loopback(const char *url)
{
	struct s_url u;
	bool lo;

	if (!url || !s_url_parse(url, &u))
		return false;
	lo = s_loopback(u.host);
	s_url_free(&u);
	return lo;
}

bool ac_http_url_ok(const char *s)
{
	CURLU *u;
	bool ok;

	if (strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0)
		return false;
	if (!(u = curl_url()))
		return false;
	ok = curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK;
	curl_url_cleanup(u);
	return ok;
}

/* ---- requests ------------------------------------------------------------ */

struct s_body {
	char *data;
	size_t len, cap, max;
	bool too_big;
	int64_t retry_after_ms;
};

static size_t s_write(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct s_body *b = user;
	size_t n = size * nmemb;

	if (b->len + n > b->max) {
		b->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		/* Token replies are secrets: no realloc leaving a copy behind. */
		p = malloc(cap);
		if (!p)
			return 0;
		if (b->data) {
			memcpy(p, b->data, b->len);
			OPENSSL_cleanse(b->data, b->len);
			free(b->data);
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static size_t s_header(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct s_body *b = user;
	size_t n = size * nmemb;

	if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
		char v[64];
		size_t len = n - 12 < sizeof(v) - 1 ? n - 12 : sizeof(v) - 1;
		char *end;
		long long secs;

		memcpy(v, ptr + 12, len);
		v[len] = '\0';
		secs = strtoll(v, &end, 10);
		if (end == v || secs < 0) {
			time_t when = curl_getdate(v, NULL); /* HTTP-date form */
			secs = when > time(NULL) ? (long long)(when - time(NULL)) : when > 0 ? 0 : -1;
		}
		/* Saturated here, capped by cache.backoff_max where it is used. */
		if (secs >= 0)
			b->retry_after_ms = secs > INT64_MAX / 1000 ? INT64_MAX : (int64_t)secs * 1000;
	}
	return n;
}

#ifdef APICRED_FUZZING
int (*ac_fuzz_http)(const char *, const char *, const struct curl_slist *, const void *,
                    size_t, struct ac_fuzz_reply *);

/* The fuzzer's reply, through the callbacks libcurl calls, in its pieces. */
static CURLcode s_fuzz_perform(const apicred_http_request *req, const char *url,
                               const struct curl_slist *hdrs, struct s_body *b,
                               struct ac_fuzz_reply *r)
{
	const char *p = NULL, *end = NULL;

	if (ac_fuzz_http(req->method, url, hdrs, req->body, req->body_len, r) != 0)
		return CURLE_COULDNT_CONNECT;
	if (r->head) {
		p = r->head;
		end = r->head + r->head_len;
	}
	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		s_header((char *)(uintptr_t)p, 1, n, b);
		p += n;
	}
	for (size_t off = 0, n; off < r->body_len; off += n) {
		n = r->body_len - off < CURL_MAX_WRITE_SIZE ? r->body_len - off : CURL_MAX_WRITE_SIZE;
		if (s_write((char *)(uintptr_t)r->body + off, 1, n, b) != n)
			return CURLE_WRITE_ERROR;
	}
	return CURLE_OK;
}
#endif

/* After a failed server verification: which CA was trusted, and where
 * another one is set (in hint, returned; "" for other failures). */
static const char *s_ca_hint(struct ac_ctx *ctx, const apicred_cred *carried, CURLcode cc,
                             char hint[600])
{
	const char *layer = apicred_cred_find(carried, APICRED_TLS, "ca_file");

	if (cc != CURLE_PEER_FAILED_VERIFICATION && cc != CURLE_SSL_CACERT_BADFILE)
		return "";
	if (!layer)
		layer = apicred_cred_find(carried, APICRED_TLS, "ca_path");
	snprintf(hint, 600, " (trusted CA: %s%s; set http.ca_file in apicred.conf, or "
	         "the mtls layer's ca, to the CA that signed the server's certificate)",
	         layer ? layer : ctx->http.ca_file ? ctx->http.ca_file
	                       : ctx->http.ca_path ? ctx->http.ca_path : "libcurl's default bundle",
	         layer ? ", the layer's ca" : ctx->http.ca_file || ctx->http.ca_path
	                                      ? ", from apicred.conf" : "");
	return hint;
}

/* One request in flight: what is sent, and what came back. */
struct s_xfer {
	CURL *c;
	struct curl_slist *hdrs;
	char *url;      /* with the carried query parameters: a secret */
	char *shown;    /* for messages: without the query */
	struct s_body body;
	char errbuf[CURL_ERROR_SIZE];
#ifdef APICRED_FUZZING
	struct ac_fuzz_reply fz;
#endif
};

static void s_xfer_free(struct s_xfer *x)
{
	if (x->c)
		curl_easy_cleanup(x->c);
	ac_slist_free(x->hdrs);
	if (x->body.data) {
		OPENSSL_cleanse(x->body.data, x->body.len);
		free(x->body.data);
	}
	if (x->url) {
		OPENSSL_cleanse(x->url, strlen(x->url));
		free(x->url);
	}
	free(x->shown);
}

/* The URL and the header lines: the request's, then the carried ones. */
static int s_build_target(const apicred_http_request *req, const apicred_cred *carried,
                          struct s_xfer *x)
{
	const char *lines[2] = { NULL, NULL };
	char *ct = NULL;
	int rc;

	if (carried && apicred_cred_count(carried, APICRED_QUERY)) {
		if ((rc = apicred_cred_url(carried, req->url, &x->url)) != APICRED_OK)
			return rc;
	} else if (!(x->url = ac_strdup(req->url))) {
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	if (req->content_type && asprintf(&ct, "Content-Type: %s", req->content_type) < 0)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	lines[0] = ct;
	rc = ac_slist_headers(&x->hdrs, req->headers, NULL);
	if (rc == APICRED_OK)
		rc = ac_slist_headers(&x->hdrs, lines, carried);
	free(ct);
	return rc;
}

static void s_build_method(CURL *c, const apicred_http_request *req)
{
	if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		return;
	}
	if (strcmp(req->method, "POST") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body || strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
	}
}

/* The handle: time-outs within what is left of http.deadline, no
 * redirects, the callbacks, the proxy rule and the TLS items. */
static int s_build_handle(struct ac_layer *L, const apicred_http_request *req,
                          const apicred_cred *carried, struct s_xfer *x)
{
	struct ac_ctx *ctx = L->stack->ctx;
	int64_t left = ac_deadline_left();
	const char *proxy;
	CURL *c;
	int rc;

	if (left <= 0)
		return ac_layer_error(L, APICRED_ERR_HTTP, "%s %s: http.deadline of %lld ms reached",
		                      req->method, x->shown, (long long)s_deadline_len_ms);
	ac_curl_init();
	if (!(c = x->c = curl_easy_init()))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	curl_easy_setopt(c, CURLOPT_URL, x->url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(left < ctx->http.connect_timeout_ms ? left : ctx->http.connect_timeout_ms));
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
	                 (long)(left < ctx->http.timeout_ms ? left : ctx->http.timeout_ms));
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x->body);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "apicred/" PACKAGE_VERSION);
	/* A handle per request resumes no TLS session anyway, and libcurl 7.88's
	 * session-ID cache frees twice when one of its allocations fails. */
	curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	if ((proxy = ac_proxy_for(ctx->http.proxy, ac_secure())))
		curl_easy_setopt(c, CURLOPT_PROXY, proxy);
	if (x->hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
	s_build_method(c, req);
	rc = ac_curl_tls(c, carried, ctx->http.ca_file, ctx->http.ca_path);
	if (rc != APICRED_OK)
		return ac_layer_error(L, rc, "%s", apicred_errmsg());
	return APICRED_OK;
}

static CURLcode s_perform(const apicred_http_request *req, struct s_xfer *x)
{
#ifdef APICRED_FUZZING
	if (ac_fuzz_http)
		return s_fuzz_perform(req, x->url, x->hdrs, &x->body, &x->fz);
#endif
	(void)req;
	return curl_easy_perform(x->c);
}

/* A transfer that did not complete: TLS failures get their own code. */
static int s_map_error(struct ac_layer *L, const apicred_http_request *req,
                       const apicred_cred *carried, struct s_xfer *x, CURLcode cc)
{
	int code = APICRED_ERR_HTTP;
	char hint[600];

	if (x->body.too_big)
		return ac_layer_error(L, APICRED_ERR_PROTOCOL, "%s %s: reply larger than %zu bytes",
		                      req->method, x->shown, x->body.max);
	switch (cc) {
	case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CLIENTCERT: case CURLE_USE_SSL_FAILED:
		code = APICRED_ERR_TLS;
		break;
	default:
		break;
	}
	code = ac_layer_error(L, code, "%s %s: %s%s%s%s", req->method, x->shown,
	                      curl_easy_strerror(cc), *x->errbuf ? ": " : "", x->errbuf,
	                      s_ca_hint(L->stack->ctx, carried, cc, hint));
	AC_TRACE(L, "%s %s -> no answer", req->method, x->shown);
	return code;
}

/* The reply, handed over to resp: status, content type, body, Retry-After
 * and the one header the request asked for. */
static int s_response(struct ac_layer *L, const apicred_http_request *req, struct s_xfer *x,
                      apicred_http_response *resp)
{
	char *ct = NULL;

	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (req->size >= offsetof(apicred_http_request, resp_header_value) + sizeof(char **) &&
	    req->resp_header && req->resp_header_value) {
		struct curl_header *h = NULL;

		/* The final response's header (not a 100 Continue's). */
		*req->resp_header_value = NULL;
		if (curl_easy_header(x->c, req->resp_header, 0, CURLH_HEADER, -1, &h) == CURLHE_OK &&
		    !(*req->resp_header_value = ac_strdup(h->value)))
			return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	curl_easy_getinfo(x->c, CURLINFO_CONTENT_TYPE, &ct);
#ifdef APICRED_FUZZING
	if (ac_fuzz_http) {
		resp->status = x->fz.status;
		ct = (char *)(uintptr_t)x->fz.content_type;
	}
#endif
	resp->content_type = ac_strdup(ct);
	resp->body = x->body.data ? x->body.data : calloc(1, 1);
	resp->body_len = x->body.len;
	resp->retry_after_ms = x->body.retry_after_ms;
	x->body.data = NULL;
	if (!resp->body)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	if (L->stack->ctx->log_level >= LOG_DEBUG) {
		double secs = 0;

		curl_easy_getinfo(x->c, CURLINFO_TOTAL_TIME, &secs);
		AC_TRACE(L, "%s %s -> HTTP %ld, %zu bytes, %.0f ms", req->method, x->shown,
		         resp->status, resp->body_len, secs * 1000);
	}
	return APICRED_OK;
}

int ac_http(struct ac_layer *L, const apicred_http_request *req, const apicred_cred *carried,
            apicred_http_response *resp)
{
	struct s_xfer x = { .body = { .max = L->stack->ctx->http.max_body, .retry_after_ms = -1 } };
	CURLcode cc;
	int rc;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	if (!req || !req->url || !req->method)
		return ac_layer_error(L, APICRED_ERR_INVALID, "HTTP request without method or URL");
	if (req->size >= offsetof(apicred_http_request, max_body) + sizeof(size_t) && req->max_body)
		x.body.max = req->max_body;
	if ((rc = ac_url_allowed(L, req->url)) != APICRED_OK)
		return rc;
	x.shown = s_url_redact(req->url);
	if ((rc = s_build_target(req, carried, &x)) == APICRED_OK &&
	    (rc = s_build_handle(L, req, carried, &x)) == APICRED_OK) {
		cc = s_perform(req, &x);
		rc = cc != CURLE_OK || x.body.too_big ? s_map_error(L, req, carried, &x, cc)
		                                      : s_response(L, req, &x, resp);
	}
	s_xfer_free(&x);
	if (rc != APICRED_OK)
		ac_http_free(resp);
	return rc;
}

void ac_http_free(apicred_http_response *resp)
{
	if (!resp)
		return;
	if (resp->body) {
		OPENSSL_cleanse(resp->body, resp->body_len);
		free(resp->body);
	}
	free(resp->content_type);
	resp->body = NULL;
	resp->content_type = NULL;
	resp->body_len = 0;
}

/* The server's own words: JSON error/error_description/message, else the
 * first line of the body, made safe and capped. */
static void s_server_text(const apicred_http_response *resp, char *out, size_t cap)
{
	json_t *root = json_loadb(resp->body ? resp->body : "", resp->body_len, 0, NULL);
	const char *e = NULL, *d = NULL;
	char raw[512];

	raw[0] = '\0';
	if (json_is_object(root)) {
		json_t *err = json_object_get(root, "error");
		e = json_string_value(err);
		if (json_is_object(err)) /* {"error": {"message": ...}} */
			e = json_string_value(json_object_get(err, "message"));
		d = json_string_value(json_object_get(root, "error_description"));
		if (!e)
			e = json_string_value(json_object_get(root, "message"));
		if (!e)
			e = json_string_value(json_object_get(root, "reason"));
		if (!e && !d)
			e = json_string_value(json_object_get(root, "status_message"));
	}
	if (e || d)
		snprintf(raw, sizeof(raw), "%s%s%s", e ? e : "", e && d ? ": " : "", d ? d : "");
	else if (resp->body)
		snprintf(raw, sizeof(raw), "%.*s", (int)strcspn(resp->body, "\r\n"), resp->body);
	json_decref(root);
	ac_text_copy(out, cap, raw, strlen(raw));
}

int ac_http_error(struct ac_layer *L, const apicred_http_response *resp, const char *what)
{
	char text[200];
	int code;

	s_server_text(resp, text, sizeof(text));
	if (resp->status == 429 || resp->status >= 500)
		code = APICRED_ERR_UNAVAILABLE;
	else if (resp->status >= 400)
		code = APICRED_ERR_AUTH;
	else
		code = APICRED_ERR_PROTOCOL;
	return ac_layer_error(L, code, "%s: HTTP %ld%s%s", what ? what : "request", resp->status,
	                      *text ? ": " : " (empty body)", text);
}
