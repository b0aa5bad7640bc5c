/*
 * signing_util.c - shared by the hmac and tcx unit tests and bench_apply.
 */
#define _GNU_SOURCE
#include "signing_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ---- hooks ---------------------------------------------------------------- */

int64_t sg_mono_ms = 1000000;
int64_t sg_wall_ms = 1546214399000LL; /* 2018-12-30 23:59:59 UTC */
unsigned char sg_random_pattern[256];
size_t sg_random_len;

void sg_random_reset(void)
{
	for (size_t i = 0; i < 36; i++)
		sg_random_pattern[i] = (unsigned char)i;
	sg_random_len = 36;
}

static int64_t s_mono(void *user)
{
	return sg_mono_ms;
}

static int64_t s_wall(void *user)
{
	return sg_wall_ms;
}

static int s_random(void *user, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = sg_random_pattern[i % sg_random_len];
	return 0;
}

char sg_log_text[16384];

static void s_log(void *user, int level, const char *service, const char *message)
{
	size_t n = strlen(sg_log_text);

	snprintf(sg_log_text + n, sizeof(sg_log_text) - n, "%d %s: %s\n", level,
	         service ? service : "-", message);
}

/* ---- confdir --------------------------------------------------------------- */

static void s_write(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror(path);
		abort();
	}
	close(fd);
}

char *sg_confdir_new(void)
{
	const char *tmp = getenv("TMPDIR");
	char *dir, *sub;

	if (asprintf(&dir, "%s/apicred-signing-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 ||
	    !mkdtemp(dir))
		abort();
	if (asprintf(&sub, "%s/conf.d", dir) < 0 || mkdir(sub, 0700) != 0)
		abort();
	free(sub);
	if (asprintf(&sub, "%s/apicred.conf", dir) < 0)
		abort();
	s_write(sub, "http = { retries = 0; };\n");
	free(sub);
	return dir;
}

void sg_service(const char *confdir, const char *name, const char *fmt, ...)
{
	char *path, *text;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		abort();
	va_end(ap);
	if (asprintf(&path, "%s/conf.d/%s.conf", confdir, name) < 0)
		abort();
	s_write(path, text);
	free(path);
	free(text);
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void sg_rmrf(const char *path)
{
	nftw(path, s_rm, 8, FTW_DEPTH | FTW_PHYS);
}

apicred_ctx *sg_open(const char *confdir)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx = NULL;

	o.confdir = confdir;
	o.moduledir = getenv("APICRED_TEST_MODULEDIR");
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	o.log = s_log;
	o.clock_mono_ms = s_mono;
	o.clock_wall_ms = s_wall;
	o.random = s_random;
	sg_log_text[0] = '\0';
	if (!o.moduledir) {
		fprintf(stderr, "APICRED_TEST_MODULEDIR is not set\n");
		abort();
	}
	if (apicred_open_opts(&ctx, &o) != APICRED_OK) {
		fprintf(stderr, "apicred_open_opts: %s\n", apicred_errmsg());
		abort();
	}
	return ctx;
}

apicred_cred *sg_cred;

int sg_get(apicred_ctx *ctx, const char *service, const char *method, const char *url,
           const char *body, const char *content_type)
{
	apicred_request req = APICRED_REQUEST_INIT;

	if (!sg_cred && apicred_cred_new(&sg_cred) != APICRED_OK)
		abort();
	req.method = method;
	req.url = url;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.content_type = content_type;
	return apicred_get(ctx, service, &req, sg_cred);
}

const char *sg_header(const char *name)
{
	return apicred_cred_find(sg_cred, APICRED_HEADER, name);
}

const char *sg_query(const char *name)
{
	return apicred_cred_find(sg_cred, APICRED_QUERY, name);
}

/* ---- the HTTP server --------------------------------------------------------- */

/* Reads one request: head up to the blank line, then Content-Length bytes. */
static int s_read_req(int fd, struct sg_req *r)
{
	char buf[12288], *end = NULL, *p;
	size_t n = 0, need = 0, head;
	ssize_t got;

	memset(r, 0, sizeof(*r));
	for (;;) {
		if (n == sizeof(buf) - 1)
			return -1;
		got = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (got <= 0)
			return -1;
		n += (size_t)got;
		buf[n] = '\0';
		if (!end && (end = strstr(buf, "\r\n\r\n")) != NULL) {
			head = (size_t)(end - buf) + 4;
			for (p = buf; p < end; p = strstr(p, "\r\n") + 2)
				if (strncasecmp(p, "Content-Length:", 15) == 0)
					need = strtoul(p + 15, NULL, 10);
			need += head;
		}
		if (end && n >= need)
			break;
	}
	*end = '\0';
	p = strstr(buf, "\r\n");
	*p = '\0';
	if (sscanf(buf, "%15s %2047s", r->method, r->target) != 2)
		return -1;
	snprintf(r->headers, sizeof(r->headers), "%s\r\n", p + 2);
	r->body_len = need - head < sizeof(r->body) - 1 ? need - head : sizeof(r->body) - 1;
	memcpy(r->body, end + 4, r->body_len);
	return 0;
}

static void *s_serve(void *arg)
{
	struct sg_server *s = arg;
	struct sg_req r;
	char out[4096];
	int c, status;
	const char *body, *hdrs;

	while ((c = accept(s->fd, NULL, NULL)) >= 0) {
		if (s_read_req(c, &r) == 0) {
			pthread_mutex_lock(&s->mu);
			if (s->nreqs < SG_MAX_REQS)
				s->reqs[s->nreqs] = r;
			s->nreqs++;
			status = s->answers[s->next].status;
			body = s->answers[s->next].body;
			hdrs = s->answers[s->next].headers;
			snprintf(out, sizeof(out),
			         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
			         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			         status, hdrs, strlen(body), body);
			if (s->next + 1 < s->nanswers)
				s->next++;
			pthread_mutex_unlock(&s->mu);
			if (write(c, out, strlen(out)) < 0)
				perror("sg_server write");
		}
		close(c);
	}
	return NULL;
}

void sg_server_start(struct sg_server *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	sg_server_answer(s, 500, "{}");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(s->fd, 16) != 0 || getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
		perror("sg_server_start");
		abort();
	}
	s->port = ntohs(a.sin_port);
	if (pthread_create(&s->thread, NULL, s_serve, s) != 0)
		abort();
}

void sg_server_stop(struct sg_server *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
	pthread_mutex_destroy(&s->mu);
}

void sg_server_answer(struct sg_server *s, int status, const char *body)
{
	pthread_mutex_lock(&s->mu);
	s->nanswers = 0;
	s->next = 0;
	pthread_mutex_unlock(&s->mu);
	sg_server_then(s, status, body);
}

void sg_server_answer_headers(struct sg_server *s, int status, const char *headers,
                              const char *body)
{
	pthread_mutex_lock(&s->mu);
	s->nanswers = 0;
	s->next = 0;
	pthread_mutex_unlock(&s->mu);
	sg_server_then_headers(s, status, headers, body);
}

void sg_server_then(struct sg_server *s, int status, const char *body)
{
	sg_server_then_headers(s, status, "", body);
}

void sg_server_then_headers(struct sg_server *s, int status, const char *headers,
                            const char *body)
{
	pthread_mutex_lock(&s->mu);
	if (s->nanswers < sizeof(s->answers) / sizeof(s->answers[0])) {
		s->answers[s->nanswers].status = status;
		snprintf(s->answers[s->nanswers].headers, sizeof(s->answers[0].headers), "%s",
		         headers);
		snprintf(s->answers[s->nanswers].body, sizeof(s->answers[0].body), "%s", body);
		s->nanswers++;
	}
	pthread_mutex_unlock(&s->mu);
}

size_t sg_server_count(struct sg_server *s)
{
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = s->nreqs;
	pthread_mutex_unlock(&s->mu);
	return n;
}

struct sg_req sg_server_req(struct sg_server *s, size_t i)
{
	struct sg_req r = { 0 };

	pthread_mutex_lock(&s->mu);
	if (i < s->nreqs && i < SG_MAX_REQS)
		r = s->reqs[i];
	pthread_mutex_unlock(&s->mu);
	return r;
}

const char *sg_req_header(const struct sg_req *r, const char *name)
{
	static char v[2048];
	size_t n = strlen(name);

	for (const char *p = r->headers; *p; p = strstr(p, "\r\n") + 2) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			p += n + 1;
			while (*p == ' ')
				p++;
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\r"), p);
			return v;
		}
	}
	return NULL;
}

const char *sg_req_query(const struct sg_req *r, const char *name)
{
	static char v[2048];
	const char *p = strchr(r->target, '?');
	size_t n = strlen(name);

	while (p) {
		p++;
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p + n + 1, "&"), p + n + 1);
			return v;
		}
		p = strchr(p, '&');
	}
	return NULL;
}

/* ---- expected values --------------------------------------------------------- */

static void s_hex(const unsigned char *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

const char *sg_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen)
{
	static _Thread_local char hex[65];
	unsigned char md[32];
	size_t mdlen = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, msg, mlen, md,
	               sizeof(md), &mdlen) || mdlen != 32)
		abort();
	s_hex(md, 32, hex);
	return hex;
}

const char *sg_base64(const void *in, size_t len)
{
	static _Thread_local char out[4096];

	if (4 * ((len + 2) / 3) >= sizeof(out))
		abort();
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

const char *sg_tcx_pass(const char *j, const char *pub, const char *dyn)
{
	char *plain, hex[41];
	unsigned char md[20];
	unsigned int mdlen = 0;
	const char *b64;

	if (asprintf(&plain, "%s%s%s", j, pub, dyn) < 0 ||
	    !EVP_Digest(plain, strlen(plain), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
		abort();
	free(plain);
	s_hex(md, 20, hex);
	if (asprintf(&plain, "%s:%s", hex, dyn) < 0)
		abort();
	b64 = sg_base64(plain, strlen(plain));
	free(plain);
	return b64;
}
