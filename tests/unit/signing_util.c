/*
 * signing_util.c - see signing_util.h.
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

/* ---- the HTTP server --------------------------------------------------------- */

/* One request, as read. */
struct sg_req {
	char method[16];
	char target[2048];   /* path?query as sent */
	char headers[4096];  /* raw header lines */
	char body[4096];
	size_t body_len;
};

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
	const char *body;

	while ((c = accept(s->fd, NULL, NULL)) >= 0) {
		if (s_read_req(c, &r) == 0) {
			pthread_mutex_lock(&s->mu);
			s->nreqs++;
			status = s->answers[s->next].status;
			body = s->answers[s->next].body;
			snprintf(out, sizeof(out),
			         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			         status, strlen(body), body);
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

void sg_server_then(struct sg_server *s, int status, const char *body)
{
	pthread_mutex_lock(&s->mu);
	if (s->nanswers < sizeof(s->answers) / sizeof(s->answers[0])) {
		s->answers[s->nanswers].status = status;
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
