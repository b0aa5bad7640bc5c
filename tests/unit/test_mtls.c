/*
 * test_mtls.c - the mtls provider through the real library, and
 * apicred_ssl_ctx_apply() through real TLS handshakes.
 *
 * Certificates and keys are made here with OpenSSL (EC P-256, fast) into the
 * fixture's confdir: nothing is committed. The wall clock is injected, so
 * expiry is tested without waiting or dated certificates. Handshakes run in
 * memory over a BIO pair: a server SSL_CTX that requires a client
 * certificate from the client CA, and a client SSL_CTX that has nothing but
 * what apicred_ssl_ctx_apply() put on it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fixture.h"

/* Split so that no committed file looks like it holds a key. */
#define S_PKCS8_HEADER "-----BEGIN PRIVATE" " KEY-----"

#define DAY_MS (86400LL * 1000)

/* ---- certificates ---------------------------------------------------- */

struct pki {
	EVP_PKEY *ca_key, *other_ca_key, *client_key, *client2_key, *server_key, *stray_key;
	X509 *ca, *other_ca, *client, *client2, *server, *other_client;
};

static struct pki s_pki;

static X509 *s_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                    long from_days, long to_days, int ca, const char *san)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	static long serial = 1000;

	assert_non_null(x);
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++));
	assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	                                       (const unsigned char *)cn, -1, -1, 0));
	assert_true(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	                                       (const unsigned char *)"apicred test", -1, -1, 0));
	assert_true(X509_set_subject_name(x, name));
	assert_true(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name));
	X509_NAME_free(name);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400));
	assert_true(X509_set_pubkey(x, key));
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	                          ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	assert_non_null(ext);
	assert_true(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
	if (san) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
		assert_non_null(ext);
		assert_true(X509_add_ext(x, ext, -1));
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static int s_setup_pki(void **state)
{
	struct pki *p = &s_pki;

	p->ca_key = EVP_EC_gen("P-256");
	p->other_ca_key = EVP_EC_gen("P-256");
	p->client_key = EVP_EC_gen("P-256");
	p->client2_key = EVP_EC_gen("P-256");
	p->server_key = EVP_EC_gen("P-256");
	p->stray_key = EVP_EC_gen("P-256");
	p->ca = s_cert("test CA", p->ca_key, NULL, NULL, -1, 3650, 1, NULL);
	p->other_ca = s_cert("other CA", p->other_ca_key, NULL, NULL, -1, 3650, 1, NULL);
	/* Valid from now - 1 day to now + 20 days (so within the default
	 * 30-day warning window, but not within 10). */
	p->client = s_cert("client", p->client_key, p->ca, p->ca_key, -1, 20, 0, NULL);
	p->client2 = s_cert("client2", p->client2_key, p->ca, p->ca_key, -1, 365, 0, NULL);
	p->other_client = s_cert("stranger", p->client_key, p->other_ca, p->other_ca_key,
	                         -1, 365, 0, NULL);
	p->server = s_cert("127.0.0.1", p->server_key, p->ca, p->ca_key, -1, 365, 0,
	                   "IP:127.0.0.1");
	return 0;
}

static int s_teardown_pki(void **state)
{
	struct pki *p = &s_pki;

	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->other_ca_key);
	EVP_PKEY_free(p->client_key);
	EVP_PKEY_free(p->client2_key);
	EVP_PKEY_free(p->server_key);
	EVP_PKEY_free(p->stray_key);
	X509_free(p->ca);
	X509_free(p->other_ca);
	X509_free(p->client);
	X509_free(p->client2);
	X509_free(p->other_client);
	X509_free(p->server);
	return 0;
}

static void s_path(fx *f, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/certs/%s", f->conf, name);
}

static void s_write_cert(fx *f, const char *name, X509 *x, X509 *chain)
{
	char path[700];
	FILE *fp;

	s_path(f, name, path, sizeof(path));
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_true(PEM_write_X509(fp, x));
	if (chain)
		assert_true(PEM_write_X509(fp, chain));
	assert_int_equal(fclose(fp), 0);
}

/* Writes a key as a new file (new inode, as an admin's mv would). */
static void s_write_key(fx *f, const char *name, EVP_PKEY *k, const char *password,
                        mode_t mode)
{
	char path[700], tmp[720];
	FILE *fp;

	s_path(f, name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	assert_int_equal(fchmod(fileno(fp), 0600), 0);
	assert_true(PEM_write_PrivateKey(fp, k, password ? EVP_aes_256_cbc() : NULL,
	                                 (const unsigned char *)password,
	                                 password ? (int)strlen(password) : 0, NULL, NULL));
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(tmp, mode), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void s_write_p12(fx *f, const char *name, const char *password)
{
	char path[700];
	PKCS12 *p12 = PKCS12_create(password, "client", s_pki.client_key, s_pki.client,
	                            NULL, 0, 0, 0, 0, 0);
	FILE *fp;

	assert_non_null(p12);
	s_path(f, name, path, sizeof(path));
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fchmod(fileno(fp), 0600), 0);
	assert_true(i2d_PKCS12_fp(fp, p12));
	assert_int_equal(fclose(fp), 0);
	PKCS12_free(p12);
}

/* "sha256//BASE64" of a key's SubjectPublicKeyInfo. */
static char *s_pin(EVP_PKEY *k)
{
	unsigned char *der = NULL, md[32];
	unsigned int md_len;
	int len = i2d_PUBKEY(k, &der);
	char *pin = malloc(8 + 45);

	assert_true(len > 0);
	assert_true(EVP_Digest(der, (size_t)len, md, &md_len, EVP_sha256(), NULL));
	OPENSSL_free(der);
	memcpy(pin, "sha256//", 8);
	assert_int_equal(EVP_EncodeBlock((unsigned char *)pin + 8, md, 32), 44);
	return pin;
}

/* A fixture holding the certificates, not yet opened. */
static fx *s_fx(void)
{
	fx *f = fx_new();
	char dir[700];

	snprintf(dir, sizeof(dir), "%s/certs", f->conf);
	assert_int_equal(mkdir(dir, 0700), 0);
	fx_module(f, "mtls");
	s_write_cert(f, "ca.pem", s_pki.ca, NULL);
	s_write_cert(f, "other-ca.pem", s_pki.other_ca, NULL);
	s_write_cert(f, "client.pem", s_pki.client, NULL);
	s_write_cert(f, "client-chain.pem", s_pki.client, s_pki.ca);
	s_write_cert(f, "client2.pem", s_pki.client2, NULL);
	s_write_cert(f, "stranger.pem", s_pki.other_client, NULL);
	s_write_key(f, "client.key", s_pki.client_key, NULL, 0600);
	s_write_key(f, "client2.key", s_pki.client2_key, NULL, 0600);
	s_write_key(f, "stray.key", s_pki.stray_key, NULL, 0600);
	/* The injected clocks: wall time from now, as the certificates are. */
	f->hooks = FX_CLOCK;
	fx_wall_ms = (int64_t)time(NULL) * 1000;
	return f;
}

static const char *s_tls(fx *f, const char *name)
{
	return apicred_cred_find(f->cred, APICRED_TLS, name);
}

/* No message and no log line may hold key material. */
static void s_assert_no_key(fx *f, const char *msg)
{
	if (msg && strstr(msg, "PRIVATE KEY"))
		fail_msg("key material in a message");
	if (f->log && strstr(f->log, "PRIVATE KEY"))
		fail_msg("key material in the log");
}

/* ---- the provider ---------------------------------------------------- */

static void test_items(void **state)
{
	fx *f = s_fx();
	unsigned char md[32];
	unsigned int md_len;
	char *fp, ca[700];
	const char *key;

	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client-chain.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\"; min_tls = \"1.3\"; });\n");
	/* A group of readers (0640 root:apicred) is the one rule for key files
	 * as for secrets. */
	s_path(f, "client.key", ca, sizeof(ca));
	assert_int_equal(chmod(ca, 0640), 0);
	fx_open(f);
	assert_int_equal(fx_get(f, "hub"), APICRED_OK);

	assert_non_null(strstr(s_tls(f, "cert"), "-----BEGIN CERTIFICATE-----"));
	/* leaf and the intermediate that followed it */
	assert_non_null(strstr(strstr(s_tls(f, "cert"), "-----END CERTIFICATE-----"),
	                       "-----BEGIN CERTIFICATE-----"));
	key = s_tls(f, "key");
	assert_non_null(key);
	assert_non_null(strstr(key, S_PKCS8_HEADER));
	assert_string_equal(s_tls(f, "cert_subject"), "CN=client, O=apicred test");
	assert_string_equal(s_tls(f, "cert_issuer"), "CN=test CA, O=apicred test");
	assert_non_null(s_tls(f, "cert_serial"));
	assert_true(X509_digest(s_pki.client, EVP_sha256(), md, &md_len));
	fp = OPENSSL_buf2hexstr(md, md_len);
	assert_string_equal(s_tls(f, "cert_sha256"), fp);
	OPENSSL_free(fp);
	assert_int_equal(strlen(s_tls(f, "cert_not_after")), 20); /* 2026-01-31T12:00:00Z */
	s_path(f, "ca.pem", ca, sizeof(ca));
	assert_string_equal(s_tls(f, "ca_file"), ca);
	assert_string_equal(s_tls(f, "min_tls"), "1.3");
	assert_null(s_tls(f, "pinned_pubkey"));
	/* 20 days left, the default warning window is 30 days. */
	assert_true(fx_logged(f, "expires on"));
	fx_free(f);
}

static void test_no_warning_outside_window(void **state)
{
	fx *f = s_fx();

	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; expiry_warn_days = 10; });\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "hub"), APICRED_OK);
	assert_false(fx_logged(f, "expires on"));
	assert_string_equal(s_tls(f, "min_tls"), "1.2"); /* the default */
	fx_free(f);
}

static void test_expired_and_not_yet_valid(void **state)
{
	fx *f = s_fx();
	int rc;

	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; });\n");
	fx_wall_ms += 21 * DAY_MS;
	fx_open(f);
	rc = fx_get(f, "hub");
	fx_assert_err(f, rc, APICRED_ERR_TLS, "hub", "client.pem", "expired", NULL);
	fx_free(f);

	f = s_fx();
	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; });\n");
	fx_wall_ms -= 2 * DAY_MS;
	fx_open(f);
	rc = fx_get(f, "hub");
	fx_assert_err(f, rc, APICRED_ERR_TLS, "hub", "client.pem", "not valid before", NULL);
	fx_free(f);
}

/* Loaded while valid, then the clock passes notAfter: the next get says
 * so instead of handing out a certificate the server will refuse. */
static void test_expires_while_running(void **state)
{
	fx *f = s_fx();
	int rc;

	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; });\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "hub"), APICRED_OK);
	fx_wall_ms += 21 * DAY_MS;
	rc = fx_get(f, "hub");
	fx_assert_err(f, rc, APICRED_ERR_TLS, "hub", "client.pem", "expired", NULL);
	fx_free(f);
}

static void test_bad_material(void **state)
{
	static const struct {
		const char *layer, *want1, *want2;
		int code;
	} cases[] = {
		{ "cert = \"certs/client.pem\"; key = \"certs/stray.key\";",
		  "stray.key", "does not match", APICRED_ERR_TLS },
		{ "cert = \"certs/client.pem\"; key = \"certs/enc.key\";",
		  "enc.key", "no key_password", APICRED_ERR_TLS },
		{ "cert = \"certs/client.pem\"; key = \"certs/enc.key\"; "
		  "key_password = \"file:secrets/wrong\";",
		  "enc.key", "wrong password", APICRED_ERR_TLS },
		{ "pkcs12 = \"certs/client.p12\"; pkcs12_password = \"file:secrets/wrong\";",
		  "client.p12", "wrong pkcs12_password", APICRED_ERR_TLS },
		{ "pkcs12 = \"certs/client.p12\";",
		  "client.p12", "needs a pkcs12_password", APICRED_ERR_TLS },
		{ "cert = \"certs/client.pem\"; key = \"certs/loose.key\";",
		  "loose.key", "mode 0644", APICRED_ERR_SECRET },
		{ "pkcs12 = \"certs/loose.p12\"; pkcs12_password = \"file:secrets/p12pass\";",
		  "loose.p12", "mode 0604", APICRED_ERR_SECRET },
		{ "cert = \"certs/client.key\"; key = \"certs/client.key\";",
		  "client.key", "no certificate", APICRED_ERR_TLS },
		{ "cert = \"certs/client.pem\"; key = \"certs/private.pem\";",
		  "private.pem", "no PEM private key", APICRED_ERR_TLS },
		{ "cert = \"certs/missing.pem\"; key = \"certs/client.key\";",
		  "missing.pem", "No such file", APICRED_ERR_CONFIG },
		{ "cert = \"certs/client.pem\"; key = \"certs/fifo.key\";",
		  "fifo.key", "not a regular file", APICRED_ERR_SECRET },
		{ "cert = \"certs/client.pem\";", "cert", "without key", APICRED_ERR_CONFIG },
		{ "cert = \"certs/client.pem\"; key = \"certs/client.key\"; "
		  "pkcs12 = \"certs/client.p12\";", "pkcs12", "not both", APICRED_ERR_CONFIG },
		{ "ca = \"certs/client.key\";", "client.key", "no certificate", APICRED_ERR_TLS },
		{ "ca = \"certs/nowhere\";", "nowhere", "No such file", APICRED_ERR_CONFIG },
		{ "pinned_pubkey = \"sha256//tooshort\";", "pinned_pubkey", "sha256//",
		  APICRED_ERR_CONFIG },
		{ "pinned_pubkey = \"sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\";",
		  "pinned_pubkey", "base64", APICRED_ERR_CONFIG },
	};
	fx *f = s_fx();
	char path[700];

	s_write_key(f, "enc.key", s_pki.client_key, "right-pass-1234", 0600);
	s_write_key(f, "loose.key", s_pki.client_key, NULL, 0644);
	s_write_p12(f, "client.p12", "p12-pass-5678");
	s_write_p12(f, "loose.p12", "p12-pass-5678");
	s_path(f, "fifo.key", path, sizeof(path)); /* would block a plain open() */
	assert_int_equal(mkfifo(path, 0600), 0);
	s_write_cert(f, "private.pem", s_pki.client, NULL); /* a cert where the key should be */
	s_path(f, "private.pem", path, sizeof(path));
	assert_int_equal(chmod(path, 0600), 0);
	s_path(f, "loose.p12", path, sizeof(path));
	assert_int_equal(chmod(path, 0604), 0);
	fx_secret(f, "wrong", "not-the-password", 0600);
	fx_secret(f, "p12pass", "p12-pass-5678", 0600);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "case%zu", i);
		fx_service(f, name, 0600, "stack = ({ provider = \"mtls\"; %s });\n",
		           cases[i].layer);
	}
	fx_open(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[32];
		int rc;

		snprintf(name, sizeof(name), "case%zu", i);
		rc = fx_get(f, name);
		print_message("# %s: %s\n", name, apicred_errmsg());
		fx_assert_err(f, rc, cases[i].code, name, cases[i].want1, cases[i].want2, NULL);
		s_assert_no_key(f, apicred_errmsg());
	}
	fx_free(f);
}

static void test_encrypted_key_and_p12(void **state)
{
	fx *f = s_fx();
	const char *a, *b;

	s_write_key(f, "enc.key", s_pki.client_key, "right-pass-1234", 0600);
	s_write_p12(f, "client.p12", "p12-pass-5678");
	fx_secret(f, "keypass", "right-pass-1234", 0600);
	fx_secret(f, "p12pass", "p12-pass-5678", 0600);
	fx_service(f, "pem", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/enc.key\"; key_password = \"file:secrets/keypass\"; });\n");
	fx_service(f, "p12", 0600,
	           "stack = ({ provider = \"mtls\"; pkcs12 = \"certs/client.p12\";\n"
	           "  pkcs12_password = \"file:secrets/p12pass\"; });\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "pem"), APICRED_OK);
	a = strdup(s_tls(f, "cert_sha256"));
	/* decrypted: the item is plain PEM */
	assert_non_null(strstr(s_tls(f, "key"), S_PKCS8_HEADER));
	assert_null(strstr(s_tls(f, "key"), "ENCRYPTED"));
	assert_int_equal(fx_get(f, "p12"), APICRED_OK);
	b = s_tls(f, "cert_sha256");
	assert_string_equal(a, b);
	assert_string_equal(s_tls(f, "cert_subject"), "CN=client, O=apicred test");
	assert_non_null(strstr(s_tls(f, "key"), S_PKCS8_HEADER));
	fx_assert_no_secret(f, NULL);
	free((void *)a);
	fx_free(f);
}

/* The admin replaces cert and key: apicred_reload() (the library's own
 * periodic check does the same) re-creates the layer with the new ones. */
static void test_rotation(void **state)
{
	fx *f = s_fx();
	char *before;

	fx_service(f, "hub", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/current.pem\";\n"
	           "  key = \"certs/current.key\"; });\n");
	s_write_cert(f, "current.pem", s_pki.client, NULL);
	s_write_key(f, "current.key", s_pki.client_key, NULL, 0600);
	fx_open(f);
	assert_int_equal(fx_get(f, "hub"), APICRED_OK);
	assert_string_equal(s_tls(f, "cert_subject"), "CN=client, O=apicred test");
	before = strdup(s_tls(f, "key"));

	{
		char path[700], tmp[720];

		s_path(f, "current.pem", path, sizeof(path));
		snprintf(tmp, sizeof(tmp), "%s.new", path);
		s_write_cert(f, "current.pem.new", s_pki.client2, NULL);
		assert_int_equal(rename(tmp, path), 0);
		s_write_key(f, "current.key", s_pki.client2_key, NULL, 0600);
	}
	assert_int_equal(apicred_reload(f->ctx), APICRED_OK);
	assert_int_equal(fx_get(f, "hub"), APICRED_OK);
	assert_string_equal(s_tls(f, "cert_subject"), "CN=client2, O=apicred test");
	assert_true(strcmp(s_tls(f, "key"), before) != 0); /* never print keys */
	free(before);
	fx_free(f);
}

/* ---- apicred_ssl_ctx_apply ------------------------------------------- */

struct hs {
	int client_ok, server_ok;
	long client_verify;
	char peer_cn[64]; /* what the server saw */
	int version;
};

/* The server: certificate for 127.0.0.1 from the test CA; requires a
 * client certificate from the test CA; TLS up to max_version. */
static SSL_CTX *s_server_ctx(int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	X509_STORE *store;

	assert_non_null(ctx);
	assert_true(SSL_CTX_use_certificate(ctx, s_pki.server));
	assert_true(SSL_CTX_use_PrivateKey(ctx, s_pki.server_key));
	store = SSL_CTX_get_cert_store(ctx);
	assert_true(X509_STORE_add_cert(store, s_pki.ca));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (max_version)
		assert_true(SSL_CTX_set_max_proto_version(ctx, max_version));
	return ctx;
}

static struct hs s_handshake(SSL_CTX *client_ctx, int server_max)
{
	SSL_CTX *server_ctx = s_server_ctx(server_max);
	SSL *c = SSL_new(client_ctx), *s = SSL_new(server_ctx);
	BIO *cb, *sb;
	struct hs r = { 0 };
	int c_done = 0, s_done = 0;

	assert_non_null(c);
	assert_non_null(s);
	assert_true(BIO_new_bio_pair(&cb, 0, &sb, 0));
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	assert_true(SSL_set1_host(c, "127.0.0.1"));
	/* In TLS 1.3 the server checks the client certificate after the
	 * client's handshake is done: read once to see the verdict. */
	for (int i = 0; i < 20 && !(c_done && s_done); i++) {
		if (!c_done) {
			int rc = SSL_do_handshake(c);

			if (rc == 1)
				c_done = 1;
			else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
				c_done = -1;
		}
		if (!s_done) {
			int rc = SSL_do_handshake(s);

			if (rc == 1)
				s_done = 1;
			else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
				s_done = -1;
		}
	}
	if (c_done == 1 && s_done == 1) {
		char buf[8];

		SSL_write(s, "hi", 2);
		r.client_ok = SSL_read(c, buf, sizeof(buf)) == 2;
		r.server_ok = 1;
	}
	r.client_verify = SSL_get_verify_result(c);
	r.version = SSL_version(c);
	if (s_done == 1) {
		X509 *peer = SSL_get0_peer_certificate(s);

		if (peer)
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
			                          r.peer_cn, sizeof(r.peer_cn));
	}
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(server_ctx);
	ERR_clear_error();
	return r;
}

static SSL_CTX *s_applied(fx *f, const char *service)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int rc;

	assert_non_null(ctx);
	assert_int_equal(fx_get(f, service), APICRED_OK);
	rc = apicred_ssl_ctx_apply(f->cred, ctx);
	if (rc != APICRED_OK)
		fail_msg("apicred_ssl_ctx_apply: %s", apicred_errmsg());
	return ctx;
}

static fx *s_ssl_fx(void)
{
	fx *f = s_fx();
	char *pin = s_pin(s_pki.server_key), *stray = s_pin(s_pki.stray_key);

	s_write_key(f, "enc.key", s_pki.client_key, "right-pass-1234", 0600);
	fx_secret(f, "keypass", "right-pass-1234", 0600);
	fx_service(f, "good", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/enc.key\"; key_password = \"file:secrets/keypass\";\n"
	           "  ca = \"certs/ca.pem\"; });\n");
	fx_service(f, "pinned", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\";\n"
	           "  pinned_pubkey = ( \"%s\", \"%s\" ); });\n", stray, pin);
	fx_service(f, "pinned-curl", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\";\n"
	           "  pinned_pubkey = \"%s;%s\"; });\n", stray, pin);
	fx_service(f, "pin-trailing", 0600,
	           "stack = ({ provider = \"mtls\"; pinned_pubkey = \"%s;\"; });\n", pin);
	fx_service(f, "badpin", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\";\n"
	           "  pinned_pubkey = \"%s\"; });\n", stray);
	fx_service(f, "tls13", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\"; min_tls = \"1.3\"; });\n");
	fx_service(f, "otherca", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/other-ca.pem\"; });\n");
	fx_service(f, "stranger", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/stranger.pem\";\n"
	           "  key = \"certs/client.key\"; ca = \"certs/ca.pem\"; });\n");
	fx_service(f, "nocert", 0600,
	           "stack = ({ provider = \"mtls\"; ca = \"certs/ca.pem\"; });\n");
	fx_service(f, "noca", 0600,
	           "stack = ({ provider = \"mtls\"; cert = \"certs/client.pem\";\n"
	           "  key = \"certs/client.key\"; });\n");
	free(pin);
	free(stray);
	fx_open(f);
	return f;
}

static void test_ssl_ctx_handshake(void **state)
{
	fx *f = s_ssl_fx();
	SSL_CTX *ctx = s_applied(f, "good");
	struct hs r;

	assert_true(SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), s_pki.client), 0);
	r = s_handshake(ctx, 0);
	assert_true(r.client_ok);
	assert_int_equal(r.client_verify, X509_V_OK);
	assert_string_equal(r.peer_cn, "client");
	SSL_CTX_free(ctx);
	assert_int_equal(ERR_peek_error(), 0); /* nothing left on the queue */
	fx_free(f);
}

static void test_ssl_ctx_refusals(void **state)
{
	fx *f = s_ssl_fx();
	SSL_CTX *ctx;
	struct hs r;

	/* The right pin among two. */
	ctx = s_applied(f, "pinned");
	r = s_handshake(ctx, 0);
	assert_true(r.client_ok);
	SSL_CTX_free(ctx);

	/* The same in curl's form, "A;B" in one string. */
	ctx = s_applied(f, "pinned-curl");
	r = s_handshake(ctx, 0);
	assert_true(r.client_ok);
	SSL_CTX_free(ctx);
	fx_assert_err(f, fx_get(f, "pin-trailing"), APICRED_ERR_CONFIG, "pin-trailing",
	              "pinned_pubkey", NULL);

	/* Pin mismatch: the client refuses a server its CA vouches for. */
	ctx = s_applied(f, "badpin");
	r = s_handshake(ctx, 0);
	assert_false(r.client_ok);
	assert_int_equal(r.client_verify, X509_V_ERR_APPLICATION_VERIFICATION);
	SSL_CTX_free(ctx);

	/* min_tls 1.3 against a TLS 1.2 server; and 1.3 when it can. */
	ctx = s_applied(f, "tls13");
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	r = s_handshake(ctx, TLS1_2_VERSION);
	assert_false(r.client_ok);
	r = s_handshake(ctx, 0);
	assert_true(r.client_ok);
	assert_int_equal(r.version, TLS1_3_VERSION);
	SSL_CTX_free(ctx);

	/* Server certificate from a CA the layer does not trust. */
	ctx = s_applied(f, "otherca");
	r = s_handshake(ctx, 0);
	assert_false(r.client_ok);
	/* The server sends its CA along (it has it for client certificates). */
	assert_true(r.client_verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	            r.client_verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
	SSL_CTX_free(ctx);

	/* Client certificate from a CA the server does not trust. */
	ctx = s_applied(f, "stranger");
	r = s_handshake(ctx, 0);
	assert_false(r.client_ok);
	assert_int_equal(r.peer_cn[0], '\0');
	SSL_CTX_free(ctx);

	/* No client certificate at all. */
	ctx = s_applied(f, "nocert");
	assert_null(SSL_CTX_get0_certificate(ctx));
	r = s_handshake(ctx, 0);
	assert_false(r.client_ok);
	SSL_CTX_free(ctx);
	fx_free(f);
}

/* A layer's CA replaces the trust the SSL_CTX had, as it replaces
 * http.ca_file and libcurl's bundle for apicred_curl_apply (mtls.sh);
 * without one, the application's trust stays. */
static void test_ssl_ctx_ca_replaces(void **state)
{
	fx *f = s_ssl_fx();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	/* The application trusts the server's CA; the layer names another. */
	assert_true(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), s_pki.ca));
	assert_true(s_handshake(ctx, 0).client_verify == X509_V_OK);
	assert_int_equal(fx_get(f, "otherca"), APICRED_OK);
	assert_int_equal(apicred_ssl_ctx_apply(f->cred, ctx), APICRED_OK);
	assert_false(s_handshake(ctx, 0).client_ok);
	SSL_CTX_free(ctx);

	ctx = SSL_CTX_new(TLS_client_method());
	assert_true(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), s_pki.ca));
	assert_int_equal(fx_get(f, "noca"), APICRED_OK);
	assert_int_equal(apicred_ssl_ctx_apply(f->cred, ctx), APICRED_OK);
	assert_true(s_handshake(ctx, 0).client_ok);
	SSL_CTX_free(ctx);
	fx_free(f);
}

/* min_tls is only ever raised; bad arguments are refused. */
static void test_ssl_ctx_edges(void **state)
{
	fx *f = s_ssl_fx();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int rc;

	assert_true(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
	assert_int_equal(fx_get(f, "good"), APICRED_OK);
	assert_int_equal(apicred_ssl_ctx_apply(f->cred, ctx), APICRED_OK);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	/* Applying twice replaces, and frees nothing still in use. */
	assert_int_equal(fx_get(f, "pinned"), APICRED_OK);
	assert_int_equal(apicred_ssl_ctx_apply(f->cred, ctx), APICRED_OK);
	assert_int_equal(fx_get(f, "badpin"), APICRED_OK);
	assert_int_equal(apicred_ssl_ctx_apply(f->cred, ctx), APICRED_OK);
	assert_false(s_handshake(ctx, 0).client_ok);
	rc = apicred_ssl_ctx_apply(NULL, ctx);
	assert_int_equal(rc, APICRED_ERR_INVALID);
	rc = apicred_ssl_ctx_apply(f->cred, NULL);
	assert_int_equal(rc, APICRED_ERR_INVALID);
	SSL_CTX_free(ctx);
	s_assert_no_key(f, NULL);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_items),
		cmocka_unit_test(test_no_warning_outside_window),
		cmocka_unit_test(test_expired_and_not_yet_valid),
		cmocka_unit_test(test_expires_while_running),
		cmocka_unit_test(test_bad_material),
		cmocka_unit_test(test_encrypted_key_and_p12),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_ssl_ctx_handshake),
		cmocka_unit_test(test_ssl_ctx_refusals),
		cmocka_unit_test(test_ssl_ctx_edges),
		cmocka_unit_test(test_ssl_ctx_ca_replaces),
	};

	return cmocka_run_group_tests_name("mtls", tests, s_setup_pki, s_teardown_pki);
}
