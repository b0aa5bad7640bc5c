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
 * Client authentication is `basic` (RFC 6749 §2.3.1: id and secret are
 * form-encoded *before* being joined with ':' and base64-encoded, so secrets
 * holding ':' '+' '/' '%' survive) or `post` (both in the body). The other
 * method is never tried silently: a server refusing one is a configuration
 * error the admin must see.
 *
 * Header value: an explicit `prefix` always wins (`prefix = ""` sends the
 * bare token). Otherwise token_type "bearer" (any case), a missing
 * token_type and MoMo's "access_token" give "Bearer <token>"; any other type
 * (mac, dpop, ...) needs a proof this provider does not produce, so the
 * token is refused (RFC 6749 §7.1: do not use a token type you do not
 * understand) and the message names the `prefix` key as the way out.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "token_url", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL,
	  "the token endpoint (https://...)" },
	{ "client_id", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL,
	  "client id (file:PATH, env:NAME or literal); MoMo: the API user" },
	{ "client_secret", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET, NULL, NULL,
	  "client secret (file:PATH, env:NAME or literal); MoMo: the API key" },
	{ "client_auth", APICRED_T_STRING, 0, "basic", "basic|post",
	  "client authentication: HTTP Basic or client_id/client_secret in the body" },
	{ "scope", APICRED_T_LIST, 0, NULL, NULL,
	  "scope(s) to request, sent space-separated" },
	{ "audience", APICRED_T_STRING, 0, NULL, NULL, "audience form field" },
	{ "resource", APICRED_T_STRING, 0, NULL, NULL, "resource form field (RFC 8707)" },
	{ "params", APICRED_T_GROUP, 0, NULL, NULL,
	  "extra form fields of the token request: { name = \"value\"; }" },
	{ "headers", APICRED_T_LIST, 0, NULL, NULL,
	  "extra token-request headers, \"Name: value\"" },
	{ "header", APICRED_T_STRING, 0, "Authorization", NULL,
	  "header that carries the token" },
	{ "prefix", APICRED_T_STRING, 0, NULL, NULL,
	  "text before the token (default \"Bearer \" for bearer tokens)" },
	{ "max_body", APICRED_T_INT, 0, "65536", NULL,
	  "largest token response accepted, in bytes" },
	{ "provision_url", APICRED_T_STRING, 0, NULL, NULL,
	  "MoMo sandbox provisioning base URL (…/v1_0), for `apicred provision`" },
	{ "callback_host", APICRED_T_STRING, 0, NULL, NULL,
	  "providerCallbackHost of a provisioned MoMo API user" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

/* The token request, built once and reused by every fetch. The body (post)
 * and the Basic header hold secrets: both are wiped on release. */
struct s_req {
	char *body;
	size_t body_len;
	char **headers;  /* NULL-terminated "Name: value" */
	size_t nheaders;
};

struct s_state {
	const char *token_url;   /* strings owned by the config */
	const char *header;
	const char *prefix;      /* explicit prefix, or NULL */
	int post;                /* client_auth = post */
	long long max_body;
	char *fields;            /* form fields other than the client's */
	const char *provision_url;
	const char *callback_host;
	int ready;               /* req built at init (secrets were there) */
	struct s_req req;
};

/* A token with the header value built around it: "Bearer <token>". */
struct s_session {
	size_t value_len;
	char value[];
};

/* ---- helpers --------------------------------------------------------- */

static void s_wipe_free(char *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

static void s_req_release(struct s_req *r)
{
	if (r->headers) {
		for (size_t i = 0; i < r->nheaders; i++)
			if (r->headers[i])
				s_wipe_free(r->headers[i], strlen(r->headers[i]));
		free(r->headers);
	}
	s_wipe_free(r->body, r->body_len);
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
	s_wipe_free(*buf, *len);
	*buf = nb;
	*len = need - 1;
	rc = APICRED_OK;
out:
	if (en)
		s_wipe_free(en, strlen(en));
	if (ev)
		s_wipe_free(ev, strlen(ev));
	return rc;
}

/* An HTTP header line "Name: value" with a token name and no CR/LF. */
static int s_header_line_ok(const char *line)
{
	const char *colon = strchr(line, ':');

	if (!colon || colon == line)
		return 0;
	for (const char *p = line; p < colon; p++)
		if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
			return 0;
	return strpbrk(colon, "\r\n") == NULL;
}

/* http_free for a response that may never have been filled. */
static void s_resp_free(const apicred_host *host, apicred_http_response *resp)
{
	if (resp->body || resp->content_type)
		host->http_free(host, resp);
	memset(resp, 0, sizeof(*resp));
}

/* ---- init ------------------------------------------------------------ */

/* The form fields that do not depend on the client's secrets. */
static int s_build_fields(struct s_state *st, const apicred_host *host)
{
	static const char *const reserved[] = {
		"grant_type", "client_id", "client_secret", "scope", "audience", "resource", NULL
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
	char *id = NULL, *secret = NULL, *eid = NULL, *esecret = NULL, *pair = NULL, *b64 = NULL;
	size_t id_len = 0, secret_len = 0, nextra, pair_len = 0, h = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = host->secret(host, "client_id", &id, &id_len)) != APICRED_OK)
		return rc;
	if ((rc = host->secret(host, "client_secret", &secret, &secret_len)) != APICRED_OK)
		goto out;
	if (id_len == 0 || secret_len == 0) {
		rc = host->error(host, APICRED_ERR_SECRET, "%s: the secret is empty",
		                 id_len == 0 ? "client_id" : "client_secret");
		goto out;
	}

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

	if (st->post) {
		if ((rc = s_form_add(host, &r->body, &r->body_len, "client_id", id)) ||
		    (rc = s_form_add(host, &r->body, &r->body_len, "client_secret", secret)))
			goto out;
	} else {
		/* RFC 6749 §2.3.1: form-encode each part before joining them. */
		if ((rc = host->form_escape(host, id, &eid)) ||
		    (rc = host->form_escape(host, secret, &esecret)))
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
	rc = APICRED_OK;
out:
	if (rc != APICRED_OK)
		s_req_release(r);
	if (id)
		host->secret_free(host, id, id_len);
	if (secret)
		host->secret_free(host, secret, secret_len);
	if (eid)
		s_wipe_free(eid, strlen(eid));
	if (esecret)
		s_wipe_free(esecret, strlen(esecret));
	s_wipe_free(pair, pair_len);
	if (b64)
		s_wipe_free(b64, strlen(b64));
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

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	long long max_body = 65536;
	size_t n;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->token_url = host->cfg_str(host, "token_url");
	st->header = host->cfg_str(host, "header");
	st->prefix = host->cfg_str(host, "prefix");
	st->post = strcmp(host->cfg_str(host, "client_auth"), "post") == 0;
	st->provision_url = host->cfg_str(host, "provision_url");
	st->callback_host = host->cfg_str(host, "callback_host");
	host->cfg_int(host, "max_body", &max_body);
	st->max_body = max_body;

	if (!st->token_url || !*st->token_url) {
		rc = host->error(host, APICRED_ERR_CONFIG, "token_url: empty");
		goto fail;
	}
	if (!st->header || !*st->header || strpbrk(st->header, ": \t\r\n")) {
		rc = host->error(host, APICRED_ERR_CONFIG, "header: not a header name");
		goto fail;
	}
	if (st->prefix && strpbrk(st->prefix, "\r\n")) {
		rc = host->error(host, APICRED_ERR_CONFIG, "prefix: contains CR or LF");
		goto fail;
	}
	if (max_body < 64) {
		rc = host->error(host, APICRED_ERR_CONFIG, "max_body: %lld is too small", max_body);
		goto fail;
	}
	if (st->callback_host && !s_host_ok(st->callback_host)) {
		rc = host->error(host, APICRED_ERR_CONFIG, "callback_host: not a host name");
		goto fail;
	}
	n = host->cfg_count(host, "headers");
	for (size_t i = 0; i < n; i++) {
		const char *name, *v;

		host->cfg_item(host, "headers", i, &name, &v);
		if (!s_header_line_ok(v)) {
			rc = host->error(host, APICRED_ERR_CONFIG,
			                 "headers[%zu]: not a \"Name: value\" header line", i);
			goto fail;
		}
	}
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
	return APICRED_OK;
fail:
	s_fini(st);
	return rc;
}

/* ---- fetch ----------------------------------------------------------- */

/* expires_in as a number or numeric string; 0 (the core's default TTL) for
 * missing, zero, negative or garbage values. */
static int64_t s_lifetime_ms(const apicred_host *host, const char *body, size_t len)
{
	char *v = NULL, *end;
	double secs;
	int64_t ms = 0;

	if (host->json_get(host, body, len, "expires_in", &v) != APICRED_OK)
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
	free(v);
	return ms;
}

/* The value apply sends before the token, or NULL for a type we refuse. */
static const char *s_prefix_for(const struct s_state *st, const char *token_type)
{
	if (st->prefix)
		return st->prefix;
	if (!token_type || !*token_type || strcasecmp(token_type, "bearer") == 0 ||
	    strcasecmp(token_type, "access_token") == 0) /* MoMo's odd type */
		return "Bearer ";
	return NULL;
}

static int s_parse_token(const struct s_state *st, const apicred_host *host,
                         const apicred_http_response *resp, apicred_session *out)
{
	char *token = NULL, *type = NULL, *err = NULL;
	struct s_session *s;
	const char *prefix;
	size_t plen, tlen;
	int rc;

	rc = host->json_get(host, resp->body, resp->body_len, "access_token", &token);
	if (rc == APICRED_ERR_PROTOCOL)
		return host->error(host, APICRED_ERR_PROTOCOL,
		                   "token endpoint answered %ld with a body that is not a JSON object",
		                   resp->status);
	if (rc != APICRED_OK || !*token) {
		/* Some servers answer 200 with an OAuth error object. */
		if (host->json_get(host, resp->body, resp->body_len, "error", &err) == APICRED_OK)
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
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)token[i] < 0x20 || token[i] == 0x7f) {
			rc = host->error(host, APICRED_ERR_PROTOCOL,
			                 "token endpoint sent an access_token with control "
			                 "characters (CR/LF): refused");
			goto out;
		}
	host->json_get(host, resp->body, resp->body_len, "token_type", &type);
	prefix = s_prefix_for(st, type);
	if (!prefix) {
		rc = host->error(host, APICRED_ERR_UNSUPPORTED,
		                 "token endpoint issued a token of type \"%.40s\", which is not "
		                 "a bearer token; set `prefix` to send it anyway", type);
		goto out;
	}
	plen = strlen(prefix);
	s = malloc(sizeof(*s) + plen + tlen + 1);
	if (!s) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(s->value, prefix, plen);
	memcpy(s->value + plen, token, tlen + 1);
	s->value_len = plen + tlen;
	out->data = s;
	out->lifetime_ms = s_lifetime_ms(host, resp->body, resp->body_len);
	rc = APICRED_OK;
out:
	if (token)
		s_wipe_free(token, strlen(token));
	free(type);
	free(err);
	return rc;
}

static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	const struct s_state *st = state;
	apicred_http_request req = { .size = sizeof(req) };
	apicred_http_response resp = { 0 };
	struct s_req tmp;
	const struct s_req *r = &st->req;
	int rc;

	if (!st->ready) {
		if ((rc = s_build_req(st, host, &tmp)) != APICRED_OK)
			return rc;
		r = &tmp;
	}
	req.method = "POST";
	req.url = st->token_url;
	req.headers = (const char *const *)r->headers;
	req.body = r->body;
	req.body_len = r->body_len;
	req.content_type = "application/x-www-form-urlencoded";
	req.max_body = (size_t)st->max_body; /* the core refuses a longer reply */

	rc = host->http(host, &req, &resp);
	if (!st->ready)
		s_req_release(&tmp);
	if (rc != APICRED_OK) {
		s_resp_free(host, &resp);
		return rc;
	}

	if (resp.status < 200 || resp.status > 299) {
		rc = host->http_error(host, &resp, "token endpoint");
		if (resp.retry_after_ms > 0)
			out->retry_after_ms = resp.retry_after_ms;
	} else {
		rc = s_parse_token(st, host, &resp, out);
	}
	s_resp_free(host, &resp);
	return rc;
}

static void s_session_free(void *state, void *data)
{
	struct s_session *s = data;

	if (s)
		s_wipe_free((char *)s, sizeof(*s) + s->value_len + 1);
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	const struct s_state *st = state;
	const struct s_session *s = session;

	if (!s)
		return host->error(host, APICRED_ERR_INTERNAL, "no token");
	return host->add_header(out, st->header, s->value);
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

/* {provision_url}/apiuser[/id[/suffix]] without doubling a '/'. */
static char *s_purl(const struct s_state *st, const char *id, const char *suffix)
{
	size_t blen = strlen(st->provision_url), n;
	char *url;

	while (blen && st->provision_url[blen - 1] == '/')
		blen--;
	n = blen + 64 + (id ? strlen(id) : 0) + (suffix ? strlen(suffix) : 0);
	if (!(url = malloc(n)))
		return NULL;
	snprintf(url, n, "%.*s/apiuser%s%s%s%s", (int)blen, st->provision_url,
	         id ? "/" : "", id ? id : "", suffix ? "/" : "", suffix ? suffix : "");
	return url;
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
	char *id = NULL, *url = NULL, *cb = NULL, *env = NULL;
	size_t id_len = 0;
	int rc;

	if ((rc = host->secret(host, "client_id", &id, &id_len)) != APICRED_OK)
		return rc;
	if (id_len == 0 || id_len > 64 || strspn(id, "0123456789abcdefABCDEF-") != id_len) {
		rc = host->error(host, APICRED_ERR_SECRET, "client_id: not a MoMo API user id");
		goto out;
	}
	if (!(req.url = url = s_purl(st, id, NULL))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = host->http(host, &req, &resp)) != APICRED_OK)
		goto out;
	if (resp.status != 200) {
		rc = s_prov_error(host, &resp, "reading the API user", id);
		goto out;
	}
	host->json_get(host, resp.body, resp.body_len, "providerCallbackHost", &cb);
	host->json_get(host, resp.body, resp.body_len, "targetEnvironment", &env);
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

static int s_provision(void *state, const apicred_host *host, unsigned flags,
                       char **report)
{
	const struct s_state *st = state;
	apicred_http_request req = { .size = sizeof(req), .method = "POST" };
	apicred_http_response resp = { 0 };
	const char *hdrs[2] = { NULL, NULL };
	char id[37], refhdr[64], body[300], *url = NULL, *key = NULL, *old;
	size_t old_len;
	int rc;

	*report = NULL;
	if (!st->provision_url)
		return host->error(host, APICRED_ERR_UNSUPPORTED,
		                   "provision_url is not set: nothing to provision");
	if (flags & APICRED_PROVISION_SHOW)
		return s_provision_show(st, host, report);
	if (!st->callback_host)
		return host->error(host, APICRED_ERR_CONFIG,
		                   "callback_host is required to create a MoMo API user");
	if (!APICRED_HOST_HAS(host, secret_store_all))
		return host->error(host, APICRED_ERR_UNSUPPORTED,
		                   "this libapicred cannot store two secrets together: update it");

	/* Refuse before creating anything remotely: an orphan API user helps
	 * nobody. secret_store checks again, atomically. */
	if (!(flags & APICRED_PROVISION_FORCE)) {
		static const char *const keys[] = { "client_id", "client_secret" };

		for (int i = 0; i < 2; i++)
			if (host->secret(host, keys[i], &old, &old_len) == APICRED_OK) {
				host->secret_free(host, old, old_len);
				return host->error(host, APICRED_ERR_EXISTS,
				                   "%s already holds a value; use --force to replace it",
				                   keys[i]);
			}
	}

	if ((rc = s_uuid4(host, id)) != APICRED_OK)
		return rc;
	snprintf(refhdr, sizeof(refhdr), "X-Reference-Id: %s", id);
	snprintf(body, sizeof(body), "{\"providerCallbackHost\":\"%s\"}", st->callback_host);
	hdrs[0] = refhdr;
	req.headers = hdrs;
	req.body = body;
	req.body_len = strlen(body);
	req.content_type = "application/json";
	if (!(req.url = url = s_purl(st, NULL, NULL))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
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
	if (!(req.url = url = s_purl(st, id, "apikey"))) {
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
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
	if (key)
		s_wipe_free(key, strlen(key));
	return rc;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (!st)
		return;
	s_req_release(&st->req);
	free(st->fields);
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
};

APICRED_PROVIDER_V1(s_vtable)
