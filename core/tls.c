/*
 * ssl_ctx.c - apicred_ssl_ctx_apply(): the TLS items of a credential put
 * on an OpenSSL SSL_CTX, for applications that speak TLS themselves.
 *
 * It does for an SSL_CTX what apicred_curl_apply() does for libcurl: client
 * certificate chain and key (parsed from memory, never from a file), CA file
 * or directory, pinned server keys and the minimum version, and peer
 * verification switched on. The host name is per connection, so the
 * application still calls SSL_set1_host() on each SSL.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "internal.h"

static const char *s_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r ? r : "unknown OpenSSL error";
}

/* Pinned keys live with the SSL_CTX (ex_data, freed with it): the verify
 * callback's argument must outlive every handshake made with the ctx. */
struct s_pins {
	size_t n;
	unsigned char sha256[][32];
};

static int s_pins_index = -1;
static pthread_once_t s_pins_once = PTHREAD_ONCE_INIT;

static void s_pins_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	OPENSSL_free(ptr);
}

static void s_pins_init(void)
{
	s_pins_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, s_pins_free);
}

/* Chain verification as usual, then the leaf's SubjectPublicKeyInfo must
 * hash to one of the pins: like CURLOPT_PINNEDPUBLICKEY, a pin narrows
 * verification, it never replaces it. */
static int s_verify_pinned(X509_STORE_CTX *xs, void *arg)
{
	const struct s_pins *pins = arg;
	unsigned char *der = NULL, md[32];
	unsigned int md_len = 0;
	X509 *leaf;
	int ok, len;

	ok = X509_verify_cert(xs);
	if (ok <= 0)
		return ok;
	leaf = X509_STORE_CTX_get0_cert(xs);
	len = leaf ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der) : -1;
	ok = len > 0 && EVP_Digest(der, (size_t)len, md, &md_len, EVP_sha256(), NULL);
	OPENSSL_free(der);
	for (size_t i = 0; ok && i < pins->n; i++)
		if (memcmp(md, pins->sha256[i], sizeof(md)) == 0)
			return 1;
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* "sha256//BASE64;sha256//BASE64" (curl's syntax) to digests. */
static int s_set_pins(SSL_CTX *ctx, const char *text)
{
	static const char prefix[] = "sha256//";
	struct s_pins *pins, *old;
	size_t n = 1;

	for (const char *p = text; *p; p++)
		n += *p == ';';
	pins = OPENSSL_zalloc(sizeof(*pins) + n * sizeof(pins->sha256[0]));
	if (!pins)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	for (const char *p = text; *p; pins->n++) {
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		unsigned char raw[48];

		if (len != strlen(prefix) + 44 || strncmp(p, prefix, strlen(prefix)) != 0
		    || EVP_DecodeBlock(raw, (const unsigned char *)p + strlen(prefix), 44) != 33) {
			OPENSSL_free(pins);
			return ac_error(APICRED_ERR_TLS,
			                      "pinned_pubkey: \"%.*s\" is not sha256//BASE64",
			                      (int)len, p);
		}
		memcpy(pins->sha256[pins->n], raw, 32);
		p += len + (end != NULL);
	}
	pthread_once(&s_pins_once, s_pins_init);
	old = s_pins_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx, s_pins_index);
	if (s_pins_index < 0 || !SSL_CTX_set_ex_data(ctx, s_pins_index, pins)) {
		OPENSSL_free(pins);
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	OPENSSL_free(old);
	SSL_CTX_set_cert_verify_callback(ctx, s_verify_pinned, pins);
	return APICRED_OK;
}

/* The key item is unencrypted PEM; a callback that refuses keeps OpenSSL
 * from ever prompting on a terminal. */
static int s_no_password(char *buf, int size, int rwflag, void *user)
{
	(void)buf, (void)size, (void)rwflag, (void)user;
	return -1;
}

static int s_set_cert_key(SSL_CTX *ctx, const char *cert, size_t cert_len,
                          const char *key, size_t key_len)
{
	BIO *b = BIO_new_mem_buf(cert, (int)cert_len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, s_no_password, NULL) : NULL;
	EVP_PKEY *pkey;
	int ok;

	ok = x && SSL_CTX_use_certificate(ctx, x) && SSL_CTX_clear_chain_certs(ctx);
	X509_free(x);
	/* Intermediates follow the leaf; the chain takes ownership of each. */
	while (ok && (x = PEM_read_bio_X509(b, NULL, s_no_password, NULL)) != NULL) {
		if (!SSL_CTX_add0_chain_cert(ctx, x)) {
			X509_free(x);
			ok = 0;
		}
	}
	BIO_free(b);
	if (!ok)
		return ac_error(APICRED_ERR_TLS, "cert: cannot use the certificate: %s",
		                      s_reason());
	ERR_clear_error(); /* the "no start line" that ended the chain */

	b = BIO_new_mem_buf(key, (int)key_len);
	pkey = b ? PEM_read_bio_PrivateKey(b, NULL, s_no_password, NULL) : NULL;
	BIO_free(b);
	ok = pkey && SSL_CTX_use_PrivateKey(ctx, pkey) && SSL_CTX_check_private_key(ctx);
	EVP_PKEY_free(pkey);
	if (!ok)
		return ac_error(APICRED_ERR_TLS, "key: cannot use the private key: %s",
		                      s_reason());
	return APICRED_OK;
}

static int s_apply_inner(const apicred_cred *cred, SSL_CTX *ctx)
{
	const char *cert = NULL, *key = NULL, *ca_file = NULL, *ca_path = NULL;
	const char *pins = NULL, *min_tls = NULL;
	size_t cert_len = 0, key_len = 0;
	size_t n = apicred_cred_count(cred, APICRED_TLS);
	int rc;

	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t len;

		if (apicred_cred_item(cred, APICRED_TLS, i, &name, &value, &len) != APICRED_OK)
			continue;
		if (strcmp(name, "cert") == 0)
			cert = value, cert_len = len;
		else if (strcmp(name, "key") == 0)
			key = value, key_len = len;
		else if (strcmp(name, "ca_file") == 0)
			ca_file = value;
		else if (strcmp(name, "ca_path") == 0)
			ca_path = value;
		else if (strcmp(name, "pinned_pubkey") == 0)
			pins = value;
		else if (strcmp(name, "min_tls") == 0)
			min_tls = value;
	}
	if (!cert != !key)
		return ac_error(APICRED_ERR_TLS, "the credential has a %s without a %s",
		                      cert ? "certificate" : "key", cert ? "key" : "certificate");

	/* Verification first: whatever fails below, the ctx never ends up
	 * trusting more than it did. The application's callback is kept. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(ctx));
	if (min_tls) {
		int want = strcmp(min_tls, "1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
		long have = SSL_CTX_get_min_proto_version(ctx);

		/* Only ever raised: an application asking for more keeps it. */
		if ((have == 0 || have < want) && !SSL_CTX_set_min_proto_version(ctx, want))
			return ac_error(APICRED_ERR_TLS, "min_tls %s: not supported", min_tls);
	}
	if (pins && (rc = s_set_pins(ctx, pins)) != APICRED_OK)
		return rc;
	if ((ca_file || ca_path) && !SSL_CTX_load_verify_locations(ctx, ca_file, ca_path))
		return ac_error(APICRED_ERR_TLS, "CA %s: cannot load it: %s",
		                      ca_file ? ca_file : ca_path,
		                      s_reason());
	if (cert && (rc = s_set_cert_key(ctx, cert, cert_len, key, key_len)) != APICRED_OK)
		return rc;
	return APICRED_OK;
}

API int apicred_ssl_ctx_apply(const apicred_cred *cred, void *ssl_ctx)
{
	int rc;

	if (!cred || !ssl_ctx)
		return ac_error(APICRED_ERR_INVALID, "apicred_ssl_ctx_apply: %s is NULL",
		                      cred ? "ssl_ctx" : "cred");
	ERR_clear_error();
	rc = s_apply_inner(cred, ssl_ctx);
	/* The error queue is per thread: leave nothing for the application's
	 * next SSL_get_error() to misread. */
	ERR_clear_error();
	return rc;
}

int ac_curl_tls(void *easy, const apicred_cred *cred, const char *ca_file, const char *ca_path)
{
	CURL *c = easy;
	const char *v, *layer_file = NULL, *layer_path = NULL;
	size_t n = apicred_cred_count(cred, APICRED_TLS);
	CURLcode rc = CURLE_OK;

	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	/* Never below TLS 1.2, whatever libcurl's or OpenSSL's defaults are;
	 * a min_tls item may raise it. */
	rc |= curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_file)
		rc |= curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	if (ca_path)
		rc |= curl_easy_setopt(c, CURLOPT_CAPATH, ca_path);
	for (size_t i = 0; i < n; i++) {
		const char *name;
		size_t len;
		apicred_cred_item(cred, APICRED_TLS, i, &name, &v, &len);
		if (strcmp(name, "cert") == 0) {
			struct curl_blob b = { (void *)(uintptr_t)v, len, CURL_BLOB_COPY };
			rc |= curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &b);
			rc |= curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
		} else if (strcmp(name, "key") == 0) {
			struct curl_blob b = { (void *)(uintptr_t)v, len, CURL_BLOB_COPY };
			rc |= curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &b);
			rc |= curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
		} else if (strcmp(name, "ca_file") == 0) {
			layer_file = v;
		} else if (strcmp(name, "ca_path") == 0) {
			layer_path = v;
		} else if (strcmp(name, "pinned_pubkey") == 0) {
			rc |= curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, v);
		} else if (strcmp(name, "min_tls") == 0) {
			long ver = strcmp(v, "1.3") == 0 ? CURL_SSLVERSION_TLSv1_3 : CURL_SSLVERSION_TLSv1_2;
			rc |= curl_easy_setopt(c, CURLOPT_SSLVERSION, ver);
		}
	}
	/* A layer's CA replaces, never adds to, the global bundle and libcurl's
	 * built-in file and directory (NULL switches those off): a layer
	 * saying "the hub is signed by this CA" must not also trust every
	 * public CA. */
	if (layer_file || layer_path) {
		rc |= curl_easy_setopt(c, CURLOPT_CAINFO, layer_file);
		rc |= curl_easy_setopt(c, CURLOPT_CAPATH, layer_path);
	}
	if (rc != CURLE_OK)
		return ac_error(APICRED_ERR_TLS, "libcurl refused the TLS settings (is it built with "
		                "OpenSSL and new enough for in-memory certificates?)");
	return APICRED_OK;
}
