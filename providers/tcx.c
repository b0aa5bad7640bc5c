/*
 * tcx: verzth TCX headers (seed 003), as the TCX v3 server checks them.
 *
 *   { provider = "tcx"; type = "owtc"; mode = "param";
 *     app_id = "my-app"; app_public = "file:secrets/tcx.public"; }
 *   { provider = "tcx"; type = "twtc"; mode = "time"; base_url = "https://api.example/";
 *     app_id = "my-app"; app_public = "file:secrets/tcx.public"; }
 *   { provider = "tcx"; type = "ftc"; mode = "none"; master_key = "file:secrets/tcx.master";
 *     app_id = "my-app"; app_public = "file:secrets/tcx.public"; }
 *
 * Every request carries X-TCX-TYPE, X-TCX-APP-ID and
 *   X-TCX-APP-PASS = base64(hex(sha1(J + app_public + dyn)) ":" dyn)
 * with a fresh dyn of 32 characters from [a-z0-9] (the server lowercases
 * dyn before hashing, so uppercase would never match). J depends on the
 * server's mode:
 *   none   ""
 *   time   YYYYMMDDHHmmss (UTC), also sent as the query parameter tcx_datetime
 *   param  every request parameter as PHP/Laravel sees them: the query string
 *          and a form or JSON body (the body wins on a clash), decoded, sorted
 *          by key in byte order and joined as "k=v&" for each pair (the
 *          trailing '&' is kept: the server's rtrim() result is discarded).
 * twtc adds X-TCX-TOKEN = base64(access token) from POST base_url/tcx/authorize,
 * renewed with tcx/reauthorize; ftc adds X-TCX-TOKEN = base64(master_key).
 *
 * TCX servers answer HTTP 200 with {"status":0,"status_code":...} when they
 * refuse; fetch and feedback turn those bodies into clear errors and log lines.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm, memmem */
#endif
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "type", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, "owtc|twtc|ftc",
	  "owtc: app pass only; twtc: plus an access token from tcx/authorize; ftc: plus the master key" },
	{ "mode", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, "param|time|none",
	  "what the app pass covers; must be the server's setting" },
	{ "app_id", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_NONEMPTY, NULL, NULL,
	  "application id (X-TCX-APP-ID)" },
	{ "app_public", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY,
	  NULL, NULL,
	  "application public key, hashed into the app pass (file:PATH, env:NAME or literal)" },
	{ "base_url", APICRED_T_URL, 0, NULL, NULL,
	  "twtc: the server's base URL; tcx/authorize and tcx/reauthorize are below it" },
	{ "master_key", APICRED_T_STRING, APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "ftc: the master access token" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

enum s_type { S_OWTC, S_TWTC, S_FTC };
enum s_mode { S_PARAM, S_TIME, S_NONE };

static const char *const s_type_hdr[] = { "OWTC", "TWTC", "FTC" };

struct s_state {
	const apicred_host *host;
	enum s_type type;
	enum s_mode mode;
	const char *app_id;        /* owned by the config */
	char *app_public;          /* secret */
	size_t app_public_len;
	char *master_b64;          /* ftc: base64(master key), a secret */
	char *authorize_url;       /* twtc */
	char *reauthorize_url;
	EVP_MD *sha1;
	_Atomic(EVP_MD_CTX *) spare; /* a SHA-1 context for the next s_pass */
	/* The headers known at init, checked once (a core with header_new), and
	 * the name of the pass (a core with add_encoded). */
	apicred_header *hdr_type, *hdr_id, *hdr_master, *hdr_pass;
};

/* A twtc access token; token_b64 is what X-TCX-TOKEN carries. */
struct s_session {
	char *token;
	char *token_b64;
	char *refresh;             /* NULL when the server gave none */
};

/* ---- TCX status bodies ----------------------------------------------- */

/* What each failure number means, for errors a person can act on. The
 * 405000..105002 family answers tcx/authorize, 405100.. tcx/reauthorize,
 * the rest the protected routes. */
static const struct {
	const char *number, *code, *hint;
	int err;
} s_status[] = {
	{ "705000", "TCXREQ", "the request carried no TCX headers", APICRED_ERR_AUTH },
	{ "205001", "TCXRJC", "the server does not accept this type (check type)", APICRED_ERR_AUTH },
	{ "405002", "TCXAFX", "app_id unknown, invalid or inactive", APICRED_ERR_AUTH },
	{ "505003", "TCXPFX", "app pass did not match (check app_public, and that mode is the server's)", APICRED_ERR_AUTH },
	{ "505004", "TCXMKF", "master key not valid (check master_key)", APICRED_ERR_AUTH },
	{ "505005", "TCXTFX", "access token not valid", APICRED_ERR_AUTH },
	{ "405000", "TCXCRQ", "app_id and app_pass missing from the authorize request", APICRED_ERR_AUTH },
	{ "505001", "TCXAFX", "app_id or app pass rejected (check app_id, app_public, and that mode is the server's)", APICRED_ERR_AUTH },
	{ "105002", "TCXERX", "server fault", APICRED_ERR_UNAVAILABLE },
	{ "405100", "TCXCRQ", "app_id and refresh token missing from the reauthorize request", APICRED_ERR_AUTH },
	{ "505101", "TCXAFX", "refresh token rejected", APICRED_ERR_AUTH },
	{ "105102", "TCXERX", "server fault", APICRED_ERR_UNAVAILABLE },
};
#define S_NSTATUS (sizeof(s_status) / sizeof(s_status[0]))

/* What fetch and feedback read of a reply, from one parse. */
enum { S_STATUS, S_CODE, S_NUMBER, S_MESSAGE, S_TOKEN, S_REFRESH, S_EXPIRED, S_NFIELDS };
static const char *const s_fields[S_NFIELDS] = {
	"status", "status_code", "status_number", "status_message",
	"data.token", "data.refresh", "data.expired_at",
};

static void s_reply_free(const apicred_host *host, char *v[S_NFIELDS])
{
	for (int i = 0; i < S_NFIELDS; i++)
		host->wipe_free(host, v[i], APICRED_WIPE_STR); /* tokens among them */
}

/* If v is a TCX failure body ({"status":0,...}), describes it in msg and
 * returns the error code to use; returns APICRED_OK otherwise. *tfx tells
 * whether the access token was refused. */
static int s_failure(char *const v[S_NFIELDS], char *msg, size_t msglen, int *tfx)
{
	const char *hint = "unknown TCX status", *code = v[S_CODE], *number = v[S_NUMBER];
	int err = APICRED_ERR_AUTH;

	*tfx = 0;
	if (!v[S_STATUS] || (strcmp(v[S_STATUS], "0") != 0 && strcmp(v[S_STATUS], "false") != 0))
		return APICRED_OK;
	/* By number, else by code name: older servers number differently
	 * (TCXTFX was 104), and a name is shared by several numbers. */
	for (size_t i = 0; i < 2 * S_NSTATUS; i++) {
		const char *want = i < S_NSTATUS ? s_status[i].number : s_status[i - S_NSTATUS].code;
		const char *got = i < S_NSTATUS ? number : code;

		if (got && strcmp(got, want) == 0) {
			hint = s_status[i % S_NSTATUS].hint;
			err = s_status[i % S_NSTATUS].err;
			break;
		}
	}
	*tfx = code && strcmp(code, "TCXTFX") == 0;
	snprintf(msg, msglen, "%.16s %.16s \"%.200s\": %s", code ? code : "?",
	         number ? number : "?", v[S_MESSAGE] ? v[S_MESSAGE] : "", hint);
	return err;
}

/* ---- init ------------------------------------------------------------ */

static void s_fini(void *state);

static int s_init(const apicred_host *host, void **state)
{
	const char *type = host->cfg_str(host, "type");
	const char *mode = host->cfg_str(host, "mode");
	const char *base = host->cfg_str(host, "base_url");
	int has_master = host->cfg_str(host, "master_key") != NULL;
	struct s_state *st;
	char *master;
	size_t master_len;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->type = strcmp(type, "twtc") == 0 ? S_TWTC : strcmp(type, "ftc") == 0 ? S_FTC : S_OWTC;
	st->mode = strcmp(mode, "time") == 0 ? S_TIME : strcmp(mode, "none") == 0 ? S_NONE : S_PARAM;
	st->app_id = host->cfg_str(host, "app_id");

	if (st->type == S_TWTC && st->mode == S_PARAM) {
		rc = host->error(host, APICRED_ERR_CONFIG,
		                 "type = \"twtc\" cannot use mode = \"param\" (line %d): the server "
		                 "checks the tcx/authorize pass over all of that request's parameters, "
		                 "app_pass itself included, so no pass can ever match; set the server "
		                 "and this layer to mode \"time\" or \"none\"",
		                 host->cfg_line(host, "mode"));
		goto fail;
	}
	if ((st->type == S_TWTC) != (base != NULL)) {
		rc = host->error(host, APICRED_ERR_CONFIG, base
		                 ? "base_url (line %d) is only used with type = \"twtc\""
		                 : "type = \"twtc\" (line %d) needs base_url, the server's base URL",
		                 host->cfg_line(host, base ? "base_url" : "type"));
		goto fail;
	}
	if ((st->type == S_FTC) != has_master) {
		rc = host->error(host, APICRED_ERR_CONFIG, has_master
		                 ? "master_key (line %d) is only used with type = \"ftc\""
		                 : "type = \"ftc\" (line %d) needs master_key, the master access token",
		                 host->cfg_line(host, has_master ? "master_key" : "type"));
		goto fail;
	}
	/* Only twtc has a session (its access token). */
	if (st->type != S_TWTC && (rc = host->no_session(host)) != APICRED_OK)
		goto fail;
	/* The routes sit below the base whether or not it ends in '/'. base_url
	 * is an http(s) URL, app_id and the secrets are not empty: the schema
	 * says so and the core checks. */
	if (base && ((rc = host->url_join(host, base, "tcx/authorize", &st->authorize_url)) ||
	             (rc = host->url_join(host, base, "tcx/reauthorize", &st->reauthorize_url))))
		goto fail;

	rc = host->secret(host, "app_public", &st->app_public, &st->app_public_len);
	if (rc != APICRED_OK)
		goto fail;
	if (has_master) {
		rc = host->secret(host, "master_key", &master, &master_len);
		if (rc != APICRED_OK)
			goto fail;
		rc = host->base64(host, master, master_len, &st->master_b64);
		host->secret_free(host, master, master_len);
		if (rc != APICRED_OK)
			goto fail;
	}

	if (APICRED_HOST_HAS(host, header_free) &&
	    ((rc = host->header_new(host, "X-TCX-TYPE", s_type_hdr[st->type], &st->hdr_type)) ||
	     (rc = host->header_new(host, "X-TCX-APP-ID", st->app_id, &st->hdr_id)) ||
	     (st->master_b64 &&
	      (rc = host->header_new(host, "X-TCX-TOKEN", st->master_b64, &st->hdr_master)))))
		goto fail;
	if (APICRED_HOST_HAS(host, add_encoded) &&
	    (rc = host->header_new(host, "X-TCX-APP-PASS", "", &st->hdr_pass)))
		goto fail;

	st->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	if (!st->sha1) {
		rc = host->error(host, APICRED_ERR_INTERNAL, "OpenSSL has no SHA-1");
		goto fail;
	}
	*state = st;
	return APICRED_OK;

fail:
	s_fini(st);
	return rc;
}

/* ---- the app pass ---------------------------------------------------- */

#define S_DYN_LEN 32

/* 32 characters from [a-z0-9]: bytes >= 252 are dropped so each of the
 * 36 characters is equally likely. */
static int s_dyn(const apicred_host *host, char dyn[S_DYN_LEN + 1])
{
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned char buf[48];
	size_t n = 0, i;
	int rc, rounds = 0;

	while (n < S_DYN_LEN) {
		/* A source that keeps giving bytes >= 252 is broken: no hang. */
		if (++rounds > 16)
			return host->error(host, APICRED_ERR_INTERNAL,
			                   "the random source gives no usable bytes");
		rc = host->random(host, buf, sizeof(buf));
		if (rc != APICRED_OK)
			return rc;
		for (i = 0; i < sizeof(buf) && n < S_DYN_LEN; i++)
			if (buf[i] < 252)
				dyn[n++] = alphabet[buf[i] % 36];
	}
	dyn[S_DYN_LEN] = '\0';
	OPENSSL_cleanse(buf, sizeof(buf));
	return APICRED_OK;
}

/* hex(sha1(...)) ":" dyn, and its base64 */
#define S_PLAIN_MAX (2 * EVP_MAX_MD_SIZE + 1 + S_DYN_LEN)
#define S_PASS_MAX (4 * ((S_PLAIN_MAX + 2) / 3) + 1)

/* hex(sha1(J + app_public + dyn)) ":" dyn, the app pass before base64,
 * and its length in *n. */
static int s_plain(struct s_state *st, const apicred_host *host,
                   const char *j, size_t jlen, char plain[S_PLAIN_MAX], size_t *n)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char dyn[S_DYN_LEN + 1], *hex = NULL;
	/* A spare context taken with an atomic exchange (apply runs on many
	 * threads): no allocation per request on the common path. */
	EVP_MD_CTX *ctx, *none = NULL;
	size_t hlen;
	int rc, ok;

	if ((rc = s_dyn(host, dyn)) != APICRED_OK)
		return rc;
	if (!(ctx = atomic_exchange(&st->spare, NULL)))
		ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestInit_ex(ctx, st->sha1, NULL) &&
	     EVP_DigestUpdate(ctx, j, jlen) &&
	     EVP_DigestUpdate(ctx, st->app_public, st->app_public_len) &&
	     EVP_DigestUpdate(ctx, dyn, S_DYN_LEN) &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen);
	if (ctx && !atomic_compare_exchange_strong(&st->spare, &none, ctx))
		EVP_MD_CTX_free(ctx);
	if (!ok)
		return host->error(host, APICRED_ERR_INTERNAL, "SHA-1 failed");
	hlen = 2 * mdlen;
	if (APICRED_HOST_HAS(host, hex_into)) {
		host->hex_into(host, md, mdlen, plain);
	} else { /* an older core */
		if ((rc = host->hex(host, md, mdlen, &hex)) != APICRED_OK)
			return rc;
		memcpy(plain, hex, hlen);
		free(hex);
	}
	plain[hlen] = ':';
	memcpy(plain + hlen + 1, dyn, S_DYN_LEN);
	*n = hlen + 1 + S_DYN_LEN;
	return APICRED_OK;
}

/* base64(hex(sha1(J + app_public + dyn)) ":" dyn) */
static int s_pass(struct s_state *st, const apicred_host *host,
                  const char *j, size_t jlen, char pass[S_PASS_MAX])
{
	char plain[S_PLAIN_MAX];
	size_t n;
	int rc = s_plain(st, host, j, jlen, plain, &n);

	if (rc == APICRED_OK)
		EVP_EncodeBlock((unsigned char *)pass, (unsigned char *)plain, (int)n);
	return rc;
}

/* tcx_datetime: the wall clock as YYYYMMDDHHmmss in UTC. */
static void s_datetime(const apicred_host *host, char out[15])
{
	time_t t = (time_t)(host->now_wall_ms(host) / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(out, 15, "%Y%m%d%H%M%S", &tm) != 14)
		strcpy(out, "19700101000000");
}

/* ---- param mode: the parameters as the PHP server sees them ---------- */

struct s_kv {
	const char *k, *v;
	size_t klen, vlen, seq;
};

/* Small requests (the common case) use the inline arrays: no allocation. */
#define S_INLINE_KV 16
#define S_INLINE_BUF 512

struct s_params {
	struct s_kv *kv;  /* inline_kv, or malloc'ed past it */
	size_t n, cap;
	char *buf;        /* decoded query and form text, number casts */
	size_t used, size;
	char *j;          /* the joined string J: inline_j, or malloc'ed */
	struct s_kv inline_kv[S_INLINE_KV];
	char inline_buf[S_INLINE_BUF];
	char inline_j[S_INLINE_BUF];
};

static int s_hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0'
	     : c >= 'a' && c <= 'f' ? c - 'a' + 10
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The bytes s_urldecode looks at; the rest are copied as they are. */
static const unsigned char s_special[256] = { ['&'] = 1, ['='] = 1, ['+'] = 1, ['%'] = 1 };

/* urldecode() of s up to end, or up to the first '&' (or '=' too when
 * stop_eq): '+' is a space, %XX a byte, a stray '%' stays. One pass that
 * splits and decodes; returns where it stopped. */
static const char *s_urldecode(const char *s, const char *end, int stop_eq, char *out,
                               size_t *outlen)
{
	char *o = out;

	while (s < end) {
		unsigned char c = (unsigned char)*s;

		if (!s_special[c]) { /* most bytes */
			*o++ = (char)c;
			s++;
		} else if (c == '&' || (c == '=' && stop_eq)) {
			break;
		} else if (c == '+') {
			*o++ = ' ';
			s++;
		} else if (c == '%' && end - s > 2 && s_hexval((unsigned char)s[1]) >= 0 &&
		           s_hexval((unsigned char)s[2]) >= 0) {
			/* '&' and '=' are no hex digits: an escape never spans a pair's end */
			*o++ = (char)(s_hexval((unsigned char)s[1]) * 16 +
			              s_hexval((unsigned char)s[2]));
			s += 3;
		} else {
			*o++ = (char)c;
			s++;
		}
	}
	*outlen = (size_t)(o - out);
	return s;
}

static int s_push(const apicred_host *host, struct s_params *p, const char *k,
                  size_t klen, const char *v, size_t vlen)
{
	if (!p->kv) {
		p->kv = p->inline_kv;
		p->cap = S_INLINE_KV;
	}
	if (p->n == p->cap) {
		size_t cap = 2 * p->cap;
		struct s_kv *kv = malloc(cap * sizeof(*kv));

		if (!kv)
			return host->error(host, APICRED_ERR_NOMEM, "out of memory");
		memcpy(kv, p->kv, p->n * sizeof(*kv));
		if (p->kv != p->inline_kv)
			free(p->kv);
		p->kv = kv;
		p->cap = cap;
	}
	p->kv[p->n] = (struct s_kv){ k, v, klen, vlen, p->n };
	p->n++;
	return APICRED_OK;
}

/* parse_str(): pairs split on '&', decoded, then PHP's variable-name rules:
 * leading spaces dropped, ' ' and '.' become '_', an empty name is skipped.
 * A name with '[' would become a PHP array, which the server's pass cannot
 * cover ("Array"): refused. */
static int s_parse_form(const apicred_host *host, struct s_params *p,
                        const char *s, size_t len, const char *what)
{
	const char *end = s + len;
	char *k, *v;
	size_t klen, vlen, i;
	int rc;

	while (s < end) {
		k = p->buf + p->used;
		s = s_urldecode(s, end, 1, k, &klen);
		v = k + klen;
		vlen = 0;
		if (s < end && *s == '=')
			s = s_urldecode(s + 1, end, 0, v, &vlen);
		if (s < end)
			s++; /* the '&' */
		p->used += klen + vlen;
		while (klen && *k == ' ') {
			k++;
			klen--;
		}
		for (i = 0; i < klen; i++) {
			if (k[i] == ' ' || k[i] == '.')
				k[i] = '_';
			else if (k[i] == '[')
				return host->error(host, APICRED_ERR_UNSUPPORTED,
				                   "mode \"param\": %s parameter \"%.*s\" is an array, "
				                   "which a TCX app pass cannot cover", what,
				                   (int)(klen > 64 ? 64 : klen), k);
		}
		if (klen) {
			rc = s_push(host, p, k, klen, v, vlen);
			if (rc != APICRED_OK)
				return rc;
		}
	}
	return APICRED_OK;
}

/* (string)$float with PHP's default precision of 14: %.14G-like, but with
 * PHP's own exponent form ("1.0E+25", "1.5E-7"). */
static void s_php_float(double d, char *out, size_t outlen)
{
	char e[32], digits[16];
	int exp, decpt, nd, i, o = 0;

	if (isnan(d)) {
		snprintf(out, outlen, "NAN");
		return;
	}
	if (isinf(d)) {
		snprintf(out, outlen, d > 0 ? "INF" : "-INF");
		return;
	}
	if (d == 0) {
		snprintf(out, outlen, signbit(d) ? "-0" : "0");
		return;
	}
	/* 14 significant digits, correctly rounded, trailing zeros dropped. */
	snprintf(e, sizeof(e), "%.13e", fabs(d));
	digits[0] = e[0];
	memcpy(digits + 1, e + 2, 13);
	nd = 14;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	exp = atoi(e + 16);
	decpt = exp + 1;

	if (d < 0)
		out[o++] = '-';
	if (decpt < 0 ? decpt < -3 : decpt > 14) {
		/* d.dddE+x, with ".0" when there is a single digit */
		snprintf(out + o, outlen - o, "%c.%sE%c%d", digits[0], nd > 1 ? digits + 1 : "0",
		         exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
	} else if (decpt <= 0) {
		o += snprintf(out + o, outlen - o, "0.");
		for (i = decpt; i < 0; i++)
			out[o++] = '0';
		snprintf(out + o, outlen - o, "%s", digits);
	} else {
		for (i = 0; i < decpt; i++)
			out[o++] = i < nd ? digits[i] : '0';
		out[o] = '\0';
		if (nd > decpt)
			snprintf(out + o, outlen - o, ".%s", digits + decpt);
	}
}

/* One JSON value as PHP's string cast gives it. */
static int s_json_text(const apicred_host *host, struct s_params *p, const char *key,
                       json_t *v, const char **text, size_t *len)
{
	char *out = p->buf + p->used;

	switch (json_typeof(v)) {
	case JSON_STRING:
		*text = json_string_value(v);
		*len = json_string_length(v);
		return APICRED_OK;
	case JSON_INTEGER:
		*len = (size_t)snprintf(out, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		s_php_float(json_real_value(v), out, 32);
		*len = strlen(out);
		break;
	case JSON_TRUE:
		*len = (size_t)snprintf(out, 32, "1");
		break;
	case JSON_FALSE:
	case JSON_NULL:
		*len = 0;
		break;
	default:
		return host->error(host, APICRED_ERR_UNSUPPORTED,
		                   "mode \"param\": JSON body member \"%.64s\" is an %s; only a flat "
		                   "JSON object can be covered by a TCX app pass", key,
		                   json_is_array(v) ? "array" : "object");
	}
	*text = out;
	p->used += *len;
	return APICRED_OK;
}

/* Laravel's json(): (array) json_decode($body, true). An object gives its
 * members, a list its indexes, a scalar the key 0; invalid JSON nothing.
 * Each member needs at most S_JSON_ROOM bytes of buf (number, index key). */
#define S_JSON_ROOM 56

static json_t *s_load_json(const apicred_host *host, const char *body, size_t len,
                           size_t *members)
{
	json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

	if (!root)
		host->log(host, LOG_NOTICE, "mode \"param\": the JSON body does not parse; "
		          "like the server, the pass covers the query string only");
	*members = json_is_object(root) ? json_object_size(root)
	         : json_is_array(root) ? json_array_size(root)
	         : root && !json_is_null(root) ? 1 : 0;
	return root;
}

static int s_parse_json(const apicred_host *host, struct s_params *p, json_t *root)
{
	const char *key, *text;
	char *idx;
	size_t i, tlen, klen;
	json_t *v;
	int rc = APICRED_OK;

	if (json_is_object(root)) {
		json_object_foreach(root, key, v) {
			rc = s_json_text(host, p, key, v, &text, &tlen);
			if (rc == APICRED_OK)
				rc = s_push(host, p, key, strlen(key), text, tlen);
			if (rc != APICRED_OK)
				return rc;
		}
	} else if (json_is_array(root)) {
		for (i = 0; i < json_array_size(root) && rc == APICRED_OK; i++) {
			idx = p->buf + p->used;
			klen = (size_t)snprintf(idx, 24, "%zu", i);
			p->used += klen;
			rc = s_json_text(host, p, idx, json_array_get(root, i), &text, &tlen);
			if (rc == APICRED_OK)
				rc = s_push(host, p, idx, klen, text, tlen);
		}
	} else if (root && !json_is_null(root)) {
		rc = s_json_text(host, p, "0", root, &text, &tlen);
		if (rc == APICRED_OK)
			rc = s_push(host, p, "0", 1, text, tlen);
	}
	return rc;
}

/* Whether x sorts after y: by key in byte order (memcmp's, inline: keys
 * are short and differ early), then by arrival. */
static inline bool s_kv_after(const struct s_kv *x, const struct s_kv *y)
{
	const unsigned char *xk = (const unsigned char *)x->k, *yk = (const unsigned char *)y->k;
	size_t n = x->klen < y->klen ? x->klen : y->klen;

	for (size_t i = 0; i < n; i++)
		if (xk[i] != yk[i])
			return xk[i] > yk[i];
	return x->klen != y->klen ? x->klen > y->klen : x->seq > y->seq;
}

static int s_kv_cmp(const void *a, const void *b)
{
	return s_kv_after(a, b) ? 1 : -1; /* never equal: arrivals differ */
}

static int s_has(const char *s, const char *needle)
{
	size_t n = strlen(needle);

	for (; *s; s++)
		if (strncasecmp(s, needle, n) == 0)
			return 1;
	return 0;
}

/* The pairs sorted by key, then by arrival; the last of equal keys wins,
 * which is both parse_str's rule and "the body wins over the query";
 * joined as "k=v&" each. A few pairs sort faster by insertion than
 * through qsort. */
static int s_join(const apicred_host *host, struct s_params *p, const char **j, size_t *jlen)
{
	size_t i, n;
	char *o;

	if (p->n > S_INLINE_KV) {
		qsort(p->kv, p->n, sizeof(*p->kv), s_kv_cmp);
	} else {
		for (i = 1; i < p->n; i++) {
			struct s_kv kv = p->kv[i];
			for (n = i; n > 0 && s_kv_after(&p->kv[n - 1], &kv); n--)
				p->kv[n] = p->kv[n - 1];
			p->kv[n] = kv;
		}
	}
	n = 1;
	for (i = 0; i < p->n; i++)
		n += p->kv[i].klen + p->kv[i].vlen + 2;
	p->j = o = n <= sizeof(p->inline_j) ? p->inline_j : malloc(n);
	if (!o)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	*j = o;
	for (i = 0; i < p->n; i++) {
		if (i + 1 < p->n && p->kv[i + 1].klen == p->kv[i].klen &&
		    memcmp(p->kv[i + 1].k, p->kv[i].k, p->kv[i].klen) == 0)
			continue;
		memcpy(o, p->kv[i].k, p->kv[i].klen);
		o += p->kv[i].klen;
		*o++ = '=';
		memcpy(o, p->kv[i].v, p->kv[i].vlen);
		o += p->kv[i].vlen;
		*o++ = '&';
	}
	*o = '\0';
	*jlen = (size_t)(o - p->j);
	return APICRED_OK;
}

static void s_params_free(struct s_params *p)
{
	if (p->kv != p->inline_kv)
		free(p->kv);
	if (p->buf != p->inline_buf)
		free(p->buf);
	if (p->j != p->inline_j)
		free(p->j);
}

/* J for mode param, in p (s_params_free, whatever the outcome). */
static int s_param_string(const apicred_host *host, const apicred_request *req,
                          struct s_params *p, const char **j, size_t *jlen)
{
	const char *q, *body = req->body, *ct = req->content_type; /* resolved by the core */
	const char *method = req->method ? req->method : "GET";
	size_t qlen, blen = body ? req->body_len : 0, members = 0;
	json_t *root = NULL;
	int json = 0, form = 0, rc;

	p->kv = NULL;
	p->buf = p->j = NULL;
	p->n = p->cap = p->used = 0;
	if ((rc = host->request_query(host, req, &q, &qlen, NULL, NULL)) != APICRED_OK)
		return rc;
	if (blen && ct) {
		json = s_has(ct, "/json") || s_has(ct, "+json");
		form = strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
		if (strncasecmp(ct, "multipart/", 10) == 0)
			return host->error(host, APICRED_ERR_UNSUPPORTED,
			                   "mode \"param\": a multipart body cannot be covered; "
			                   "send a form or JSON body");
		/* Laravel reads a form body for every method but GET and HEAD. */
		if (form && (strcasecmp(method, "GET") == 0 || strcasecmp(method, "HEAD") == 0))
			form = 0;
	}

	if (json)
		root = s_load_json(host, body, blen, &members);
	p->size = qlen + (form ? blen : 0) + S_JSON_ROOM * members + 1;
	p->buf = p->size <= S_INLINE_BUF ? p->inline_buf : malloc(p->size);
	if (!p->buf) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto done;
	}
	rc = qlen ? s_parse_form(host, p, q, qlen, "query") : APICRED_OK;
	if (rc == APICRED_OK && form)
		rc = s_parse_form(host, p, body, blen, "form");
	if (rc == APICRED_OK && root)
		rc = s_parse_json(host, p, root);
	if (rc == APICRED_OK)
		rc = s_join(host, p, j, jlen);
done:
	json_decref(root); /* J points into p, not into the JSON */
	return rc;
}

/* ---- fetch (twtc) ---------------------------------------------------- */

static void s_sess_free(const apicred_host *host, struct s_session *sess)
{
	if (!sess)
		return;
	host->wipe_free(host, sess->token, APICRED_WIPE_STR);
	host->wipe_free(host, sess->token_b64, APICRED_WIPE_STR);
	host->wipe_free(host, sess->refresh, APICRED_WIPE_STR);
	free(sess);
}

static void s_session_free(void *state, void *data)
{
	s_sess_free(((struct s_state *)state)->host, data);
}

/* Records why a call failed: in the thread's error and in why, for the log. */
__attribute__((format(printf, 5, 6)))
static int s_fail(const apicred_host *host, char *why, size_t whylen, int code,
                  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return host->error(host, code, "%s", why);
}

/* "Y-m-d H:i:s" in UTC (the server's app timezone) to a lifetime; 0 (the
 * layer's default_ttl) when it is absent, garbled or already past. */
static int64_t s_lifetime(const apicred_host *host, const char *expired)
{
	struct tm tm = { 0 };
	int64_t at, now = host->now_wall_ms(host);
	char end;

	if (!expired)
		return 0;
	if (sscanf(expired, "%4d-%2d-%2d %2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &end) != 6) {
		host->log(host, LOG_WARNING, "expired_at \"%.40s\" is not \"Y-m-d H:i:s\": "
		          "using default_ttl", expired);
		return 0;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	at = (int64_t)timegm(&tm) * 1000;
	if (at <= now) {
		host->log(host, LOG_WARNING, "expired_at %.40s is already past (server clock or "
		          "timezone not UTC?): using default_ttl", expired);
		return 0;
	}
	return at - now;
}

/* The session a successful reply v describes; keep supplies the token when
 * the answer has none: reauthorize extends the same token and only rotates
 * refresh. */
static int s_session_from(const apicred_host *host, char *v[S_NFIELDS],
                          const struct s_session *keep, apicred_session *out)
{
	struct s_session *sess = calloc(1, sizeof(*sess));
	int rc;
	bool nomem = false;

	if (!sess)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	sess->token = v[S_TOKEN];
	sess->refresh = v[S_REFRESH];
	v[S_TOKEN] = v[S_REFRESH] = NULL; /* the session's now */
	if (!sess->token && keep)
		nomem = !(sess->token = strdup(keep->token));
	if (!sess->refresh && keep && keep->refresh)
		nomem = nomem || !(sess->refresh = strdup(keep->refresh));
	if (nomem)
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
	else if (!sess->token)
		rc = host->error(host, APICRED_ERR_PROTOCOL, "no data.token");
	else if ((rc = host->check_text(host, APICRED_ERR_PROTOCOL, "data.token", sess->token,
	                                strlen(sess->token))) == APICRED_OK && sess->refresh)
		rc = host->check_text(host, APICRED_ERR_PROTOCOL, "data.refresh", sess->refresh,
		                      strlen(sess->refresh));
	if (rc == APICRED_OK)
		rc = host->base64(host, sess->token, strlen(sess->token), &sess->token_b64);
	if (rc != APICRED_OK) {
		s_sess_free(host, sess);
		return rc;
	}
	out->lifetime_ms = s_lifetime(host, v[S_EXPIRED]);
	out->data = sess;
	return APICRED_OK;
}

/* POSTs a JSON object and reads {"status":1,"data":{"token","refresh",
 * "expired_at"}} into a session (s_session_from). */
static int s_call(const apicred_host *host, const char *url, const char *what,
                  json_t *body, const struct s_session *keep, apicred_session *out,
                  char *why, size_t whylen)
{
	apicred_http_request req = { .size = sizeof(req), .method = "POST", .url = url,
	                             .content_type = "application/json" };
	apicred_http_response resp = { 0 };
	char *text = json_dumps(body, JSON_COMPACT), *v[S_NFIELDS];
	char msg[300];
	int rc, tfx;

	if (!text)
		return s_fail(host, why, whylen, APICRED_ERR_NOMEM, "out of memory");
	req.body = text;
	req.body_len = strlen(text);
	rc = host->http(host, &req, &resp);
	host->wipe_free(host, text, req.body_len); /* carries the refresh token */
	if (rc != APICRED_OK) {
		snprintf(why, whylen, "tcx/%s: request failed", what);
		return rc;
	}
	if (resp.status < 200 || resp.status > 299) {
		out->retry_after_ms = resp.retry_after_ms > 0 ? resp.retry_after_ms : 0;
		snprintf(why, whylen, "tcx/%s answered HTTP %ld", what, resp.status);
		rc = host->http_error(host, &resp, what);
		host->http_free(host, &resp);
		return rc;
	}
	rc = host->json_get_many(host, resp.body, resp.body_len, S_NFIELDS, s_fields, v);
	host->http_free(host, &resp);
	if (rc != APICRED_OK)
		return s_fail(host, why, whylen, APICRED_ERR_PROTOCOL,
		              "tcx/%s answered something that is not a JSON object", what);
	if ((rc = s_failure(v, msg, sizeof(msg), &tfx)) != APICRED_OK)
		rc = s_fail(host, why, whylen, rc, "tcx/%s refused: %s", what, msg);
	else if (!v[S_STATUS] || (strcmp(v[S_STATUS], "1") != 0 && strcmp(v[S_STATUS], "true") != 0))
		rc = s_fail(host, why, whylen, APICRED_ERR_PROTOCOL,
		            "tcx/%s answered without \"status\":1", what);
	else if ((rc = s_session_from(host, v, keep, out)) != APICRED_OK)
		rc = s_fail(host, why, whylen, rc, "tcx/%s answered no usable data.token (%s)",
		            what, rc == APICRED_ERR_NOMEM ? "out of memory" : "missing or garbled");
	s_reply_free(host, v);
	return rc;
}

/* twtc alone has a session (the others said so at init). It renews with
 * the refresh token of the previous session, and authorizes afresh when
 * that fails or when the server refused the previous token (feedback
 * invalidated it). */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	const struct s_session *prev = previous;
	char why[400], dt[15] = "", pass[S_PASS_MAX], *refresh = NULL;
	json_t *body;
	int rc;

	/* reauthorize extends the same token: pointless once it was refused. */
	if (prev && prev->refresh &&
	    host->fetch_reason(host, previous) != APICRED_FETCH_INVALIDATED) {
		rc = host->base64(host, prev->refresh, strlen(prev->refresh), &refresh);
		if (rc != APICRED_OK)
			return rc;
		body = json_pack("{s:s, s:s}", "app_id", st->app_id, "token", refresh);
		host->wipe_free(host, refresh, APICRED_WIPE_STR);
		if (!body)
			return host->error(host, APICRED_ERR_NOMEM, "out of memory");
		rc = s_call(host, st->reauthorize_url, "reauthorize", body, prev, out, why, sizeof(why));
		json_decref(body);
		if (rc == APICRED_OK)
			return rc;
		host->log(host, LOG_NOTICE, "%s; authorizing afresh", why);
		out->retry_after_ms = 0;
	}

	if (st->mode == S_TIME)
		s_datetime(host, dt);
	rc = s_pass(st, host, dt, strlen(dt), pass);
	if (rc != APICRED_OK)
		return rc;
	body = json_pack("{s:s, s:s}", "app_id", st->app_id, "app_pass", pass);
	if (body && st->mode == S_TIME && json_object_set_new(body, "tcx_datetime", json_string(dt))) {
		json_decref(body);
		body = NULL;
	}
	if (!body)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	rc = s_call(host, st->authorize_url, "authorize", body, NULL, out, why, sizeof(why));
	json_decref(body);
	return rc;
}

/* A twtc session travels as "token" NUL "refresh" (refresh may be empty):
 * neither holds control characters. */
static int s_session_export(void *state, const apicred_host *host, const void *data,
                            void **out, size_t *len)
{
	const struct s_session *sess = data;
	size_t tl = strlen(sess->token), rl = sess->refresh ? strlen(sess->refresh) : 0;
	char *b = malloc(tl + 1 + rl);

	if (!b)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	memcpy(b, sess->token, tl + 1);
	if (rl)
		memcpy(b + tl + 1, sess->refresh, rl);
	*out = b;
	*len = tl + 1 + rl;
	return APICRED_OK;
}

static int s_session_import(void *state, const apicred_host *host, const void *in,
                            size_t len, void **data)
{
	const char *p = in, *nul = memchr(p, '\0', len);
	size_t tl = nul ? (size_t)(nul - p) : 0, rl = nul ? len - tl - 1 : 0;
	struct s_session *sess;
	int rc;

	if (!nul || host->check_text(host, APICRED_ERR_PROTOCOL, "shared token", p, tl) ||
	    (rl && host->check_text(host, APICRED_ERR_PROTOCOL, "shared refresh token",
	                            nul + 1, rl)))
		return host->error(host, APICRED_ERR_PROTOCOL, "garbled shared session");
	if (!(sess = calloc(1, sizeof(*sess))) || !(sess->token = strndup(p, tl)) ||
	    (rl && !(sess->refresh = strndup(nul + 1, rl)))) {
		s_sess_free(host, sess);
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
	rc = host->base64(host, sess->token, tl, &sess->token_b64);
	if (rc != APICRED_OK) {
		s_sess_free(host, sess);
		return rc;
	}
	*data = sess;
	return APICRED_OK;
}

/* ---- apply ----------------------------------------------------------- */

/* A header prepared at init (a core with header_new), else checked now. */
static int s_add(const apicred_host *host, apicred_out *out, const apicred_header *hdr,
                 const char *name, const char *value)
{
	return hdr ? host->add_prepared(host, out, hdr) : host->add_header(out, name, value);
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state; /* its spare context is atomic */
	const struct s_session *sess = session;
	struct s_params p;
	char dt[15] = "", plain[S_PLAIN_MAX], pass[S_PASS_MAX];
	const char *j = dt;
	size_t jlen = 0, n;
	int rc;

	if (st->type == S_TWTC && !sess)
		return host->error(host, APICRED_ERR_INTERNAL, "no access token");
	if (st->mode == S_PARAM) {
		rc = s_param_string(host, req, &p, &j, &jlen);
		if (rc == APICRED_OK)
			rc = s_plain(st, host, j, jlen, plain, &n);
		s_params_free(&p);
	} else {
		if (st->mode == S_TIME) {
			s_datetime(host, dt);
			jlen = 14;
		}
		rc = s_plain(st, host, j, jlen, plain, &n);
	}
	if (rc != APICRED_OK)
		return rc;

	rc = s_add(host, out, st->hdr_type, "X-TCX-TYPE", s_type_hdr[st->type]);
	if (rc == APICRED_OK)
		rc = s_add(host, out, st->hdr_id, "X-TCX-APP-ID", st->app_id);
	if (rc == APICRED_OK && st->hdr_pass) { /* the core writes the base64 */
		rc = host->add_encoded(host, out, st->hdr_pass, APICRED_ENC_BASE64, plain, n);
	} else if (rc == APICRED_OK) {
		EVP_EncodeBlock((unsigned char *)pass, (unsigned char *)plain, (int)n);
		rc = host->add_header(out, "X-TCX-APP-PASS", pass);
	}
	if (rc == APICRED_OK && st->type != S_OWTC)
		rc = st->type == S_TWTC ? host->add_header(out, "X-TCX-TOKEN", sess->token_b64)
		   : s_add(host, out, st->hdr_master, "X-TCX-TOKEN", st->master_b64);
	if (rc == APICRED_OK && st->mode == S_TIME)
		rc = host->add_query(out, "tcx_datetime", dt);
	return rc;
}

/* ---- feedback -------------------------------------------------------- */

/* Refusals come as HTTP 200 with a status body: say which one in the log,
 * and drop the access token the server no longer knows (TCXTFX). */
static apicred_feedback s_feedback(void *state, const apicred_host *host,
                                   const void *session, long status,
                                   const void *body, size_t body_len)
{
	const struct s_state *st = state;
	const char *b = body;
	char msg[300], *v[S_NFIELDS];
	size_t i = 0;
	int tfx, err;

	if (!body || body_len == 0 || !memmem(body, body_len, "TCX", 3))
		return APICRED_FEEDBACK_NONE;
	/* Only a JSON object can be one (and json_get_many must not record an
	 * error for every HTML page a feedback sees). */
	while (i < body_len && strchr(" \t\r\n", b[i]) && b[i])
		i++;
	if (i == body_len || b[i] != '{' ||
	    host->json_get_many(host, body, body_len, S_NFIELDS, s_fields, v) != APICRED_OK)
		return APICRED_FEEDBACK_NONE;
	err = s_failure(v, msg, sizeof(msg), &tfx);
	s_reply_free(host, v);
	if (err == APICRED_OK)
		return APICRED_FEEDBACK_NONE;
	/* The next fetch learns why it runs: it authorizes afresh. */
	if (tfx && st->type == S_TWTC && session) {
		host->log(host, LOG_WARNING, "server refused the request: %s; dropping the access token", msg);
		return APICRED_FEEDBACK_INVALIDATE;
	}
	host->log(host, LOG_WARNING, "server refused the request: %s", msg);
	return APICRED_FEEDBACK_NONE;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (!st)
		return;
	if (st->app_public)
		st->host->secret_free(st->host, st->app_public, st->app_public_len);
	st->host->wipe_free(st->host, st->master_b64, APICRED_WIPE_STR);
	free(st->authorize_url);
	free(st->reauthorize_url);
	if (APICRED_HOST_HAS(st->host, header_free)) {
		st->host->header_free(st->host, st->hdr_type);
		st->host->header_free(st->host, st->hdr_id);
		st->host->header_free(st->host, st->hdr_master);
		st->host->header_free(st->host, st->hdr_pass);
	}
	EVP_MD_CTX_free(atomic_load(&st->spare));
	EVP_MD_free(st->sha1);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "tcx",
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
