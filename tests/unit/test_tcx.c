/*
 * test_tcx.c - the tcx provider through the real library: a real ctx, the
 * real tcx.so, fixed clock (2018-12-30 23:59:59 UTC) and random bytes
 * (0, 1, ... 35, so dyn is "0123456789abcdefghijklmnopqrstuv"). Each
 * expected joined string J is written out by hand; the app pass expected
 * from it is computed here with OpenSSL. twtc talks to the sandbox's
 * scripted endpoint playing tcx/authorize and tcx/reauthorize. One test
 * draws nonces from the core's own source instead (OpenSSL's bytes through
 * its per-thread buffer), in threads and across a fork.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "fixture.h"

#define APP "sb-tcx-app"
#define PUB "sb-tcx-public"
#define MASTER "sb-tcx-master"
#define DYN "0123456789abcdefghijklmnopqrstuv"
#define URL "https://tcx.example/tcx/api/items"

struct t {
	apicred_ctx *ctx;
};

/* The harness: the current test's configuration (clock fixed, random bytes
 * 0, 1, ..., the providers as built, no fetch retries), and the sandbox
 * whose scripted endpoint plays the login server, started by the first
 * twtc test. */
static fx *s_fx;
static fx_sandbox *s_sb;

static void s_fx_new(void)
{
	s_fx = fx_new();
	s_fx->hooks = FX_CLOCK | FX_RANDOM;
	fx_modules_built(s_fx);
	fx_global(s_fx, "http = { retries = 0; };\n");
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
	fx_wall_ms = 1546214399000LL;
	if (s_sb)
		fx_sandbox_reset(s_sb);
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

static void s_tcx(struct t *f, const char *name, const char *type, const char *mode,
                  const char *extra)
{
	fx_service(s_fx, name, 0600,
	           "url = \"https://tcx.example/\";\n"
	           "stack = ( { provider = \"tcx\"; type = \"%s\"; mode = \"%s\";\n"
	           "  app_id = \"" APP "\"; app_public = \"" PUB "\"; %s } );\n",
	           type, mode, extra);
}

/* apicred_get, then the pass must be the one over j. */
#define assert_pass(f, svc, method, url, body, ct, j) do {                          \
	assert_int_equal(fx_request(s_fx, (f)->ctx, svc, method, url, body, ct), APICRED_OK);   \
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"), fx_tcx_pass(j, PUB, DYN));   \
} while (0)

/* ---- owtc headers and the three modes ------------------------------------------- */

static void test_readme_sample(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "app", "GET", URL "?abc=123&_xyz=789&foo=bar&def=456&bar=ghi",
	                        NULL, NULL), APICRED_OK);
	/* Known vector: base64(sha1("_xyz=789&abc=123&bar=ghi&def=456&foo=bar&"
	 * "sb-tcx-public" DYN) ":" DYN), computed outside C. */
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"),
	                    "ZTA1ZDljNjUzMmUxMGI1NmRlOTQ4MDNlODkwODEyMThlOTEyNjUxMzowMTIzNDU2"
	                    "Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dg==");
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"),
	                    fx_tcx_pass("_xyz=789&abc=123&bar=ghi&def=456&foo=bar&", PUB, DYN));
	assert_string_equal(fx_header(s_fx, "X-TCX-TYPE"), "OWTC");
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-ID"), APP);
	assert_null(fx_header(s_fx, "X-TCX-TOKEN"));
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_HEADER), 3);
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_QUERY), 0);
	/* owtc has no session: nothing expires. */
	assert_int_equal(apicred_cred_expires_at(s_fx->cred), 0);
	/* The same parameters in a form body give the same J. */
	assert_pass(f, "app", "POST", URL, "foo=bar&bar=ghi&_xyz=789&abc=123&def=456",
	            "application/x-www-form-urlencoded", "_xyz=789&abc=123&bar=ghi&def=456&foo=bar&");
}

static void test_param_sorting(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* Byte order: digits < uppercase < '_' < lowercase; "10" < "9". */
	assert_pass(f, "app", "GET", URL "?b=1&B=2&_=3&a=4&A=5&10=6&9=7&_a=8&Z=9&aa=10&a_=11", NULL, NULL,
	            "10=6&9=7&A=5&B=2&Z=9&_=3&_a=8&a=4&a_=11&aa=10&b=1&");
	/* Numeric JSON keys sort as text too. */
	assert_pass(f, "app", "POST", URL, "{\"2\":\"x\",\"10\":\"y\",\"_\":1,\"A\":2}", "application/json",
	            "10=y&2=x&A=2&_=1&");
}

static void test_param_utf8(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_pass(f, "app", "GET", URL "?name=%C3%A9t%C3%A9&%E2%82%AC=euro&z=1", NULL, NULL,
	            "name=\xc3\xa9t\xc3\xa9&z=1&\xe2\x82\xac=euro&");
	assert_pass(f, "app", "POST", URL, "{\"k\":\"\\u00e9\",\"\xc3\xa9\":\"x\\u20ac\"}",
	            "application/json; charset=utf-8", "k=\xc3\xa9&\xc3\xa9=x\xe2\x82\xac&");
}

static void test_param_special_values(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* Decoded, '+' is a space, a stray '%' stays as it is. */
	assert_pass(f, "app", "GET", URL "?v=%26%3D%2B%25%23%22&p=a+b%20c&raw=100%&t=%zz&h=%4", NULL, NULL,
	            "h=%4&p=a b c&raw=100%&t=%zz&v=&=+%#\"&");
	assert_pass(f, "app", "POST", URL "?q=1", "{\"v\":\"& = + % # \\\"\"}", "application/json",
	            "q=1&v=& = + % # \"&");
	assert_pass(f, "app", "PUT", URL, "v=%26%3D%2B%25%23%22&w=x+y", "application/x-www-form-urlencoded",
	            "v=&=+%#\"&w=x y&");
	/* The fragment is not sent. */
	assert_pass(f, "app", "GET", URL "?a=1#b=2", NULL, NULL, "a=1&");
}

static void test_param_empty(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* Empty values are kept, empty names dropped (parse_str). */
	assert_pass(f, "app", "GET", URL "?a=&b&=c&&d=1", NULL, NULL, "a=&b=&d=1&");
	/* No parameters at all: J = "". */
	assert_pass(f, "app", "GET", URL, NULL, NULL, "");
	assert_pass(f, "app", "GET", URL "?", NULL, NULL, "");
	assert_pass(f, "app", NULL, NULL, NULL, NULL, "");
	assert_pass(f, "app", "POST", URL, "{}", "application/json", "");
	/* PHP's names: leading spaces dropped, ' ' and '.' become '_'. */
	assert_pass(f, "app", "GET", URL "?a.b=1&c%20d=2&%20e=3", NULL, NULL, "a_b=1&c_d=2&e=3&");
	/* A repeated name: the last one wins. */
	assert_pass(f, "app", "GET", URL "?a=1&a=2", NULL, NULL, "a=2&");
}

static void test_param_json_casts(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* (string) casts of PHP (precision 14): true "1", false and null "". */
	assert_pass(f, "app", "POST", URL,
	            "{\"t\":true,\"f\":false,\"n\":null,\"one\":1.0,\"half\":1.5,\"big\":1e20,"
	            "\"tenth\":0.1,\"negz\":-0.0,\"i\":12,\"small\":1e-5,\"neg\":-42,\"s\":\"str\","
	            "\"e14\":1e14,\"e13\":1e13,\"third\":0.3333333333333333,\"milli\":0.0001,"
	            "\"e\":\"\",\"round\":123456789012345.678,\"nf\":-2.5e-7}",
	            "application/json",
	            "big=1.0E+20&e=&e13=10000000000000&e14=1.0E+14&f=&half=1.5&i=12&milli=0.0001&n=&"
	            "neg=-42&negz=-0&nf=-2.5E-7&one=1&round=1.2345678901235E+14&s=str&small=1.0E-5&"
	            "t=1&tenth=0.1&third=0.33333333333333&");
	/* A list gives its indexes, a scalar the name 0. */
	assert_pass(f, "app", "POST", URL, "[\"a\",true]", "application/json", "0=a&1=1&");
	assert_pass(f, "app", "POST", URL, "7", "application/json", "0=7&");
	/* Like the server: a body that is not JSON adds nothing. */
	assert_pass(f, "app", "POST", URL "?a=1", "{oops", "application/json", "a=1&");
}

static void test_param_body_sources(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* The body wins over the query on a clash. */
	assert_pass(f, "app", "POST", URL "?a=q&b=q", "a=f&c=f", "application/x-www-form-urlencoded",
	            "a=f&b=q&c=f&");
	assert_pass(f, "app", "POST", URL "?a=q&b=q", "{\"a\":\"j\",\"c\":\"j\"}", "application/json",
	            "a=j&b=q&c=j&");
	/* No content type: guessed from the body. */
	assert_pass(f, "app", "POST", URL, " {\"a\":1}", NULL, "a=1&");
	assert_pass(f, "app", "POST", URL, "a=1", NULL, "a=1&");
	/* A form body on GET is not read by the server; JSON is. */
	assert_pass(f, "app", "GET", URL "?q=1", "x=1", "application/x-www-form-urlencoded", "q=1&");
	assert_pass(f, "app", "GET", URL "?q=1", "{\"x\":1}", "application/vnd.api+json", "q=1&x=1&");
	/* Without content_type, a Content-Type among the request's headers counts. */
	{
		const char *const hdrs[] = { "Accept: */*", "content-type: text/plain", NULL };
		apicred_request req = APICRED_REQUEST_INIT;

		req.method = "POST";
		req.url = URL "?q=1";
		req.body = "x=1";
		req.body_len = 3;
		req.headers = hdrs;
		assert_int_equal(apicred_get(f->ctx, "app", &req, s_fx->cred), APICRED_OK);
		assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"), fx_tcx_pass("q=1&", PUB, DYN));
	}
	/* Other bodies carry no parameters. */
	assert_pass(f, "app", "POST", URL "?q=1", "x=1", "text/plain", "q=1&");
}

static void test_param_refusals(void **state)
{
	struct t *f = *state;

	s_tcx(f, "app", "owtc", "param", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "app", "POST", URL, "{\"a\":{\"b\":1}}", "application/json"),
	                 APICRED_ERR_UNSUPPORTED);
	assert_non_null(strstr(apicred_errmsg(), "flat JSON"));
	assert_non_null(strstr(apicred_errmsg(), "app"));
	assert_int_equal(fx_request(s_fx, f->ctx, "app", "POST", URL, "{\"a\":[1]}", "application/json"),
	                 APICRED_ERR_UNSUPPORTED);
	assert_int_equal(fx_request(s_fx, f->ctx, "app", "GET", URL "?a[]=1", NULL, NULL),
	                 APICRED_ERR_UNSUPPORTED);
	assert_non_null(strstr(apicred_errmsg(), "array"));
	assert_int_equal(fx_request(s_fx, f->ctx, "app", "POST", URL, "--b\r\n", "multipart/form-data; boundary=b"),
	                 APICRED_ERR_UNSUPPORTED);
	assert_non_null(strstr(apicred_errmsg(), "multipart"));
}

static void test_time_and_none(void **state)
{
	struct t *f = *state;

	s_tcx(f, "time", "owtc", "time", "");
	s_tcx(f, "none", "owtc", "none", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	/* time: J is the UTC datetime, also sent as tcx_datetime. */
	assert_pass(f, "time", "GET", URL "?a=1", NULL, NULL, "20181230235959");
	assert_string_equal(fx_query(s_fx, "tcx_datetime"), "20181230235959");
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_QUERY), 1);
	fx_wall_ms = 1700000000123LL; /* 2023-11-14 22:13:20 UTC */
	assert_pass(f, "time", "POST", URL, "{\"a\":1}", "application/json", "20231114221320");
	assert_string_equal(fx_query(s_fx, "tcx_datetime"), "20231114221320");
	/* none: J is empty whatever the request. */
	assert_pass(f, "none", "GET", URL "?a=1&b=2", NULL, NULL, "");
	assert_int_equal(apicred_cred_count(s_fx->cred, APICRED_QUERY), 0);
}

static void test_ftc_and_long_public(void **state)
{
	struct t *f = *state;
	char pub[121], conf[512];

	s_tcx(f, "ftc", "ftc", "none", "master_key = \"" MASTER "\";");
	for (int i = 0; i < 120; i++)
		pub[i] = (char)('a' + i % 26);
	pub[120] = '\0';
	snprintf(conf, sizeof(conf),
	         "stack = ( { provider = \"tcx\"; type = \"owtc\"; mode = \"param\";\n"
	         "  app_id = \"" APP "\"; app_public = \"%s\"; } );\n", pub);
	fx_service(s_fx, "long", 0600, "url = \"https://tcx.example/\";\n"
	           "%s", conf);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);

	assert_pass(f, "ftc", "GET", URL "?a=1", NULL, NULL, "");
	assert_string_equal(fx_header(s_fx, "X-TCX-TYPE"), "FTC");
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64(MASTER, strlen(MASTER)));
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), "c2ItdGN4LW1hc3Rlcg==");
	assert_int_equal(apicred_cred_expires_at(s_fx->cred), 0);

	assert_int_equal(fx_request(s_fx, f->ctx, "long", "GET", URL "?a=1", NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"), fx_tcx_pass("a=1&", pub, DYN));
}

/* dyn: 32 characters from [a-z0-9] only, whatever the random bytes. */
static void test_dyn(void **state)
{
	struct t *f = *state;
	unsigned char raw[128];
	int n;
	char *colon;

	s_tcx(f, "none", "owtc", "none", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	for (int i = 0; i < 256; i++)
		fx_random_pattern[i] = (unsigned char)(255 - i);
	fx_random_len = 256;
	assert_int_equal(fx_request(s_fx, f->ctx, "none", "GET", URL, NULL, NULL), APICRED_OK);
	n = EVP_DecodeBlock(raw, (const unsigned char *)fx_header(s_fx, "X-TCX-APP-PASS"),
	                    (int)strlen(fx_header(s_fx, "X-TCX-APP-PASS")));
	/* 73 bytes of pass; EVP_DecodeBlock counts the two padding bytes too. */
	assert_int_equal(n, 75);
	raw[73] = '\0';
	colon = strchr((char *)raw, ':');
	assert_non_null(colon);
	assert_int_equal(colon - (char *)raw, 40);
	assert_int_equal(strspn(colon + 1, "0123456789abcdefghijklmnopqrstuvwxyz"), 32);
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"), fx_tcx_pass("", PUB, colon + 1));
	/* 255..252 are dropped for an even spread: the first is 251 % 36. */
	assert_int_equal(colon[1], "0123456789abcdefghijklmnopqrstuvwxyz"[251 % 36]);

	/* A random source that never gives a usable byte fails; it does not hang. */
	fx_random_pattern[0] = 255;
	fx_random_len = 1;
	assert_int_equal(fx_request(s_fx, f->ctx, "none", "GET", URL, NULL, NULL), APICRED_ERR_INTERNAL);
	assert_non_null(strstr(apicred_errmsg(), "random"));
}

/* ---- the core's random bytes, buffered per thread ---------------------- */

/* The dyn in a pass of mode none (hex(sha1) ":" dyn), into dyn[33]; 0 if
 * the pass is not one. No cmocka here: a forked child uses it. */
static int s_dyn_of(const char *pass, char dyn[33])
{
	unsigned char raw[128];

	if (!pass || strlen(pass) != 100 ||
	    EVP_DecodeBlock(raw, (const unsigned char *)pass, 100) != 75 || raw[40] != ':')
		return 0;
	memcpy(dyn, raw + 41, 32);
	dyn[32] = '\0';
	return strspn(dyn, "0123456789abcdefghijklmnopqrstuvwxyz") == 32;
}

#define S_DRAWS 300 /* 300 nonces of 48 bytes: more than one refill of the buffer */

struct s_drawer {
	apicred_ctx *ctx;
	char dyn[S_DRAWS][33];
	int ok;
};

static void *s_draw(void *arg)
{
	struct s_drawer *d = arg;
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred;

	req.url = URL;
	if (apicred_cred_new(&cred) != APICRED_OK)
		return NULL;
	d->ok = 1;
	for (int i = 0; i < S_DRAWS && d->ok; i++)
		d->ok = apicred_get(d->ctx, "none", &req, cred) == APICRED_OK &&
		        s_dyn_of(apicred_cred_find(cred, APICRED_HEADER, "X-TCX-APP-PASS"), d->dyn[i]);
	apicred_cred_free(cred);
	return NULL;
}

/* Without an injected source the core hands out OpenSSL's bytes from a
 * per-thread buffer: no nonce repeats, within a thread, across threads, or
 * between a parent and the child it forks; an injected source still wins. */
static void test_random_buffer(void **state)
{
	struct t *f = *state;
	static struct s_drawer d[3]; /* this thread, and two at once */
	pthread_t th[2];
	apicred_ctx *hooked;
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char child[33] = "", next[33];
	int fds[2], status, counts[36] = { 0 };
	pid_t pid;

	s_tcx(f, "none", "owtc", "none", "");
	s_fx->hooks = FX_CLOCK;
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	for (int t = 0; t < 3; t++)
		d[t].ctx = f->ctx;
	s_draw(&d[0]);
	assert_true(d[0].ok);
	for (int t = 1; t < 3; t++)
		assert_int_equal(pthread_create(&th[t - 1], NULL, s_draw, &d[t]), 0);
	for (int t = 1; t < 3; t++) {
		assert_int_equal(pthread_join(th[t - 1], NULL), 0);
		assert_true(d[t].ok);
	}
	for (int a = 0; a < 3 * S_DRAWS; a++)
		for (int b = a + 1; b < 3 * S_DRAWS; b++)
			assert_string_not_equal(d[a / S_DRAWS].dyn[a % S_DRAWS],
			                        d[b / S_DRAWS].dyn[b % S_DRAWS]);
	/* And no byte is handed out twice, even wiped (a wiped one is a '0'):
	 * each of the 36 characters comes 800 times in 28800, give or take 28
	 * (one standard deviation); 200 off is beyond any chance. */
	for (int a = 0; a < 3 * S_DRAWS; a++)
		for (int i = 0; i < 32; i++)
			counts[(int)(strchr(alphabet, d[a / S_DRAWS].dyn[a % S_DRAWS][i]) - alphabet)]++;
	for (int c = 0; c < 36; c++)
		assert_in_range(counts[c], 600, 1000);

	/* This thread's buffer holds bytes not yet handed out: a child forked
	 * now must not hand out the ones the parent hands out next. */
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok = fx_request(s_fx, f->ctx, "none", "GET", URL, NULL, NULL) == APICRED_OK &&
		         s_dyn_of(fx_header(s_fx, "X-TCX-APP-PASS"), child) &&
		         write(fds[1], child, 32) == 32;
		_exit(ok ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], child, 32), 32);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(fx_request(s_fx, f->ctx, "none", "GET", URL, NULL, NULL), APICRED_OK);
	assert_true(s_dyn_of(fx_header(s_fx, "X-TCX-APP-PASS"), next));
	assert_string_not_equal(child, next);
	for (int i = 0; i < S_DRAWS; i++)
		assert_string_not_equal(child, d[0].dyn[i]);

	/* An injected source is used as is, even by a thread with a buffer. */
	s_fx->hooks = FX_CLOCK | FX_RANDOM;
	hooked = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, hooked, "none", "GET", URL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-TCX-APP-PASS"), fx_tcx_pass("", PUB, DYN));
	apicred_close(hooked);
}

static void test_bad_config(void **state)
{
	struct t *f = *state;

	s_tcx(f, "twtcparam", "twtc", "param", "base_url = \"https://x.example/\";");
	s_tcx(f, "twtcnobase", "twtc", "none", "");
	s_tcx(f, "ftcnomaster", "ftc", "none", "");
	s_tcx(f, "owtcmaster", "owtc", "none", "master_key = \"m\";");
	s_tcx(f, "badtype", "xyz", "none", "");
	s_tcx(f, "badmode", "owtc", "params", "");
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(apicred_check(f->ctx, "twtcparam"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "twtcparam"));
	assert_non_null(strstr(apicred_errmsg(), "app_pass itself"));
	assert_int_equal(apicred_check(f->ctx, "twtcnobase"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "base_url"));
	assert_int_equal(apicred_check(f->ctx, "ftcnomaster"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "master_key"));
	assert_int_equal(apicred_check(f->ctx, "owtcmaster"), APICRED_ERR_CONFIG);
	assert_non_null(strstr(apicred_errmsg(), "master_key"));
	assert_int_equal(apicred_check(f->ctx, "badtype"), APICRED_ERR_CONFIG);
	assert_int_equal(apicred_check(f->ctx, "badmode"), APICRED_ERR_CONFIG);
	assert_int_equal(fx_request(s_fx, f->ctx, "twtcparam", "GET", URL, NULL, NULL), APICRED_ERR_CONFIG);
}

/* ---- twtc: authorize, reauthorize, failures, TCXTFX -------------------------------- */

static void s_twtc(struct t *f, const char *name, const char *mode)
{
	char extra[256];

	if (!s_sb)
		s_sb = fx_sandbox_start();
	snprintf(extra, sizeof(extra),
	         "base_url = \"http://127.0.0.1:%d/script/tcx\"; insecure_http = true;", s_sb->port);
	s_tcx(f, name, "twtc", mode, extra);
}

static const char *s_ok(const char *token, const char *refresh, const char *expired)
{
	static char body[512];

	snprintf(body, sizeof(body),
	         "{\"status\":1,\"status_code\":\"TCXSSS\",\"status_number\":\"F05003\","
	         "\"status_message\":\"Authentication Success\",\"data\":{\"token\":\"%s\","
	         "\"refresh\":\"%s\",\"expired_at\":\"%s\"}}", token, refresh, expired);
	return body;
}

/* The JSON body of the i-th request to the server; member key as text. */
static const char *s_member(struct t *f, size_t i, const char *key)
{
	static char out[512];
	fx_req r = fx_sandbox_req(s_sb, i);
	json_t *root = json_loadb(r.body, r.body_len, 0, NULL), *v = json_object_get(root, key);

	if (!v) {
		json_decref(root);
		return NULL;
	}
	snprintf(out, sizeof(out), "%s", json_string_value(v));
	json_decref(root);
	return out;
}

static void test_twtc_authorize(void **state)
{
	struct t *f = *state;
	fx_req r;

	s_twtc(f, "twtc", "none");
	s_twtc(f, "twtct", "time");
	fx_sandbox_answer(s_sb, 200, NULL, s_ok("tok-1", "ref-1", "2018-12-31 00:59:59"));
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);

	assert_pass(f, "twtc", "GET", URL "?a=1", NULL, NULL, "");
	assert_string_equal(fx_header(s_fx, "X-TCX-TYPE"), "TWTC");
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64("tok-1", 5));
	assert_int_equal(apicred_cred_expires_at(s_fx->cred), 1546214399 + 3600);
	assert_int_equal(fx_sandbox_count(s_sb), 1);
	r = fx_sandbox_req(s_sb, 0);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.target, "/script/tcx/tcx/authorize");
	assert_string_equal(fx_req_header(&r, "Content-Type"), "application/json");
	assert_string_equal(s_member(f, 0, "app_id"), APP);
	assert_string_equal(s_member(f, 0, "app_pass"), fx_tcx_pass("", PUB, DYN));
	assert_null(s_member(f, 0, "tcx_datetime"));

	/* time: the authorize body carries the datetime its pass covers. */
	assert_pass(f, "twtct", "GET", URL, NULL, NULL, "20181230235959");
	assert_string_equal(s_member(f, 1, "tcx_datetime"), "20181230235959");
	assert_string_equal(s_member(f, 1, "app_pass"), fx_tcx_pass("20181230235959", PUB, DYN));
	assert_string_equal(fx_query(s_fx, "tcx_datetime"), "20181230235959");

	/* Cached: no more requests. */
	assert_pass(f, "twtc", "GET", URL, NULL, NULL, "");
	assert_int_equal(fx_sandbox_count(s_sb), 2);
}

static void test_twtc_reauthorize(void **state)
{
	struct t *f = *state;
	const char *refused = "{\"status\":0,\"status_code\":\"TCXAFX\",\"status_number\":\"505101\","
	                      "\"status_message\":\"Authentication Failed\"}";

	s_twtc(f, "twtc", "none");
	fx_sandbox_answer(s_sb, 200, NULL, s_ok("tok-1", "ref-1", "2018-12-31 00:59:59"));
	fx_sandbox_then(s_sb, 200, NULL, "{\"status\":1,\"status_code\":\"TCXSSS\",\"status_number\":\"F05103\","
	               "\"status_message\":\"Token refreshed\",\"data\":{\"refresh\":\"ref-2\","
	               "\"expired_at\":\"2018-12-31 01:59:59\"}}");
	fx_sandbox_then(s_sb, 200, NULL, refused);
	fx_sandbox_then(s_sb, 200, NULL, s_ok("tok-2", "ref-3", "2018-12-31 02:59:59"));
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);

	/* Past the expiry: renewed with base64(refresh); the token stays. */
	fx_mono_ms += 3601 * 1000;
	fx_wall_ms += 3601 * 1000;
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 2);
	assert_string_equal(fx_sandbox_req(s_sb, 1).target, "/script/tcx/tcx/reauthorize");
	assert_string_equal(s_member(f, 1, "app_id"), APP);
	assert_string_equal(s_member(f, 1, "token"), fx_base64("ref-1", 5));
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64("tok-1", 5));

	/* Next time the refresh token is refused: authorize afresh. */
	fx_mono_ms += 3600 * 1000;
	fx_wall_ms += 3600 * 1000;
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);
	assert_int_equal(fx_sandbox_count(s_sb), 4);
	assert_string_equal(s_member(f, 2, "token"), fx_base64("ref-2", 5));
	assert_string_equal(fx_sandbox_req(s_sb, 3).target, "/script/tcx/tcx/authorize");
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64("tok-2", 5));
	assert_true(fx_logged(s_fx, "505101"));
}

static void test_twtc_failures(void **state)
{
	struct t *f = *state;
	static const struct { const char *body; int code; const char *needle; } cases[] = {
		{ "{\"status\":0,\"status_code\":\"TCXAFX\",\"status_number\":\"505001\","
		  "\"status_message\":\"Authentication Failed\"}", APICRED_ERR_AUTH, "TCXAFX 505001" },
		{ "{\"status\":0,\"status_code\":\"TCXCRQ\",\"status_number\":\"405000\","
		  "\"status_message\":\"Credentials Required\"}", APICRED_ERR_AUTH, "TCXCRQ 405000" },
		{ "{\"status\":0,\"status_code\":\"TCXERX\",\"status_number\":\"105002\","
		  "\"status_message\":\"Server Fault\"}", APICRED_ERR_UNAVAILABLE, "server fault" },
		{ "{\"status\":1,\"data\":{}}", APICRED_ERR_PROTOCOL, "data.token" },
		{ "{\"data\":{\"token\":\"x\"}}", APICRED_ERR_PROTOCOL, "status" },
		{ "not json", APICRED_ERR_PROTOCOL, "JSON" },
	};

	s_twtc(f, "twtc", "none");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx_sandbox_answer(s_sb, 200, NULL, cases[i].body);
		apicred_close(f->ctx);
		f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
		assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), cases[i].code);
		if (!strstr(apicred_errmsg(), cases[i].needle) || !strstr(apicred_errmsg(), "twtc"))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, apicred_errmsg(), cases[i].needle);
		assert_null(strstr(apicred_errmsg(), PUB));
	}
	/* An HTTP error keeps the server's words. */
	fx_sandbox_answer(s_sb, 404, NULL, "{\"error\":\"no such route\"}");
	apicred_close(f->ctx);
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_ERR_AUTH);
	assert_non_null(strstr(apicred_errmsg(), "404"));
}

static void test_twtc_tfx_drops_token(void **state)
{
	struct t *f = *state;
	const char *tfx = "{\"status\":0,\"status_code\":\"TCXTFX\",\"status_number\":\"505005\","
	                  "\"status_message\":\"TCX Token did not valid\"}";
	const char *pfx = "{\"status\":0,\"status_code\":\"TCXPFX\",\"status_number\":\"505003\","
	                  "\"status_message\":\"TCX Pass did not match\"}";
	const char *ok = "{\"status\":1,\"x\":\"TCX\"}";
	const char *mkf = "{\"status\":0,\"status_code\":\"TCXMKF\",\"status_number\":\"105\","
	                  "\"status_message\":\"TCX Master Key did not valid\"}";
	int retry = -1;

	s_twtc(f, "twtc", "none");
	fx_sandbox_answer(s_sb, 200, NULL, s_ok("tok-1", "ref-1", "2018-12-31 00:59:59"));
	fx_sandbox_then(s_sb, 200, NULL, s_ok("tok-2", "ref-2", "2018-12-31 00:59:59"));
	f->ctx = fx_ctx(s_fx, APICRED_OPEN_NO_BACKGROUND);
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);

	/* Another refusal is logged with its code, but keeps the token. */
	assert_int_equal(apicred_report(f->ctx, "twtc", s_fx->cred, 200, pfx, strlen(pfx), &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 0);
	assert_true(fx_logged(s_fx, "TCXPFX 505003"));
	assert_true(fx_logged(s_fx, "mode"));
	/* An older server's number: the code name still explains it. */
	assert_int_equal(apicred_report(f->ctx, "twtc", s_fx->cred, 200, mkf, strlen(mkf), &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 0);
	assert_true(fx_logged(s_fx, "TCXMKF 105 \"TCX Master Key did not valid\": master key"));
	/* A success body is no refusal. */
	assert_int_equal(apicred_report(f->ctx, "twtc", s_fx->cred, 200, ok, strlen(ok), &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64("tok-1", 5));

	/* TCXTFX: the token is dropped and the next get authorizes afresh
	 * (not reauthorize: that would only extend the refused token). */
	assert_int_equal(apicred_report(f->ctx, "twtc", s_fx->cred, 200, tfx, strlen(tfx), &retry),
	                 APICRED_OK);
	assert_int_equal(retry, 1);
	assert_true(fx_logged(s_fx, "TCXTFX 505005"));
	assert_int_equal(fx_request(s_fx, f->ctx, "twtc", "GET", URL, NULL, NULL), APICRED_OK);
	assert_string_equal(fx_header(s_fx, "X-TCX-TOKEN"), fx_base64("tok-2", 5));
	assert_int_equal(fx_sandbox_count(s_sb), 2);
	assert_string_equal(fx_sandbox_req(s_sb, 1).target, "/script/tcx/tcx/authorize");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_readme_sample, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_sorting, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_utf8, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_special_values, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_empty, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_json_casts, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_body_sources, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_param_refusals, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_time_and_none, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_ftc_and_long_public, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_dyn, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_random_buffer, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_twtc_authorize, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_twtc_reauthorize, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_twtc_failures, s_setup, s_teardown),
		cmocka_unit_test_setup_teardown(test_twtc_tfx_drops_token, s_setup, s_teardown),
	};

	return cmocka_run_group_tests_name("tcx", tests, NULL, s_group_teardown);
}
