/*
 * mtls: the TLS material of a service: a client certificate and its key,
 * the CA that signs the server, pinned server keys and a minimum version.
 *
 *   { provider = "mtls"; cert = "certs/client.pem"; key = "certs/client.key"; }
 *   { provider = "mtls"; pkcs12 = "certs/client.p12";
 *     pkcs12_password = "file:secrets/client.p12.pass";
 *     ca = "certs/hub-ca.pem"; min_tls = "1.3"; }
 *   { provider = "mtls"; ca = "/etc/ssl/hub"; pinned_pubkey = ( "sha256//..." ); }
 *
 * The last form has no client certificate: it only tightens the server
 * side (CA, pins, version) of a service that authenticates otherwise.
 *
 * Everything is loaded and checked with OpenSSL at init, so a bad file is
 * reported when the service loads, naming the file and the reason, rather
 * than as a handshake failure later. An encrypted key is decrypted here and
 * kept, re-encoded as unencrypted PEM, in memory only: libcurl takes it as a
 * blob and apicred_ssl_ctx_apply() parses it, so it never touches disk. It
 * is wiped at fini. The core watches the files (host->path) and re-creates
 * the layer when one changes, so a rotated certificate needs no restart and
 * the sessions of the layers below (tokens obtained with the old
 * certificate) are dropped with it.
 */
#define _GNU_SOURCE /* memmem, timegm */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "cert", APICRED_T_STRING, 0, NULL, NULL,
	  "client certificate: PEM file, leaf first, then any intermediates" },
	{ "key", APICRED_T_STRING, APICRED_F_SECRET_FILE, NULL, NULL,
	  "private key of cert: PEM file, not readable by others" },
	{ "key_password", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "password of an encrypted key (file:PATH, env:NAME or literal)" },
	{ "pkcs12", APICRED_T_STRING, APICRED_F_SECRET_FILE, NULL, NULL,
	  "client certificate and key as one PKCS#12 file, instead of cert + key" },
	{ "pkcs12_password", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL,
	  "password of the PKCS#12 file (file:PATH, env:NAME or literal)" },
	{ "ca", APICRED_T_STRING, 0, NULL, NULL,
	  "CA certificates for the server: PEM file or hashed directory" },
	{ "pinned_pubkey", APICRED_T_LIST, 0, NULL, NULL,
	  "accepted server public keys, each \"sha256//BASE64\"" },
	{ "min_tls", APICRED_T_STRING, 0, "1.2", "1.2|1.3", "lowest TLS version accepted" },
	{ "expiry_warn_days", APICRED_T_INT, 0, "30", NULL,
	  "log a warning when the certificate expires within this many days" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

#define S_MAX_FILE (1024 * 1024) /* no certificate or key file is larger */
#define S_MAX_ITEMS 11

struct s_item {
	const char *name;
	char *value; /* NUL-terminated; the "key" item is a secret */
	size_t len;
};

struct s_state {
	const apicred_host *host;
	struct s_item items[S_MAX_ITEMS];
	size_t n_items;
	char *cert_path;    /* cert or pkcs12, for messages; NULL without one */
	time_t not_after;   /* of the client certificate */
	char not_after_text[32];
};

/* What init builds before it becomes the state; freed on every failure. */
struct s_load {
	char *cert_path, *key_path, *p12_path, *ca_path;
	char *key_buf, *file_buf;
	size_t key_len, file_len;
	char *password;
	size_t password_len;
	X509 *leaf;
	STACK_OF(X509) *chain; /* intermediates after the leaf */
	EVP_PKEY *pkey;
};

static void s_load_free(const apicred_host *h, struct s_load *l)
{
	free(l->cert_path);
	free(l->key_path);
	free(l->p12_path);
	free(l->ca_path);
	h->wipe_free(h, l->key_buf, l->key_len);
	h->wipe_free(h, l->file_buf, l->file_len);
	if (l->password)
		h->secret_free(h, l->password, l->password_len);
	X509_free(l->leaf);
	sk_X509_pop_free(l->chain, X509_free);
	EVP_PKEY_free(l->pkey);
}

static void s_state_free(struct s_state *st)
{
	for (size_t i = 0; i < st->n_items; i++)
		st->host->wipe_free(st->host, st->items[i].value, st->items[i].len);
	free(st->cert_path);
	free(st);
}

/* ---- init ------------------------------------------------------------ */

/* The reason of the last OpenSSL error, then an empty queue: the queue is
 * per thread and libcurl reads it after a failed handshake, so nothing of
 * ours may stay on it. Reasons are static texts without key material. */
static const char *s_ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

/* Never let OpenSSL prompt on a terminal: with no password, decrypting
 * simply fails. */
struct s_pw {
	const char *value;
	size_t len;
};

static int s_password_cb(char *buf, int size, int rwflag, void *user)
{
	const struct s_pw *pw = user;

	(void)rwflag;
	if (!pw || !pw->value || pw->len > (size_t)size)
		return -1;
	memcpy(buf, pw->value, pw->len);
	return (int)pw->len;
}

/* All PEM certificates of a buffer, in order; DER when there is no PEM. */
static int s_parse_certs(const apicred_host *h, const char *what, const char *path,
                         const void *buf, size_t len, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	X509 *x;
	unsigned long e;

	if (!sk || !b) {
		sk_X509_free(sk);
		BIO_free(b);
		return h->error(h, APICRED_ERR_NOMEM, "out of memory");
	}
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(b, NULL, s_password_cb, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			break;
		}
	}
	BIO_free(b);
	/* The loop ends on "no start line" at the end of the text; any other
	 * error is a damaged certificate. */
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		sk_X509_pop_free(sk, X509_free);
		return h->error(h, APICRED_ERR_TLS, "%s %s: malformed certificate: %s", what,
		                path, s_ossl_reason());
	}
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		const unsigned char *p = buf;

		x = d2i_X509(NULL, &p, (long)len);
		ERR_clear_error();
		if (!x || !sk_X509_push(sk, x)) {
			X509_free(x);
			sk_X509_pop_free(sk, X509_free);
			return h->error(h, APICRED_ERR_TLS, "%s %s: no certificate found (PEM or DER)",
			                what, path);
		}
	}
	*out = sk;
	return APICRED_OK;
}

static int s_password(const apicred_host *h, struct s_load *l, const char *key)
{
	if (!h->cfg_str(h, key))
		return APICRED_OK;
	return h->secret(h, key, &l->password, &l->password_len);
}

static int s_load_pem(const apicred_host *h, struct s_load *l)
{
	STACK_OF(X509) *certs = NULL;
	struct s_pw pw = { l->password, l->password_len };
	BIO *b;
	int rc, encrypted;

	rc = h->read_file(h, "cert", &l->file_buf, &l->file_len);
	if (rc == APICRED_OK)
		rc = s_parse_certs(h, "cert", l->cert_path, l->file_buf, l->file_len, &certs);
	if (rc != APICRED_OK)
		return rc;
	l->leaf = sk_X509_shift(certs);
	l->chain = certs;

	rc = h->read_file(h, "key", &l->key_buf, &l->key_len);
	if (rc != APICRED_OK)
		return rc;
	/* Legacy "Proc-Type: 4,ENCRYPTED" and PKCS#8 "ENCRYPTED PRIVATE KEY". */
	encrypted = memmem(l->key_buf, l->key_len, "ENCRYPTED", 9) != NULL;
	if (encrypted && !l->password)
		return h->error(h, APICRED_ERR_TLS,
		                "key %s: the key is encrypted and no key_password is set",
		                l->key_path);
	if (!encrypted && l->password)
		h->log(h, LOG_NOTICE, "key %s is not encrypted: key_password is not used",
		       l->key_path);
	b = BIO_new_mem_buf(l->key_buf, (int)l->key_len);
	if (!b)
		return h->error(h, APICRED_ERR_NOMEM, "out of memory");
	ERR_clear_error();
	l->pkey = PEM_read_bio_PrivateKey(b, NULL, s_password_cb, &pw);
	BIO_free(b);
	if (!l->pkey) {
		const char *why = s_ossl_reason();

		if (encrypted)
			return h->error(h, APICRED_ERR_TLS,
			                "key %s: cannot decrypt it with key_password "
			                "(wrong password?): %s", l->key_path, why);
		return h->error(h, APICRED_ERR_TLS, "key %s: no PEM private key: %s",
		                l->key_path, why);
	}
	return APICRED_OK;
}

static int s_load_p12(const apicred_host *h, struct s_load *l)
{
	const unsigned char *p;
	const char *pass = l->password ? l->password : "";
	PKCS12 *p12;
	STACK_OF(X509) *ca = NULL;
	int rc;

	rc = h->read_file(h, "pkcs12", &l->key_buf, &l->key_len);
	if (rc != APICRED_OK)
		return rc;
	p = (const unsigned char *)l->key_buf;
	ERR_clear_error();
	p12 = d2i_PKCS12(NULL, &p, (long)l->key_len);
	if (!p12)
		return h->error(h, APICRED_ERR_TLS, "pkcs12 %s: not a PKCS#12 file: %s",
		                l->p12_path, s_ossl_reason());
	/* Like openssl pkcs12: no password means "" or, failing that, none. */
	if (PKCS12_mac_present(p12) && !PKCS12_verify_mac(p12, pass, -1)) {
		if (!l->password && PKCS12_verify_mac(p12, NULL, 0)) {
			pass = NULL;
		} else {
			PKCS12_free(p12);
			ERR_clear_error();
			return h->error(h, APICRED_ERR_TLS,
			                "pkcs12 %s: MAC check failed: %s", l->p12_path,
			                l->password ? "wrong pkcs12_password"
			                            : "it needs a pkcs12_password");
		}
	}
	if (!PKCS12_parse(p12, pass, &l->pkey, &l->leaf, &ca)) {
		PKCS12_free(p12);
		return h->error(h, APICRED_ERR_TLS, "pkcs12 %s: cannot read it: %s",
		                l->p12_path, s_ossl_reason());
	}
	PKCS12_free(p12);
	l->chain = ca ? ca : sk_X509_new_null();
	if (!l->chain)
		return h->error(h, APICRED_ERR_NOMEM, "out of memory");
	if (!l->leaf || !l->pkey)
		return h->error(h, APICRED_ERR_TLS, "pkcs12 %s: holds no %s", l->p12_path,
		                l->leaf ? "private key" : "certificate matching its key");
	return APICRED_OK;
}

static void s_iso_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Refuses a certificate outside its validity period at the host's wall
 * clock (injectable), and warns ahead of its expiry. */
static int s_check_validity(const apicred_host *h, const char *what, const char *path,
                            X509 *x, struct s_state *st)
{
	time_t now = (time_t)(h->now_wall_ms(h) / 1000);
	struct tm tm;
	char when[32];
	long long days = 30;

	if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		return h->error(h, APICRED_ERR_TLS, "%s %s: unreadable notAfter", what, path);
	st->not_after = timegm(&tm);
	s_iso_time(st->not_after, st->not_after_text, sizeof(st->not_after_text));
	if (!ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm))
		return h->error(h, APICRED_ERR_TLS, "%s %s: unreadable notBefore", what, path);
	if (timegm(&tm) > now) {
		s_iso_time(timegm(&tm), when, sizeof(when));
		return h->error(h, APICRED_ERR_TLS, "%s %s: the certificate is not valid before %s",
		                what, path, when);
	}
	if (st->not_after < now)
		return h->error(h, APICRED_ERR_TLS, "%s %s: the certificate expired on %s", what,
		                path, st->not_after_text);
	h->cfg_int(h, "expiry_warn_days", &days);
	if (days > 0 && st->not_after - now < days * 86400)
		h->log(h, LOG_WARNING, "%s %s: the certificate expires on %s, in %lld day(s)",
		       what, path, st->not_after_text,
		       (long long)((st->not_after - now) / 86400));
	return APICRED_OK;
}

static int s_add(const apicred_host *h, struct s_state *st, const char *name,
                 char *value, size_t len)
{
	if (!value)
		return h->error(h, APICRED_ERR_NOMEM, "out of memory");
	if (st->n_items == S_MAX_ITEMS) {
		h->wipe_free(h, value, len);
		return h->error(h, APICRED_ERR_INTERNAL, "too many TLS items");
	}
	st->items[st->n_items].name = name;
	st->items[st->n_items].value = value;
	st->items[st->n_items].len = len;
	st->n_items++;
	return APICRED_OK;
}

static int s_add_str(const apicred_host *h, struct s_state *st, const char *name,
                     const char *value)
{
	char *v = value ? strdup(value) : NULL;

	return s_add(h, st, name, v, v ? strlen(v) : 0);
}

/* The text a memory BIO holds, as a NUL-terminated copy. The BIO's buffer
 * is cleansed when freed (BUF_MEM_free), so a key copied out this way
 * leaves no other copy behind. */
static int s_add_bio(const apicred_host *h, struct s_state *st, const char *name, BIO *b)
{
	char *data, *v = NULL;
	long n = b ? BIO_get_mem_data(b, &data) : -1;

	if (n >= 0 && (v = malloc((size_t)n + 1)) != NULL) {
		memcpy(v, data, (size_t)n);
		v[n] = '\0';
	}
	BIO_free(b);
	return s_add(h, st, name, v, v ? (size_t)n : 0);
}

static BIO *s_name_bio(const X509_NAME *n)
{
	BIO *b = BIO_new(BIO_s_mem());

	/* "CN=client, O=Example": the order of the certificate, UTF-8 kept,
	 * control characters escaped (RFC 2253 rules). */
	if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_SEP_CPLUS_SPC | (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)) < 0) {
		BIO_free(b);
		return NULL;
	}
	return b;
}

static int s_add_cert(const apicred_host *h, struct s_state *st, struct s_load *l)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len;
	BIGNUM *bn;
	BIO *b = BIO_new(BIO_s_mem());
	char *s;
	int rc;

	for (int i = -1; b && i < sk_X509_num(l->chain); i++) {
		if (!PEM_write_bio_X509(b, i < 0 ? l->leaf : sk_X509_value(l->chain, i))) {
			BIO_free(b);
			b = NULL;
		}
	}
	rc = s_add_bio(h, st, "cert", b);

	/* Unencrypted PKCS#8: the key in the clear, in memory only. */
	b = BIO_new(BIO_s_secmem());
	if (b && !PEM_write_bio_PrivateKey(b, l->pkey, NULL, NULL, 0, NULL, NULL)) {
		BIO_free(b);
		b = NULL;
	}
	if (rc == APICRED_OK)
		rc = s_add_bio(h, st, "key", b);
	else
		BIO_free(b);

	if (rc == APICRED_OK)
		rc = s_add_bio(h, st, "cert_subject", s_name_bio(X509_get_subject_name(l->leaf)));
	if (rc == APICRED_OK)
		rc = s_add_bio(h, st, "cert_issuer", s_name_bio(X509_get_issuer_name(l->leaf)));
	if (rc == APICRED_OK) {
		bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(l->leaf), NULL);
		s = bn ? BN_bn2hex(bn) : NULL;
		rc = s_add_str(h, st, "cert_serial", s);
		OPENSSL_free(s);
		BN_free(bn);
	}
	if (rc == APICRED_OK) {
		s = X509_digest(l->leaf, EVP_sha256(), md, &md_len)
			? OPENSSL_buf2hexstr(md, md_len) : NULL;
		rc = s_add_str(h, st, "cert_sha256", s);
		OPENSSL_free(s);
	}
	if (rc == APICRED_OK)
		rc = s_add_str(h, st, "cert_not_after", st->not_after_text);
	ERR_clear_error();
	return rc;
}

/* ca: a directory is an OpenSSL hashed directory (c_rehash), anything
 * else a PEM bundle that must hold at least one certificate. */
static int s_add_ca(const apicred_host *h, struct s_state *st, struct s_load *l)
{
	STACK_OF(X509) *certs = NULL;
	char *buf = NULL;
	size_t len = 0;
	struct stat sb;
	int rc;

	if (stat(l->ca_path, &sb) != 0)
		return h->error(h, APICRED_ERR_TLS, "ca %s: %s", l->ca_path, strerror(errno));
	if (S_ISDIR(sb.st_mode)) {
		if (access(l->ca_path, R_OK | X_OK) != 0)
			return h->error(h, APICRED_ERR_TLS, "ca %s: %s", l->ca_path,
			                strerror(errno));
		return s_add_str(h, st, "ca_path", l->ca_path);
	}
	rc = h->read_file(h, "ca", &buf, &len);
	if (rc == APICRED_OK)
		rc = s_parse_certs(h, "ca", l->ca_path, buf, len, &certs);
	h->wipe_free(h, buf, len);
	sk_X509_pop_free(certs, X509_free);
	if (rc != APICRED_OK)
		return rc;
	return s_add_str(h, st, "ca_file", l->ca_path);
}

/* pinned_pubkey: a list of pins, each item also allowed to be curl's
 * "sha256//A;sha256//B", joined into curl's form. A pin is the SHA-256 of
 * the server's SubjectPublicKeyInfo, checked by the core's rule. */
static int s_add_pins(const apicred_host *h, struct s_state *st)
{
	size_t n = h->cfg_count(h, "pinned_pubkey"), size = 1, used = 0;
	const char *name, *item;
	char *joined;

	if (n == 0)
		return APICRED_OK;
	for (size_t i = 0; i < n; i++)
		if (h->cfg_item(h, "pinned_pubkey", i, &name, &item) == APICRED_OK && item)
			size += strlen(item) + 1;
	joined = malloc(size);
	if (!joined)
		return h->error(h, APICRED_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (h->cfg_item(h, "pinned_pubkey", i, &name, &item) != APICRED_OK)
			item = "";
		for (const char *p = item; ; ) {
			size_t len = strcspn(p, ";");

			if (!h->tls_pin_ok(h, p, len)) {
				free(joined);
				return h->error(h, APICRED_ERR_CONFIG,
				                "pinned_pubkey \"%.*s\": want sha256// and the "
				                "base64 of a SHA-256 digest (openssl x509 -pubkey "
				                "-noout | openssl pkey -pubin -outform der | openssl "
				                "dgst -sha256 -binary | base64)", (int)len, p);
			}
			used += (size_t)sprintf(joined + used, "%s%.*s", used ? ";" : "",
			                        (int)len, p);
			if (!p[len])
				break;
			p += len + 1;
		}
	}
	return s_add(h, st, "pinned_pubkey", joined, used);
}

static int s_paths(const apicred_host *h, struct s_load *l)
{
	static const struct { const char *key; size_t off; } keys[] = {
		{ "cert", offsetof(struct s_load, cert_path) },
		{ "key", offsetof(struct s_load, key_path) },
		{ "pkcs12", offsetof(struct s_load, p12_path) },
		{ "ca", offsetof(struct s_load, ca_path) },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char **p = (char **)((char *)l + keys[i].off);
		int rc;

		if (!h->cfg_str(h, keys[i].key))
			continue;
		rc = h->path(h, keys[i].key, p);
		if (rc != APICRED_OK)
			return rc;
	}
	if (l->p12_path && (l->cert_path || l->key_path))
		return h->error(h, APICRED_ERR_CONFIG, "set either cert + key or pkcs12, not both");
	if (!l->cert_path != !l->key_path)
		return h->error(h, APICRED_ERR_CONFIG, "%s is set without %s",
		                l->cert_path ? "cert" : "key", l->cert_path ? "key" : "cert");
	if (h->cfg_str(h, "key_password") && !l->key_path)
		return h->error(h, APICRED_ERR_CONFIG, "key_password is set without key");
	if (h->cfg_str(h, "pkcs12_password") && !l->p12_path)
		return h->error(h, APICRED_ERR_CONFIG, "pkcs12_password is set without pkcs12");
	return APICRED_OK;
}

static int s_init(const apicred_host *host, void **state)
{
	struct s_load l = { 0 };
	struct s_state *st = calloc(1, sizeof(*st));
	int rc;

	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	rc = s_paths(host, &l);
	if (rc == APICRED_OK && l.cert_path) {
		rc = s_password(host, &l, "key_password");
		if (rc == APICRED_OK)
			rc = s_load_pem(host, &l);
		st->cert_path = l.cert_path;
		l.cert_path = NULL;
	} else if (rc == APICRED_OK && l.p12_path) {
		rc = s_password(host, &l, "pkcs12_password");
		if (rc == APICRED_OK)
			rc = s_load_p12(host, &l);
		st->cert_path = l.p12_path;
		l.p12_path = NULL;
	}
	if (rc == APICRED_OK && st->cert_path) {
		const char *what = l.key_path ? "cert" : "pkcs12";

		ERR_clear_error();
		if (!X509_check_private_key(l.leaf, l.pkey)) {
			ERR_clear_error();
			if (l.key_path)
				rc = host->error(host, APICRED_ERR_TLS,
				                 "key %s does not match cert %s", l.key_path,
				                 st->cert_path);
			else
				rc = host->error(host, APICRED_ERR_TLS,
				                 "pkcs12 %s: its key does not match its certificate",
				                 st->cert_path);
		}
		if (rc == APICRED_OK)
			rc = s_check_validity(host, what, st->cert_path, l.leaf, st);
		if (rc == APICRED_OK)
			rc = s_add_cert(host, st, &l);
	}
	if (rc == APICRED_OK && l.ca_path)
		rc = s_add_ca(host, st, &l);
	if (rc == APICRED_OK)
		rc = s_add_pins(host, st);
	if (rc == APICRED_OK)
		rc = s_add_str(host, st, "min_tls", host->cfg_str(host, "min_tls"));
	s_load_free(host, &l);
	ERR_clear_error();
	if (rc != APICRED_OK) {
		s_state_free(st);
		return rc;
	}
	*state = st;
	/* The same items until the certificate expires (apply then refuses). */
	if (!APICRED_HOST_HAS(host, apply_static))
		return APICRED_OK;
	return host->apply_static(host, st->cert_path ? ((int64_t)st->not_after + 1) * 1000 : 0);
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	const struct s_state *st = state;

	/* A certificate can expire while the process runs: say so rather than
	 * let the server fail the handshake without a reason. */
	if (st->cert_path && (time_t)(host->now_wall_ms(host) / 1000) > st->not_after)
		return host->error(host, APICRED_ERR_TLS, "cert %s: the certificate expired on %s",
		                   st->cert_path, st->not_after_text);
	for (size_t i = 0; i < st->n_items; i++) {
		int rc = host->add_tls(out, st->items[i].name, st->items[i].value,
		                       st->items[i].len);

		if (rc != APICRED_OK)
			return rc;
	}
	return APICRED_OK;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	s_state_free(state);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "mtls",
	.schema = s_schema,
	.init = s_init,
	.apply = s_apply,
	.fini = s_fini,
};

APICRED_PROVIDER_V1(s_vtable)
