/*
 * sigv4_sandbox.c - the sigv4 provider through the C API against the
 * sandbox, where botocore checks each signature: apicred_curl_apply for a
 * GET and a POST with the application's headers, S3 with a body, several
 * threads sharing one ctx; and requests changed after signing (body,
 * signed header), which must be refused. Driven by tests/integration/sigv4.sh,
 * which writes the services; prints "PASS what" / "FAIL what" lines.
 *
 *   sigv4_sandbox API_SERVICE S3_SERVICE
 *
 * Environment: SB, SB_CA, APICRED_TEST_CONFDIR, APICRED_TEST_MODULEDIR.
 * Real clocks: the sandbox checks X-Amz-Date against its own.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <apicred/apicred.h>

static int s_failed;
static const char *s_sb, *s_ca, *s_api, *s_s3;
static apicred_ctx *s_ctx;

static void s_check(int cond, const char *what)
{
	printf("%s %s\n", cond ? "PASS" : "FAIL", what);
	if (!cond) {
		s_failed = 1;
		printf("# apicred_errmsg: %s\n", apicred_errmsg());
	}
}

struct s_buf {
	char data[8192];
	size_t len;
};

static size_t s_write(char *p, size_t size, size_t n, void *user)
{
	struct s_buf *b = user;
	size_t len = size * n;

	if (len > sizeof(b->data) - 1 - b->len)
		len = sizeof(b->data) - 1 - b->len;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return size * n;
}

/* Performs a request on a handle the caller decorated; the status, or -1. */
static long s_perform(CURL *h, const char *method, const char *body, struct s_buf *out)
{
	long status = -1;

	out->len = 0;
	out->data[0] = '\0';
	curl_easy_setopt(h, CURLOPT_CAINFO, s_ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	if (strcmp(method, body ? "POST" : "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* apicred_curl_apply + perform; the status, or -1. */
static long s_request(const char *service, const char *method, const char *path,
                      const char *body, const char *const *headers, struct s_buf *out)
{
	apicred_request req = APICRED_REQUEST_INIT;
	apicred_cred *cred = NULL;
	CURL *h = curl_easy_init();
	char url[512];
	long status = -1;

	snprintf(url, sizeof(url), "%s%s", s_sb, path);
	req.method = method;
	req.url = url;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.headers = headers;
	if (h && apicred_cred_new(&cred) == APICRED_OK &&
	    apicred_curl_apply(s_ctx, service, h, &req, cred) == APICRED_OK)
		status = s_perform(h, method, body, out);
	apicred_cred_free(cred);
	curl_easy_cleanup(h);
	return status;
}

/* Signs one request, then sends another: the body or a header changed. */
static long s_tampered(const char *sign_body, const char *send_body, const char *sign_hdr,
                       const char *send_hdr, struct s_buf *out)
{
	apicred_request req = APICRED_REQUEST_INIT;
	const char *hdrs[] = { sign_hdr, NULL };
	struct curl_slist *list = NULL;
	apicred_cred *cred = NULL;
	CURL *h = curl_easy_init();
	char url[512], line[4096];
	long status = -1;

	snprintf(url, sizeof(url), "%s/sigv4/tampered", s_sb);
	req.method = "POST";
	req.url = url;
	req.body = sign_body;
	req.body_len = strlen(sign_body);
	req.headers = hdrs;
	if (!h || apicred_cred_new(&cred) != APICRED_OK ||
	    apicred_get(s_ctx, s_api, &req, cred) != APICRED_OK)
		goto out;
	for (size_t i = 0; i < apicred_cred_count(cred, APICRED_HEADER); i++) {
		const char *name, *value;
		size_t len;

		apicred_cred_item(cred, APICRED_HEADER, i, &name, &value, &len);
		snprintf(line, sizeof(line), "%s: %s", name, value);
		list = curl_slist_append(list, line);
	}
	list = curl_slist_append(list, send_hdr);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	status = s_perform(h, "POST", send_body, out);
out:
	curl_slist_free_all(list);
	apicred_cred_free(cred);
	curl_easy_cleanup(h);
	return status;
}

#define S_THREADS 4
#define S_ROUNDS 5

struct s_worker {
	int id, ok;
};

static void *s_thread(void *arg)
{
	struct s_worker *w = arg;
	struct s_buf *b = malloc(sizeof(*b));
	char path[64];

	w->ok = b != NULL;
	for (int i = 0; b && i < S_ROUNDS; i++) {
		snprintf(path, sizeof(path), "/sigv4/thread/%d?i=%d", w->id, i);
		if (s_request(s_api, "GET", path, NULL, NULL, b) != 200)
			w->ok = 0;
	}
	free(b);
	return NULL;
}

int main(int argc, char **argv)
{
	static const char *const meta[] = { "X-Amz-Meta-Run: c-api", "X-Custom:  a   b ", NULL };
	static const char *const json[] = { "Content-Type: application/json", NULL };
	static const char *const text[] = { "Content-Type: text/plain", NULL };
	apicred_options o = { .size = sizeof(o) };
	struct s_buf b;
	pthread_t t[S_THREADS];
	struct s_worker w[S_THREADS];

	s_sb = getenv("SB");
	s_ca = getenv("SB_CA");
	o.confdir = getenv("APICRED_TEST_CONFDIR");
	o.moduledir = getenv("APICRED_TEST_MODULEDIR");
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	if (argc != 3 || !s_sb || !s_ca || !o.confdir || !o.moduledir) {
		fprintf(stderr, "usage: sigv4_sandbox API_SERVICE S3_SERVICE (with SB, SB_CA, "
		        "APICRED_TEST_CONFDIR, APICRED_TEST_MODULEDIR)\n");
		return 2;
	}
	s_api = argv[1];
	s_s3 = argv[2];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (apicred_open_opts(&s_ctx, &o) != APICRED_OK) {
		printf("FAIL apicred_open_opts: %s\n", apicred_errmsg());
		return 1;
	}

	s_check(s_request(s_api, "GET", "/sigv4/capi?b=2&a=1&a=0", NULL, meta, &b) == 200,
	        "C API: GET with a query and the application's headers, accepted");
	s_check(s_request(s_api, "POST", "/sigv4/capi", "{\"k\":[1,2]}", json, &b) == 200,
	        "C API: POST with a JSON body, accepted");
	s_check(s_request(s_s3, "PUT", "/s3/photos/c-api.txt", "from the C API", text, &b) == 200,
	        "C API: S3 PUT with a signed payload, accepted");
	s_check(s_request(s_s3, "DELETE", "/s3/photos/c-api.txt", NULL, NULL, &b) == 200,
	        "C API: S3 DELETE, accepted");

	s_check(s_tampered("a=1", "a=2", "X-Custom: 1", "X-Custom: 1", &b) == 400 &&
	        strstr(b.data, "XAmzContentSHA256Mismatch"),
	        "tampered: another body than the signed one is refused");
	s_check(s_tampered("a=1", "a=1", "X-Custom: 1", "X-Custom: 2", &b) == 403 &&
	        strstr(b.data, "SignatureDoesNotMatch"),
	        "tampered: a signed header changed after signing is refused");
	s_check(s_tampered("a=1", "a=1", "X-Custom: 1", "X-Custom: 1", &b) == 200,
	        "tampered: ... while the same request unchanged is accepted");

	for (int i = 0; i < S_THREADS; i++) {
		w[i] = (struct s_worker){ .id = i };
		pthread_create(&t[i], NULL, s_thread, &w[i]);
	}
	for (int i = 0; i < S_THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < S_THREADS; i++)
		s_check(w[i].ok, "threads: every request of a thread sharing the ctx accepted");

	apicred_close(s_ctx);
	curl_global_cleanup();
	return s_failed;
}
