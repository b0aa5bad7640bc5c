/*
 * sigv4: AWS Signature Version 4, for AWS and every S3-compatible API.
 *
 *   { provider = "sigv4"; region = "us-east-1"; service = "s3";
 *     access_key_id = "file:secrets/s3.id"; secret_access_key = "file:secrets/s3.key";
 *     sign_body = "unsigned"; }
 *
 * Every request carries X-Amz-Date, X-Amz-Content-Sha256 (the body's
 * SHA-256 in hex, or UNSIGNED-PAYLOAD), X-Amz-Security-Token (with a
 * session_token) and
 *
 *   Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
 *                  SignedHeaders=h1;h2;..., Signature=hex(HMAC(signing key, string to sign))
 *
 * over AWS's canonical request:
 *
 *   METHOD \n PATH \n QUERY \n name:value\n ... \n h1;h2;... \n PAYLOAD_HASH
 *
 *   PATH    the URL's path, dot segments removed as libcurl does when sending;
 *           other services than s3 also drop empty segments and URI-encode
 *           each segment once more (AWS's "encode twice" of the raw path);
 *           s3 takes the path as sent, its %XX escapes kept (a byte outside
 *           A-Za-z0-9-._~/ is escaped), never encoded twice.
 *   QUERY   each name and value URI-encoded once (%XX escapes kept, the
 *           rest escaped: '+' is a plus sign), sorted by name then value.
 *   headers host (the URL's, or the request's own Host header), ours, the
 *           request's content_type unless its headers name one (it is what
 *           apicred_curl_apply sends), and every header of the request
 *           (apicred_request.headers) except
 *           those proxies and clients rewrite (User-Agent, Expect,
 *           Transfer-Encoding, Connection, X-Amzn-Trace-Id); names
 *           lowercased, values trimmed with inner runs of blanks made one
 *           space, repeated names joined with ',', sorted by name.
 *
 * The signing key HMAC(HMAC(HMAC(HMAC("AWS4" secret, DATE), REGION),
 * SERVICE), "aws4_request") changes each UTC day. It is the layer's session:
 * fetch derives today's and tomorrow's, so the core's refresh never has to
 * race midnight, and apply only derives one itself when the clock has left
 * both days. Headers or query parameters added by other layers below this
 * one are not signed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "access_key_id", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY,
	  NULL, NULL,
	  "access key id, sent in Credential= (file:PATH, env:NAME or literal)" },
	{ "secret_access_key", APICRED_T_STRING,
	  APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "secret access key: the signing keys are derived from it; never sent" },
	{ "session_token", APICRED_T_STRING, APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "session token of temporary credentials, sent and signed as X-Amz-Security-Token" },
	{ "region", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL,
	  "signing region, e.g. us-east-1 (S3-compatible services say which)" },
	{ "service", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL,
	  "signing service, e.g. s3, execute-api, sqs; s3 keeps the path as sent" },
	{ "sign_body", APICRED_T_STRING, 0, "true", "true|unsigned",
	  "true: sign the body's SHA-256; unsigned: UNSIGNED-PAYLOAD (S3 style)" },
	{ "content_sha256_header", APICRED_T_BOOL, 0, "true", NULL,
	  "send X-Amz-Content-Sha256 (S3 needs it); false: the hash is only signed" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

#define S_DAY_MS 86400000LL
#define S_MAX_HEADERS 64 /* request headers signed, plus ours */
#define S_MAX_NAME 64    /* region and service lengths */
#define S_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s_state {
	const apicred_host *host;
	char *akid;                 /* secret reference: resolved, wiped */
	size_t akid_len;
	char *key;                  /* "AWS4" + secret access key, wiped */
	size_t key_len;
	char *token;                /* session token or NULL, wiped */
	size_t token_len;
	const char *region;         /* owned by the config */
	const char *service;
	bool s3, unsigned_payload, sha_header;
	EVP_MD *sha256;
	EVP_MAC *hmac;
};

/* Signing keys of two consecutive UTC days, as keyed HMAC contexts that
 * apply only duplicates. */
struct s_session {
	int64_t day[2];             /* days since the epoch */
	EVP_MAC_CTX *mac[2];
};

/* ---- init ------------------------------------------------------------ */

static void s_fini(void *state);

/* Printable, without blanks, '/' or ',': what goes into the credential
 * scope as it is (region, service, the access key id). */
static bool s_scope_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] == '/' || s[i] == ',' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static bool s_scope_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= S_MAX_NAME && s_scope_text(s, n);
}

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	char *secret = NULL;
	size_t secret_len = 0;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->region = host->cfg_str(host, "region");
	st->service = host->cfg_str(host, "service");
	st->s3 = strcmp(st->service, "s3") == 0;
	st->unsigned_payload = strcmp(host->cfg_str(host, "sign_body"), "unsigned") == 0;
	st->sha_header = host->cfg_bool(host, "content_sha256_header");
	if (!s_scope_ok(st->region) || !s_scope_ok(st->service)) {
		const char *k = s_scope_ok(st->region) ? "service" : "region";

		rc = host->error(host, APICRED_ERR_CONFIG, "%s (line %d): want 1 to %d printable "
		                 "characters without blanks, '/' or ','", k, host->cfg_line(host, k),
		                 S_MAX_NAME);
		goto fail;
	}
	if (st->unsigned_payload && !st->sha_header) {
		rc = host->error(host, APICRED_ERR_CONFIG, "sign_body = \"unsigned\" (line %d) needs "
		                 "content_sha256_header: the server must be told UNSIGNED-PAYLOAD",
		                 host->cfg_line(host, "sign_body"));
		goto fail;
	}

	rc = host->secret(host, "access_key_id", &st->akid, &st->akid_len);
	if (rc != APICRED_OK)
		goto fail;
	if (!s_scope_text(st->akid, st->akid_len)) {
		rc = host->error(host, APICRED_ERR_SECRET, "access_key_id: not an access key "
		                 "id (blanks, '/', ',' or control characters)");
		goto fail;
	}
	rc = host->secret(host, "secret_access_key", &secret, &secret_len);
	if (rc != APICRED_OK)
		goto fail;
	if (host->cfg_str(host, "session_token")) {
		rc = host->secret(host, "session_token", &st->token, &st->token_len);
		if (rc != APICRED_OK)
			goto fail;
	}
	/* It is sent as a header; the secrets are not empty (APICRED_F_NONEMPTY). */
	if (st->token && (rc = host->check_text(host, APICRED_ERR_SECRET, "session_token",
	                                        st->token, st->token_len)) != APICRED_OK)
		goto fail;

	/* The first key of the derivation chain: "AWS4" + secret. */
	st->key_len = 4 + secret_len;
	st->key = malloc(st->key_len + 1);
	if (!st->key) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto fail;
	}
	memcpy(st->key, "AWS4", 4);
	memcpy(st->key + 4, secret, secret_len + 1);
	host->secret_free(host, secret, secret_len);
	secret = NULL;

	st->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	st->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!st->sha256 || !st->hmac) {
		rc = host->error(host, APICRED_ERR_INTERNAL, "OpenSSL has no SHA-256 or HMAC");
		goto fail;
	}
	*state = st;
	return APICRED_OK;

fail:
	if (secret)
		host->secret_free(host, secret, secret_len);
	s_fini(st);
	return rc;
}

/* ---- signing keys ---------------------------------------------------- */

/* "YYYYMMDD" and "YYYYMMDDTHHMMSSZ" (UTC) of a wall-clock time; by hand
 * rather than strftime, whose locale handling costs more than the rest. */
static void s_stamps(int64_t ms, char date[9], char stamp[17])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	int v[6], width[6] = { 4, 2, 2, 2, 2, 2 };
	char *p = stamp;

	gmtime_r(&t, &tm);
	v[0] = (tm.tm_year + 1900) % 10000;
	v[1] = tm.tm_mon + 1;
	v[2] = tm.tm_mday;
	v[3] = tm.tm_hour;
	v[4] = tm.tm_min;
	v[5] = tm.tm_sec;
	for (int i = 0; i < 6; i++) {
		if (i == 3)
			*p++ = 'T';
		for (int j = width[i] - 1; j >= 0; j--, v[i] /= 10)
			p[j] = (char)('0' + v[i] % 10);
		p += width[i];
	}
	*p++ = 'Z';
	*p = '\0';
	memcpy(date, stamp, 8);
	date[8] = '\0';
}

/* An HMAC-SHA256 context keyed with the signing key of a day. */
static EVP_MAC_CTX *s_day_mac(const struct s_state *st, int64_t day)
{
	OSSL_PARAM params[2];
	unsigned char k[2][32];
	const unsigned char *key = (const unsigned char *)st->key;
	size_t keylen = st->key_len, n = 0;
	char date[9], stamp[17];
	const char *parts[4] = { date, st->region, st->service, "aws4_request" };
	EVP_MAC_CTX *mac = NULL;
	int i;

	s_stamps(day * S_DAY_MS, date, stamp);
	for (i = 0; i < 4; i++) {
		if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen,
		               (const unsigned char *)parts[i], strlen(parts[i]),
		               k[i % 2], sizeof(k[i % 2]), &n))
			break;
		key = k[i % 2];
		keylen = n;
	}
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (i == 4 && (mac = EVP_MAC_CTX_new(st->hmac)) && !EVP_MAC_init(mac, key, keylen, params)) {
		EVP_MAC_CTX_free(mac);
		mac = NULL;
	}
	OPENSSL_cleanse(k, sizeof(k));
	return mac;
}

/* ---- fetch ----------------------------------------------------------- */

/* No I/O: derives today's and tomorrow's signing keys, valid until
 * tomorrow ends. */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	int64_t now = host->now_wall_ms(host);
	struct s_session *sess;

	if (now < 0)
		return host->error(host, APICRED_ERR_INTERNAL, "the wall clock is before 1970");
	sess = calloc(1, sizeof(*sess));
	if (!sess)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	for (int i = 0; i < 2; i++) {
		sess->day[i] = now / S_DAY_MS + i;
		sess->mac[i] = s_day_mac(st, sess->day[i]);
		if (!sess->mac[i]) {
			EVP_MAC_CTX_free(sess->mac[0]);
			free(sess);
			return host->error(host, APICRED_ERR_INTERNAL, "HMAC-SHA256 failed");
		}
	}
	out->data = sess;
	out->lifetime_ms = (sess->day[1] + 1) * S_DAY_MS - now;
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	struct s_session *sess = data;

	if (!sess)
		return;
	EVP_MAC_CTX_free(sess->mac[0]); /* cleanses the keys */
	EVP_MAC_CTX_free(sess->mac[1]);
	free(sess);
}

/* ---- apply: the canonical request ------------------------------------ */

/* Where canonical text goes: into SHA-256 through a small buffer (md set),
 * or into a buffer sized beforehand (md NULL). */
struct s_sink {
	EVP_MD_CTX *md;
	bool ok;
	size_t n, cap;
	char *buf;
};

static void s_flush(struct s_sink *k)
{
	if (!k->md || (k->n && !EVP_DigestUpdate(k->md, k->buf, k->n)))
		k->ok = false; /* a sized buffer never fills up */
	else
		k->n = 0;
}

static void s_put(struct s_sink *k, const char *p, size_t len)
{
	if (len > k->cap - k->n) {
		s_flush(k);
		if (len > k->cap - k->n) {
			if (!k->md || !EVP_DigestUpdate(k->md, p, len))
				k->ok = false;
			return;
		}
	}
	memcpy(k->buf + k->n, p, len);
	k->n += len;
}

static inline void s_putc(struct s_sink *k, char c)
{
	if (__builtin_expect(k->n == k->cap, 0))
		s_flush(k);
	if (k->n < k->cap)
		k->buf[k->n++] = c;
}

static bool s_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static int s_hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10
	     : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Lowercase hex of a digest into out (2 * len + 1 bytes): the core's
 * host->hex would allocate, three times per request. */
static void s_hex(const unsigned char *in, size_t len, char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * len] = '\0';
}

/* AWS's UriEncode of one byte: unreserved bytes as they are, others %XX. */
static void s_put_byte(struct s_sink *k, unsigned char c)
{
	static const char hx[] = "0123456789ABCDEF";

	if (s_unreserved(c)) {
		s_putc(k, (char)c);
		return;
	}
	s_putc(k, '%');
	s_putc(k, hx[c >> 4]);
	s_putc(k, hx[c & 15]);
}

/* Encodes p once: with keep, valid %XX escapes stand for their byte (so
 * they are not encoded twice) and '/' stays (path mode; an escaped %2F
 * stays escaped); without, every byte outside the unreserved set is escaped. */
static void s_put_enc(struct s_sink *k, const char *p, size_t len, bool keep, bool slash)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		size_t run = i;
		int hi, lo;

		while (run < len && s_unreserved((unsigned char)p[run]))
			run++;
		if (run > i) { /* the common case: copied as it is */
			s_put(k, p + i, run - i);
			i = run - 1;
			continue;
		}
		if (keep && c == '%' && i + 2 < len && (hi = s_hexval(p[i + 1])) >= 0 &&
		    (lo = s_hexval(p[i + 2])) >= 0) {
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
			if (slash && c == '/') {
				s_put(k, "%2F", 3);
				continue;
			}
		} else if (slash && c == '/') {
			s_putc(k, '/');
			continue;
		}
		s_put_byte(k, c);
	}
}

/* The canonical path (see the top of the file). libcurl has removed the
 * dot segments already, as it does before sending. */
static void s_put_path(struct s_sink *k, const char *path, size_t len, bool s3)
{
	const char *end = path + len, *e;
	bool any = false;

	if (s3) {
		if (!len || *path != '/')
			s_putc(k, '/');
		s_put_enc(k, path, len, true, true);
		return;
	}
	s_putc(k, '/');
	for (const char *p = path; p < end; p = e + 1) {
		if (!(e = memchr(p, '/', (size_t)(end - p))))
			e = end;
		if (e == p)
			continue; /* AWS drops empty segments */
		if (any)
			s_putc(k, '/');
		s_put_enc(k, p, (size_t)(e - p), false, false);
		any = true;
	}
	if (any && end[-1] == '/')
		s_putc(k, '/');
}

static int s_cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

struct s_param {
	const char *name, *value; /* canonical (encoded) */
	size_t nlen, vlen;
};

static int s_cmp_param(const void *a, const void *b)
{
	const struct s_param *x = a, *y = b;
	int c = s_cmp_bytes(x->name, x->nlen, y->name, y->nlen);

	return c ? c : s_cmp_bytes(x->value, x->vlen, y->value, y->vlen);
}

/* The canonical query: names and values encoded once, sorted. */
static bool s_put_query(struct s_sink *k, const char *query, size_t qlen)
{
	const char *end = query + qlen;
	size_t n = 1, m = 0;
	struct s_param *v;
	struct s_sink b = { .ok = true };

	for (const char *p = query; p < end; p++)
		n += *p == '&';
	v = malloc(n * sizeof(*v) + 3 * qlen + 1);
	if (!v)
		return false;
	b.buf = (char *)(v + n);
	b.cap = 3 * qlen + 1;
	for (const char *p = query, *e;; p = e + 1) {
		const char *eq;

		if (!(e = memchr(p, '&', (size_t)(end - p))))
			e = end;
		if (e > p) {
			eq = memchr(p, '=', (size_t)(e - p));
			v[m].name = b.buf + b.n;
			s_put_enc(&b, p, (size_t)((eq ? eq : e) - p), true, false);
			v[m].nlen = (size_t)(b.buf + b.n - v[m].name);
			v[m].value = b.buf + b.n;
			if (eq)
				s_put_enc(&b, eq + 1, (size_t)(e - eq - 1), true, false);
			v[m].vlen = (size_t)(b.buf + b.n - v[m].value);
			m++;
		}
		if (e == end)
			break;
	}
	qsort(v, m, sizeof(*v), s_cmp_param);
	for (size_t i = 0; i < m; i++) {
		if (i)
			s_putc(k, '&');
		s_put(k, v[i].name, v[i].nlen);
		s_putc(k, '=');
		s_put(k, v[i].value, v[i].vlen);
	}
	free(v);
	return b.ok;
}

struct s_hdr {
	const char *name, *value;
	size_t nlen, vlen;
	int order;
};

static char s_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* Header names compare case-insensitively in ASCII, whatever the locale. */
static int s_cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	for (size_t i = 0; i < alen && i < blen; i++) {
		unsigned char x = (unsigned char)s_lower(a[i]), y = (unsigned char)s_lower(b[i]);

		if (x != y)
			return x < y ? -1 : 1;
	}
	return (alen > blen) - (alen < blen);
}

static bool s_is(const struct s_hdr *h, const char *name)
{
	return s_cmp_name(h->name, h->nlen, name, strlen(name)) == 0;
}

/* By name, then in the order sent (repeated names keep their order). */
static int s_cmp_hdr(const void *a, const void *b)
{
	const struct s_hdr *x = a, *y = b;
	int c = s_cmp_name(x->name, x->nlen, y->name, y->nlen);

	return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* A value trimmed, each inner run of blanks made one space. */
static void s_put_trimmed(struct s_sink *k, const char *v, size_t len)
{
	bool any = false;

	for (size_t i = 0, run; i < len; i = run) {
		for (; i < len && (v[i] == ' ' || v[i] == '\t'); i++)
			;
		for (run = i; run < len && v[run] != ' ' && v[run] != '\t'; run++)
			;
		if (run == i)
			break;
		if (any)
			s_putc(k, ' ');
		s_put(k, v + i, run - i);
		any = true;
	}
}

/* Headers the request names that clients and proxies add or rewrite:
 * never signed (as botocore). */
static bool s_unsigned_header(const struct s_hdr *h)
{
	static const char *const names[] = { "user-agent", "expect", "transfer-encoding",
	                                     "connection", "x-amzn-trace-id", NULL };

	for (int i = 0; names[i]; i++)
		if (s_is(h, names[i]))
			return true;
	return false;
}

/* ---- apply ----------------------------------------------------------- */

/* DATE/REGION/SERVICE/aws4_request */
static void s_put_scope(struct s_sink *k, const struct s_state *st, const char *date)
{
	s_put(k, date, 8);
	s_putc(k, '/');
	s_put(k, st->region, strlen(st->region));
	s_putc(k, '/');
	s_put(k, st->service, strlen(st->service));
	s_put(k, "/aws4_request", 13);
}

/* What apply builds, freed in one place. */
/* The parts of the request URL that are signed; query NULL: none. */
struct s_url {
	const char *host, *port, *path, *query;
	size_t host_len, port_len, path_len, query_len;
	bool dflt_port;             /* no port, or the scheme's */
};

struct s_work {
	CURLU *url;                 /* when libcurl's parser was needed */
	char *scheme, *hostname, *port, *path, *query;
	char *signed_names, *auth;
	EVP_MD_CTX *md;
	EVP_MAC_CTX *mac;
	bool token;
	char buf[512];
};

static void s_work_free(const apicred_host *host, struct s_work *w)
{
	curl_free(w->scheme);
	curl_free(w->hostname);
	curl_free(w->port);
	curl_free(w->path);
	curl_free(w->query);
	curl_url_cleanup(w->url);
	free(w->signed_names);
	host->wipe_free(host, w->auth, APICRED_WIPE_STR); /* holds the access key id */
	EVP_MD_CTX_free(w->md);
	EVP_MAC_CTX_free(w->mac);
	if (w->token)
		OPENSSL_cleanse(w->buf, sizeof(w->buf)); /* held the session token */
}

/* Collects the headers to sign: the request's, host and ours. */
static int s_headers(const struct s_state *st, const apicred_host *host,
                     const apicred_request *req, const char *hostport, const char *stamp, const char *payload,
                     struct s_hdr *h, size_t *count)
{
	size_t n = 0;
	bool have_host = false, have_type = false;

	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		const char *line = req->headers[i], *colon = strchr(line, ':');
		struct s_hdr x;

		if (!colon || colon == line)
			continue;
		x = (struct s_hdr){ line, colon + 1, (size_t)(colon - line), strlen(colon + 1),
		                    (int)i };
		if (strspn(x.value, " \t") == x.vlen || s_unsigned_header(&x))
			continue; /* "Name:" makes libcurl drop the header */
		if (s_is(&x, "authorization") || s_is(&x, "x-amz-date") ||
		    (st->sha_header && s_is(&x, "x-amz-content-sha256")) ||
		    (st->token && s_is(&x, "x-amz-security-token")))
			return host->error(host, APICRED_ERR_INVALID, "the request has its own "
			                   "%.*s header; sigv4 sets it", (int)x.nlen, x.name);
		if (n == S_MAX_HEADERS - 5)
			return host->error(host, APICRED_ERR_INVALID, "more than %d request headers "
			                   "to sign", S_MAX_HEADERS - 5);
		have_host |= s_is(&x, "host");
		have_type |= s_is(&x, "content-type");
		h[n++] = x;
	}
	if (!have_host)
		h[n++] = (struct s_hdr){ "host", hostport, 4, strlen(hostport), -1 };
	/* apicred_curl_apply sends the type the request names: sign it too. */
	if (!have_type && req->content_type && *req->content_type)
		h[n++] = (struct s_hdr){ "content-type", req->content_type, 12,
		                         strlen(req->content_type), -1 };
	h[n++] = (struct s_hdr){ "x-amz-date", stamp, 10, 16, -1 };
	if (st->sha_header)
		h[n++] = (struct s_hdr){ "x-amz-content-sha256", payload, 20, strlen(payload), -1 };
	if (st->token)
		h[n++] = (struct s_hdr){ "x-amz-security-token", st->token, 20, st->token_len, -1 };
	qsort(h, n, sizeof(*h), s_cmp_hdr);
	*count = n;
	return APICRED_OK;
}

/* Host as the client sends it: the port only when it is not the scheme's. */
static int s_hostport(const apicred_host *host, const struct s_url *u, char *out, size_t size)
{
	size_t n = u->host_len;

	if (n + u->port_len + 2 > size)
		return host->error(host, APICRED_ERR_INVALID, "the request URL's host is too long");
	memcpy(out, u->host, n);
	if (!u->dflt_port) {
		out[n++] = ':';
		memcpy(out + n, u->port, u->port_len);
		n += u->port_len;
	}
	out[n] = '\0';
	return APICRED_OK;
}

static bool s_port_dflt(bool https, const char *port, size_t len)
{
	return !port || (https ? len == 3 && memcmp(port, "443", 3) == 0
	                       : len == 2 && memcmp(port, "80", 2) == 0);
}

/* A plain URL (http or https, a host name or IPv4 address, no user info,
 * no dot segment, nothing libcurl would refuse or rewrite) is split here:
 * libcurl's parser would cost a third of apply. Anything else goes through
 * curl_url(), which gives the same parts for a plain URL. */
static bool s_split_plain(const char *url, struct s_url *u)
{
	const char *p, *a, *q;
	bool https = strncmp(url, "https://", 8) == 0;

	if (!https && strncmp(url, "http://", 7) != 0)
		return false;
	a = url + (https ? 8 : 7);
	for (p = a; *p && !strchr("/?#", *p); p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == ':'))
			return false; /* user info, IPv6, escapes: libcurl's job */
	q = memchr(a, ':', (size_t)(p - a));
	u->host = a;
	u->host_len = (size_t)((q ? q : p) - a);
	u->port = q ? q + 1 : NULL;
	u->port_len = q ? (size_t)(p - q - 1) : 0;
	if (!u->host_len || (q && (!u->port_len || *u->port == '0' ||
	                           strspn(u->port, "0123456789") < u->port_len)))
		return false; /* libcurl normalises odd ports */
	u->dflt_port = s_port_dflt(https, u->port, u->port_len);
	u->path = p;
	for (; *p && *p != '?' && *p != '#'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '\\' ||
		    (*p == '.' && p[-1] == '/' &&
		     (!p[1] || strchr("/?#", p[1]) || (p[1] == '.' && (!p[2] || strchr("/?#", p[2]))))))
			return false;
	}
	u->path_len = (size_t)(p - u->path);
	if (!u->path_len) {
		u->path = "/"; /* as libcurl sends it */
		u->path_len = 1;
	}
	u->query = NULL;
	u->query_len = 0;
	if (*p == '?') {
		u->query = ++p;
		for (; *p && *p != '#'; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				return false;
		u->query_len = (size_t)(p - u->query);
	}
	return true;
}

/* Everything else: libcurl's parser, as libcurl will send the URL (dot
 * segments removed). */
static int s_split_curl(const apicred_host *host, const char *url, struct s_work *w,
                        struct s_url *u)
{
	CURLUcode uc;
	bool https;

	w->url = curl_url();
	if (!w->url)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	uc = curl_url_set(w->url, CURLUPART_URL, url, CURLU_ALLOW_SPACE);
	if (uc == CURLUE_OK)
		uc = curl_url_get(w->url, CURLUPART_SCHEME, &w->scheme, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(w->url, CURLUPART_HOST, &w->hostname, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(w->url, CURLUPART_PATH, &w->path, 0);
	if (uc == CURLUE_OK && (uc = curl_url_get(w->url, CURLUPART_PORT, &w->port, 0)) == CURLUE_NO_PORT)
		uc = CURLUE_OK;
	if (uc == CURLUE_OK && (uc = curl_url_get(w->url, CURLUPART_QUERY, &w->query, 0)) == CURLUE_NO_QUERY)
		uc = CURLUE_OK;
	if (uc != CURLUE_OK)
		return host->error(host, uc == CURLUE_OUT_OF_MEMORY ? APICRED_ERR_NOMEM : APICRED_ERR_INVALID,
		                   "the request URL: %s", curl_url_strerror(uc));
	https = strcmp(w->scheme, "https") == 0;
	*u = (struct s_url){ w->hostname, w->port, w->path, w->query, strlen(w->hostname),
	                     w->port ? strlen(w->port) : 0, strlen(w->path),
	                     w->query ? strlen(w->query) : 0, false };
	u->dflt_port = s_port_dflt(https, u->port, u->port_len) ||
	               (!https && strcmp(w->scheme, "http") != 0 && !u->port);
	return APICRED_OK;
}

/* The payload's hash (or UNSIGNED-PAYLOAD): what the canonical request
 * ends with and X-Amz-Content-Sha256 carries. */
static int s_payload(const struct s_state *st, const apicred_host *host,
                     const apicred_request *req, struct s_work *w,
                     char hex[2 * EVP_MAX_MD_SIZE + 1], const char **payload)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	*payload = "UNSIGNED-PAYLOAD";
	if (st->unsigned_payload)
		return APICRED_OK;
	if (!req->body || !req->body_len) {
		*payload = S_EMPTY_SHA256; /* most requests: no need to hash "" again */
		return APICRED_OK;
	}
	if (!EVP_DigestInit_ex2(w->md, st->sha256, NULL) ||
	    !EVP_DigestUpdate(w->md, req->body, req->body_len) ||
	    !EVP_DigestFinal_ex(w->md, md, &mdlen))
		return host->error(host, APICRED_ERR_INTERNAL, "SHA-256 failed");
	s_hex(md, mdlen, hex);
	*payload = hex;
	return APICRED_OK;
}

/* SignedHeaders: the distinct names, lowercased, ';'-separated. */
static int s_signed_names(const apicred_host *host, const struct s_hdr *h, size_t nh,
                          char **out)
{
	size_t names = 0;
	char *p;

	for (size_t i = 0; i < nh; i++)
		names += h[i].nlen + 1;
	*out = p = malloc(names);
	if (!p)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < nh; i++) {
		if (i && s_cmp_name(h[i].name, h[i].nlen, h[i - 1].name, h[i - 1].nlen) == 0)
			continue;
		if (p != *out)
			*p++ = ';';
		for (size_t j = 0; j < h[i].nlen; j++)
			*p++ = s_lower(h[i].name[j]);
	}
	*p = '\0';
	return APICRED_OK;
}

/* The canonical request, hashed as it is written, as hex. */
static int s_creq_hash(const struct s_state *st, const apicred_host *host, struct s_work *w,
                       const char *method, const struct s_url *u, const struct s_hdr *h,
                       size_t nh, const char *payload, char hex[2 * EVP_MAX_MD_SIZE + 1])
{
	struct s_sink k = { .ok = true, .cap = sizeof(w->buf), .buf = w->buf, .md = w->md };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_DigestInit_ex2(w->md, st->sha256, NULL))
		return host->error(host, APICRED_ERR_INTERNAL, "SHA-256 failed");
	s_put(&k, method, strlen(method));
	s_putc(&k, '\n');
	s_put_path(&k, u->path, u->path_len, st->s3);
	s_putc(&k, '\n');
	if (u->query && !s_put_query(&k, u->query, u->query_len))
		k.ok = false;
	s_putc(&k, '\n');
	for (size_t i = 0; i < nh; i++) {
		if (i && s_cmp_name(h[i].name, h[i].nlen, h[i - 1].name, h[i - 1].nlen) == 0) {
			s_putc(&k, ',');
		} else {
			for (size_t j = 0; j < h[i].nlen; j++)
				s_putc(&k, s_lower(h[i].name[j]));
			s_putc(&k, ':');
		}
		s_put_trimmed(&k, h[i].value, h[i].vlen);
		if (i + 1 == nh || s_cmp_name(h[i].name, h[i].nlen, h[i + 1].name, h[i + 1].nlen))
			s_putc(&k, '\n');
	}
	s_putc(&k, '\n');
	s_put(&k, w->signed_names, strlen(w->signed_names));
	s_putc(&k, '\n');
	s_put(&k, payload, strlen(payload));
	s_flush(&k);
	if (!k.ok || !EVP_DigestFinal_ex(w->md, md, &mdlen))
		return host->error(host, APICRED_ERR_NOMEM, "cannot hash the canonical request");
	s_hex(md, mdlen, hex);
	return APICRED_OK;
}

/* The string to sign (region and service are short: see init), signed
 * with the day's key, as hex. */
static int s_signature(const struct s_state *st, const apicred_host *host,
                       const struct s_session *sess, struct s_work *w, int64_t day,
                       const char *date, const char *stamp, const char *creq_hash,
                       char hex[2 * EVP_MAX_MD_SIZE + 1])
{
	char sts[320];
	struct s_sink k = { .ok = true, .cap = sizeof(sts) - 1, .buf = sts };
	unsigned char sig[EVP_MAX_MD_SIZE];
	size_t siglen = 0;

	s_put(&k, "AWS4-HMAC-SHA256\n", 17);
	s_put(&k, stamp, 16);
	s_putc(&k, '\n');
	s_put_scope(&k, st, date);
	s_putc(&k, '\n');
	s_put(&k, creq_hash, strlen(creq_hash));
	if (sess && sess->day[0] == day)
		w->mac = EVP_MAC_CTX_dup(sess->mac[0]);
	else if (sess && sess->day[1] == day)
		w->mac = EVP_MAC_CTX_dup(sess->mac[1]);
	else
		w->mac = s_day_mac(st, day); /* the clock left the session's days */
	if (!k.ok || !w->mac || !EVP_MAC_update(w->mac, (const unsigned char *)sts, k.n) ||
	    !EVP_MAC_final(w->mac, sig, &siglen, sizeof(sig)))
		return host->error(host, APICRED_ERR_INTERNAL, "HMAC-SHA256 failed");
	s_hex(sig, siglen, hex);
	return APICRED_OK;
}

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." */
static int s_authorization(const struct s_state *st, const apicred_host *host,
                           struct s_work *w, const char *date, const char *sig_hex)
{
	size_t n = strlen(st->akid) + strlen(st->region) + strlen(st->service) +
	           strlen(w->signed_names) + strlen(sig_hex) + 128;
	struct s_sink k = { .ok = true, .cap = n - 1 };

	if (!(k.buf = w->auth = malloc(n)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	s_put(&k, "AWS4-HMAC-SHA256 Credential=", 28);
	s_put(&k, st->akid, st->akid_len);
	s_putc(&k, '/');
	s_put_scope(&k, st, date);
	s_put(&k, ", SignedHeaders=", 16);
	s_put(&k, w->signed_names, strlen(w->signed_names));
	s_put(&k, ", Signature=", 12);
	s_put(&k, sig_hex, strlen(sig_hex));
	w->auth[k.n] = '\0';
	return APICRED_OK;
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	const struct s_state *st = state;
	struct s_work w = { .token = st->token != NULL };
	struct s_url u = { 0 };
	struct s_hdr h[S_MAX_HEADERS];
	size_t nh = 0;
	char date[9], stamp[17], hostport[300];
	char body_hash[2 * EVP_MAX_MD_SIZE + 1], creq_hash[2 * EVP_MAX_MD_SIZE + 1];
	char sig_hex[2 * EVP_MAX_MD_SIZE + 1];
	const char *payload, *method = req->method ? req->method : "GET";
	int64_t now = host->now_wall_ms(host);
	int rc;

	if (!req->url)
		return host->error(host, APICRED_ERR_INVALID, "sigv4 signs the whole request: "
		                   "it needs the request's URL (apicred_request.url; apicred get -u)");
	if (req->body_len && !req->body && !st->unsigned_payload)
		return host->error(host, APICRED_ERR_INVALID, "the request has a body_len of %zu "
		                   "but no body: cannot hash the payload", req->body_len);
	if (now < 0)
		return host->error(host, APICRED_ERR_INTERNAL, "the wall clock is before 1970");
	s_stamps(now, date, stamp);

	if (!s_split_plain(req->url, &u) && (rc = s_split_curl(host, req->url, &w, &u)) != APICRED_OK)
		goto done;
	if ((rc = s_hostport(host, &u, hostport, sizeof(hostport))) != APICRED_OK)
		goto done;
	if (!(w.md = EVP_MD_CTX_new())) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto done;
	}
	if ((rc = s_payload(st, host, req, &w, body_hash, &payload)) != APICRED_OK ||
	    (rc = s_headers(st, host, req, hostport, stamp, payload, h, &nh)) != APICRED_OK ||
	    (rc = s_signed_names(host, h, nh, &w.signed_names)) != APICRED_OK ||
	    (rc = s_creq_hash(st, host, &w, method, &u, h, nh, payload, creq_hash)) != APICRED_OK ||
	    (rc = s_signature(st, host, session, &w, now / S_DAY_MS, date, stamp, creq_hash,
	                      sig_hex)) != APICRED_OK ||
	    (rc = s_authorization(st, host, &w, date, sig_hex)) != APICRED_OK)
		goto done;

	rc = host->add_header(out, "Authorization", w.auth);
	if (rc == APICRED_OK)
		rc = host->add_header(out, "X-Amz-Date", stamp);
	if (rc == APICRED_OK && st->sha_header)
		rc = host->add_header(out, "X-Amz-Content-Sha256", payload);
	if (rc == APICRED_OK && st->token)
		rc = host->add_header(out, "X-Amz-Security-Token", st->token);
done:
	s_work_free(host, &w);
	return rc;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (!st)
		return;
	if (st->akid)
		st->host->secret_free(st->host, st->akid, st->akid_len);
	if (st->token)
		st->host->secret_free(st->host, st->token, st->token_len);
	st->host->wipe_free(st->host, st->key, st->key_len);
	EVP_MD_free(st->sha256);
	EVP_MAC_free(st->hmac);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "sigv4",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.fini = s_fini,
};

APICRED_PROVIDER_V1(s_vtable)
