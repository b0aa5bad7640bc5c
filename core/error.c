/*
 * error.c - stable codes, and a per-thread detail message that says which
 * service, layer, file:line or HTTP status was at fault.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* This thread's message, on the heap rather than in TLS: the library's
 * whole TLS block must fit in the static TLS glibc keeps for libraries
 * loaded by dlopen (ctx.c, ebr.c and util.c read theirs initial-exec),
 * a few hundred bytes shared by every such library. Allocated at the
 * thread's first error; without memory for it, the code's text stands in
 * (t_lost). */
#define S_MSG 1024
static _Thread_local char *t_msg;
static _Thread_local int t_lost;

static struct {
	pthread_once_t once;
	pthread_key_t key;
	bool key_ok;
} gl = { PTHREAD_ONCE_INIT, 0, false };

static void s_msg_free(void *msg)
{
	t_msg = NULL; /* an error in a later destructor allocates again */
	free(msg);
}

static void s_key_init(void)
{
	gl.key_ok = pthread_key_create(&gl.key, s_msg_free) == 0;
}

static char *s_msg(void)
{
	if (!t_msg) {
		pthread_once(&gl.once, s_key_init);
		if (!gl.key_ok || !(t_msg = malloc(S_MSG)))
			return NULL;
		if (pthread_setspecific(gl.key, t_msg) != 0) {
			free(t_msg);
			return t_msg = NULL;
		}
	}
	return t_msg;
}

static const char *const s_text[] = {
	[APICRED_OK] = "success",
	[APICRED_ERR_NOMEM] = "out of memory",
	[APICRED_ERR_INVALID] = "invalid argument",
	[APICRED_ERR_CONFIG] = "configuration error",
	[APICRED_ERR_NO_SERVICE] = "no such service",
	[APICRED_ERR_BAD_NAME] = "invalid service name",
	[APICRED_ERR_PROVIDER] = "provider missing or failed to load",
	[APICRED_ERR_ABI] = "provider built for another ABI version",
	[APICRED_ERR_SECRET] = "secret missing, unreadable or unsafe",
	[APICRED_ERR_HTTP] = "network or HTTP transport failure",
	[APICRED_ERR_AUTH] = "the server refused the credentials",
	[APICRED_ERR_PROTOCOL] = "unexpected reply from the server",
	[APICRED_ERR_TLS] = "TLS failure",
	[APICRED_ERR_UNAVAILABLE] = "service temporarily unavailable",
	[APICRED_ERR_UNSUPPORTED] = "operation not supported",
	[APICRED_ERR_ORIGIN] = "URL outside the service's origin",
	[APICRED_ERR_EXISTS] = "would overwrite existing data",
	[APICRED_ERR_INTERNAL] = "internal error",
};

API const char *apicred_strerror(int code)
{
	if (code >= 0 && (size_t)code < sizeof(s_text) / sizeof(s_text[0]) && s_text[code])
		return s_text[code];
	return "unknown error";
}

API const char *apicred_errmsg(void)
{
	if (t_lost)
		return apicred_strerror(t_lost);
	return t_msg ? t_msg : "";
}

void ac_error_clear(void)
{
	t_lost = 0;
	if (t_msg)
		t_msg[0] = '\0';
}

/* Is s[0] a control character: C0, DEL, or a C1 control encoded in UTF-8
 * (U+0080..U+009F, which some terminals obey)? Its length, or 0. */
static size_t s_control(const unsigned char *s, size_t left)
{
	if (s[0] < 0x20 || s[0] == 0x7f)
		return 1;
	if (s[0] == 0xc2 && left > 1 && s[1] >= 0x80 && s[1] <= 0x9f)
		return 2;
	return 0;
}

size_t ac_text_copy(char *out, size_t cap, const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0, i = 0;

	if (!cap)
		return 0;
	while (i < len && n + 1 < cap) {
		size_t c = s_control(p + i, len - i);
		out[n++] = c ? '?' : (char)p[i];
		i += c ? c : 1;
	}
	if (i < len && cap > 4) { /* cut: say so */
		n = n > cap - 4 ? cap - 4 : n;
		while (n && ((unsigned char)out[n] & 0xc0) == 0x80) /* not inside a character */
			n--;
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return n;
}

void ac_text_clean(char *s)
{
	size_t len = strlen(s);

	ac_text_copy(s, len + 1, s, len); /* never longer: in place is fine */
}

__attribute__((format(printf, 3, 0)))
static int s_verror(int code, const char *prefix, const char *fmt, va_list ap)
{
	char tmp[S_MSG], *msg;
	const char *colon = prefix ? strstr(prefix, ": ") : NULL;

	/* fmt may print the previous message (wrapping it): format aside. */
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	if (!(msg = s_msg())) {
		t_lost = code;
		return code;
	}
	t_lost = 0;
	/* A message that already names the service is not prefixed twice. */
	if (prefix && !(colon && strncmp(tmp, prefix, (size_t)(colon - prefix) + 2) == 0))
		snprintf(msg, S_MSG, "%s%s", prefix, tmp);
	else
		memcpy(msg, tmp, S_MSG);
	/* Messages quote servers: no CR/LF or escape sequence reaches the
	 * application's log or terminal through them. */
	ac_text_clean(msg);
	return code;
}

int ac_error(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s_verror(code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

/* A message about one layer: "service: layer N (provider): ...". */
int ac_layer_verror(const struct ac_layer *L, int code, const char *fmt, va_list ap)
{
	char prefix[256];

	snprintf(prefix, sizeof(prefix), "%s: layer %d (%s): ", L->stack->svc->name,
	         L->index + 1, L->provider);
	return s_verror(code, prefix, fmt, ap);
}

int ac_layer_error(const struct ac_layer *L, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ac_layer_verror(L, code, fmt, ap);
	va_end(ap);
	return code;
}
