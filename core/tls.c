/*
 * tls.c - a credential's TLS items put on a libcurl handle (for the core's
 * own requests and apicred_curl_apply) or on an OpenSSL SSL_CTX
 * (apicred_ssl_ctx_apply, for applications that speak TLS themselves).
 *
 * Both read the items with one parser and follow one set of rules: client
 * certificate chain and key from memory, never from a file; peer
 * verification on; never below TLS 1.2 (min_tls may raise it); pinned keys
 * narrow verification, never replace it; and a layer's CA replaces the
 * trust the handle or SSL_CTX had, never adds to it: a layer saying "the
 * hub is signed by this CA" must not also trust every public CA. The host
 * name is per connection, so an SSL_CTX's application still calls
 * SSL_set1_host() on each SSL.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* ---- the items ------------------------------------------------------------ */

/* The TLS items of a credential; of each name the last one counts. */
struct s_items {
	const char *cert, *key;
	size_t cert_len, key_len;
	const char *ca_file, *ca_path, *pins, *min_tls;
};

AC_HOT static int s_items(const apicred_cred *cred, struct s_items *t)
{
	memset(t, 0, sizeof(*t));
	/* One pass over the items, on every apicred_curl_apply: most creds
	 * have no TLS item at all. NULL: the core's own request carries none. */
	for (size_t i = 0; cred && i < cred->nitems; i++) {
		const struct ac_item *it = &cred->items[i];
		const char *name = cred->arena + it->name_off, *value = cred->arena + it->value_off;

		if (it->kind != APICRED_TLS)
			continue;
		if (strcmp(name, "cert") == 0)
			t->cert = value, t->cert_len = it->value_len;
		else if (strcmp(name, "key") == 0)
			t->key = value, t->key_len = it->value_len;
		else if (strcmp(name, "ca_file") == 0)
			t->ca_file = value;
		else if (strcmp(name, "ca_path") == 0)
			t->ca_path = value;
		else if (strcmp(name, "pinned_pubkey") == 0)
			t->pins = value;
		else if (strcmp(name, "min_tls") == 0)
			t->min_tls = value;
	}
	if (!t->cert != !t->key)
		return ac_error(APICRED_ERR_TLS, "the credential has a %s without a %s",
		                t->cert ? "certificate" : "key", t->cert ? "key" : "certificate");
	return APICRED_OK;
}

static bool s_tls13(const struct s_items *t)
{
	return t->min_tls && strcmp(t->min_tls, "1.3") == 0;
}

bool ac_tls_pin(const char *pin, size_t len, unsigned char sha256[32])
{
	static const char prefix[] = "sha256//";
	const size_t plen = sizeof(prefix) - 1;
	unsigned char raw[48];

	/* 32 bytes are 44 characters of base64, the last one '=' and only it. */
	if (len != plen + 44 || strncmp(pin, prefix, plen) != 0 || pin[len - 1] != '=' ||
	    pin[len - 2] == '=' ||
	    EVP_DecodeBlock(raw, (const unsigned char *)pin + plen, 44) != 33)
		return false;
	if (sha256)
		memcpy(sha256, raw, 32);
	return true;
}

/* ---- on an SSL_CTX ---------------------------------------------------------- */

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

		if (!ac_tls_pin(p, len, pins->sha256[pins->n])) {
			OPENSSL_free(pins);
			return ac_error(APICRED_ERR_TLS,
			                "pinned_pubkey: \"%.*s\" is not sha256//BASE64", (int)len, p);
		}
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

/* The CA rule (see the top): a layer's CA becomes the SSL_CTX's only
 * trust. The new store is in place before anything is loaded into it, so
 * a CA that will not load leaves the ctx trusting nothing. */
static int s_set_ca(SSL_CTX *ctx, const struct s_items *t)
{
	X509_STORE *store;

	if (!t->ca_file && !t->ca_path)
		return APICRED_OK; /* the application's trust, as it set it up */
	if (!(store = X509_STORE_new()))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	SSL_CTX_set_cert_store(ctx, store); /* frees the old one */
	if (!SSL_CTX_load_verify_locations(ctx, t->ca_file, t->ca_path))
		return ac_error(APICRED_ERR_TLS, "CA %s: cannot load it: %s",
		                t->ca_file ? t->ca_file : t->ca_path, s_reason());
	return APICRED_OK;
}

static int s_apply_inner(const apicred_cred *cred, SSL_CTX *ctx)
{
	struct s_items t;
	int rc;

	if ((rc = s_items(cred, &t)) != APICRED_OK)
		return rc;
	/* Verification first: whatever fails below, the ctx never ends up
	 * trusting more than it did. The application's callback is kept. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(ctx));
	if (t.min_tls) {
		int want = s_tls13(&t) ? TLS1_3_VERSION : TLS1_2_VERSION;
		long have = SSL_CTX_get_min_proto_version(ctx);

		/* Only ever raised: an application asking for more keeps it. */
		if ((have == 0 || have < want) && !SSL_CTX_set_min_proto_version(ctx, want))
			return ac_error(APICRED_ERR_TLS, "min_tls %s: not supported", t.min_tls);
	}
	if (t.pins && (rc = s_set_pins(ctx, t.pins)) != APICRED_OK)
		return rc;
	if ((rc = s_set_ca(ctx, &t)) != APICRED_OK)
		return rc;
	if (t.cert && (rc = s_set_cert_key(ctx, t.cert, t.cert_len, t.key, t.key_len)) != APICRED_OK)
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

/* ---- on a libcurl handle ---------------------------------------------------- */

/* Whether this process ever put a client certificate on a libcurl handle.
 * Relaxed is enough: a handle that carries one reaches another thread
 * through the application's own synchronisation, which orders the store. */
static atomic_bool s_blobs_set;

AC_HOT static CURLcode s_curl_cert_key(CURL *c, const struct s_items *t)
{
	struct curl_blob cert = { (void *)(uintptr_t)t->cert, t->cert_len, CURL_BLOB_COPY };
	struct curl_blob key = { (void *)(uintptr_t)t->key, t->key_len, CURL_BLOB_COPY };
	CURLcode cc;

	/* None: a handle used for another service before must not present
	 * that service's certificate here (NULL clears what we set). Until a
	 * service has set one, no handle can hold ours: two setopts saved on
	 * every request of a process without client certificates. */
	if (!t->cert) {
		if (!atomic_load_explicit(&s_blobs_set, memory_order_relaxed))
			return CURLE_OK;
		if ((cc = curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, NULL)) != CURLE_OK)
			return cc;
		return curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, NULL);
	}
	atomic_store_explicit(&s_blobs_set, true, memory_order_relaxed);
	if ((cc = curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert)) != CURLE_OK ||
	    (cc = curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM")) != CURLE_OK ||
	    (cc = curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key)) != CURLE_OK)
		return cc;
	return curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
}

/* The CA rule (see the top): a layer's CA replaces apicred.conf's and
 * libcurl's built-in file and directory (NULL switches those off). */
AC_HOT static CURLcode s_curl_ca(CURL *c, const struct s_items *t, const char *ca_file,
                                 const char *ca_path)
{
	CURLcode cc;

	if (t->ca_file || t->ca_path) {
		if ((cc = curl_easy_setopt(c, CURLOPT_CAINFO, t->ca_file)) != CURLE_OK)
			return cc;
		return curl_easy_setopt(c, CURLOPT_CAPATH, t->ca_path);
	}
	if (ca_file && (cc = curl_easy_setopt(c, CURLOPT_CAINFO, ca_file)) != CURLE_OK)
		return cc;
	return ca_path ? curl_easy_setopt(c, CURLOPT_CAPATH, ca_path) : CURLE_OK;
}

int ac_curl_tls(void *easy, const apicred_cred *cred, const char *ca_file, const char *ca_path)
{
	CURL *c = easy;
	struct s_items t;
	CURLcode cc;
	int rc;

	if ((rc = s_items(cred, &t)) != APICRED_OK)
		return rc;
	if ((cc = curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L)) != CURLE_OK ||
	    (cc = curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L)) != CURLE_OK ||
	    (cc = curl_easy_setopt(c, CURLOPT_SSLVERSION, s_tls13(&t) ? (long)CURL_SSLVERSION_TLSv1_3
	                                                              : (long)CURL_SSLVERSION_TLSv1_2))
	    != CURLE_OK ||
	    (cc = s_curl_cert_key(c, &t)) != CURLE_OK ||
	    (t.pins && (cc = curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, t.pins)) != CURLE_OK) ||
	    (cc = s_curl_ca(c, &t, ca_file, ca_path)) != CURLE_OK)
		return ac_error(APICRED_ERR_TLS, "libcurl refused the TLS settings: %s (is it built "
		                "with OpenSSL and new enough for in-memory certificates?)",
		                curl_easy_strerror(cc));
	return APICRED_OK;
}
