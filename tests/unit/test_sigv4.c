/*
 * test_sigv4.c - the sigv4 provider through the real library: a real ctx,
 * the real sigv4.so, the wall clock injected.
 *
 * The first group are cases of AWS's published SigV4 test suite
 * (aws-sig-v4-test-suite, "Signature Version 4 test suite", Amazon Web
 * Services, 2015; access key AKIDEXAMPLE, region us-east-1, service
 * "service", 20150830T123600Z), re-typed here as vectors: the request of
 * each case's .req file and the Authorization header of its .authz file.
 * The suite's requests carry no X-Amz-Content-Sha256, hence
 * content_sha256_header = false there.
 *
 * The other groups check what the suite does not cover (the payload
 * header, S3's path rule, ports, the day's key, errors) against canonical
 * requests written out here and signed with OpenSSL directly.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fixture.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define T_SUITE 1440938160000LL /* 2015-08-30 12:36:00 UTC */
#define SCOPE "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* The suite's session token (post-sts-token). */
#define STS_TOKEN "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsK" \
	"WHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBm" \
	"Upp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d" \
	"+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSI" \
	"lTJabIQwj2ICCR/oLxBA=="

struct t {
	apicred_ctx *ctx;
};

/* The harness: the current test's configuration (clock fixed, random bytes
 * 0, 1, ..., the providers as built, no fetch retries). */
static fx *s_fx;

static void s_fx_new(void)
{
	s_fx = fx_new();
	s_fx->hooks = FX_CLOCK | FX_RANDOM;
	fx_modules_built(s_fx);
	fx_global(s_fx, "http = { retries = 0; };\n");
}

static int s_setup(void **state)
{
	struct t *f = calloc(1, sizeof(*f));

	s_fx_new();
	fx_mono_ms = 1000000;
	fx_wall_ms = T_SUITE;
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

/* A sigv4 service with the suite's credentials and extra settings. */
static void s_svc(struct t *f, const char *name, const char *url, const char *region,
                  const char *service, const char *extra)
{
	fx_service(s_fx, name, 0600,
	           "url = \"%s\";\n"
	           "stack = ( { provider = \"sigv4\"; region = \"%s\"; service = \"%s\";\n"
	           "  access_key_id = \"" AKID "\"; secret_access_key = \"" SECRET "\";\n"
	           "  %s } );\n", url, region, service, extra);
}

/* apicred_get with headers (NULL-terminated, may be NULL). */
static int s_get(apicred_ctx *ctx, const char *service, const char *method, const char *url,
                 const char *body, const char *const *headers)
{
	apicred_request req = APICRED_REQUEST_INIT;

	if (!s_fx->cred && apicred_cred_new(&s_fx->cred) != APICRED_OK)
		abort();
	req.method = method;
	req.url = url;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.headers = headers;
	return apicred_get(ctx, service, &req, s_fx->cred);
}

static const char *s_auth(void)
{
	return fx_header(s_fx, "Authorization");
}

/* ---- AWS's test suite ---------------------------------------------------- */

static struct t *s_suite(void **state, const char *extra)
{
	struct t *f = *state;

	s_svc(f, "aws", "https://example.amazonaws.com/", "us-east-1", "service",
	      extra ? extra : "content_sha256_header = false;");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	return f;
}

/* GET url with headers; asserts the suite's Authorization value. */
static void s_case(struct t *f, const char *method, const char *url, const char *body,
                   const char *const *headers, const char *authz)
{
	int rc = s_get(f->ctx, "aws", method, url, body, headers);

	if (rc != APICRED_OK)
		fail_msg("%s %s: %s", method, url, apicred_errmsg());
	assert_string_equal(s_auth(), authz);
	assert_string_equal(fx_header(s_fx, "X-Amz-Date"), "20150830T123600Z");
	assert_null(fx_header(s_fx, "X-Amz-Content-Sha256"));
}

static void test_get_vanilla(void **state)
{
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	/* get-vanilla-empty-query-key / post-vanilla-query */
	s_case(f, "GET", "https://example.amazonaws.com/?Param1=value1", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb");
	/* Only one header each: the provider adds no Host (the client does). */
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_HEADER), 2);
}

static void test_get_vanilla_query_order_key_case(void **state)
{
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	/* The same through libcurl's parser (user info, not sent, not signed;
	 * a fragment). */
	s_case(f, "GET", "https://u:p@example.amazonaws.com/?Param2=value2&Param1=value1#f", NULL,
	       NULL, SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

/* Repeated keys: sorted by value too (get-vanilla-query-order-key and
 * get-vanilla-query-order-value). */
static void test_get_duplicate_query_keys(void **state)
{
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/?Param1=value2&Param1=Value1", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
	s_case(f, "GET", "https://example.amazonaws.com/?Param1=value2&Param1=value1", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694");
}

#define UNRESERVED "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

static void test_get_unreserved(void **state)
{
	struct t *f = s_suite(state, NULL);

	/* get-vanilla-query-unreserved */
	s_case(f, "GET", "https://example.amazonaws.com/?" UNRESERVED "=" UNRESERVED, NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197");
	/* get-unreserved */
	s_case(f, "GET", "https://example.amazonaws.com/" UNRESERVED, NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
}

/* get-utf8, get-vanilla-utf8-query: U+1234 in the path and as a query key. */
static void test_get_utf8(void **state)
{
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/\xe1\x88\xb4", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
	s_case(f, "GET", "https://example.amazonaws.com/?\xe1\x88\xb4=bar", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
	/* A query already percent-encoded is encoded once, not twice. */
	s_case(f, "GET", "https://example.amazonaws.com/?%e1%88%B4=bar", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
}

/* normalize-path/get-space. */
static void test_get_space(void **state)
{
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/example space/", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741");
}

/* normalize-path: get-relative, get-relative-relative, get-slash and
 * get-slash-dot-slash all come down to "/", as get-vanilla. */
static void test_normalize_path(void **state)
{
	static const char *const paths[] = { "/example/..", "/example1/example2/../..", "//",
	                                     "/./", NULL };
	struct t *f = s_suite(state, NULL);
	char url[128];

	for (int i = 0; paths[i]; i++) {
		snprintf(url, sizeof(url), "https://example.amazonaws.com%s", paths[i]);
		s_case(f, "GET", url, NULL, NULL, SCOPE "SignedHeaders=host;x-amz-date, "
		       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	}
}

/* get-header-value-trim, get-header-key-duplicate, get-header-value-order. */
static void test_headers(void **state)
{
	static const char *const trim[] = { "My-Header1: value1", "My-Header2: \"a   b   c\"", NULL };
	static const char *const dup[] = { "My-Header1: value2", "My-Header1: value2",
	                                   "My-Header1: value1", NULL };
	static const char *const order[] = { "My-Header1: value4", "My-Header1: value1",
	                                     "My-Header1: value3", "My-Header1: value2", NULL };
	/* Headers clients rewrite are not signed; "Name:" removes a header in libcurl. */
	static const char *const ignored[] = { "User-Agent: x/1", "Expect:", "My-Header1:  value1 ",
	                                       "My-Header2:\t\"a b \t  c\"  ", "Empty:", NULL };
	struct t *f = s_suite(state, NULL);

	s_case(f, "GET", "https://example.amazonaws.com/", NULL, trim,
	       SCOPE "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
	       "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
	s_case(f, "GET", "https://example.amazonaws.com/", NULL, ignored,
	       SCOPE "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
	       "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
	s_case(f, "GET", "https://example.amazonaws.com/", NULL, dup,
	       SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
	       "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
	s_case(f, "GET", "https://example.amazonaws.com/", NULL, order,
	       SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
	       "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01");
}

/* post-vanilla, post-vanilla-query, post-header-value-case. */
static void test_post_vanilla(void **state)
{
	static const char *const vcase[] = { "My-Header1: VALUE1", NULL };
	struct t *f = s_suite(state, NULL);

	s_case(f, "POST", "https://example.amazonaws.com/", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
	s_case(f, "POST", "https://example.amazonaws.com/?Param1=value1", NULL, NULL,
	       SCOPE "SignedHeaders=host;x-amz-date, "
	       "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11");
	s_case(f, "POST", "https://example.amazonaws.com/", NULL, vcase,
	       SCOPE "SignedHeaders=host;my-header1;x-amz-date, "
	       "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d");
}

/* post-x-www-form-urlencoded: the body's hash and the Content-Type signed. */
static void test_post_form(void **state)
{
	static const char *const ct[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
	struct t *f = s_suite(state, NULL);

	s_case(f, "POST", "https://example.amazonaws.com/", "Param1=value1", ct,
	       SCOPE "SignedHeaders=content-type;host;x-amz-date, "
	       "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

/* post-sts-token/post-sts-header-before: the token is sent and signed. */
static void test_post_sts_token(void **state)
{
	struct t *f = s_suite(state, "content_sha256_header = false; session_token = \"" STS_TOKEN "\";");

	assert_int_equal(s_get(f->ctx, "aws", "POST", "https://example.amazonaws.com/", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(s_auth(), SCOPE "SignedHeaders=host;x-amz-date;x-amz-security-token, "
	                    "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
	assert_string_equal(fx_header(s_fx, "X-Amz-Security-Token"), STS_TOKEN);
}

/* ---- beyond the suite: expected values from canonical requests ------------- */

static void s_sha256_hex(const char *in, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	assert_true(EVP_Digest(in, len, md, &n, EVP_sha256(), NULL));
	for (unsigned i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* The signature of a canonical request, by the published algorithm. */
static const char *s_signature(const char *creq, const char *stamp, const char *region,
                               const char *service)
{
	static char sig[65];
	char key[128], hash[65], date[9], sts[512];
	const char *parts[4] = { date, region, service, "aws4_request" };
	unsigned char raw[128], next[32];
	size_t len;

	memcpy(date, stamp, 8);
	date[8] = '\0';
	s_sha256_hex(creq, strlen(creq), hash);
	snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", stamp, date,
	         region, service, hash);
	snprintf(key, sizeof(key), "AWS4%s", SECRET);
	/* Each step is keyed with the raw bytes of the previous MAC. */
	memcpy(raw, key, strlen(key));
	len = strlen(key);
	for (int i = 0; i < 4; i++) {
		assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, raw, len,
		                          (const unsigned char *)parts[i], strlen(parts[i]),
		                          next, sizeof(next), &len));
		memcpy(raw, next, len);
	}
	snprintf(sig, sizeof(sig), "%s", fx_hmac_sha256_hex(raw, len, sts, strlen(sts)));
	return sig;
}

static void s_assert_auth(const char *region, const char *service, const char *stamp,
                          const char *signed_headers, const char *creq)
{
	char want[512];

	snprintf(want, sizeof(want), "AWS4-HMAC-SHA256 Credential=" AKID "/%.8s/%s/%s/aws4_request, "
	         "SignedHeaders=%s, Signature=%s", stamp, region, service, signed_headers,
	         s_signature(creq, stamp, region, service));
	assert_string_equal(s_auth(), want);
}

/* By default X-Amz-Content-Sha256 is sent and signed: the body's hash. */
static void test_payload_header(void **state)
{
	static const char *const json[] = { "Content-Type: application/json", NULL };
	struct t *f = *state;
	const char *body = "{\"a\":1}";
	char hash[65], creq[1024];

	s_svc(f, "api", "https://api.example.com/", "eu-west-3", "execute-api", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(s_get(f->ctx, "api", "GET", "https://api.example.com/v1/items", NULL, NULL),
	                 APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-Amz-Content-Sha256"), EMPTY_SHA256);
	s_assert_auth("eu-west-3", "execute-api", "20150830T123600Z",
	              "host;x-amz-content-sha256;x-amz-date",
	              "GET\n/v1/items\n\nhost:api.example.com\n"
	              "x-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n\n"
	              "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);

	assert_int_equal(s_get(f->ctx, "api", "PUT", "https://api.example.com/v1/items/7", body, json),
	                 APICRED_OK);
	s_sha256_hex(body, strlen(body), hash);
	assert_string_equal(fx_header(s_fx, "X-Amz-Content-Sha256"), hash);
	snprintf(creq, sizeof(creq), "PUT\n/v1/items/7\n\ncontent-type:application/json\n"
	         "host:api.example.com\nx-amz-content-sha256:%s\nx-amz-date:20150830T123600Z\n\n"
	         "content-type;host;x-amz-content-sha256;x-amz-date\n%s", hash, hash);
	s_assert_auth("eu-west-3", "execute-api", "20150830T123600Z",
	              "content-type;host;x-amz-content-sha256;x-amz-date", creq);
}

/* Other services than s3: the path as sent is encoded once more ("%20"
 * becomes "%2520"), empty segments go; the query is encoded once ('+' is a
 * plus sign, escapes uppercased, unreserved ones plain). */
static void test_encoding_rules(void **state)
{
	struct t *f = *state;

	s_svc(f, "api", "https://api.example.com/", "us-east-1", "execute-api", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(s_get(f->ctx, "api", NULL,
	                       "https://api.example.com//a%20b//c!$/?q=x+y&b=%2f%41&a&=v#frag",
	                       NULL, NULL), APICRED_OK);
	s_assert_auth("us-east-1", "execute-api", "20150830T123600Z",
	              "host;x-amz-content-sha256;x-amz-date",
	              "GET\n/a%2520b/c%21%24/\n=v&a=&b=%2FA&q=x%2By\nhost:api.example.com\n"
	              "x-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n\n"
	              "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
}

/* S3: UNSIGNED-PAYLOAD, and the path as sent: escapes kept (never encoded
 * twice, an escaped '/' stays escaped), empty segments kept. */
static void test_s3_unsigned(void **state)
{
	struct t *f = *state;

	s_svc(f, "bucket", "https://bucket.s3.example.com/", "auto", "s3", "sign_body = \"unsigned\";");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(s_get(f->ctx, "bucket", "GET",
	                       "https://bucket.s3.example.com/photos//My%20Pic%2fv1+(2).jpg"
	                       "?list-type=2&prefix=a%2Fb&max-keys=5", NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-Amz-Content-Sha256"), "UNSIGNED-PAYLOAD");
	s_assert_auth("auto", "s3", "20150830T123600Z", "host;x-amz-content-sha256;x-amz-date",
	              "GET\n/photos//My%20Pic%2Fv1%2B%282%29.jpg\nlist-type=2&max-keys=5&prefix=a%2Fb\n"
	              "host:bucket.s3.example.com\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
	              "x-amz-date:20150830T123600Z\n\nhost;x-amz-content-sha256;x-amz-date\n"
	              "UNSIGNED-PAYLOAD");
	/* An unsigned payload need not be at hand. */
	apicred_request req = APICRED_REQUEST_INIT;
	req.method = "PUT";
	req.url = "https://bucket.s3.example.com/big.bin";
	req.body_len = 1 << 30;
	assert_int_equal(apicred_get(f->ctx, "bucket", &req, s_fx->cred), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-Amz-Content-Sha256"), "UNSIGNED-PAYLOAD");
}

/* Host carries the port unless it is the scheme's; the request's own Host
 * header wins. */
static void test_host_port(void **state)
{
	static const char *const vhost[] = { "Host: bucket.example.com", NULL };
	struct t *f = *state;
	const char *tail = "\nx-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n\n"
	                   "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256;
	char creq[512];

	fx_service(s_fx, "minio", 0600,
	           "url = \"https://127.0.0.1:9000/\";\n"
	           "stack = ( { provider = \"sigv4\"; region = \"us-east-1\"; service = \"s3\";\n"
	           "  access_key_id = \"" AKID "\"; secret_access_key = \"" SECRET "\"; } );\n");
	s_svc(f, "std", "https://s3.example.com/", "us-east-1", "s3", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(s_get(f->ctx, "minio", "GET", "https://127.0.0.1:9000/b", NULL, NULL),
	                 APICRED_OK);
	snprintf(creq, sizeof(creq), "GET\n/b\n\nhost:127.0.0.1:9000%s", tail);
	s_assert_auth("us-east-1", "s3", "20150830T123600Z", "host;x-amz-content-sha256;x-amz-date", creq);
	assert_int_equal(s_get(f->ctx, "std", "GET", "https://s3.example.com:443/b", NULL, NULL),
	                 APICRED_OK);
	snprintf(creq, sizeof(creq), "GET\n/b\n\nhost:s3.example.com%s", tail);
	s_assert_auth("us-east-1", "s3", "20150830T123600Z", "host;x-amz-content-sha256;x-amz-date", creq);
	/* libcurl reads 0443 as 443, the default: not sent, not signed. */
	assert_int_equal(s_get(f->ctx, "std", "GET", "https://s3.example.com:0443/b", NULL, NULL),
	                 APICRED_OK);
	s_assert_auth("us-east-1", "s3", "20150830T123600Z", "host;x-amz-content-sha256;x-amz-date", creq);
	assert_int_equal(s_get(f->ctx, "std", "GET", "https://s3.example.com/b", NULL, vhost),
	                 APICRED_OK);
	snprintf(creq, sizeof(creq), "GET\n/b\n\nhost:bucket.example.com%s", tail);
	s_assert_auth("us-east-1", "s3", "20150830T123600Z", "host;x-amz-content-sha256;x-amz-date", creq);
}

/* The signing key changes with the UTC day: at midnight (session still
 * cached), two days later (outside the session's days) and after the
 * core refreshed the session. */
static void test_day_rollover(void **state)
{
	struct t *f = *state;
	static const struct { int64_t wall_ms, mono_ms; const char *stamp; } steps[] = {
		{ 1441065599999LL, 0, "20150831T235959Z" },
		{ 1441065600000LL, 0, "20150901T000000Z" },
		{ 1441238400000LL, 0, "20150903T000000Z" },  /* clock jumped: derived in apply */
		{ 1441238400000LL, 3 * 86400000LL, "20150903T000000Z" }, /* refreshed */
		{ 1441324799000LL, 3 * 86400000LL, "20150903T235959Z" },
	};
	char creq[512];

	fx_wall_ms = 1441065599000LL; /* 2015-08-31 23:59:59 */
	s_svc(f, "api", "https://api.example.com/", "us-east-1", "execute-api", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		fx_wall_ms = steps[i].wall_ms;
		fx_mono_ms = 1000000 + steps[i].mono_ms;
		assert_int_equal(s_get(f->ctx, "api", "GET", "https://api.example.com/", NULL, NULL),
		                 APICRED_OK);
		assert_string_equal(fx_header(s_fx, "X-Amz-Date"), steps[i].stamp);
		snprintf(creq, sizeof(creq), "GET\n/\n\nhost:api.example.com\n"
		         "x-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:%s\n\n"
		         "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256, steps[i].stamp);
		s_assert_auth("us-east-1", "execute-api", steps[i].stamp,
		              "host;x-amz-content-sha256;x-amz-date", creq);
	}
}

/* Many threads sign at once with one session (and one falls back). */
#define S_THREADS 4
#define S_ROUNDS 200

struct s_worker {
	apicred_ctx *ctx;
	int id, bad;
	char want[256];
};

static void *s_work(void *arg)
{
	struct s_worker *w = arg;
	apicred_cred *cred;
	apicred_request req = APICRED_REQUEST_INIT;
	char url[64];

	snprintf(url, sizeof(url), "https://api.example.com/t/%d", w->id);
	req.url = url;
	if (apicred_cred_new(&cred) != APICRED_OK)
		abort();
	for (int i = 0; i < S_ROUNDS; i++) {
		const char *a;

		if (apicred_get(w->ctx, "api", &req, cred) != APICRED_OK ||
		    !(a = apicred_cred_find(cred, APICRED_HEADER, "Authorization")) ||
		    strcmp(a, w->want) != 0)
			w->bad++;
	}
	apicred_cred_free(cred);
	return NULL;
}

static void test_concurrent_apply(void **state)
{
	struct t *f = *state;
	struct s_worker w[S_THREADS];
	pthread_t t[S_THREADS];
	char creq[512];

	s_svc(f, "api", "https://api.example.com/", "us-east-1", "execute-api", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	for (int i = 0; i < S_THREADS; i++) {
		w[i] = (struct s_worker){ .ctx = f->ctx, .id = i };
		snprintf(creq, sizeof(creq), "GET\n/t/%d\n\nhost:api.example.com\n"
		         "x-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n\n"
		         "host;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256, i);
		snprintf(w[i].want, sizeof(w[i].want), "AWS4-HMAC-SHA256 Credential=" AKID
		         "/20150830/us-east-1/execute-api/aws4_request, SignedHeaders="
		         "host;x-amz-content-sha256;x-amz-date, Signature=%s",
		         s_signature(creq, "20150830T123600Z", "us-east-1", "execute-api"));
	}
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, s_work, &w[i]), 0);
	for (int i = 0; i < S_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
}

/* ---- errors ------------------------------------------------------------------ */

static void s_assert_err(int rc, int want, const char *what)
{
	const char *msg = apicred_errmsg();

	if (rc != want)
		fail_msg("expected %d, got %d: %s", want, rc, msg);
	if (!strstr(msg, what))
		fail_msg("message does not mention \"%s\": %s", what, msg);
	if (strstr(msg, SECRET) || fx_logged(s_fx, SECRET) || strstr(msg, "EXAMPLEKEY"))
		fail_msg("the secret leaked");
}

static void test_refuses_unhashable_requests(void **state)
{
	static const char *const own[] = { "authorization: AWS4-HMAC-SHA256 x", NULL };
	static const char *const date[] = { "X-Amz-Date: 20150830T000000Z", NULL };
	struct t *f = *state;
	apicred_request req = APICRED_REQUEST_INIT;

	s_svc(f, "api", "https://api.example.com/", "us-east-1", "execute-api", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	s_assert_err(s_get(f->ctx, "api", "GET", NULL, NULL, NULL), APICRED_ERR_INVALID, "URL");
	assert_non_null(strstr(apicred_errmsg(), "api"));
	if (!s_fx->cred)
		apicred_cred_new(&s_fx->cred);
	req.method = "POST";
	req.url = "https://api.example.com/x";
	req.body_len = 10;
	s_assert_err(apicred_get(f->ctx, "api", &req, s_fx->cred), APICRED_ERR_INVALID,
	             "cannot hash the payload");
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_HEADER), 0);
	s_assert_err(s_get(f->ctx, "api", "GET", "https://api.example.com/", NULL, own),
	             APICRED_ERR_INVALID, "authorization header; sigv4 sets it");
	s_assert_err(s_get(f->ctx, "api", "GET", "https://api.example.com/", NULL, date),
	             APICRED_ERR_INVALID, "X-Amz-Date header");
}

static void test_config_errors(void **state)
{
	struct t *f = *state;

	s_svc(f, "slash", "https://a.example/", "us/east", "s3", "");
	s_svc(f, "nohdr", "https://a.example/", "us-east-1", "s3",
	      "sign_body = \"unsigned\"; content_sha256_header = false;");
	s_svc(f, "bool", "https://a.example/", "us-east-1", "s3", "sign_body = false;");
	fx_service(s_fx, "empty", 0600,
	           "url = \"https://a.example/\";\n"
	           "stack = ( { provider = \"sigv4\"; region = \"r\"; service = \"s\";\n"
	           "  access_key_id = \"" AKID "\"; secret_access_key = \"\"; } );\n");
	fx_service(s_fx, "missing", 0600,
	           "url = \"https://a.example/\";\n"
	           "stack = ( { provider = \"sigv4\"; service = \"s\";\n"
	           "  access_key_id = \"" AKID "\"; secret_access_key = \"" SECRET "\"; } );\n");
	fx_service(s_fx, "crlf", 0600,
	           "url = \"https://a.example/\";\n"
	           "stack = ( { provider = \"sigv4\"; region = \"r\"; service = \"s\";\n"
	           "  access_key_id = \"" AKID "\"; secret_access_key = \"" SECRET "\";\n"
	           "  session_token = \"tok\\r\\nX-Injected: 1\"; } );\n");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	s_assert_err(apicred_check(f->ctx, "crlf"), APICRED_ERR_SECRET, "session_token: control");
	s_assert_err(apicred_check(f->ctx, "slash"), APICRED_ERR_CONFIG, "region (line 2)");
	s_assert_err(apicred_check(f->ctx, "nohdr"), APICRED_ERR_CONFIG, "UNSIGNED-PAYLOAD");
	s_assert_err(apicred_check(f->ctx, "bool"), APICRED_ERR_CONFIG, "sign_body");
	s_assert_err(apicred_check(f->ctx, "empty"), APICRED_ERR_SECRET, "secret_access_key");
	s_assert_err(apicred_check(f->ctx, "missing"), APICRED_ERR_CONFIG, "region");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_vanilla, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_get_vanilla_query_order_key_case, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_get_duplicate_query_keys, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_get_unreserved, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_get_utf8, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_get_space, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_normalize_path, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_headers, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_post_vanilla, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_post_form, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_post_sts_token, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_payload_header, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_encoding_rules, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_s3_unsigned, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_host_port, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_day_rollover, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_apply, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_refuses_unhashable_requests, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_config_errors, s_setup, s_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
