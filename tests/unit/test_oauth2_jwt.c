/*
 * test_oauth2_jwt.c - the oauth2 provider's JOSE through the real library
 * and the real oauth2.so: client assertions (private_key_jwt with RS256,
 * PS256 and ES256, client_secret_jwt with HS256) and DPoP proofs, decoded
 * here with jansson and verified with OpenSSL against keys made here; DPoP
 * nonces from the token endpoint (one retry) and from responses handed over
 * with apicred_report_headers and apicred_curl_report. The token endpoint
 * is the sandbox's scripted endpoint; the clocks and random bytes are the
 * injected ones.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "fixture.h"

#define SECRET "hs256-client-secret-0123456789abcdef"
#define TOKEN_OK "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"expires_in\":300}"
#define TOKEN_DPOP "{\"access_token\":\"tok-d\",\"token_type\":\"DPoP\",\"expires_in\":300}"

static EVP_PKEY *g_rsa, *g_ec;

struct t {
	apicred_ctx *ctx;
	char token_url[128];
	char base[96];
};

/* The harness: the current test's configuration (clock fixed, random bytes
 * 0, 1, ..., the providers as built, no fetch retries), and the sandbox
 * whose scripted endpoint plays the login server, one for all the tests. */
static fx *s_fx;
static fx_sandbox *s_sb;

static void s_fx_new(void)
{
	s_fx = fx_new();
	s_fx->hooks = FX_CLOCK | FX_RANDOM;
	fx_modules_built(s_fx);
	fx_global(s_fx, "http = { retries = 0; };\n");
}

/* ---- helpers ---------------------------------------------------------------- */

static void s_write_key(const char *confdir, const char *name, EVP_PKEY *k, const char *pass)
{
	char *path;
	FILE *f;
	int fd;

	if (asprintf(&path, "%s/%s", confdir, name) < 0)
		abort();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w")))
		abort();
	if (pass ? !PEM_write_PKCS8PrivateKey(f, k, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)pass)
	         : !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);
	free(path);
}

static int s_group_setup(void **state)
{
	s_sb = fx_sandbox_start();
	return 0;
}

static int s_group_teardown(void **state)
{
	fx_sandbox_stop(s_sb);
	return 0;
}

static int s_setup(void **state)
{
	struct t *f = calloc(1, sizeof(*f));

	s_fx_new();
	fx_mono_ms = 1000000;
	fx_wall_ms = 1700000000000LL;
	fx_sandbox_reset(s_sb);
	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_OK);
	snprintf(f->base, sizeof(f->base), "%s/script", s_sb->url);
	snprintf(f->token_url, sizeof(f->token_url), "%s/oauth/token", f->base);
	s_write_key(s_fx->conf, "rsa.pem", g_rsa, NULL);
	s_write_key(s_fx->conf, "ec.pem", g_ec, NULL);
	s_write_key(s_fx->conf, "ec-enc.pem", g_ec, "key-pass");
	*state = f;
	return 0;
}

static int s_teardown(void **state)
{
	struct t *f = *state;

	apicred_close(f->ctx);
	fx_free(s_fx);
	free(f);
	return 0;
}

/* An oauth2 service on the scripted endpoint with extra settings. */
static void s_svc(struct t *f, const char *name, const char *extra)
{
	fx_service(s_fx, name, 0600,
	           "url = \"%s/\"; insecure_http = true;\n"
	           "stack = ( { provider = \"oauth2\"; insecure_http = true;\n"
	           "  token_url = \"%s\"; client_id = \"my-client\";\n"
	           "  %s } );\n", f->base, f->token_url, extra);
}

/* fx_request on a ctx opened once the services are written. */
static int s_get(struct t *f, const char *service, const char *method, const char *url,
                 const char *body, const char *content_type)
{
	if (!f->ctx)
		f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	return fx_request(s_fx, f->ctx, service, method, url, body, content_type);
}

/* base64url (no padding) decoded into a fresh buffer. */
static unsigned char *s_unb64url(const char *in, size_t len, size_t *out_len)
{
	char *b = calloc(1, len + 4);
	unsigned char *out = calloc(1, len + 4);
	size_t n = len;
	int got;

	memcpy(b, in, len);
	for (size_t i = 0; i < len; i++)
		b[i] = b[i] == '-' ? '+' : b[i] == '_' ? '/' : b[i];
	while (n % 4)
		b[n++] = '=';
	got = EVP_DecodeBlock(out, (unsigned char *)b, (int)n);
	assert_true(got >= 0);
	*out_len = (size_t)got - (n - len); /* padding decodes to zero bytes */
	free(b);
	return out;
}

static char *s_b64url(const unsigned char *in, size_t len)
{
	char *out = calloc(1, 4 * ((len + 2) / 3) + 1);
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);

	while (n > 0 && out[n - 1] == '=')
		out[--n] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return out;
}

/* A decoded compact JWS. */
struct jws {
	json_t *hdr, *claims;
	char *input;          /* "hdr.claims", what was signed */
	unsigned char *sig;
	size_t sig_len;
};

static void s_jws_parse(const char *text, struct jws *j)
{
	const char *d1 = strchr(text, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	unsigned char *raw;
	size_t n;

	assert_non_null(d2);
	assert_null(strchr(d2 + 1, '.'));
	raw = s_unb64url(text, (size_t)(d1 - text), &n);
	j->hdr = json_loadb((char *)raw, n, 0, NULL);
	free(raw);
	raw = s_unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &n);
	j->claims = json_loadb((char *)raw, n, 0, NULL);
	free(raw);
	assert_non_null(j->hdr);
	assert_non_null(j->claims);
	j->input = strndup(text, (size_t)(d2 - text));
	j->sig = s_unb64url(d2 + 1, strlen(d2 + 1), &j->sig_len);
}

static void s_jws_free(struct jws *j)
{
	json_decref(j->hdr);
	json_decref(j->claims);
	free(j->input);
	free(j->sig);
}

static const char *s_str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "(absent)";
}

/* Verifies j's signature with pub for alg, the way a server does. */
static int s_verify(const struct jws *j, EVP_PKEY *pub, const char *alg)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *der = NULL;
	const unsigned char *sig = j->sig;
	size_t sig_len = j->sig_len;
	int ok;

	if (strcmp(alg, "ES256") == 0) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		int n;

		/* JOSE: raw r || s, 32 bytes each; OpenSSL verifies DER. */
		if (j->sig_len != 64)
			return 0;
		ECDSA_SIG_set0(es, BN_bin2bn(j->sig, 32, NULL), BN_bin2bn(j->sig + 32, 32, NULL));
		n = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		sig = der;
		sig_len = (size_t)n;
	}
	ok = EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub) == 1;
	if (ok && strcmp(alg, "PS256") == 0)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok && EVP_DigestVerify(md, sig, sig_len, (unsigned char *)j->input,
	                            strlen(j->input)) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return ok;
}

/* A form field of a recorded body, raw, or NULL (static buffer). */
static const char *s_field(const fx_req *r, const char *name)
{
	static char v[4096];
	size_t n = strlen(name);

	for (const char *p = r->body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p + n + 1, "&"), p + n + 1);
			return v;
		}
	return NULL;
}

/* The client assertion of the i-th request, decoded. */
static void s_assertion(struct t *f, size_t i, struct jws *j)
{
	fx_req r = fx_sandbox_req(s_sb, i);

	assert_string_equal(s_field(&r, "grant_type"), "client_credentials");
	assert_string_equal(s_field(&r, "client_id"), "my-client");
	assert_string_equal(s_field(&r, "client_assertion_type"),
	                    "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer");
	assert_null(s_field(&r, "client_secret"));
	assert_null(fx_req_header(&r, "Authorization"));
	assert_non_null(s_field(&r, "client_assertion"));
	s_jws_parse(s_field(&r, "client_assertion"), j);
}

/* RFC 7523 §3 claims. */
static void s_check_claims(struct t *f, const struct jws *j, const char *aud)
{
	json_int_t now = fx_wall_ms / 1000;
	char *jti = s_b64url(fx_random_pattern, 16);

	assert_string_equal(s_str(j->claims, "iss"), "my-client");
	assert_string_equal(s_str(j->claims, "sub"), "my-client");
	assert_string_equal(s_str(j->claims, "aud"), aud ? aud : f->token_url);
	assert_int_equal(json_integer_value(json_object_get(j->claims, "iat")), now);
	assert_true(json_integer_value(json_object_get(j->claims, "exp")) > now);
	assert_true(json_integer_value(json_object_get(j->claims, "exp")) <= now + 300);
	/* The jti is the random source's: fresh per assertion. */
	assert_string_equal(s_str(j->claims, "jti"), jti);
	free(jti);
}

/* ---- private_key_jwt and client_secret_jwt --------------------------------- */

static void s_pkjwt(void **state, const char *alg, const char *key, EVP_PKEY *pub)
{
	struct t *f = *state;
	char extra[256], kid[16];
	struct jws j;

	snprintf(kid, sizeof(kid), "k-%s", alg);
	snprintf(extra, sizeof(extra), "client_auth = \"private_key_jwt\"; "
	         "client_key = \"file:%s\"; assertion_alg = \"%s\"; kid = \"%s\";", key, alg, kid);
	s_svc(f, "pk", extra);
	assert_int_equal(s_get(f, "pk", "GET", NULL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "Bearer tok-1");
	s_assertion(f, 0, &j);
	assert_string_equal(s_str(j.hdr, "alg"), alg);
	assert_string_equal(s_str(j.hdr, "kid"), kid);
	s_check_claims(f, &j, NULL);
	assert_true(s_verify(&j, pub, alg));
	/* A signature over anything else does not verify. */
	j.input[strlen(j.input) - 1] ^= 1;
	assert_false(s_verify(&j, pub, alg));
	s_jws_free(&j);
}

static void test_private_key_jwt_rs256(void **state)
{
	s_pkjwt(state, "RS256", "rsa.pem", g_rsa);
}

static void test_private_key_jwt_ps256(void **state)
{
	s_pkjwt(state, "PS256", "rsa.pem", g_rsa);
}

static void test_private_key_jwt_es256(void **state)
{
	s_pkjwt(state, "ES256", "ec.pem", g_ec);
}

static void test_private_key_jwt_encrypted_and_audience(void **state)
{
	struct t *f = *state;
	struct jws j;
	int fd;
	char *path;

	if (asprintf(&path, "%s/pass", s_fx->conf) < 0)
		abort();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "key-pass\n", 9), 9);
	close(fd);
	free(path);
	s_svc(f, "enc", "client_auth = \"private_key_jwt\"; client_key = \"file:ec-enc.pem\";\n"
	      "client_key_password = \"file:pass\"; assertion_audience = \"https://as.example\";");
	assert_int_equal(s_get(f, "enc", "GET", NULL, NULL, NULL), APICRED_OK);
	s_assertion(f, 0, &j);
	/* No assertion_alg: ES256 from the key type; no kid configured. */
	assert_string_equal(s_str(j.hdr, "alg"), "ES256");
	assert_null(json_object_get(j.hdr, "kid"));
	s_check_claims(f, &j, "https://as.example");
	assert_true(s_verify(&j, g_ec, "ES256"));
	s_jws_free(&j);
}

static void test_private_key_jwt_errors(void **state)
{
	struct t *f = *state;

	s_svc(f, "nokey", "client_auth = \"private_key_jwt\";");
	s_svc(f, "wrongalg", "client_auth = \"private_key_jwt\"; client_key = \"file:rsa.pem\";"
	      " assertion_alg = \"ES256\";");
	s_svc(f, "nopass", "client_auth = \"private_key_jwt\"; client_key = \"file:ec-enc.pem\";");
	s_svc(f, "badpass", "client_auth = \"private_key_jwt\"; client_key = \"file:ec-enc.pem\";"
	      " client_key_password = \"wrong\";");
	assert_int_equal(s_get(f, "nokey", "GET", NULL, NULL, NULL), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "nokey"));
	assert_non_null(strstr(apicred_errmsg(), "client_key: required by private_key_jwt"));
	assert_int_equal(s_get(f, "wrongalg", "GET", NULL, NULL, NULL), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "not a key for ES256"));
	assert_int_equal(s_get(f, "nopass", "GET", NULL, NULL, NULL), APICRED_ERR_SECRET);
	assert_non_null(strstr(apicred_errmsg(), "encrypted"));
	assert_int_equal(s_get(f, "badpass", "GET", NULL, NULL, NULL), APICRED_ERR_SECRET);
	assert_non_null(strstr(apicred_errmsg(), "wrong password"));
	assert_int_equal(fx_sandbox_count(s_sb), 0);
}

static void test_client_secret_jwt(void **state)
{
	struct t *f = *state;
	unsigned char mac[32];
	size_t mac_len = 0;
	struct jws j;

	s_svc(f, "hs", "client_auth = \"client_secret_jwt\"; client_secret = \"" SECRET "\";");
	assert_int_equal(s_get(f, "hs", "GET", NULL, NULL, NULL), APICRED_OK);
	s_assertion(f, 0, &j);
	assert_string_equal(s_str(j.hdr, "alg"), "HS256");
	s_check_claims(f, &j, NULL);
	assert_true(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, SECRET, strlen(SECRET),
	                      (unsigned char *)j.input, strlen(j.input), mac, sizeof(mac),
	                      &mac_len) != NULL);
	assert_int_equal(j.sig_len, 32);
	assert_memory_equal(j.sig, mac, 32);
	/* The secret itself never travels. */
	assert_null(strstr(fx_sandbox_req(s_sb, 0).body, SECRET));
	s_jws_free(&j);
}

/* tls_client_auth: no secret needed; client_id in the body, nothing else. */
static void test_tls_client_auth_needs_no_secret(void **state)
{
	struct t *f = *state;
	fx_req r;

	s_svc(f, "tls", "client_auth = \"tls_client_auth\";");
	s_svc(f, "basic", "client_auth = \"client_secret_basic\";");
	assert_int_equal(s_get(f, "tls", "GET", NULL, NULL, NULL), APICRED_OK);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(s_field(&r, "client_id"), "my-client");
	assert_null(s_field(&r, "client_secret"));
	assert_null(s_field(&r, "client_assertion"));
	assert_null(fx_req_header(&r, "Authorization"));
	/* The secret methods still require one, named. */
	assert_int_equal(s_get(f, "basic", "GET", NULL, NULL, NULL), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "client_secret: required"));
}

/* ---- DPoP ------------------------------------------------------------------- */

/* The public key of a proof's jwk header. */
static EVP_PKEY *s_jwk_key(json_t *jwk)
{
	unsigned char pub[65], *x, *y;
	size_t xl, yl;
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *k = NULL;

	assert_string_equal(s_str(jwk, "kty"), "EC");
	assert_string_equal(s_str(jwk, "crv"), "P-256");
	assert_null(json_object_get(jwk, "d")); /* never the private part */
	x = s_unb64url(s_str(jwk, "x"), strlen(s_str(jwk, "x")), &xl);
	y = s_unb64url(s_str(jwk, "y"), strlen(s_str(jwk, "y")), &yl);
	assert_int_equal(xl, 32);
	assert_int_equal(yl, 32);
	pub[0] = 0x04;
	memcpy(pub + 1, x, 32);
	memcpy(pub + 33, y, 32);
	OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
	OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub));
	params = OSSL_PARAM_BLD_to_param(b);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	EVP_PKEY_CTX_free(ctx);
	free(x);
	free(y);
	return k;
}

/* Decodes and verifies a DPoP proof; returns its claims (json_decref). */
static json_t *s_proof(const char *text, const char *htm, const char *htu)
{
	struct jws j;
	EVP_PKEY *k;
	json_t *c;

	assert_non_null(text);
	s_jws_parse(text, &j);
	assert_string_equal(s_str(j.hdr, "typ"), "dpop+jwt");
	assert_string_equal(s_str(j.hdr, "alg"), "ES256");
	k = s_jwk_key(json_object_get(j.hdr, "jwk"));
	assert_true(s_verify(&j, k, "ES256"));
	EVP_PKEY_free(k);
	assert_string_equal(s_str(j.claims, "htm"), htm);
	assert_string_equal(s_str(j.claims, "htu"), htu);
	assert_int_equal(json_integer_value(json_object_get(j.claims, "iat")), fx_wall_ms / 1000);
	assert_true(strlen(s_str(j.claims, "jti")) >= 22);
	c = json_incref(j.claims);
	s_jws_free(&j);
	return c;
}

static const char *s_ath(const char *token)
{
	static char out[64];
	unsigned char md[32];
	char *b;

	EVP_Digest(token, strlen(token), md, NULL, EVP_sha256(), NULL);
	b = s_b64url(md, sizeof(md));
	snprintf(out, sizeof(out), "%s", b);
	free(b);
	return out;
}

static void test_dpop_proofs(void **state)
{
	struct t *f = *state;
	char url[256], htu[256];
	fx_req r;
	json_t *c;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	snprintf(url, sizeof(url), "%s/api/v1/items?limit=5#top", f->base);
	snprintf(htu, sizeof(htu), "%s/api/v1/items", f->base);
	assert_int_equal(s_get(f, "dp", "POST", url, "{}", "application/json"), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "Authorization"), "DPoP tok-d");
	c = s_proof(fx_header(s_fx, "DPoP"), "POST", htu);
	assert_string_equal(s_str(c, "ath"), s_ath("tok-d"));
	assert_null(json_object_get(c, "nonce"));
	json_decref(c);

	/* The token request carried a proof too: for the token URL, no ath. */
	r = fx_sandbox_req(s_sb, 0);
	c = s_proof(fx_req_header(&r, "DPoP"), "POST", f->token_url);
	assert_null(json_object_get(c, "ath"));
	json_decref(c);

	/* Every request gets its own: method and URL follow it; the jti the
	 * random source. */
	fx_random_pattern[0] = 0xee;
	assert_int_equal(s_get(f, "dp", NULL, f->base, NULL, NULL), APICRED_OK);
	snprintf(htu, sizeof(htu), "%s", f->base);
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", htu);
	{
		char *jti = s_b64url(fx_random_pattern, 16);
		assert_string_equal(s_str(c, "jti"), jti);
		free(jti);
	}
	json_decref(c);
	assert_int_equal(fx_sandbox_count(s_sb), 1); /* one token for both */

	/* A proof needs the URL. */
	assert_int_equal(s_get(f, "dp", "GET", NULL, NULL, NULL), APICRED_ERR_INVALID);
	assert_non_null(strstr(apicred_errmsg(), "URL"));
}

/* DPoP tokens travel through the shared store only with dpop_key: a key
 * made per process is not the key of the process that would import it. */
static void test_dpop_shared_store(void **state)
{
	struct t *f = *state;
	char *conf;
	apicred_ctx *other;
	FILE *fp;
	json_t *c;

	if (asprintf(&conf, "%s/apicred.conf", s_fx->conf) < 0 || !(fp = fopen(conf, "w")))
		abort();
	fprintf(fp, "cache = { store = \"file:%s/store\"; };\n", s_fx->conf);
	fclose(fp);
	chmod(conf, 0600);
	free(conf);
	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dk", "client_secret = \"" SECRET "\"; dpop = true; dpop_key = \"file:ec.pem\";");
	s_svc(f, "dg", "client_secret = \"" SECRET "\"; dpop = true;");
	assert_int_equal(s_get(f, "dk", NULL, f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(s_get(f, "dg", NULL, f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);

	/* Another context (as another process): dk's token comes from the
	 * store, with its ath; dg fetches a token for its own key. */
	other = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, other, "dk", NULL, f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);
	assert_string_equal(fx_header(s_fx, "Authorization"), "DPoP tok-d");
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", f->base);
	assert_string_equal(s_str(c, "ath"), s_ath("tok-d"));
	json_decref(c);
	assert_int_equal(fx_request(s_fx, other, "dg", NULL, f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 3);
	apicred_close(other);
}

/* DPoP with a client assertion: the token request carries both. */
static void test_dpop_with_private_key_jwt(void **state)
{
	struct t *f = *state;
	fx_req r;
	struct jws j;
	json_t *c;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_auth = \"private_key_jwt\"; client_key = \"file:ec.pem\";\n"
	      "dpop = true; headers = ( \"X-Extra: 1\" );");
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	s_assertion(f, 0, &j);
	assert_true(s_verify(&j, g_ec, "ES256"));
	s_jws_free(&j);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(fx_req_header(&r, "X-Extra"), "1");
	c = s_proof(fx_req_header(&r, "DPoP"), "POST", f->token_url);
	json_decref(c);
	assert_string_equal(fx_header(s_fx, "Authorization"), "DPoP tok-d");
}

static void test_dpop_token_types(void **state)
{
	struct t *f = *state;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_OK);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	s_svc(f, "nodp", "client_secret = \"" SECRET "\";");
	s_svc(f, "dpprefix", "client_secret = \"" SECRET "\"; dpop = true; prefix = \"X \";");
	/* Asked for DPoP, got a bearer token: refused. */
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_ERR_PROTOCOL);
	assert_non_null(strstr(apicred_errmsg(), "not the DPoP-bound token"));
	/* A DPoP token without dpop = true: refused, naming the fix. */
	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	assert_int_equal(s_get(f, "nodp", "GET", f->base, NULL, NULL),
	                 APICRED_ERR_UNSUPPORTED);
	assert_non_null(strstr(apicred_errmsg(), "set dpop = true"));
	assert_int_equal(s_get(f, "dpprefix", "GET", f->base, NULL, NULL),
	                 APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "prefix: not with dpop"));
}

/* The token endpoint asks for a nonce: one retry carries it, and the next
 * fetch uses it from the start. */
static void test_dpop_token_endpoint_nonce(void **state)
{
	struct t *f = *state;
	fx_req r;
	json_t *c;
	int retry = 0;

	fx_sandbox_answer(s_sb, 400, "DPoP-Nonce: as-nonce-1\r\n",
	                         "{\"error\":\"use_dpop_nonce\",\"error_description\":\"x\"}");
	fx_sandbox_then(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);
	r = fx_sandbox_req(s_sb, 0);
	c = s_proof(fx_req_header(&r, "DPoP"), "POST", f->token_url);
	assert_null(json_object_get(c, "nonce"));
	json_decref(c);
	r = fx_sandbox_req(s_sb, 1);
	c = s_proof(fx_req_header(&r, "DPoP"), "POST", f->token_url);
	assert_string_equal(s_str(c, "nonce"), "as-nonce-1");
	json_decref(c);
	/* The AS nonce is not the resource server's. */
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", f->base);
	assert_null(json_object_get(c, "nonce"));
	json_decref(c);

	/* A revoked token: the next fetch sends the stored nonce at once. */
	assert_int_equal(apicred_report(f->ctx, "dp", s_fx->cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 3);
	r = fx_sandbox_req(s_sb, 2);
	c = s_proof(fx_req_header(&r, "DPoP"), "POST", f->token_url);
	assert_string_equal(s_str(c, "nonce"), "as-nonce-1");
	json_decref(c);

	/* Only one retry: a server that keeps asking fails the fetch. */
	fx_sandbox_answer(s_sb, 400, "DPoP-Nonce: as-nonce-2\r\n",
	                         "{\"error\":\"use_dpop_nonce\"}");
	assert_int_equal(apicred_report(f->ctx, "dp", s_fx->cred, 401, NULL, 0, &retry), APICRED_OK);
	assert_int_not_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_non_null(strstr(apicred_errmsg(), "use_dpop_nonce"));
	assert_int_equal(fx_sandbox_count(s_sb), 5);
}

/* Resource-server nonces handed over with the response's headers. */
static void test_dpop_resource_nonce(void **state)
{
	struct t *f = *state;
	const char *ask[] = { "Content-Type: application/json",
	                      "WWW-Authenticate: DPoP error=\"use_dpop_nonce\", "
	                      "error_description=\"nonce required\"",
	                      "DPoP-Nonce: rs-nonce-1", NULL };
	const char *fresh[] = { "dpop-nonce:  rs-nonce-2 ", NULL };
	const char *revoked[] = { "WWW-Authenticate: DPoP error=\"invalid_token\"", NULL };
	json_t *c;
	int retry = 0;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);

	/* 401 use_dpop_nonce: keep the token, retry once with the nonce. */
	assert_int_equal(apicred_report_headers(f->ctx, "dp", s_fx->cred, 401, ask, NULL, 0, &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 1); /* same token */
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", f->base);
	assert_string_equal(s_str(c, "nonce"), "rs-nonce-1");
	json_decref(c);

	/* A success may bring the next nonce (name in any case, value trimmed). */
	assert_int_equal(apicred_report_headers(f->ctx, "dp", s_fx->cred, 200, fresh, NULL, 0, &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", f->base);
	assert_string_equal(s_str(c, "nonce"), "rs-nonce-2");
	json_decref(c);

	/* A 401 for another reason drops the token, as without headers. */
	assert_int_equal(apicred_report_headers(f->ctx, "dp", s_fx->cred, 401, revoked, NULL, 0,
	                                        &retry), APICRED_OK);
	assert_int_equal(retry, 1);
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);
}

static size_t s_discard(char *p, size_t size, size_t n, void *user)
{
	return size * n;
}

/* apicred_curl_report reads status and headers from the handle. */
static void test_dpop_curl_report(void **state)
{
	struct t *f = *state;
	apicred_request req = APICRED_REQUEST_INIT;
	char url[128];
	CURL *h;
	json_t *c;
	int retry = 0;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	fx_sandbox_then(s_sb, 401,
	                       "WWW-Authenticate: DPoP error=\"use_dpop_nonce\"\r\n"
	                       "DPoP-Nonce: curl-nonce-1\r\n", "{\"error\":\"use_dpop_nonce\"}");
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	snprintf(url, sizeof(url), "%s/resource", f->base);
	req.url = url;
	h = curl_easy_init();
	assert_non_null(h);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* Before a transfer there is nothing to report. */
	assert_int_equal(apicred_curl_report(f->ctx, "dp", h, NULL, NULL, 0, &retry),
	                 APICRED_ERR_INVALID);
	assert_int_equal(apicred_curl_apply(f->ctx, "dp", h, &req, s_fx->cred), APICRED_OK);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_discard);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_int_equal(apicred_curl_report(f->ctx, "dp", h, s_fx->cred, NULL, 0, &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 1);
	curl_easy_cleanup(h);
	assert_int_equal(s_get(f, "dp", "GET", url, NULL, NULL), APICRED_OK);
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", url);
	assert_string_equal(s_str(c, "nonce"), "curl-nonce-1");
	json_decref(c);
}

/* A nonce that is not NQCHAR (RFC 9449 §8) is not put into proofs. */
static void test_dpop_bad_nonce_ignored(void **state)
{
	struct t *f = *state;
	const char *bad[] = { "DPoP-Nonce: has \"quote\"", NULL };
	json_t *c;
	int retry = 0;

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	assert_int_equal(apicred_report_headers(f->ctx, "dp", s_fx->cred, 200, bad, NULL, 0, &retry),
	                 APICRED_OK);
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	c = s_proof(fx_header(s_fx, "DPoP"), "GET", f->base);
	assert_null(json_object_get(c, "nonce"));
	json_decref(c);
}

/* Readers on several threads take the nonce while a writer keeps changing
 * it: a proof carries a whole nonce, the old one or the new one, never a
 * mix of the two (the seqlock in oauth2.c). */
#define S_THREADS 4
#define S_GETS 1000

static const char *const s_nonces[] = {
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
};

struct s_race {
	struct t *f;
	int bad;        /* proofs with a nonce that is neither */
	int seen;       /* proofs with a nonce */
	int failed;     /* apicred_get errors */
};

static void *s_reader(void *arg)
{
	struct s_race *r = arg;
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred;

	req.url = r->f->base;
	if (apicred_cred_new(&cred) != APICRED_OK)
		abort();
	for (int i = 0; i < S_GETS; i++) {
		const char *proof, *d1, *d2;
		char *text, *b;
		unsigned char *raw;
		json_t *c;
		int n;

		if (apicred_get(r->f->ctx, "dp", &req, cred) != APICRED_OK ||
		    !(proof = apicred_cred_find(cred, APICRED_HEADER, "DPoP")) ||
		    !(d1 = strchr(proof, '.')) || !(d2 = strchr(d1 + 1, '.'))) {
			__atomic_add_fetch(&r->failed, 1, __ATOMIC_RELAXED);
			continue;
		}
		/* The claims, decoded without cmocka (not on this thread). */
		text = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
		b = calloc(1, strlen(text) + 4);
		raw = calloc(1, strlen(text) + 4);
		for (size_t k = 0; text[k]; k++)
			b[k] = text[k] == '-' ? '+' : text[k] == '_' ? '/' : text[k];
		while (strlen(b) % 4)
			strcat(b, "=");
		n = EVP_DecodeBlock(raw, (unsigned char *)b, (int)strlen(b));
		c = n > 0 ? json_loads((char *)raw, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
		if (!c) {
			__atomic_add_fetch(&r->failed, 1, __ATOMIC_RELAXED);
		} else if (json_object_get(c, "nonce")) {
			const char *v = json_string_value(json_object_get(c, "nonce"));

			__atomic_add_fetch(&r->seen, 1, __ATOMIC_RELAXED);
			if (!v || (strcmp(v, s_nonces[0]) != 0 && strcmp(v, s_nonces[1]) != 0))
				__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
		}
		json_decref(c);
		free(text);
		free(b);
		free(raw);
	}
	apicred_cred_free(cred);
	return NULL;
}

static void test_dpop_nonce_race(void **state)
{
	struct t *f = *state;
	struct s_race r = { .f = f };
	pthread_t t[S_THREADS];
	char line[300];
	const char *hdrs[2] = { line, NULL };

	fx_sandbox_answer(s_sb, 200, NULL, TOKEN_DPOP);
	s_svc(f, "dp", "client_secret = \"" SECRET "\"; dpop = true;");
	assert_int_equal(s_get(f, "dp", "GET", f->base, NULL, NULL), APICRED_OK);
	snprintf(line, sizeof(line), "DPoP-Nonce: %s", s_nonces[1]);
	assert_int_equal(apicred_report_headers(f->ctx, "dp", NULL, 200, hdrs, NULL, 0, NULL),
	                 APICRED_OK);
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, s_reader, &r), 0);
	for (int i = 0; i < 2 * S_GETS; i++) {
		snprintf(line, sizeof(line), "DPoP-Nonce: %s", s_nonces[i % 2]);
		assert_int_equal(apicred_report_headers(f->ctx, "dp", NULL, 200, hdrs, NULL, 0, NULL),
		                 APICRED_OK);
	}
	for (int i = 0; i < S_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.bad, 0);
	/* A nonce was set before the readers began, so proofs carry one (a
	 * reader that finds the writer mid-store for long sends none rather
	 * than wait: apply never blocks). */
	assert_true(r.seen > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_private_key_jwt_rs256, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_shared_store, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_private_key_jwt_ps256, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_private_key_jwt_es256, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_private_key_jwt_encrypted_and_audience, s_setup,
		                                s_teardown),
		cmocka_unit_test_setup_teardown(test_private_key_jwt_errors, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_client_secret_jwt, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_tls_client_auth_needs_no_secret, s_setup,
		                                s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_proofs, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_with_private_key_jwt, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_token_types, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_token_endpoint_nonce, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_resource_nonce, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_curl_report, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_bad_nonce_ignored, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dpop_nonce_race, s_setup, s_teardown),
	};
	int rc;

	g_rsa = EVP_RSA_gen(2048);
	g_ec = EVP_EC_gen("P-256");
	if (!g_rsa || !g_ec)
		abort();
	rc = cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
	EVP_PKEY_free(g_rsa);
	EVP_PKEY_free(g_ec);
	return rc;
}
