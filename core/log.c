/*
 * log.c - logging through the application's callback, or syslog/stderr.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "internal.h"

static const struct { const char *name; int level; } s_levels[] = {
	{ "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

int ac_log_level(const char *name)
{
	for (size_t i = 0; i < sizeof(s_levels) / sizeof(s_levels[0]); i++)
		if (strcasecmp(name, s_levels[i].name) == 0)
			return s_levels[i].level;
	return -1;
}

__attribute__((format(printf, 4, 0)))
static void s_vlog(struct ac_ctx *ctx, int level, const char *service, const char *fmt,
                   va_list ap)
{
	char msg[1024];
	const char *text = msg;

	if (ctx && level > ctx->log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	ac_text_clean(msg); /* one line, whatever a server put in it */
	/* Messages often wrap an error that already names the service: say
	 * it once per line. */
	if (service) {
		size_t n = strlen(service);

		while (strncmp(text, service, n) == 0 && text[n] == ':' && text[n + 1] == ' ')
			text += n + 2;
	}
	if (ctx && ctx->log) {
		ctx->log(ctx->log_user, level, service, text);
	} else if (ctx && (ctx->flags & APICRED_OPEN_LOG_STDERR)) {
		const char *lv = "debug";
		for (size_t i = 0; i < sizeof(s_levels) / sizeof(s_levels[0]); i++)
			if (s_levels[i].level == level)
				lv = s_levels[i].name;
		fprintf(stderr, "apicred[%s]: %s%s%s\n", lv, service ? service : "",
		        service ? ": " : "", text);
	} else {
		syslog(LOG_AUTHPRIV | level, "apicred: %s%s%s", service ? service : "",
		       service ? ": " : "", text);
	}
}

void ac_log(struct ac_ctx *ctx, int level, const char *service, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s_vlog(ctx, level, service, fmt, ap);
	va_end(ap);
}

void ac_trace(const struct ac_layer *L, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ac_log(L->stack->ctx, LOG_DEBUG, L->stack->svc->name, "layer %d (%s): %s", L->index + 1,
	       L->provider, msg);
}
