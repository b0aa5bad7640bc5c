/*
 * hmac: a login signed with HMAC-SHA256 that yields a session token, then
 * every request carries the token and an HMAC-SHA256 signature of itself.
 * The defaults follow the TPV vendor API (seed 002):
 *
 *   { provider = "hmac"; auth_url = "https://portal.example/api/v1/auth";
 *     app_token = "file:secrets/tpv.token"; app_secret = "file:secrets/tpv.secret"; }
 *
 * Login:   POST auth_url?token=T&timestamp=TS&_signature=S
 *          S = hex(HMAC-SHA256(app_secret, "token=" T "&timestamp=" TS)) over
 *          the raw values (escaping happens on the wire only) -> {"auth_token"}
 * Request: Authorization: <auth_token>            (no "Bearer")
 *          Signature: hex(HMAC-SHA256(app_secret, signing string))
 *
 * The signing string is the request's query string as sent (without '?'),
 * its body, the query string immediately followed by the body, or nothing
 * (`sign = "none"` sends no Signature header). Header names are
 * configurable so the provider serves other APIs of the same family.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "auth_url", APICRED_T_URL, APICRED_F_REQUIRED, NULL, NULL,
	  "login endpoint, e.g. https://portal.example/api/v1/auth" },
	{ "app_token", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY,
	  NULL, NULL,
	  "application token sent to the login (file:PATH, env:NAME or literal)" },
	{ "app_secret", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY,
	  NULL, NULL,
	  "application secret: the HMAC key, never sent" },
	{ "timestamp", APICRED_T_STRING, 0, "seconds", "seconds|milliseconds",
	  "unit of the login timestamp (Unix time)" },
	{ "sign", APICRED_T_STRING, 0, "query", "query|body|query+body|none",
	  "what each request's signature covers (query+body: query then body, no separator)" },
	{ "token_ttl", APICRED_T_INT, 0, "1800", NULL,
	  "seconds a login token lasts (the login answer does not say)" },
	{ "auth_header", APICRED_T_HEADER_NAME, 0, "Authorization", NULL,
	  "header carrying the login token" },
	{ "signature_header", APICRED_T_HEADER_NAME, 0, "Signature", NULL,
	  "header carrying the request signature" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

enum s_sign { S_SIGN_QUERY, S_SIGN_BODY, S_SIGN_QUERY_BODY, S_SIGN_NONE };

#define S_POOL 8 /* threads signing at once without a dup of the key */

struct s_state {
	const apicred_host *host;
	const char *auth_url;          /* owned by the config */
	const char *auth_header;
	const char *signature_header;
	char *app_token;               /* secret */
	size_t app_token_len;
	EVP_MAC *mac;
	EVP_MAC_CTX *keyed;            /* HMAC-SHA256 keyed with app_secret; only duplicated */
	/* Keyed contexts apply reuses: each serves one thread at a time (taken
	 * with an atomic exchange), re-initialised with its own key, which
	 * costs less than a dup and a free per request. */
	_Atomic(EVP_MAC_CTX *) pool[S_POOL];
	apicred_header *sig_hdr;       /* signature_header, no value (a core with add_encoded) */
	enum s_sign sign;
	int millis;
	int64_t ttl_ms;
};

struct s_session {
	char *token;                   /* secret */
	size_t len;
	apicred_header *hdr;           /* auth_header: token, checked once (a core with header_new) */
};

/* ---- init ------------------------------------------------------------ */

static void s_fini(void *state);

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	const char *sign = host->cfg_str(host, "sign");
	char *secret = NULL;
	size_t secret_len = 0;
	long long ttl = 1800;
	OSSL_PARAM params[2];
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->auth_url = host->cfg_str(host, "auth_url");
	st->auth_header = host->cfg_str(host, "auth_header");
	st->signature_header = host->cfg_str(host, "signature_header");
	st->millis = strcmp(host->cfg_str(host, "timestamp"), "milliseconds") == 0;
	st->sign = strcmp(sign, "body") == 0 ? S_SIGN_BODY
	         : strcmp(sign, "query+body") == 0 ? S_SIGN_QUERY_BODY
	         : strcmp(sign, "none") == 0 ? S_SIGN_NONE : S_SIGN_QUERY;

	host->cfg_int(host, "token_ttl", &ttl);
	if (ttl <= 0 || ttl > 86400LL * 365) {
		rc = host->error(host, APICRED_ERR_CONFIG,
		                 "token_ttl (line %d): %lld is not a number of seconds between 1 and 31536000",
		                 host->cfg_line(host, "token_ttl"), ttl);
		goto fail;
	}
	st->ttl_ms = ttl * 1000;

	/* auth_url is an http(s) URL and the secrets are not empty: the
	 * schema says so and the core checks. */
	rc = host->secret(host, "app_token", &st->app_token, &st->app_token_len);
	if (rc != APICRED_OK)
		goto fail;
	rc = host->secret(host, "app_secret", &secret, &secret_len);
	if (rc != APICRED_OK)
		goto fail;

	/* Key the MAC once; apply and fetch duplicate the keyed context, which
	 * is far cheaper than fetching SHA-256 and keying on every request. */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	st->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	st->keyed = st->mac ? EVP_MAC_CTX_new(st->mac) : NULL;
	if (!st->keyed || !EVP_MAC_init(st->keyed, (const unsigned char *)secret,
	                                secret_len, params)) {
		rc = host->error(host, APICRED_ERR_INTERNAL, "OpenSSL has no HMAC-SHA256");
		goto fail;
	}
	host->secret_free(host, secret, secret_len);
	secret = NULL;
	if (APICRED_HOST_HAS(host, add_encoded) &&
	    (rc = host->header_new(host, st->signature_header, "", &st->sig_hdr)) != APICRED_OK)
		goto fail;
	*state = st;
	return APICRED_OK;

fail:
	if (secret)
		host->secret_free(host, secret, secret_len);
	s_fini(st);
	return rc;
}

/* A keyed context from the pool (EVP_MAC_init without a key keeps the
 * one it has), or a new duplicate of the prepared one. */
static EVP_MAC_CTX *s_mac_take(struct s_state *st)
{
	for (int i = 0; i < S_POOL; i++) {
		EVP_MAC_CTX *c = atomic_exchange_explicit(&st->pool[i], NULL, memory_order_acquire);
		if (c && EVP_MAC_init(c, NULL, 0, NULL))
			return c;
		EVP_MAC_CTX_free(c);
	}
	return EVP_MAC_CTX_dup(st->keyed);
}

static void s_mac_give(struct s_state *st, EVP_MAC_CTX *c)
{
	for (int i = 0; c && i < S_POOL; i++) {
		EVP_MAC_CTX *none = NULL;
		if (atomic_compare_exchange_strong_explicit(&st->pool[i], &none, c,
		                                            memory_order_release,
		                                            memory_order_relaxed))
			return;
	}
	EVP_MAC_CTX_free(c); /* cleanses the key */
}

/* HMAC-SHA256 of up to two concatenated pieces. */
static int s_mac(struct s_state *st, const apicred_host *host, const void *a, size_t alen,
                 const void *b, size_t blen, unsigned char md[EVP_MAX_MD_SIZE], size_t *mdlen)
{
	EVP_MAC_CTX *ctx = s_mac_take(st);
	int ok;

	if (!ctx)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	ok = EVP_MAC_update(ctx, a, alen) && (!blen || EVP_MAC_update(ctx, b, blen)) &&
	     EVP_MAC_final(ctx, md, mdlen, EVP_MAX_MD_SIZE);
	s_mac_give(st, ctx);
	return ok ? APICRED_OK : host->error(host, APICRED_ERR_INTERNAL, "HMAC-SHA256 failed");
}

#define S_HEX_MAX (2 * EVP_MAX_MD_SIZE + 1)

/* Its lowercase hex: hex_into, or hex on an older core. */
static int s_hex(const apicred_host *host, const unsigned char *md, size_t len,
                 char hex[S_HEX_MAX])
{
	char *h;
	int rc;

	if (APICRED_HOST_HAS(host, hex_into)) {
		host->hex_into(host, md, len, hex);
		return APICRED_OK;
	}
	if ((rc = host->hex(host, md, len, &h)) != APICRED_OK)
		return rc;
	memcpy(hex, h, 2 * len + 1);
	free(h);
	return APICRED_OK;
}

/* A session for token (taken): its header checked once, where the token
 * arrives (login or import); apply then only copies it. A core without
 * header_new checks it in add_header on every apply instead. */
static int s_session_new(const struct s_state *st, const apicred_host *host, char *token,
                         size_t len, struct s_session **out)
{
	struct s_session *sess = malloc(sizeof(*sess));
	int rc;

	if (!sess) {
		host->wipe_free(host, token, len);
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
	sess->token = token;
	sess->len = len;
	sess->hdr = NULL;
	if (APICRED_HOST_HAS(host, header_free) &&
	    (rc = host->header_new(host, st->auth_header, token, &sess->hdr)) != APICRED_OK) {
		host->wipe_free(host, token, len);
		free(sess);
		return rc;
	}
	*out = sess;
	return APICRED_OK;
}

/* ---- fetch ----------------------------------------------------------- */

/* Logs in. previous is not needed: a TPV login cannot be renewed, only redone. */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	apicred_http_request req = { .size = sizeof(req), .method = "POST" };
	apicred_http_response resp = { 0 };
	struct s_session *sess = NULL;
	char ts[24], sig[S_HEX_MAX], *msg = NULL, *tok_esc = NULL, *url = NULL, *token = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	int64_t now = host->now_wall_ms(host);
	size_t n, mdlen;
	int rc;

	snprintf(ts, sizeof(ts), "%lld", (long long)(st->millis ? now : now / 1000));

	/* The signature covers the raw values; only the wire form is escaped. */
	n = strlen("token=") + st->app_token_len + strlen("&timestamp=") + strlen(ts) + 1;
	msg = malloc(n);
	if (!msg) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto done;
	}
	snprintf(msg, n, "token=%s&timestamp=%s", st->app_token, ts);
	rc = s_mac(st, host, msg, n - 1, "", 0, md, &mdlen);
	if (rc == APICRED_OK)
		rc = s_hex(host, md, mdlen, sig);
	if (rc != APICRED_OK)
		goto done;
	rc = host->form_escape(host, st->app_token, &tok_esc);
	if (rc != APICRED_OK)
		goto done;
	n = strlen(st->auth_url) + strlen(tok_esc) + strlen(ts) + strlen(sig) + 64;
	url = malloc(n);
	if (!url) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto done;
	}
	snprintf(url, n, "%s%ctoken=%s&timestamp=%s&_signature=%s", st->auth_url,
	         strchr(st->auth_url, '?') ? '&' : '?', tok_esc, ts, sig);

	req.url = url;
	rc = host->http(host, &req, &resp);
	if (rc != APICRED_OK)
		goto done;
	if (resp.status < 200 || resp.status > 299) {
		out->retry_after_ms = resp.retry_after_ms > 0 ? resp.retry_after_ms : 0;
		rc = host->http_error(host, &resp, "login");
		goto done;
	}
	rc = host->json_get(host, resp.body, resp.body_len, "auth_token", &token);
	if (rc == APICRED_ABSENT || (rc == APICRED_OK && token[0] == '\0')) {
		rc = host->error(host, APICRED_ERR_PROTOCOL,
		                 "login answered %ld without an auth_token", resp.status);
		goto done;
	}
	if (rc != APICRED_OK)
		goto done;
	n = strlen(token);
	rc = host->check_text(host, APICRED_ERR_PROTOCOL, "the login's auth_token", token, n);
	if (rc != APICRED_OK)
		goto done;

	rc = s_session_new(st, host, token, n, &sess);
	token = NULL; /* the session's, or wiped */
	if (rc != APICRED_OK)
		goto done;
	out->data = sess;
	out->lifetime_ms = st->ttl_ms;
	rc = APICRED_OK;

done:
	host->wipe_free(host, token, APICRED_WIPE_STR);
	host->wipe_free(host, url, APICRED_WIPE_STR);
	host->wipe_free(host, tok_esc, APICRED_WIPE_STR);
	host->wipe_free(host, msg, APICRED_WIPE_STR);
	host->http_free(host, &resp);
	return rc;
}

static void s_session_free(void *state, void *data)
{
	const struct s_state *st = state;
	struct s_session *sess = data;

	if (!sess)
		return;
	if (sess->hdr)
		st->host->header_free(st->host, sess->hdr);
	st->host->wipe_free(st->host, sess->token, sess->len);
	free(sess);
}

/* The session is the auth token: it travels as is. */
static int s_session_export(void *state, const apicred_host *host, const void *data,
                            void **out, size_t *len)
{
	const struct s_session *sess = data;

	if (!(*out = malloc(sess->len)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	memcpy(*out, sess->token, sess->len);
	*len = sess->len;
	return APICRED_OK;
}

static int s_session_import(void *state, const apicred_host *host, const void *in,
                            size_t len, void **data)
{
	struct s_session *sess;
	char *token;
	int rc = host->check_text(host, APICRED_ERR_PROTOCOL, "the shared auth token", in, len);

	if (rc != APICRED_OK)
		return rc;
	if (!(token = malloc(len + 1)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	memcpy(token, in, len);
	token[len] = '\0';
	rc = s_session_new(state, host, token, len, &sess);
	if (rc == APICRED_OK)
		*data = sess;
	return rc;
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state; /* its pool is atomic */
	const struct s_session *sess = session;
	const char *q = "", *body = req->body ? req->body : "";
	size_t qlen = 0, blen = req->body ? req->body_len : 0;
	unsigned char md[EVP_MAX_MD_SIZE];
	char sig[S_HEX_MAX];
	size_t mdlen;
	int rc;

	if (!sess)
		return host->error(host, APICRED_ERR_INTERNAL, "no login session");
	rc = sess->hdr ? host->add_prepared(host, out, sess->hdr)
	               : host->add_header(out, st->auth_header, sess->token);
	if (rc != APICRED_OK || st->sign == S_SIGN_NONE)
		return rc;

	/* The query string exactly as it will be sent: after '?', before '#'. */
	if (st->sign != S_SIGN_BODY &&
	    (rc = host->request_query(host, req, &q, &qlen, NULL, NULL)) != APICRED_OK)
		return rc;
	if (st->sign == S_SIGN_QUERY)
		blen = 0;
	rc = s_mac(st, host, q, qlen, body, blen, md, &mdlen);
	if (rc != APICRED_OK)
		return rc;
	if (st->sig_hdr) /* the core writes the hex: nothing to check */
		return host->add_encoded(host, out, st->sig_hdr, APICRED_ENC_HEX, md, mdlen);
	if ((rc = s_hex(host, md, mdlen, sig)) != APICRED_OK)
		return rc;
	return host->add_header(out, st->signature_header, sig);
}

/* ---- feedback -------------------------------------------------------- */

/* 401: the login token expired or was revoked; TPV's 400 bodies explain
 * what was wrong with the request, worth a line in the log. */
static apicred_feedback s_feedback(void *state, const apicred_host *host,
                                   const void *session, long status,
                                   const void *body, size_t body_len)
{
	char *err = NULL;

	if (status == 401) {
		host->log(host, LOG_NOTICE, "server answered 401: dropping the login token");
		return APICRED_FEEDBACK_INVALIDATE;
	}
	if (status == 400 && body && body_len &&
	    host->json_get(host, body, body_len, "error", &err) == APICRED_OK) {
		host->log(host, LOG_WARNING, "server answered 400: %.300s", err);
		free(err);
	}
	return APICRED_FEEDBACK_NONE;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (!st)
		return;
	if (st->app_token)
		st->host->secret_free(st->host, st->app_token, st->app_token_len);
	for (int i = 0; i < S_POOL; i++)
		EVP_MAC_CTX_free(atomic_load(&st->pool[i]));
	if (st->sig_hdr)
		st->host->header_free(st->host, st->sig_hdr);
	EVP_MAC_CTX_free(st->keyed); /* cleanses the key */
	EVP_MAC_free(st->mac);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "hmac",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.feedback = s_feedback,
	.fini = s_fini,
	.session_export = s_session_export,
	.session_import = s_session_import,
};

APICRED_PROVIDER_V1(s_vtable)
