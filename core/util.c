/*
 * util.c - small helpers every core file may use, and that use no other
 * core file but error.c: strings, names, clocks and random bytes.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "internal.h"

char *ac_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A service or provider name: [A-Za-z0-9][A-Za-z0-9._-]*, no "..", under
 * 128 bytes (it becomes part of a file name). */
bool ac_name_valid(const char *name)
{
	if (!name || !((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
	               (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return strstr(name, "..") == NULL && strlen(name) < 128;
}

/* ---- clocks and random --------------------------------------------------- */

/* The context's clocks: the application's hooks (tests) or the system's. */
int64_t ac_now_mono(struct ac_ctx *ctx)
{
	struct timespec ts;

	if (ctx->clock_mono_ms)
		return ctx->clock_mono_ms(ctx->hook_user);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ac_now_wall(struct ac_ctx *ctx)
{
	struct timespec ts;

	if (ctx->clock_wall_ms)
		return ctx->clock_wall_ms(ctx->hook_user);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The coarse clock's resolution, rounded up (ac_now_fast), or -1. */
static int64_t s_coarse_res_ms = -1;
static pthread_once_t s_coarse_once = PTHREAD_ONCE_INIT;

static void s_coarse_init(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
	struct timespec res;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0)
		s_coarse_res_ms = (res.tv_nsec + 999999) / 1000000;
#endif
}

int64_t ac_clock_init(void)
{
	pthread_once(&s_coarse_once, s_coarse_init);
	return s_coarse_res_ms;
}

int ac_random(struct ac_ctx *ctx, unsigned char *buf, size_t len)
{
	if (ctx->random)
		return ctx->random(ctx->hook_user, buf, len) == 0 ? APICRED_OK
		       : ac_error(APICRED_ERR_INTERNAL, "random hook failed");
	if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
		return ac_error(APICRED_ERR_INTERNAL, "RAND_bytes failed");
	return APICRED_OK;
}

/* The system's monotonic clock, never the injected one: deadlines and the
 * store's time-outs bound how long a caller really waits. */
int64_t ac_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *ac_mono_clock(struct ac_ctx *ctx, int64_t mono_ms, char buf[16])
{
	time_t t = (time_t)((ac_now_wall(ctx) + (mono_ms - ac_now_mono(ctx))) / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, 16, "%H:%M:%SZ", &tm))
		snprintf(buf, 16, "?");
	return buf;
}
