/*
 * fuzz_origin: the origin check, against where libcurl would connect.
 * Input: a service URL, a newline, a request URL.
 *  1. ac_url_same_origin(ac_url_origin(A), B): when it says "same", libcurl
 *     must parse both (as CURLOPT_URL does) to the same scheme, host and
 *     port.
 *  2. apicred_get on two services (default port and 8443) with B as the
 *     request URL: when it hands out the credentials, B must lead libcurl
 *     to the service's host and port, and so must apicred_cred_url(B)
 *     (B with the key appended to its query).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "core/internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

struct s_dest {
	char *scheme, *host, *port;
};

static void s_dest_free(struct s_dest *d)
{
	curl_free(d->scheme);
	curl_free(d->host);
	curl_free(d->port);
	memset(d, 0, sizeof(*d));
}

/* Where libcurl connects for CURLOPT_URL = url: it parses with these
 * flags (lib/url.c) and resolves the host, at the port, for the scheme. */
static int s_dest(const char *url, struct s_dest *d)
{
	CURLU *u = curl_url();
	int ok;

	memset(d, 0, sizeof(*d));
	if (!u)
		abort();
	ok = curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) ==
	             CURLUE_OK &&
	     curl_url_get(u, CURLUPART_SCHEME, &d->scheme, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_HOST, &d->host, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_PORT, &d->port, CURLU_DEFAULT_PORT) == CURLUE_OK;
	curl_url_cleanup(u);
	if (!ok)
		s_dest_free(d);
	return ok;
}

static void s_same_dest(const char *why, const char *a, const char *b)
{
	struct s_dest da, db;

	if (!s_dest(b, &db))
		return; /* libcurl would not connect anywhere */
	if (!s_dest(a, &da) || strcasecmp(da.scheme, db.scheme) != 0 ||
	    strcasecmp(da.host, db.host) != 0 || strcmp(da.port, db.port) != 0) {
		fprintf(stderr, "fuzz_origin: %s: '%s' and '%s' lead libcurl to different places\n",
		        why, a, b);
		abort();
	}
	s_dest_free(&da);
	s_dest_free(&db);
}

static const char *const s_urls[] = { "https://api.example.test/",
                                       "https://API.Example.test:8443/base" };
static apicred_ctx *s_ctx;
static apicred_cred *s_cred;

static void s_setup(void)
{
	char text[300], path[64];

	if (s_ctx)
		return;
	fz_init();
	fz_confdir("conf");
	for (int i = 0; i < 2; i++) {
		snprintf(text, sizeof(text), "url = \"%s\";\nstack = ( { provider = \"apikey\"; "
		         "key = \"file:secrets/one\"; in = \"query\"; } );\n", s_urls[i]);
		snprintf(path, sizeof(path), "conf/conf.d/o%d.conf", i);
		fz_write(path, text, strlen(text));
	}
	if (!(s_ctx = fz_open("conf")) || apicred_cred_new(&s_cred) != APICRED_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *p = data;
	size_t n = len;
	char *a, *b, *o;
	apicred_request req = APICRED_REQUEST_INIT;

	s_setup();
	fz_input(data, len);
	a = fz_cut(&p, &n, "\n");
	b = fz_cut(&p, &n, "\n");

	if ((o = ac_url_origin(a))) {
		if (ac_url_same_origin(o, b))
			s_same_dest("ac_url_same_origin", a, b);
		free(o);
	}

	req.url = b;
	for (int i = 0; i < 2; i++) {
		char *sent = NULL;

		if (apicred_get(s_ctx, i ? "o1" : "o0", &req, s_cred) != APICRED_OK)
			continue;
		s_same_dest("apicred_get", s_urls[i], b);
		if (apicred_cred_url(s_cred, b, &sent) == APICRED_OK) {
			s_same_dest("apicred_cred_url", s_urls[i], sent);
			free(sent);
		}
	}
	free(a);
	free(b);
	return 0;
}
