/*
 * bench_apply.c - what signing costs per request: apicred_get on a fresh
 * cache (the session is cached, so this is the core's hot path plus the
 * provider's apply) for hmac and tcx, with 10 request parameters, and for
 * sigv4 (a GET with 5 query parameters, a POST with a 1 KiB body), next to
 * the apikey provider as the baseline of the core alone.
 *
 * Real clocks and OpenSSL's random bytes (no test hooks). The hmac login is
 * answered once by a local HTTP server on 127.0.0.1 (tests/unit/signing_util.c).
 * Targets (issue 10, 6): hmac with 10 query parameters <= 1 us per call, tcx
 * param mode <= 2 us; sigv4 <= 3 us. Each figure is the median of
 * $BENCH_RUNS runs (the schemes interleaved in each) of the median of
 * batches. Figures, not assertions: the exit status only says whether the
 * bench could run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apicred/apicred.h>

#include "../tests/unit/signing_util.h"
#include "bench_util.h"

#ifndef BENCH_MODULEDIR
#define BENCH_MODULEDIR "providers/.libs"
#endif

/* Batches last a few ms: on a loaded machine longer ones are mostly
 * preempted, and their median then counts the waits for a CPU. */
#define S_BATCH 500
#define S_BATCHES 41

/* Median over batches of ns per apicred_get, wall and (in *cpu) the
 * thread's CPU time. */
static double s_measure(apicred_ctx *ctx, const char *service, const apicred_request *req,
                        apicred_cred *cred, const char *check_header, double *cpu)
{
	double per[S_BATCHES], percpu[S_BATCHES];
	int64_t t0, c0;

	for (int i = 0; i < 1000; i++) {
		if (apicred_get(ctx, service, req, cred) != APICRED_OK) {
			fprintf(stderr, "bench_apply: %s: %s\n", service, apicred_errmsg());
			exit(1);
		}
	}
	if (!apicred_cred_find(cred, APICRED_HEADER, check_header)) {
		fprintf(stderr, "bench_apply: %s: no %s header\n", service, check_header);
		exit(1);
	}
	for (int b = 0; b < S_BATCHES; b++) {
		t0 = bench_ns();
		c0 = bench_cpu_ns();
		for (int i = 0; i < S_BATCH; i++)
			apicred_get(ctx, service, req, cred);
		percpu[b] = (double)(bench_cpu_ns() - c0) / S_BATCH;
		per[b] = (double)(bench_ns() - t0) / S_BATCH;
	}
	*cpu = bench_median(percpu, S_BATCHES);
	return bench_median(per, S_BATCHES);
}

enum { S_KEY, S_HMACQ, S_HMACB, S_TCXP, S_TCXJ, S_TCXT, S_SIGQ, S_SIGB, S_N };

int main(void)
{
	static const char q10[] = "https://api.example/v1/items?page=2&per_page=50&sort=-created"
	                          "&filter%5Bstatus%5D=active&q=hello+world&lang=en&tz=UTC"
	                          "&fields=id,name,price&_ts=1700000000&Z=%C3%A9t%C3%A9";
	static const char q10s[] = "https://api.example/v1/items?page=2&per_page=50&sort=-created"
	                           "&status=active&q=hello+world&lang=en&tz=UTC"
	                           "&fields=id,name,price&_ts=1700000000&Z=%C3%A9t%C3%A9";
	static const char j10[] = "{\"page\":2,\"per_page\":50,\"sort\":\"-created\",\"status\":\"active\","
	                          "\"q\":\"hello world\",\"lang\":\"en\",\"tz\":\"UTC\",\"price\":12.5,"
	                          "\"gift\":false,\"_ts\":1700000000}";
	static const char q5[] = "https://api.example/v1/items?page=2&per_page=50&sort=-created"
	                         "&status=active&q=hello%20world";
	static const char *const json_ct[] = { "Content-Type: application/json", NULL };
	char kib[1025];
	const char *moduledir = getenv("APICRED_TEST_MODULEDIR");
	apicred_options o = { .size = sizeof(o) };
	apicred_request get = APICRED_REQUEST_INIT, post = APICRED_REQUEST_INIT;
	apicred_request gets = APICRED_REQUEST_INIT;
	apicred_request sget = APICRED_REQUEST_INIT, spost = APICRED_REQUEST_INIT;
	struct sg_server srv;
	apicred_ctx *ctx;
	apicred_cred *cred;
	char *confdir;
	struct {
		const char *label, *service, *header;
		const apicred_request *req;
		double target;
	} m[S_N] = {
		[S_KEY] = { "apikey (baseline: the core alone)", "key", "X-API-Key", &get, 0 },
		[S_HMACQ] = { "hmac, sign=query, 10 query parameters", "hmacq", "Signature", &get,
		              1000 },
		[S_HMACB] = { "hmac, sign=query+body, 10-member JSON body", "hmacb", "Signature",
		              &post, 0 },
		[S_TCXP] = { "tcx owtc param, 10 query parameters", "tcxp", "X-TCX-APP-PASS", &gets,
		             2000 },
		[S_TCXJ] = { "tcx owtc param, 10-member JSON body", "tcxp", "X-TCX-APP-PASS", &post,
		             0 },
		[S_TCXT] = { "tcx ftc time", "tcxt", "X-TCX-APP-PASS", &get, 0 },
		[S_SIGQ] = { "sigv4, GET with 5 query parameters", "sigv4", "Authorization", &sget,
		             3000 },
		[S_SIGB] = { "sigv4, POST with a 1 KiB body", "sigv4", "Authorization", &spost,
		             3000 },
	};
	double per[S_N][15], percpu[S_N][15], med[S_N], medcpu[S_N];
	char now[64];
	int runs;

	bench_init("bench_apply");
	sg_server_start(&srv);
	sg_server_answer(&srv, 200, "{\"auth_token\":\"bench-token-0123456789abcdef\"}");
	confdir = sg_confdir_new();
	sg_service(confdir, "key",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"apikey\"; key = \"k-0123456789abcdef\"; } );\n");
	sg_service(confdir, "hmacq",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"hmac\"; insecure_http = true;\n"
	           "  auth_url = \"http://127.0.0.1:%d/api/v1/auth\";\n"
	           "  app_token = \"bench-app-token\"; app_secret = \"bench-secret-0123456789abcdef\"; } );\n",
	           srv.port);
	sg_service(confdir, "hmacb",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"hmac\"; insecure_http = true; sign = \"query+body\";\n"
	           "  auth_url = \"http://127.0.0.1:%d/api/v1/auth\";\n"
	           "  app_token = \"bench-app-token\"; app_secret = \"bench-secret-0123456789abcdef\"; } );\n",
	           srv.port);
	sg_service(confdir, "tcxp",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"tcx\"; type = \"owtc\"; mode = \"param\";\n"
	           "  app_id = \"bench-app\"; app_public = \"bench-public-key\"; } );\n");
	sg_service(confdir, "tcxt",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"tcx\"; type = \"ftc\"; mode = \"time\";\n"
	           "  app_id = \"bench-app\"; app_public = \"bench-public-key\";\n"
	           "  master_key = \"bench-master\"; } );\n");

	sg_service(confdir, "sigv4",
	           "url = \"https://api.example/\";\n"
	           "stack = ( { provider = \"sigv4\"; region = \"us-east-1\"; service = \"execute-api\";\n"
	           "  access_key_id = \"AKIDBENCH0123456789\";\n"
	           "  secret_access_key = \"bench/secret+0123456789EXAMPLEKEY\"; } );\n");

	o.confdir = confdir;
	o.moduledir = moduledir && *moduledir ? moduledir : BENCH_MODULEDIR;
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	if (apicred_open_opts(&ctx, &o) != APICRED_OK || apicred_cred_new(&cred) != APICRED_OK) {
		fprintf(stderr, "bench_apply: %s\n", apicred_errmsg());
		return 1;
	}
	get.url = q10;
	gets.url = q10s;
	post.method = "POST";
	post.url = "https://api.example/v1/items";
	post.body = j10;
	post.body_len = strlen(j10);
	post.content_type = "application/json";

	sget.url = q5;
	for (size_t i = 0; i < sizeof(kib) - 1; i++)
		kib[i] = (char)('a' + i % 26);
	kib[sizeof(kib) - 1] = '\0';
	spost.method = "POST";
	spost.url = "https://api.example/v1/items";
	spost.body = kib;
	spost.body_len = sizeof(kib) - 1;
	spost.headers = json_ct;

	runs = bench_runs();
	for (int r = 0; r < runs; r++) /* every scheme in every run: drift hits all */
		for (size_t k = 0; k < S_N; k++)
			per[k][r] = s_measure(ctx, m[k].service, m[k].req, cred, m[k].header,
			                      &percpu[k][r]);

	printf("apicred_get on a fresh cache, ns/call in wall and thread CPU time (median of\n"
	       "%d batches of %d, median of %d runs; targets on CPU time):\n", S_BATCHES,
	       S_BATCH, runs);
	for (size_t k = 0; k < S_N; k++) {
		med[k] = bench_median(per[k], (size_t)runs);
		medcpu[k] = bench_median(percpu[k], (size_t)runs);
		printf("  %-44s %8.0f ns (CPU %8.0f ns)", m[k].label, med[k], medcpu[k]);
		if (m[k].target)
			printf("  (target <= %.0f: %s)", m[k].target,
			       medcpu[k] <= m[k].target ? "met" : "MISSED");
		putchar('\n');
	}
	snprintf(now, sizeof(now), "%.2f us (CPU %.2f us)", med[S_HMACQ] / 1e3,
	         medcpu[S_HMACQ] / 1e3);
	bench_row("hmac apply, 10 query parameters (`apicred_get`, cached login)", now,
	          "apikey, the core alone: %.2f us (CPU %.2f us) (target <= 1 us)",
	          med[S_KEY] / 1e3, medcpu[S_KEY] / 1e3);
	snprintf(now, sizeof(now), "%.2f us (CPU %.2f us)", med[S_TCXP] / 1e3,
	         medcpu[S_TCXP] / 1e3);
	bench_row("tcx param-mode apply, 10 query parameters", now,
	          "apikey, the core alone: %.2f us (CPU %.2f us) (target <= 2 us)",
	          med[S_KEY] / 1e3, medcpu[S_KEY] / 1e3);
	if (sg_server_count(&srv) != 2)
		fprintf(stderr, "bench_apply: expected 2 logins, saw %zu\n", sg_server_count(&srv));

	apicred_cred_free(cred);
	apicred_close(ctx);
	sg_server_stop(&srv);
	sg_rmrf(confdir);
	free(confdir);
	return 0;
}
