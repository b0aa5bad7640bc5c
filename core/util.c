/*
 * util.c - small helpers every core file may use, and that use no other
 * core file but error.c: strings, names, clocks and random bytes.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/crypto.h>
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

/* RAND_bytes costs over a microsecond whatever the length (its DRBG's
 * lock, fork check and re-keying), a third of a tcx apply. So each thread
 * draws a block of bytes at a time and hands out slices of it, wiping each
 * slice from the block as it goes. The block is MADV_WIPEONFORK: a child
 * process finds it zeroed, that is empty, so it never hands out its
 * parent's next bytes however it was forked (fork, _Fork, clone); a fork
 * through fork(3) also changes the generation the block was drawn in (for
 * a kernel or emulator that takes the advice and ignores it). Where the
 * kernel refuses the advice, every call goes to RAND_bytes. */
#define S_RAND_BLOCK 8192 /* a refill every 170 tcx nonces */
#define S_RAND_MAX 256    /* longer requests go to RAND_bytes directly */

struct s_rand {
	size_t left;        /* unread: the last `left` bytes; 0 when new or forked */
	unsigned long gen;  /* gl.fork_gen when drawn */
	unsigned char bytes[S_RAND_BLOCK - sizeof(size_t) - sizeof(unsigned long)];
};

static struct {
	pthread_once_t once;
	pthread_key_t key;
	bool key_ok;
	atomic_bool unbuffered;  /* no MADV_WIPEONFORK here */
	atomic_ulong fork_gen;   /* forks so far (pthread_atfork) */
} gl = { PTHREAD_ONCE_INIT, 0, false, false, 0 };

static _Thread_local __attribute__((tls_model("initial-exec"))) struct s_rand *t_rand;

static void s_rand_exit(void *p)
{
	explicit_bzero(p, S_RAND_BLOCK);
	munmap(p, S_RAND_BLOCK);
	t_rand = NULL; /* a later destructor's call maps a new one */
}

static void s_rand_forked(void)
{
	atomic_fetch_add_explicit(&gl.fork_gen, 1, memory_order_relaxed);
}

static void s_rand_once(void)
{
	gl.key_ok = pthread_key_create(&gl.key, s_rand_exit) == 0 &&
	            pthread_atfork(NULL, NULL, s_rand_forked) == 0;
}

/* This thread's block, or NULL: no wipe on fork, or no memory. */
static struct s_rand *s_rand_block(void)
{
	void *p;

	pthread_once(&gl.once, s_rand_once);
	if (!gl.key_ok || atomic_load_explicit(&gl.unbuffered, memory_order_relaxed))
		return NULL;
	p = mmap(NULL, S_RAND_BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_WIPEONFORK
	if (madvise(p, S_RAND_BLOCK, MADV_WIPEONFORK) != 0) {
		atomic_store(&gl.unbuffered, true); /* a kernel before 4.14 */
	} else if (pthread_setspecific(gl.key, p) == 0) {
#ifdef MADV_DONTDUMP
		madvise(p, S_RAND_BLOCK, MADV_DONTDUMP); /* best effort: no bytes in a core */
#endif
		return t_rand = p;
	}
#else
	atomic_store(&gl.unbuffered, true);
#endif
	munmap(p, S_RAND_BLOCK);
	return NULL;
}

int ac_random(struct ac_ctx *ctx, unsigned char *buf, size_t len)
{
	struct s_rand *r;
	unsigned long gen;

	/* The application's source (tests) is used exactly as asked. */
	if (ctx->random)
		return ctx->random(ctx->hook_user, buf, len) == 0 ? APICRED_OK
		       : ac_error(APICRED_ERR_INTERNAL, "random hook failed");
	if (len > S_RAND_MAX || !(r = t_rand ? t_rand : s_rand_block())) {
		if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
			return ac_error(APICRED_ERR_INTERNAL, "RAND_bytes failed");
		return APICRED_OK;
	}
	gen = atomic_load_explicit(&gl.fork_gen, memory_order_relaxed);
	if (len > r->left || r->gen != gen) {
		r->left = 0;
		if (RAND_bytes(r->bytes, sizeof(r->bytes)) != 1) {
			OPENSSL_cleanse(r->bytes, sizeof(r->bytes));
			return ac_error(APICRED_ERR_INTERNAL, "RAND_bytes failed");
		}
		r->left = sizeof(r->bytes);
		r->gen = gen;
	}
	memcpy(buf, r->bytes + sizeof(r->bytes) - r->left, len);
	explicit_bzero(r->bytes + sizeof(r->bytes) - r->left, len);
	r->left -= len;
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
