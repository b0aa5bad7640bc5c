/*
 * oauth2: OAuth 2.0 client credentials grant (RFC 6749 §4.4).
 *
 *   { provider = "oauth2";                                       # MoMo
 *     token_url = "https://sandbox.momodeveloper.mtn.com/collection/token/";
 *     client_id = "file:secrets/momo.user"; client_secret = "file:secrets/momo.key";
 *     provision_url = "https://sandbox.momodeveloper.mtn.com/v1_0";
 *     callback_host = "clinic.example"; }
 *   { provider = "oauth2"; token_url = "https://id.vdms.io/connect/token";
 *     client_auth = "post"; scope = ( "ec.rules", "ec.purge" );  # VDMS IDS
 *     client_id = "env:VDMS_ID"; client_secret = "file:secrets/vdms.secret"; }
 *
 * fetch POSTs the grant to token_url and returns the access token with the
 * header value apply sends ("Bearer <token>"), so apply is one add_header.
 * The core caches the token, refreshes it ahead of expiry, single-flights
 * and retries fetches; this file only speaks the protocol.
 *
 * Client authentication (`client_auth`, RFC 8414 names) is one of:
 *   client_secret_basic (`basic`): RFC 6749 §2.3.1, id and secret are form-
 *     encoded *before* being joined with ':' and base64-encoded, so secrets
 *     holding ':' '+' '/' '%' survive;
 *   client_secret_post (`post`): both in the body;
 *   tls_client_auth, self_signed_tls_client_auth (RFC 8705): client_id in
 *     the body, no secret: an mtls layer above supplies the certificate;
 *   private_key_jwt, client_secret_jwt (RFC 7523 §2.2): a client assertion
 *     signed per fetch (RS256/PS256/ES256 with client_key, or HS256 with the
 *     secret): iss = sub = client_id, aud = token_url or assertion_audience,
 *     iat, exp 60 s ahead and a fresh random jti.
 * The other methods are never tried silently: a server refusing one is a
 * configuration error the admin must see.
 *
 * DPoP (RFC 9449, `dpop = true`): the token request and every request carry
 * a proof signed with ES256 by dpop_key or a P-256 key made per process;
 * apply sends "Authorization: DPoP <token>" and a fresh proof (htm, htu, iat,
 * jti, ath). A DPoP-Nonce from the token endpoint (with one retry on
 * use_dpop_nonce) or from any response handed to apicred_report_headers goes
 * into the next proofs.
 *
 * Header value: an explicit `prefix` always wins (`prefix = ""` sends the
 * bare token). Otherwise token_type "bearer" (any case), a missing
 * token_type and MoMo's "access_token" give "Bearer <token>"; with dpop only
 * "DPoP" is accepted; any other type (mac, dpop without dpop = true, ...)
 * needs a proof this layer does not make, so the token is refused (RFC 6749
 * §7.1: do not use a token type you do not understand) and the message
 * names the way out (`dpop` or `prefix`).
 *
 * Provisioning (MoMo sandbox): POST {provision_url}/apiuser with a fresh
 * UUIDv4 in X-Reference-Id, then POST {provision_url}/apiuser/{id}/apikey,
 * and store the id and key where client_id and client_secret point. The
 * subscription key travels with these requests because the apikey layer sits
 * above this one and the core carries it to the service's own origin. So
 * that a service can be provisioned before its secret files exist, a layer
 * with provision_url loads without its secrets and reads them at fetch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "token_url", APICRED_T_URL, APICRED_F_REQUIRED, NULL, NULL,
	  "the token endpoint (https://...)" },
	{ "client_id", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_NONEMPTY, NULL, NULL,
	  "client id (file:PATH, env:NAME or literal); MoMo: the API user" },
	{ "client_secret", APICRED_T_STRING, APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "client secret (file:PATH, env:NAME or literal); MoMo: the API key; "
	  "not used by the tls and private_key_jwt methods" },
	{ "client_auth", APICRED_T_STRING, 0, "basic",
	  "basic|post|client_secret_basic|client_secret_post|tls_client_auth|"
	  "self_signed_tls_client_auth|private_key_jwt|client_secret_jwt",
	  "client authentication method (RFC 8414 names; basic and post are short forms)" },
	{ "client_key", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "private_key_jwt: the signing key, PEM (file:PATH)" },
	{ "client_key_password", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "password of an encrypted client_key" },
	{ "assertion_alg", APICRED_T_STRING, 0, NULL, "RS256|PS256|ES256",
	  "private_key_jwt: algorithm (default RS256 for RSA keys, ES256 for P-256 keys)" },
	{ "kid", APICRED_T_STRING, 0, NULL, NULL,
	  "private_key_jwt: key id put in the assertion's header" },
	{ "assertion_audience", APICRED_T_STRING, 0, NULL, NULL,
	  "aud of the client assertion (default: token_url)" },
	{ "dpop", APICRED_T_BOOL, 0, "false", NULL,
	  "DPoP-bound tokens (RFC 9449): a proof with the token request and every request" },
	{ "dpop_key", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "DPoP key, EC P-256 PEM (file:PATH); default: one made per process, in memory" },
	{ "dpop_key_password", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "password of an encrypted dpop_key" },
	{ "scope", APICRED_T_LIST, 0, NULL, NULL,
	  "scope(s) to request, sent space-separated" },
	{ "audience", APICRED_T_STRING, 0, NULL, NULL, "audience form field" },
	{ "resource", APICRED_T_STRING, 0, NULL, NULL, "resource form field (RFC 8707)" },
	{ "params", APICRED_T_GROUP, 0, NULL, NULL,
	  "extra form fields of the token request: { name = \"value\"; }" },
	{ "headers", APICRED_T_HEADERS, 0, NULL, NULL,
	  "extra token-request headers, \"Name: value\"" },
	{ "header", APICRED_T_HEADER_NAME, 0, "Authorization", NULL,
	  "header that carries the token" },
	{ "prefix", APICRED_T_STRING, 0, NULL, NULL,
	  "text before the token (default \"Bearer \" for bearer tokens)" },
	{ "max_body", APICRED_T_INT, 0, "65536", NULL,
	  "largest token response accepted, in bytes" },
	{ "provision_url", APICRED_T_URL, 0, NULL, NULL,
	  "MoMo sandbox provisioning base URL (…/v1_0), for `apicred provision`" },
	{ "callback_host", APICRED_T_STRING, 0, NULL, NULL,
	  "providerCallbackHost of a provisioned MoMo API user" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

enum s_auth { S_BASIC, S_POST, S_TLS, S_SELF_SIGNED_TLS, S_PRIVATE_KEY_JWT, S_SECRET_JWT };

static const struct {
	const char *name;
	enum s_auth auth;
} s_auths[] = {
	{ "basic", S_BASIC },
	{ "client_secret_basic", S_BASIC },
	{ "post", S_POST },
	{ "client_secret_post", S_POST },
	{ "tls_client_auth", S_TLS },
	{ "self_signed_tls_client_auth", S_SELF_SIGNED_TLS },
	{ "private_key_jwt", S_PRIVATE_KEY_JWT },
	{ "client_secret_jwt", S_SECRET_JWT },
};

enum s_alg { S_HS256, S_RS256, S_PS256, S_ES256 };
static const char *const s_alg_name[] = { "HS256", "RS256", "PS256", "ES256" };

#define S_ASSERTION_TTL 60 /* seconds; RFC 7523 wants it short (<= 5 min here) */
#define S_NONCE_MAX 256    /* longest DPoP-Nonce kept, with its NUL */

/* The last DPoP-Nonce a server sent, behind a seqlock: apply reads it on
 * every request while feedback (any thread) and fetch may replace it, and
 * providers hold no locks. A writer makes seq odd by CAS (so writers
 * exclude each other; one that loses simply drops its nonce, which is no
 * fresher than the winner's), stores the words, then makes seq even again.
 * A reader copies the words between two reads of an even, unchanged seq;
 * all accesses are atomic, so a torn copy is detected and never used. The
 * text lives inside the state: nothing is ever freed under a reader. */
struct s_nonce {
	atomic_uint seq;
	_Atomic uint64_t w[S_NONCE_MAX / 8];
};

/* The token request, built once and reused by every fetch. The body (post)
 * and the Basic header hold secrets: both are wiped on release. The client
 * id and the secret are kept for the JWT methods, which sign a fresh
 * assertion per fetch. */
struct s_req {
	char *body;
	size_t body_len;
	char **headers;  /* NULL-terminated "Name: value" */
	size_t nheaders;
	char *id, *secret;
	size_t id_len, secret_len;
};

struct s_state {
	const apicred_host *host;
	const char *token_url;   /* strings owned by the config */
	const char *header;
	const char *prefix;      /* explicit prefix, or NULL */
	enum s_auth auth;
	long long max_body;
	char *fields;            /* form fields other than the client's */
	const char *provision_url;
	const char *callback_host;
	int ready;               /* req built at init (secrets were there) */
	struct s_req req;
	/* private_key_jwt / client_secret_jwt */
	EVP_PKEY *client_key;
	enum s_alg alg;
	const char *aud;
	char *assertion_hdr;     /* base64url of the constant JOSE header */
	/* DPoP */
	int dpop;
	EVP_PKEY *dpop_key;
	EVP_MD *sha256;          /* fetched once: apply must stay fast */
	char *dpop_hdr;          /* base64url of {"typ":"dpop+jwt","alg":"ES256","jwk":...} */
	struct s_nonce as_nonce; /* from the token endpoint */
	struct s_nonce rs_nonce; /* from the service's responses */
};

/* A token with the header value built around it: "Bearer <token>" or
 * "DPoP <token>", and for DPoP the proofs' ath (base64url SHA-256). */
struct s_session {
	apicred_header *hdr;     /* the header, checked once (a core with header_new) */
	char ath[44];
	size_t value_len;
	char value[];
};

/* ---- helpers --------------------------------------------------------- */

/* The session's header checked once, where the token arrives (fetch or
 * import): apply then only copies it. A core without header_new checks
 * it in add_header on every apply instead. */
static int s_session_header(const struct s_state *st, const apicred_host *host,
                            struct s_session *s)
{
	s->hdr = NULL;
	if (!APICRED_HOST_HAS(host, header_free))
		return APICRED_OK;
	return host->header_new(host, st->header, s->value, &s->hdr);
}

static void s_req_release(const apicred_host *host, struct s_req *r)
{
	if (r->headers) {
		for (size_t i = 0; i < r->nheaders; i++)
			host->wipe_free(host, r->headers[i], APICRED_WIPE_STR);
		free(r->headers);
	}
	host->wipe_free(host, r->body, r->body_len);
	host->wipe_free(host, r->id, r->id_len);
	host->wipe_free(host, r->secret, r->secret_len);
	memset(r, 0, sizeof(*r));
}

/* Appends "&name=value" (or "name=value" when *buf is empty), both form-
 * escaped, to a growing buffer. */
static int s_form_add(const apicred_host *host, char **buf, size_t *len,
                      const char *name, const char *value)
{
	char *en = NULL, *ev = NULL, *nb;
	size_t need;
	int rc;

	if ((rc = host->form_escape(host, name, &en)) != APICRED_OK ||
	    (rc = host->form_escape(host, value, &ev)) != APICRED_OK)
		goto out;
	need = *len + (*len ? 1 : 0) + strlen(en) + 1 + strlen(ev) + 1;
	/* Copy rather than realloc so that a secret never lingers in a block
	 * realloc released without wiping. */
	nb = malloc(need);
	if (!nb) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(nb, need, "%s%s%s=%s", *len ? *buf : "", *len ? "&" : "", en, ev);
	host->wipe_free(host, *buf, *len);
	*buf = nb;
	*len = need - 1;
	rc = APICRED_OK;
out:
	host->wipe_free(host, en, APICRED_WIPE_STR);
	host->wipe_free(host, ev, APICRED_WIPE_STR);
	return rc;
}

/* http_free for a response that may never have been filled. */
static void s_resp_free(const apicred_host *host, apicred_http_response *resp)
{
	if (resp->body || resp->content_type)
		host->http_free(host, resp);
	memset(resp, 0, sizeof(*resp));
}

static const char *s_ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

/* ---- JOSE ------------------------------------------------------------ */

/* base64url without padding (RFC 7515 §2) into out, which holds at least
 * 4 * ((len + 2) / 3) + 1 bytes; returns the length. */
static size_t s_b64url(const void *in, size_t len, char *out)
{
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);

	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	return (size_t)n;
}

static char *s_b64url_json(const json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT), *out;
	size_t n;

	if (!text)
		return NULL;
	n = strlen(text);
	if ((out = malloc(4 * ((n + 2) / 3) + 1)))
		s_b64url(text, n, out);
	explicit_bzero(text, n);
	free(text);
	return out;
}

/* Signs "hdr.claims" and returns the compact JWS "hdr.claims.sig" in *out.
 * HS256 uses hkey; the others pkey. ECDSA signatures come from OpenSSL as
 * DER and go into the JWS as the raw r || s of RFC 7518 §3.4. */
static int s_jws(const struct s_state *st, const apicred_host *host, enum s_alg alg,
                 EVP_PKEY *pkey, const char *hkey, size_t hlen, const char *hdr,
                 const json_t *claims, char **out)
{
	unsigned char sig[1024], raw[64]; /* RSA up to 8192 bits; ES256's r || s */
	const unsigned char *out_sig = sig;
	size_t siglen = sizeof(sig), hl = strlen(hdr), cl, total;
	char *claims64, *jws = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int rc = APICRED_ERR_INTERNAL;

	*out = NULL;
	if (!(claims64 = s_b64url_json(claims)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	cl = strlen(claims64);
	total = hl + 1 + cl + 1 + 4 * ((sizeof(sig) + 2) / 3) + 1;
	if (!(jws = malloc(total))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(jws, hdr, hl);
	jws[hl] = '.';
	memcpy(jws + hl + 1, claims64, cl + 1);

	ERR_clear_error();
	if (alg == S_HS256) {
		if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hkey, hlen,
		               (unsigned char *)jws, hl + 1 + cl, sig, sizeof(sig), &siglen))
			goto ossl;
	} else {
		/* The digest was fetched at init: no lookup per request. */
		if (!(md = EVP_MD_CTX_new()) ||
		    EVP_DigestSignInit(md, &pctx, st->sha256, NULL, pkey) != 1)
			goto ossl;
		if (alg == S_PS256 &&
		    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
			goto ossl;
		if (alg == S_RS256 &&
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
			goto ossl;
		if (EVP_DigestSign(md, NULL, &siglen, (unsigned char *)jws, hl + 1 + cl) != 1 ||
		    siglen > sizeof(sig) ||
		    EVP_DigestSign(md, sig, &siglen, (unsigned char *)jws, hl + 1 + cl) != 1)
			goto ossl;
		if (alg == S_ES256) {
			const unsigned char *p = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);

			if (!es)
				goto ossl;
			siglen = 64;
			if (BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) != 32 ||
			    BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) != 32) {
				ECDSA_SIG_free(es);
				goto ossl;
			}
			ECDSA_SIG_free(es);
			out_sig = raw;
		}
	}
	jws[hl + 1 + cl] = '.';
	s_b64url(out_sig, siglen, jws + hl + 1 + cl + 1);
	*out = jws;
	jws = NULL;
	rc = APICRED_OK;
	goto out;
ossl:
	rc = host->error(host, APICRED_ERR_INTERNAL, "%s signature failed: %s",
	                 s_alg_name[alg], s_ossl_reason());
out:
	EVP_MD_CTX_free(md);
	explicit_bzero(sig, sizeof(sig)); /* an HS256 MAC is as good as the secret */
	explicit_bzero(raw, sizeof(raw));
	free(claims64);
	if (jws)
		host->wipe_free(host, jws, total);
	return rc;
}

/* A fresh jti: 16 random bytes, base64url (22 characters). */
static int s_jti(const apicred_host *host, char out[32])
{
	unsigned char b[16];
	int rc;

	if ((rc = host->random(host, b, sizeof(b))) != APICRED_OK)
		return rc;
	s_b64url(b, sizeof(b), out);
	return APICRED_OK;
}

/* A PEM private key (traditional or PKCS#8, possibly encrypted) from the
 * secret reference held by key: the core reads it with its secret-file
 * rules (owner, mode). */
static int s_pw_cb(char *buf, int size, int rwflag, void *user)
{
	const char *pw = user;
	size_t n = pw ? strlen(pw) : 0;

	(void)rwflag;
	if (!pw || n > (size_t)size)
		return -1; /* never prompt: no password, no key */
	memcpy(buf, pw, n);
	return (int)n;
}

static int s_load_key(const apicred_host *host, const char *key, const char *pwkey,
                      EVP_PKEY **out)
{
	char *pem = NULL, *pw = NULL;
	size_t pem_len = 0, pw_len = 0;
	BIO *b = NULL;
	int rc;

	*out = NULL;
	if ((rc = host->secret(host, key, &pem, &pem_len)) != APICRED_OK)
		return rc;
	if (host->cfg_str(host, pwkey) &&
	    (rc = host->secret(host, pwkey, &pw, &pw_len)) != APICRED_OK)
		goto out;
	ERR_clear_error();
	if (!(b = BIO_new_mem_buf(pem, (int)pem_len))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = PEM_read_bio_PrivateKey(b, NULL, s_pw_cb, pw);
	if (!*out)
		rc = host->error(host, APICRED_ERR_SECRET, "%s: no usable PEM private key%s: %s",
		                 key, memmem(pem, pem_len, "ENCRYPTED", 9)
		                 ? (pw ? " (wrong password?)" : " (encrypted: set the password key)")
		                 : "", s_ossl_reason());
out:
	BIO_free(b);
	if (pem)
		host->secret_free(host, pem, pem_len);
	if (pw)
		host->secret_free(host, pw, pw_len);
	return rc;
}

static int s_is_p256(EVP_PKEY *k)
{
	char group[32];

	return EVP_PKEY_is_a(k, "EC") &&
	       EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                                      sizeof(group), NULL) == 1 &&
	       strcmp(group, "prime256v1") == 0;
}

/* ---- DPoP nonces ----------------------------------------------------- */

/* NQCHAR (RFC 9449 §8): %x21 / %x23-5B / %x5D-7E. */
static int s_nonce_ok(const char *v, size_t len)
{
	if (len == 0 || len >= S_NONCE_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x21 || v[i] > 0x7e || v[i] == '"' || v[i] == '\\')
			return 0;
	return 1;
}

static void s_nonce_set(struct s_nonce *n, const char *v, size_t len)
{
	uint64_t words[S_NONCE_MAX / 8] = { 0 };
	unsigned seq = atomic_load_explicit(&n->seq, memory_order_relaxed);

	if (!s_nonce_ok(v, len))
		return;
	memcpy(words, v, len);
	if ((seq & 1) || !atomic_compare_exchange_strong_explicit(
	                     &n->seq, &seq, seq + 1, memory_order_acquire, memory_order_relaxed))
		return; /* another writer is storing one just as fresh */
	atomic_thread_fence(memory_order_release);
	for (size_t i = 0; i < S_NONCE_MAX / 8; i++)
		atomic_store_explicit(&n->w[i], words[i], memory_order_relaxed);
	atomic_store_explicit(&n->seq, seq + 2, memory_order_release);
}

/* Copies the nonce into out; 0 when there is none. A reader never waits
 * for a writer: after a few torn copies it sends no nonce, and the server
 * asks for one again (one retry). */
static int s_nonce_get(struct s_nonce *n, char out[S_NONCE_MAX])
{
	uint64_t words[S_NONCE_MAX / 8];

	for (int tries = 0; tries < 100; tries++) {
		unsigned s1 = atomic_load_explicit(&n->seq, memory_order_acquire);

		if (s1 == 0)
			return 0;
		if (s1 & 1)
			continue;
		for (size_t i = 0; i < S_NONCE_MAX / 8; i++)
			words[i] = atomic_load_explicit(&n->w[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&n->seq, memory_order_relaxed) == s1) {
			memcpy(out, words, S_NONCE_MAX);
			out[S_NONCE_MAX - 1] = '\0';
			return out[0] != '\0';
		}
	}
	return 0;
}

/* A header's value in "Name: value" lines, trimmed, or NULL; *len set. */
static const char *s_find_header(const char *const *lines, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (; lines && *lines; lines++) {
		const char *v = *lines, *e;

		if (strncasecmp(v, name, nl) != 0 || v[nl] != ':')
			continue;
		for (v += nl + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (e = v + strlen(v); e > v && strchr(" \t\r\n", e[-1]); e--)
			;
		*len = (size_t)(e - v);
		return v;
	}
	return NULL;
}

/* ---- DPoP proofs ----------------------------------------------------- */

/* A DPoP proof (RFC 9449 §4.2) for method and url: htu drops the query and
 * fragment; ath binds it to the access token (resource requests only). */
static int s_dpop_proof(struct s_state *st, const apicred_host *host, const char *method,
                        const char *url, const char *ath, struct s_nonce *slot, char **out)
{
	char jti[32], nonce[S_NONCE_MAX];
	json_t *claims;
	int rc;

	if ((rc = s_jti(host, jti)) != APICRED_OK)
		return rc;
	claims = json_pack("{s:s, s:s, s:s%, s:I}", "jti", jti, "htm", method,
	                   "htu", url, strcspn(url, "?#"),
	                   "iat", (json_int_t)(host->now_wall_ms(host) / 1000));
	if (claims && ath && json_object_set_new(claims, "ath", json_string(ath)) != 0)
		goto nomem;
	if (claims && s_nonce_get(slot, nonce) &&
	    json_object_set_new(claims, "nonce", json_string(nonce)) != 0)
		goto nomem;
	if (!claims)
		return host->error(host, APICRED_ERR_INVALID, "dpop: the request's method or URL "
		                   "is not valid UTF-8");
	rc = s_jws(st, host, S_ES256, st->dpop_key, NULL, 0, st->dpop_hdr, claims, out);
	json_decref(claims);
	return rc;
nomem:
	json_decref(claims);
	return host->error(host, APICRED_ERR_NOMEM, "out of memory");
}

/* The constant proof header: the public key as a JWK (RFC 7518 §6.2.1). */
static int s_dpop_setup(struct s_state *st, const apicred_host *host)
{
	unsigned char pub[65];
	char x[48], y[48];
	size_t len = 0;
	json_t *h;
	int rc;

	if (host->cfg_str(host, "dpop_key")) {
		if ((rc = s_load_key(host, "dpop_key", "dpop_key_password", &st->dpop_key)))
			return rc;
		if (!s_is_p256(st->dpop_key))
			return host->error(host, APICRED_ERR_CONFIG,
			                   "dpop_key: not an EC P-256 key (DPoP proofs use ES256)");
	} else if (!(st->dpop_key = EVP_EC_gen("P-256"))) {
		return host->error(host, APICRED_ERR_INTERNAL, "cannot make a DPoP key: %s",
		                   s_ossl_reason());
	}
	if (EVP_PKEY_get_octet_string_param(st->dpop_key, OSSL_PKEY_PARAM_PUB_KEY, pub,
	                                    sizeof(pub), &len) != 1 ||
	    len != 65 || pub[0] != 0x04)
		return host->error(host, APICRED_ERR_INTERNAL, "DPoP key: no public point: %s",
		                   s_ossl_reason());
	s_b64url(pub + 1, 32, x);
	s_b64url(pub + 33, 32, y);
	h = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "typ", "dpop+jwt", "alg", "ES256",
	              "jwk", "kty", "EC", "crv", "P-256", "x", x, "y", y);
	st->dpop_hdr = h ? s_b64url_json(h) : NULL;
	json_decref(h);
	if (!st->dpop_hdr)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	return APICRED_OK;
}

/* ---- client assertions ----------------------------------------------- */

/* The key and algorithm of private_key_jwt, and the constant header. */
static int s_assertion_setup(struct s_state *st, const apicred_host *host)
{
	const char *alg = host->cfg_str(host, "assertion_alg"), *kid = host->cfg_str(host, "kid");
	json_t *h;
	int rc;

	st->aud = host->cfg_str(host, "assertion_audience");
	if (!st->aud)
		st->aud = st->token_url;
	if (st->auth == S_SECRET_JWT) {
		st->alg = S_HS256;
		if (alg)
			return host->error(host, APICRED_ERR_CONFIG, "assertion_alg: client_secret_jwt "
			                   "always signs with HS256");
	} else {
		int rsa;

		if (!host->cfg_str(host, "client_key"))
			return host->error(host, APICRED_ERR_CONFIG,
			                   "client_key: required by private_key_jwt");
		if ((rc = s_load_key(host, "client_key", "client_key_password", &st->client_key)))
			return rc;
		rsa = EVP_PKEY_is_a(st->client_key, "RSA") || EVP_PKEY_is_a(st->client_key, "RSA-PSS");
		st->alg = !alg ? (rsa ? S_RS256 : S_ES256)
		        : strcmp(alg, "PS256") == 0 ? S_PS256
		        : strcmp(alg, "ES256") == 0 ? S_ES256 : S_RS256;
		if (st->alg == S_ES256 ? !s_is_p256(st->client_key)
		                       : !rsa || EVP_PKEY_get_bits(st->client_key) < 2048 ||
		                         EVP_PKEY_get_bits(st->client_key) > 8192)
			return host->error(host, APICRED_ERR_CONFIG, "client_key: not a key for %s "
			                   "(RS256/PS256: RSA of 2048 to 8192 bits; ES256: EC P-256)",
			                   s_alg_name[st->alg]);
	}
	if (kid && (!*kid || strpbrk(kid, "\r\n")))
		return host->error(host, APICRED_ERR_CONFIG, "kid: empty or has CR/LF");
	h = json_pack("{s:s, s:s}", "alg", s_alg_name[st->alg], "typ", "JWT");
	if (h && kid && json_object_set_new(h, "kid", json_string(kid)) != 0) {
		json_decref(h);
		h = NULL;
	}
	st->assertion_hdr = h ? s_b64url_json(h) : NULL;
	json_decref(h);
	if (!st->assertion_hdr)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	return APICRED_OK;
}

/* RFC 7523 §3: iss = sub = client_id, aud, a short exp, a fresh jti, iat. */
static int s_assertion(struct s_state *st, const apicred_host *host, const struct s_req *r,
                       char **out)
{
	int64_t now = host->now_wall_ms(host) / 1000;
	char jti[32];
	json_t *c;
	int rc;

	if ((rc = s_jti(host, jti)) != APICRED_OK)
		return rc;
	c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "iss", r->id, "sub", r->id,
	              "aud", st->aud, "jti", jti, "iat", (json_int_t)now,
	              "exp", (json_int_t)(now + S_ASSERTION_TTL));
	if (!c)
		return host->error(host, APICRED_ERR_CONFIG,
		                   "client_id: not valid UTF-8 (it goes into a JWT)");
	rc = s_jws(st, host, st->alg, st->client_key, r->secret, r->secret_len,
	           st->assertion_hdr, c, out);
	json_decref(c);
	return rc;
}

/* ---- init ------------------------------------------------------------ */

/* The form fields that do not depend on the client's secrets. */
static int s_build_fields(struct s_state *st, const apicred_host *host)
{
	static const char *const reserved[] = {
		"grant_type", "client_id", "client_secret", "client_assertion",
		"client_assertion_type", "scope", "audience", "resource", NULL
	};
	size_t len = 0, n;
	char *buf = NULL;
	int rc;

	if ((rc = s_form_add(host, &buf, &len, "grant_type", "client_credentials")))
		return rc;

	n = host->cfg_count(host, "scope");
	if (n) {
		/* Space-separated, then form-encoded: "ec.rules+ec.purge". */
		size_t total = 0, off = 0;
		const char *name, *v;
		char *joined;

		for (size_t i = 0; i < n; i++) {
			host->cfg_item(host, "scope", i, &name, &v);
			total += strlen(v) + 1;
		}
		joined = malloc(total + 1);
		if (!joined) {
			free(buf);
			return host->error(host, APICRED_ERR_NOMEM, "out of memory");
		}
		for (size_t i = 0; i < n; i++) {
			host->cfg_item(host, "scope", i, &name, &v);
			off += (size_t)sprintf(joined + off, "%s%s", i ? " " : "", v);
		}
		rc = s_form_add(host, &buf, &len, "scope", joined);
		free(joined);
		if (rc)
			goto fail;
	}
	if (host->cfg_str(host, "audience") &&
	    (rc = s_form_add(host, &buf, &len, "audience", host->cfg_str(host, "audience"))))
		goto fail;
	if (host->cfg_str(host, "resource") &&
	    (rc = s_form_add(host, &buf, &len, "resource", host->cfg_str(host, "resource"))))
		goto fail;

	n = host->cfg_count(host, "params");
	for (size_t i = 0; i < n; i++) {
		const char *name, *v;

		host->cfg_item(host, "params", i, &name, &v);
		for (const char *const *r = reserved; *r; r++)
			if (strcmp(name, *r) == 0) {
				rc = host->error(host, APICRED_ERR_CONFIG,
				                 "params.%s: set by the provider%s", name,
				                 strcmp(name, "scope") == 0 || strcmp(name, "audience") == 0 ||
				                 strcmp(name, "resource") == 0 ? "; use the key of that name" : "");
				goto fail;
			}
		if ((rc = s_form_add(host, &buf, &len, name, v)))
			goto fail;
	}
	st->fields = buf;
	return APICRED_OK;
fail:
	free(buf);
	return rc;
}

/* Builds the token request (body and headers) from the client's secrets.
 * Returns APICRED_ERR_SECRET (detail set) when a secret cannot be read. */
static int s_build_req(const struct s_state *st, const apicred_host *host, struct s_req *r)
{
	char *eid = NULL, *esecret = NULL, *pair = NULL, *b64 = NULL;
	size_t nextra, pair_len = 0, h = 0;
	int rc, need_secret = st->auth == S_BASIC || st->auth == S_POST ||
	                      st->auth == S_SECRET_JWT;

	memset(r, 0, sizeof(*r));
	if ((rc = host->secret(host, "client_id", &r->id, &r->id_len)) != APICRED_OK)
		return rc;
	if (need_secret &&
	    (rc = host->secret(host, "client_secret", &r->secret, &r->secret_len)) != APICRED_OK)
		goto out;

	nextra = host->cfg_count(host, "headers");
	r->headers = calloc(nextra + 3, sizeof(char *));
	r->body = strdup(st->fields);
	if (!r->headers || !r->body) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	r->body_len = strlen(r->body);
	r->nheaders = nextra + 2;
	if (!(r->headers[h++] = strdup("Accept: application/json"))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}

	if (st->auth == S_POST) {
		if ((rc = s_form_add(host, &r->body, &r->body_len, "client_id", r->id)) ||
		    (rc = s_form_add(host, &r->body, &r->body_len, "client_secret", r->secret)))
			goto out;
	} else if (st->auth != S_BASIC) {
		/* RFC 8705 §2 and RFC 7523 §2.2: the id goes in the body; the
		 * certificate or the assertion authenticates it. */
		if ((rc = s_form_add(host, &r->body, &r->body_len, "client_id", r->id)))
			goto out;
	} else {
		/* RFC 6749 §2.3.1: form-encode each part before joining them. */
		if ((rc = host->form_escape(host, r->id, &eid)) ||
		    (rc = host->form_escape(host, r->secret, &esecret)))
			goto out;
		pair_len = strlen(eid) + 1 + strlen(esecret);
		if (!(pair = malloc(pair_len + 1))) {
			rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
			goto out;
		}
		snprintf(pair, pair_len + 1, "%s:%s", eid, esecret);
		if ((rc = host->base64(host, pair, pair_len, &b64)))
			goto out;
		size_t n = strlen("Authorization: Basic ") + strlen(b64) + 1;
		if (!(r->headers[h] = malloc(n))) {
			rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
			goto out;
		}
		snprintf(r->headers[h++], n, "Authorization: Basic %s", b64);
	}
	for (size_t i = 0; i < nextra; i++) {
		const char *name, *v;

		host->cfg_item(host, "headers", i, &name, &v);
		if (!(r->headers[h++] = strdup(v))) {
			rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (st->auth != S_SECRET_JWT) { /* only HS256 needs the secret again */
		host->wipe_free(host, r->secret, r->secret_len);
		r->secret = NULL;
		r->secret_len = 0;
	}
	rc = APICRED_OK;
out:
	if (rc != APICRED_OK)
		s_req_release(host, r);
	host->wipe_free(host, eid, APICRED_WIPE_STR);
	host->wipe_free(host, esecret, APICRED_WIPE_STR);
	host->wipe_free(host, pair, pair_len);
	host->wipe_free(host, b64, APICRED_WIPE_STR);
	return rc;
}

/* A providerCallbackHost goes into JSON and the MoMo portal: a host name,
 * optionally with a port, nothing that needs escaping. */
static int s_host_ok(const char *s)
{
	if (!*s || strlen(s) > 253)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(".-:[]_", *s))
			return 0;
	return 1;
}

static void s_fini(void *state);

/* What the schema cannot say: combinations of keys and their values.
 * token_url is a URL, header a header name and headers header lines: the
 * schema says so and the core checks. */
static int s_check_config(const struct s_state *st, const apicred_host *host,
                          const char *auth, long long max_body)
{
	if (st->prefix && strpbrk(st->prefix, "\r\n"))
		return host->error(host, APICRED_ERR_CONFIG, "prefix: contains CR or LF");
	if (st->dpop && (st->prefix || strcasecmp(st->header, "Authorization") != 0)) {
		/* RFC 9449 §7.1: a DPoP token goes in "Authorization: DPoP". */
		return host->error(host, APICRED_ERR_CONFIG, "%s: not with dpop = true",
		                   st->prefix ? "prefix" : "header");
	}
	if (max_body < 64)
		return host->error(host, APICRED_ERR_CONFIG, "max_body: %lld is too small", max_body);
	if (st->callback_host && !s_host_ok(st->callback_host))
		return host->error(host, APICRED_ERR_CONFIG, "callback_host: not a host name");
	if ((st->auth == S_BASIC || st->auth == S_POST || st->auth == S_SECRET_JWT) &&
	    !host->cfg_str(host, "client_secret"))
		return host->error(host, APICRED_ERR_CONFIG, "client_secret: required by client_auth "
		                   "= \"%s\"", auth);
	if (!(st->auth == S_BASIC || st->auth == S_POST || st->auth == S_SECRET_JWT) &&
	    host->cfg_str(host, "client_secret"))
		host->log(host, LOG_NOTICE, "client_secret is not used by client_auth = \"%s\"", auth);
	if (st->auth != S_PRIVATE_KEY_JWT && host->cfg_str(host, "client_key"))
		return host->error(host, APICRED_ERR_CONFIG, "client_key: only used by "
		                   "client_auth = \"private_key_jwt\"");
	return APICRED_OK;
}

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	long long max_body = 65536;
	const char *auth;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->token_url = host->cfg_str(host, "token_url");
	st->header = host->cfg_str(host, "header");
	st->prefix = host->cfg_str(host, "prefix");
	auth = host->cfg_str(host, "client_auth");
	for (size_t i = 0; i < sizeof(s_auths) / sizeof(s_auths[0]); i++)
		if (strcmp(auth, s_auths[i].name) == 0)
			st->auth = s_auths[i].auth;
	st->dpop = host->cfg_bool(host, "dpop");
	st->provision_url = host->cfg_str(host, "provision_url");
	st->callback_host = host->cfg_str(host, "callback_host");
	host->cfg_int(host, "max_body", &max_body);
	st->max_body = max_body;

	if ((rc = s_check_config(st, host, auth, max_body)) != APICRED_OK)
		goto fail;
	if (!(st->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) {
		rc = host->error(host, APICRED_ERR_INTERNAL, "no SHA-256: %s", s_ossl_reason());
		goto fail;
	}
	if ((st->auth == S_PRIVATE_KEY_JWT || st->auth == S_SECRET_JWT) &&
	    (rc = s_assertion_setup(st, host)))
		goto fail;
	if (st->dpop && (rc = s_dpop_setup(st, host)))
		goto fail;
	if ((rc = s_build_fields(st, host)))
		goto fail;

	rc = s_build_req(st, host, &st->req);
	if (rc == APICRED_OK) {
		st->ready = 1;
	} else if (rc == APICRED_ERR_SECRET && st->provision_url) {
		/* Not provisioned yet: load anyway so that `apicred provision`
		 * can create the secrets; fetch reads them when they exist. */
		host->log(host, LOG_NOTICE,
		          "client secrets not readable yet; run `apicred provision %s`",
		          host->service);
	} else {
		goto fail;
	}
	*state = st;
	/* The session's token alone, unless a DPoP proof is made per request. */
	if (st->dpop || !APICRED_HOST_HAS(host, apply_static))
		return APICRED_OK;
	return host->apply_static(host, 0);
fail:
	s_fini(st);
	return rc;
}

/* ---- fetch ----------------------------------------------------------- */

/* expires_in as a number or numeric string; 0 (the core's default TTL) for
 * missing, zero, negative or garbage values. */
static int64_t s_lifetime_ms(const apicred_host *host, const char *v)
{
	char *end;
	double secs;
	int64_t ms = 0;

	if (!v)
		return 0;
	errno = 0;
	secs = strtod(v, &end);
	while (*end == ' ')
		end++;
	if (end != v && *end == '\0' && errno == 0 && isfinite(secs) && secs >= 1) {
		/* Clamp absurd lifetimes to ten years rather than overflow. */
		ms = secs > 315360000.0 ? (int64_t)315360000 * 1000 : (int64_t)(secs * 1000.0);
	} else if (strcmp(v, "0") != 0) {
		host->log(host, LOG_WARNING, "token endpoint sent an unusable expires_in; "
		          "using default_ttl");
	}
	return ms;
}

/* The value apply sends before the token, or NULL for a type we refuse. */
static const char *s_prefix_for(const struct s_state *st, const char *token_type)
{
	if (st->dpop) /* RFC 9449 §5: nothing but a DPoP-bound token */
		return token_type && strcasecmp(token_type, "DPoP") == 0 ? "DPoP " : NULL;
	if (st->prefix)
		return st->prefix;
	if (!token_type || !*token_type || strcasecmp(token_type, "bearer") == 0 ||
	    strcasecmp(token_type, "access_token") == 0) /* MoMo's odd type */
		return "Bearer ";
	return NULL;
}

/* ath = base64url(SHA-256(token)), made once per token. */
static int s_ath(const struct s_state *st, const apicred_host *host, const char *token,
                 size_t len, char ath[44])
{
	unsigned char md[32];

	if (EVP_Digest(token, len, md, NULL, st->sha256, NULL) != 1)
		return host->error(host, APICRED_ERR_INTERNAL, "SHA-256 failed");
	s_b64url(md, sizeof(md), ath);
	return APICRED_OK;
}

/* The members of a token reply, read with one parse. */
enum { S_TOKEN, S_ERROR, S_TYPE, S_EXPIRES, S_NFIELDS };
static const char *const s_fields[S_NFIELDS] = {
	"access_token", "error", "token_type", "expires_in"
};

static int s_parse_token(const struct s_state *st, const apicred_host *host,
                         const apicred_http_response *resp, apicred_session *out)
{
	char *v[S_NFIELDS], *token, *type, *err;
	struct s_session *s;
	const char *prefix;
	size_t plen, tlen;
	int rc;

	rc = host->json_get_many(host, resp->body, resp->body_len, S_NFIELDS, s_fields, v);
	if (rc == APICRED_ERR_PROTOCOL)
		return host->error(host, APICRED_ERR_PROTOCOL,
		                   "token endpoint answered %ld with a body that is not a JSON object",
		                   resp->status);
	if (rc != APICRED_OK)
		return rc;
	token = v[S_TOKEN];
	type = v[S_TYPE];
	err = v[S_ERROR];
	if (!token || !*token) {
		/* Some servers answer 200 with an OAuth error object. */
		if (err)
			rc = host->error(host, APICRED_ERR_PROTOCOL,
			                 "token endpoint answered %ld without access_token: %s",
			                 resp->status, err);
		else
			rc = host->error(host, APICRED_ERR_PROTOCOL,
			                 "token endpoint answered %ld without access_token",
			                 resp->status);
		goto out;
	}
	tlen = strlen(token);
	rc = host->check_text(host, APICRED_ERR_PROTOCOL, "the token endpoint's access_token",
	                      token, tlen);
	if (rc != APICRED_OK)
		goto out;
	prefix = s_prefix_for(st, type);
	if (!prefix) {
		if (st->dpop)
			rc = host->error(host, APICRED_ERR_PROTOCOL,
			                 "token endpoint issued a token of type \"%.40s\", not the "
			                 "DPoP-bound token dpop = true asked for", type ? type : "");
		else
			rc = host->error(host, APICRED_ERR_UNSUPPORTED,
			                 "token endpoint issued a token of type \"%.40s\", which is "
			                 "not a bearer token; %s", type,
			                 strcasecmp(type, "DPoP") == 0 ? "set dpop = true"
			                 : "set `prefix` to send it anyway");
		goto out;
	}
	plen = strlen(prefix);
	s = malloc(sizeof(*s) + plen + tlen + 1);
	if (!s) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	s->ath[0] = '\0';
	if (st->dpop && (rc = s_ath(st, host, token, tlen, s->ath)) != APICRED_OK) {
		free(s);
		goto out;
	}
	memcpy(s->value, prefix, plen);
	memcpy(s->value + plen, token, tlen + 1);
	s->value_len = plen + tlen;
	if ((rc = s_session_header(st, host, s)) != APICRED_OK) {
		host->wipe_free(host, s, sizeof(*s) + s->value_len + 1);
		goto out;
	}
	out->data = s;
	out->lifetime_ms = s_lifetime_ms(host, v[S_EXPIRES]);
	rc = APICRED_OK;
out:
	host->wipe_free(host, token, APICRED_WIPE_STR);
	free(type);
	free(err);
	free(v[S_EXPIRES]);
	return rc;
}

/* The body of one token request: the prepared fields, plus a fresh client
 * assertion for the JWT methods (a jti is used once: a retry signs anew). */
static int s_token_body(struct s_state *st, const apicred_host *host, const struct s_req *r,
                        char **body, size_t *len)
{
	char *jwt = NULL;
	int rc;

	*len = r->body_len;
	if (!(*body = strdup(r->body)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	if (st->auth != S_PRIVATE_KEY_JWT && st->auth != S_SECRET_JWT)
		return APICRED_OK;
	if ((rc = s_assertion(st, host, r, &jwt)) ||
	    (rc = s_form_add(host, body, len, "client_assertion_type",
	                     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")) ||
	    (rc = s_form_add(host, body, len, "client_assertion", jwt))) {
		host->wipe_free(host, *body, *len);
		*body = NULL;
	}
	host->wipe_free(host, jwt, APICRED_WIPE_STR);
	return rc;
}

/* One POST to the token endpoint: the body from r and, with DPoP, a fresh
 * proof in hdrs[nh] (cleared again after). */
static int s_post_token(struct s_state *st, const apicred_host *host, const struct s_req *r,
                        apicred_http_request *req, const char **hdrs, size_t nh,
                        apicred_http_response *resp)
{
	char *body = NULL, *proof = NULL, *line = NULL;
	size_t body_len = 0;
	int rc;

	if ((rc = s_token_body(st, host, r, &body, &body_len)) != APICRED_OK)
		return rc;
	if (st->dpop) {
		if ((rc = s_dpop_proof(st, host, "POST", st->token_url, NULL, &st->as_nonce,
		                       &proof)) != APICRED_OK)
			goto out;
		if (asprintf(&line, "DPoP: %s", proof) < 0) {
			line = NULL;
			rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
			goto out;
		}
		hdrs[nh] = line;
	}
	req->body = body;
	req->body_len = body_len;
	rc = host->http(host, req, resp);
out:
	host->wipe_free(host, body, body_len);
	free(line);
	free(proof);
	hdrs[nh] = NULL;
	return rc;
}

static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	apicred_http_request req = { .size = sizeof(req) };
	apicred_http_response resp = { 0 };
	struct s_req tmp;
	const struct s_req *r = &st->req;
	const char **hdrs = NULL;
	char *nonce = NULL, *err = NULL;
	size_t nh = 0;
	int rc;

	if (!st->ready) {
		if ((rc = s_build_req(st, host, &tmp)) != APICRED_OK)
			return rc;
		r = &tmp;
	}
	/* The prepared headers, and room for a DPoP proof and the NULL. */
	while (nh < r->nheaders && r->headers[nh])
		nh++;
	if (!(hdrs = calloc(nh + 2, sizeof(*hdrs)))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(hdrs, r->headers, nh * sizeof(*hdrs));
	req.method = "POST";
	req.url = st->token_url;
	req.headers = hdrs;
	req.content_type = "application/x-www-form-urlencoded";
	req.max_body = (size_t)st->max_body; /* the core refuses a longer reply */
	if (st->dpop) {
		req.resp_header = "DPoP-Nonce";
		req.resp_header_value = &nonce;
	}

	/* A server that wants a DPoP nonce says so once (use_dpop_nonce with
	 * the nonce in a DPoP-Nonce header): one retry carries it. */
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = s_post_token(st, host, r, &req, hdrs, nh, &resp)) != APICRED_OK)
			goto out;
		if (nonce) {
			s_nonce_set(&st->as_nonce, nonce, strlen(nonce));
			free(nonce);
			nonce = NULL;
		}
		if (!st->dpop || attempt || (resp.status != 400 && resp.status != 401) ||
		    host->json_get(host, resp.body, resp.body_len, "error", &err) != APICRED_OK ||
		    strcmp(err, "use_dpop_nonce") != 0)
			break;
		free(err);
		err = NULL;
		s_resp_free(host, &resp);
		host->log(host, LOG_DEBUG, "token endpoint wants a DPoP nonce: retrying once");
	}

	if (resp.status < 200 || resp.status > 299) {
		rc = host->http_error(host, &resp, "token endpoint");
		if (resp.retry_after_ms > 0)
			out->retry_after_ms = resp.retry_after_ms;
	} else {
		rc = s_parse_token(st, host, &resp, out);
	}
out:
	s_resp_free(host, &resp);
	if (!st->ready)
		s_req_release(host, &tmp);
	free(hdrs);
	free(nonce);
	free(err);
	return rc;
}

static void s_session_free(void *state, void *data)
{
	struct s_state *st = state;
	struct s_session *s = data;

	if (!s)
		return;
	if (s->hdr)
		st->host->header_free(st->host, s->hdr);
	st->host->wipe_free(st->host, s, sizeof(*s) + s->value_len + 1);
}

/* The session is the header value ("Bearer " + token): it travels as is.
 * A DPoP token is bound to the proof key: it travels only when the key is
 * dpop_key, which every process sharing the entry holds, not one made per
 * process. */
static int s_session_export(void *state, const apicred_host *host, const void *data,
                            void **out, size_t *len)
{
	const struct s_state *st = state;
	const struct s_session *s = data;

	if (st->dpop && !host->cfg_str(host, "dpop_key"))
		return host->error(host, APICRED_ERR_UNSUPPORTED, "a DPoP token bound to "
		                   "this process's own key is not shared");
	if (!(*out = malloc(s->value_len)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	memcpy(*out, s->value, s->value_len);
	*len = s->value_len;
	return APICRED_OK;
}

static int s_session_import(void *state, const apicred_host *host, const void *in,
                            size_t len, void **data)
{
	const struct s_state *st = state;
	struct s_session *s;
	int rc = host->check_text(host, APICRED_ERR_PROTOCOL, "the shared token", in, len);

	if (rc != APICRED_OK)
		return rc;
	if (!(s = malloc(sizeof(*s) + len + 1)))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	memcpy(s->value, in, len);
	s->value[len] = '\0';
	s->value_len = len;
	s->ath[0] = '\0';
	if (st->dpop) {
		/* "DPoP <token>": header and prefix are fixed with DPoP. */
		if (!host->cfg_str(host, "dpop_key") || len < 6 || memcmp(s->value, "DPoP ", 5) != 0)
			rc = host->error(host, APICRED_ERR_PROTOCOL, "shared entry is no DPoP token "
			                 "for this layer's key: refused");
		else
			rc = s_ath(st, host, s->value + 5, len - 5, s->ath);
		if (rc != APICRED_OK) {
			host->wipe_free(host, s, sizeof(*s) + len + 1);
			return rc;
		}
	}
	if ((rc = s_session_header(st, host, s)) != APICRED_OK) {
		host->wipe_free(host, s, sizeof(*s) + len + 1);
		return rc;
	}
	*data = s;
	return APICRED_OK;
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state;
	const struct s_session *s = session;
	char *proof = NULL;
	int rc;

	if (!s)
		return host->error(host, APICRED_ERR_INTERNAL, "no token");
	rc = s->hdr ? host->add_prepared(host, out, s->hdr)
	            : host->add_header(out, st->header, s->value);
	if (rc != APICRED_OK || !st->dpop)
		return rc;
	/* DPoP: a fresh proof per request, bound to its method, URL and token. */
	if (!req->url)
		return host->error(host, APICRED_ERR_INVALID,
		                   "dpop: the request's URL is needed to make its proof");
	rc = s_dpop_proof(st, host, req->method ? req->method : "GET", req->url, s->ath,
	                  &st->rs_nonce, &proof);
	if (rc == APICRED_OK)
		rc = host->add_header(out, "DPoP", proof);
	free(proof);
	return rc;
}

/* ---- feedback -------------------------------------------------------- */

/* 401: the token was revoked or expired early; the core drops exactly this
 * one (not a newer token another thread already fetched). */
static apicred_feedback s_feedback(void *state, const apicred_host *host,
                                   const void *session, long status,
                                   const void *body, size_t body_len)
{
	return status == 401 ? APICRED_FEEDBACK_INVALIDATE : APICRED_FEEDBACK_NONE;
}

/* With the response's headers: a DPoP-Nonce is kept for the next proofs,
 * and a 401 that only asks for one (use_dpop_nonce) keeps the token and
 * asks for one retry. */
static apicred_feedback s_feedback_headers(void *state, const apicred_host *host,
                                           const void *session, long status,
                                           const char *const *headers,
                                           const void *body, size_t body_len)
{
	struct s_state *st = state;
	const char *v;
	size_t len;

	if (st->dpop && (v = s_find_header(headers, "DPoP-Nonce", &len))) {
		s_nonce_set(&st->rs_nonce, v, len);
		if (status == 401 && (v = s_find_header(headers, "WWW-Authenticate", &len)) &&
		    strcasestr(v, "use_dpop_nonce"))
			return APICRED_FEEDBACK_CHANGED;
	}
	return s_feedback(state, host, session, status, body, body_len);
}

/* ---- provision ------------------------------------------------------- */

/* A fresh UUIDv4 (RFC 9562 §5.4) from the core's random source. */
static int s_uuid4(const apicred_host *host, char out[37])
{
	unsigned char b[16];
	int rc;

	if ((rc = host->random(host, b, sizeof(b))) != APICRED_OK)
		return rc;
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	         "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
	         b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return APICRED_OK;
}

/* {provision_url}/apiuser[/id[/suffix]] (ids are at most 64 characters). */
static int s_purl(const struct s_state *st, const apicred_host *host, const char *id,
                  const char *suffix, char **url)
{
	char path[160];

	snprintf(path, sizeof(path), "apiuser%s%.64s%s%s", id ? "/" : "", id ? id : "",
	         suffix ? "/" : "", suffix ? suffix : "");
	return host->url_join(host, st->provision_url, path, url);
}

/* Turns a provisioning answer other than `want` into a clear error. */
static int s_prov_error(const apicred_host *host, const apicred_http_response *resp,
                        const char *step, const char *id)
{
	char *code = NULL;
	int rc;

	if (resp->status == 409) {
		host->json_get(host, resp->body, resp->body_len, "code", &code);
		rc = host->error(host, APICRED_ERR_EXISTS,
		                 "%s: API user %s already exists (409 %s)", step, id,
		                 code ? code : "Conflict");
		free(code);
		return rc;
	}
	if (resp->status == 401) {
		/* MoMo's provisioning API knows only the subscription key, which
		 * comes from the layer above (same origin). */
		char what[128];

		snprintf(what, sizeof(what), "%s: subscription key refused", step);
		return host->http_error(host, resp, what);
	}
	if (resp->status == 404)
		return host->error(host, APICRED_ERR_AUTH,
		                   "%s: API user %s not found (404)", step, id);
	if (resp->status >= 200 && resp->status <= 299)
		return host->error(host, APICRED_ERR_PROTOCOL,
		                   "%s: unexpected answer %ld", step, resp->status);
	return host->http_error(host, resp, step);
}

static int s_provision_show(const struct s_state *st, const apicred_host *host,
                            char **report)
{
	apicred_http_request req = { .size = sizeof(req), .method = "GET" };
	apicred_http_response resp = { 0 };
	static const char *const paths[] = { "providerCallbackHost", "targetEnvironment" };
	char *id = NULL, *url = NULL, *cb = NULL, *env = NULL, *found[2];
	size_t id_len = 0;
	int rc;

	if ((rc = host->secret(host, "client_id", &id, &id_len)) != APICRED_OK)
		return rc;
	if (id_len == 0 || id_len > 64 || strspn(id, "0123456789abcdefABCDEF-") != id_len) {
		rc = host->error(host, APICRED_ERR_SECRET, "client_id: not a MoMo API user id");
		goto out;
	}
	if ((rc = s_purl(st, host, id, NULL, &url)) != APICRED_OK)
		goto out;
	req.url = url;
	if ((rc = host->http(host, &req, &resp)) != APICRED_OK)
		goto out;
	if (resp.status != 200) {
		rc = s_prov_error(host, &resp, "reading the API user", id);
		goto out;
	}
	if (host->json_get_many(host, resp.body, resp.body_len, 2, paths, found) == APICRED_OK) {
		cb = found[0];
		env = found[1];
	}
	/* The server's words go to a terminal: one line each. */
	if (cb && APICRED_HOST_HAS(host, safe_text))
		host->safe_text(host, cb, strlen(cb), cb, strlen(cb) + 1);
	if (env && APICRED_HOST_HAS(host, safe_text))
		host->safe_text(host, env, strlen(env), env, strlen(env) + 1);
	if (asprintf(report, "API user: %s\nproviderCallbackHost: %s\ntargetEnvironment: %s\n",
	             id, cb ? cb : "(none)", env ? env : "(none)") < 0) {
		*report = NULL;
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
out:
	s_resp_free(host, &resp);
	host->secret_free(host, id, id_len);
	free(url);
	free(cb);
	free(env);
	return rc;
}

/* What must hold before anything is created remotely: an orphan API user
 * helps nobody. secret_store checks again, atomically. */
static int s_provision_ready(const struct s_state *st, const apicred_host *host,
                             unsigned flags)
{
	static const char *const keys[] = { "client_id", "client_secret" };
	char *old;
	size_t old_len;

	if (!st->callback_host)
		return host->error(host, APICRED_ERR_CONFIG,
		                   "callback_host is required to create a MoMo API user");
	if (!APICRED_HOST_HAS(host, secret_store_all))
		return host->error(host, APICRED_ERR_UNSUPPORTED,
		                   "this libapicred cannot store two secrets together: update it");
	for (int i = 0; !(flags & APICRED_PROVISION_FORCE) && i < 2; i++) {
		if (host->secret(host, keys[i], &old, &old_len) == APICRED_OK) {
			host->secret_free(host, old, old_len);
			return host->error(host, APICRED_ERR_EXISTS,
			                   "%s already holds a value; use --force to replace it",
			                   keys[i]);
		}
	}
	return APICRED_OK;
}

static int s_provision(void *state, const apicred_host *host, unsigned flags,
                       char **report)
{
	const struct s_state *st = state;
	apicred_http_request req = { .size = sizeof(req), .method = "POST" };
	apicred_http_response resp = { 0 };
	const char *hdrs[2] = { NULL, NULL };
	char id[37], refhdr[64], body[300], *url = NULL, *key = NULL;
	int rc;

	*report = NULL;
	if (!st->provision_url)
		return host->error(host, APICRED_ERR_UNSUPPORTED,
		                   "provision_url is not set: nothing to provision");
	if (flags & APICRED_PROVISION_SHOW)
		return s_provision_show(st, host, report);
	if ((rc = s_provision_ready(st, host, flags)) != APICRED_OK ||
	    (rc = s_uuid4(host, id)) != APICRED_OK)
		return rc;
	snprintf(refhdr, sizeof(refhdr), "X-Reference-Id: %s", id);
	snprintf(body, sizeof(body), "{\"providerCallbackHost\":\"%s\"}", st->callback_host);
	hdrs[0] = refhdr;
	req.headers = hdrs;
	req.body = body;
	req.body_len = strlen(body);
	req.content_type = "application/json";
	if ((rc = s_purl(st, host, NULL, NULL, &url)) != APICRED_OK)
		goto out;
	req.url = url;
	if ((rc = host->http(host, &req, &resp)) != APICRED_OK)
		goto out;
	if (resp.status != 201) {
		rc = s_prov_error(host, &resp, "creating the API user", id);
		goto out;
	}
	s_resp_free(host, &resp);
	free(url);

	req.headers = NULL;
	req.body = NULL;
	req.body_len = 0;
	req.content_type = NULL;
	if ((rc = s_purl(st, host, id, "apikey", &url)) != APICRED_OK)
		goto out;
	req.url = url;
	if ((rc = host->http(host, &req, &resp)) != APICRED_OK)
		goto out;
	if (resp.status != 201 && resp.status != 200) {
		rc = s_prov_error(host, &resp, "creating the API key", id);
		goto out;
	}
	rc = host->json_get(host, resp.body, resp.body_len, "apiKey", &key);
	if (rc != APICRED_OK || !*key || strpbrk(key, "\r\n")) {
		rc = host->error(host, APICRED_ERR_PROTOCOL,
		                 "creating the API key: the answer holds no usable apiKey");
		goto out;
	}

	/* Both or neither: a user without its key is useless and would block
	 * a rerun. */
	{
		static const char *const keys[] = { "client_id", "client_secret" };
		const char *values[] = { id, key };
		size_t lens[] = { strlen(id), strlen(key) };

		if ((rc = host->secret_store_all(host, 2, keys, values, lens,
		                                 (flags & APICRED_PROVISION_FORCE) != 0)))
			goto out;
	}
	if (asprintf(report, "created API user %s (providerCallbackHost %s) and its API key; "
	             "stored them where client_id and client_secret point\n",
	             id, st->callback_host) < 0) {
		*report = NULL;
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
out:
	s_resp_free(host, &resp);
	free(url);
	host->wipe_free(host, key, APICRED_WIPE_STR);
	return rc;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (!st)
		return;
	s_req_release(st->host, &st->req);
	free(st->fields);
	EVP_PKEY_free(st->client_key);
	EVP_PKEY_free(st->dpop_key);
	EVP_MD_free(st->sha256);
	free(st->assertion_hdr);
	free(st->dpop_hdr);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "oauth2",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.feedback = s_feedback,
	.provision = s_provision,
	.fini = s_fini,
	.session_export = s_session_export,
	.session_import = s_session_import,
	.feedback_headers = s_feedback_headers,
};

APICRED_PROVIDER_V1(s_vtable)
