/*
 * bench_curl.c - issue 10, target 2: what apicred_curl_apply costs a real
 * keep-alive HTTPS request loop. Three variants, each on its own CURL handle
 * (its own kept-alive connection) to Debian's nginx on 127.0.0.1 (started by
 * bench/bench-env.sh with a certificate made by openssl at run time):
 *
 *   plain    CURLOPT_URL, no credential;
 *   apicred  apicred_curl_apply of an apikey service (X-API-Key) per request;
 *   by hand  CURLOPT_URL and the same X-API-Key header in a list made once;
 *   by hand, safe  the same, plus the TLS and redirect settings apicred
 *            makes on every request (peer and host verification, TLS 1.2
 *            at least, the CA file, no redirects): what the credential
 *            itself costs, beside what keeping the handle safe costs.
 *
 * Requests per second in rounds, the variants interleaved in every round
 * (rotating who goes first) so that noise hits them alike; the figures are
 * the median over rounds of each variant's rate over plain's, and of
 * apicred's over by hand's in the same round (the target's comparison: a
 * median of paired ratios, less noisy than the difference of two medians).
 * Beside them, the median time each variant spends setting the handle up
 * between two transfers, where apicred's extra cost lies: libcurl does the
 * same work on the wire for both (same request bytes, one kept-alive
 * connection, no new TLS session), but between transfers the code and data
 * apicred_curl_apply touches are cold, so it costs several times what it
 * does in bench_hot's tight loop. Without nginx the loop runs against the
 * sandbox (a Python server: far slower, so the ratios say less) and says
 * so. Figures, not assertions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <apicred/apicred.h>

#include "bench_util.h"

enum { C_PLAIN, C_APPLY, C_HAND, C_SAFE, C_N };

#define S_MAX_ROUNDS 1200

static const char *const s_label[C_N] = { "plain", "apicred_curl_apply", "by hand",
                                            "by hand, safe" };

struct s_body { char text[256]; size_t n; };

static size_t s_sink(char *data, size_t size, size_t n, void *user)
{
	struct s_body *b = user;
	size_t k = size * n, room = sizeof(b->text) - 1 - b->n;

	memcpy(b->text + b->n, data, k < room ? k : room);
	b->n += k < room ? k : room;
	b->text[b->n] = '\0';
	return k;
}

static apicred_ctx *s_ctx;
static apicred_cred *s_cred;
static apicred_request s_req = APICRED_REQUEST_INIT;
static struct curl_slist *s_hand;
static const char *s_ca;
static CURL *s_easy[C_N];
static struct s_body s_body[C_N];
/* Nanoseconds each request spent being set up (URL, headers, TLS). */
static double *s_setup[C_N];
static size_t s_nsetup[C_N];

static long s_one(int c)
{
	long status = 0;
	int64_t t0 = bench_ns();
	CURLcode rc;

	s_body[c].n = 0;
	switch (c) {
	case C_PLAIN:
		curl_easy_setopt(s_easy[c], CURLOPT_URL, s_req.url);
		break;
	case C_APPLY:
		if (apicred_curl_apply(s_ctx, "key", s_easy[c], &s_req, s_cred) != APICRED_OK)
			BENCH_DIE("apicred_curl_apply: %s", apicred_errmsg());
		break;
	case C_SAFE:
		curl_easy_setopt(s_easy[c], CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(s_easy[c], CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(s_easy[c], CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
		curl_easy_setopt(s_easy[c], CURLOPT_CAINFO, s_ca);
		curl_easy_setopt(s_easy[c], CURLOPT_FOLLOWLOCATION, 0L);
		/* fall through */
	default:
		curl_easy_setopt(s_easy[c], CURLOPT_URL, s_req.url);
		curl_easy_setopt(s_easy[c], CURLOPT_HTTPHEADER, s_hand);
		break;
	}
	if (s_setup[c])
		s_setup[c][s_nsetup[c]++] = (double)(bench_ns() - t0);
	if ((rc = curl_easy_perform(s_easy[c])) != CURLE_OK)
		BENCH_DIE("%s: %s", s_label[c], curl_easy_strerror(rc));
	curl_easy_getinfo(s_easy[c], CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* Requests per second of n requests of variant c. */
static double s_round(int c, int n)
{
	int64_t t0 = bench_ns();

	for (int i = 0; i < n; i++)
		s_one(c);
	return n / ((double)(bench_ns() - t0) / 1e9);
}

int main(void)
{
	int nginx, rounds, per_round;
	double rate[C_N][S_MAX_ROUNDS], ratio[C_N][S_MAX_ROUNDS], paired[S_MAX_ROUNDS];
	double safe[S_MAX_ROUNDS], m_rate[C_N], m_ratio[C_N], m_setup[C_N];
	double m_paired, m_safe;
	long fresh = 0;
	char url[1700];

	bench_init("bench_curl");
	bench_env_start("bench-env.sh", "nginx");
	nginx = *bench_env("NGINX") != '\0';
	if (nginx)
		printf("   against nginx %s\n", bench_env("NGINX"));
	else
		printf("   NO NGINX (%s): falling back to the sandbox %s, a Python server whose\n"
		       "   own cost hides most of the difference\n", bench_env("NGINX_WHY"),
		       bench_env("SB"));
	/* Short rounds, many of them: the machine's speed drifts, and a
	 * paired ratio is only as good as the two rounds are alike. */
	rounds = (nginx ? 60 : 4) * bench_runs();
	per_round = nginx ? 33 : 100;

	s_ctx = bench_open(bench_env("CONF"), 0);
	apicred_cred_new(&s_cred);
	snprintf(url, sizeof(url), "%s/apikey/echo", bench_env("KEY_URL"));
	s_req.url = url;
	s_hand = curl_slist_append(NULL, "X-API-Key: sb-apikey-0123456789");
	s_ca = bench_env("SB_CA"); /* the confdir's http.ca_file */
	for (int c = 0; c < C_N; c++) {
		s_easy[c] = curl_easy_init();
		curl_easy_setopt(s_easy[c], CURLOPT_CAINFO, bench_env("SB_CA"));
		curl_easy_setopt(s_easy[c], CURLOPT_WRITEFUNCTION, s_sink);
		curl_easy_setopt(s_easy[c], CURLOPT_WRITEDATA, &s_body[c]);
		for (int i = 0; i < 20; i++) /* connect, warm up */
			s_one(c);
	}
	/* The key went out where it should (nginx echoes it; the sandbox
	 * answers 200 only with it). */
	if (s_one(C_APPLY) != 200 || s_one(C_HAND) != 200 ||
	    (nginx && strcmp(s_body[C_APPLY].text, s_body[C_HAND].text) != 0))
		BENCH_DIE("the credentialed requests were not answered alike");
	for (int c = 0; c < C_N; c++)
		if (!(s_setup[c] = calloc((size_t)(rounds * per_round), sizeof(double))))
			BENCH_DIE("out of memory");

	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < C_N; k++) {
			int c = (k + r) % C_N;
			rate[c][r] = s_round(c, per_round);
		}
		for (int c = 0; c < C_N; c++)
			ratio[c][r] = rate[c][r] / rate[C_PLAIN][r];
		paired[r] = rate[C_APPLY][r] / rate[C_HAND][r];
		safe[r] = rate[C_APPLY][r] / rate[C_SAFE][r];
	}
	for (int c = 0; c < C_N; c++) {
		long n = 0;
		curl_easy_getinfo(s_easy[c], CURLINFO_NUM_CONNECTS, &n);
		fresh += n; /* connections the last request of each had to open */
	}
	printf("keep-alive HTTPS loop, %d interleaved rounds of %d requests per variant\n",
	       rounds, per_round);
	for (int c = 0; c < C_N; c++) {
		m_rate[c] = bench_median(rate[c], (size_t)rounds);
		m_ratio[c] = bench_median(ratio[c], (size_t)rounds);
		m_setup[c] = bench_median(s_setup[c], s_nsetup[c]);
		printf("   %-20s %8.0f requests/s  %7.1f us/request   x%.3f of plain"
		       "   setup %6.0f ns\n", s_label[c], m_rate[c], 1e6 / m_rate[c], m_ratio[c],
		       m_setup[c]);
	}
	m_paired = bench_median(paired, (size_t)rounds);
	m_safe = bench_median(safe, (size_t)rounds);
	printf("   apicred over by hand, round by round: x%.3f (median)\n", m_paired);
	printf("   apicred over by hand, safe, round by round: x%.3f (median)\n", m_safe);
	printf("   setup: median time per request setting the handle up between transfers\n");
	printf("   (connections the last requests had to open: %ld; 0 = kept alive)\n", fresh);
	printf("   target: apicred within 2%% of the same header set by hand\n");
	{
		char now[64];
		snprintf(now, sizeof(now), "%.3f of plain, %.3f of by hand", m_ratio[C_APPLY],
		         m_paired);
		bench_row(nginx ? "keep-alive HTTPS loop to a local nginx, apikey via "
		                  "`apicred_curl_apply`"
		                : "keep-alive HTTPS loop to the SANDBOX (no nginx), apikey via "
		                  "`apicred_curl_apply`",
		          now, "the same header set by hand: %.3f of plain (%.0f requests/s "
		          "plain; median of %d rounds); by hand with apicred's TLS and redirect "
		          "settings too: apicred %.3f of it; setting the handle up between "
		          "transfers: %.0f ns, by hand %.0f ns, by hand and safe %.0f ns",
		          m_ratio[C_HAND], m_rate[C_PLAIN], rounds, m_safe, m_setup[C_APPLY],
		          m_setup[C_HAND], m_setup[C_SAFE]);
	}

	for (int c = 0; c < C_N; c++) {
		curl_easy_cleanup(s_easy[c]);
		free(s_setup[c]);
	}
	curl_slist_free_all(s_hand);
	apicred_cred_free(s_cred);
	apicred_close(s_ctx);
	bench_env_stop();
	return 0;
}
