/*
 * ctx.c - opening a context: global settings, the service table and fork
 * detection.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <libconfig.h>

#include "internal.h"

/* p11-kit's idea: count forks in an atfork handler, compare on entry. */
static atomic_ulong s_fork_gen;
static pthread_once_t s_atfork_once = PTHREAD_ONCE_INIT;

static void s_child(void)
{
	ac_ebr_postfork_child();
	atomic_fetch_add(&s_fork_gen, 1);
}

static void s_atfork(void)
{
	pthread_atfork(ac_ebr_prefork, ac_ebr_postfork_parent, s_child);
}

/* Fetches in flight belonged to threads that do not exist here: their
 * locks and the waiters counted in their condition variables are reset. */
static void s_stack_after_fork(struct ac_stack *st)
{
	if (st) /* a snapshot being made by a thread not here */
		atomic_store(&st->snap_busy, false);
	for (size_t k = 0; st && k < st->nlayers; k++) {
		pthread_mutex_init(&st->layers[k].mu, NULL);
		pthread_cond_init(&st->layers[k].cv, NULL);
		st->layers[k].fetching = false;
		atomic_store(&st->layers[k].quiet_until_ms, 0);
	}
}

static void s_retired_after_fork(struct ac_ebr_node *n)
{
	/* Retired stacks too: freeing one destroys its condition variables. */
	s_stack_after_fork((struct ac_stack *)((char *)n - offsetof(struct ac_stack, ebr)));
}

void ac_fork_check(struct ac_ctx *ctx)
{
	unsigned long gen = atomic_load_explicit(&s_fork_gen, memory_order_relaxed);

	if (gen == ctx->bg.fork_gen)
		return;
	ctx->bg.fork_gen = gen;
	ac_bg_after_fork(ctx);
	pthread_mutex_init(&ctx->modules_mu, NULL);
	pthread_mutex_init(&ctx->sorted_mu, NULL);
	ac_store_after_fork(ctx); /* the child opens its own connections */
	for (size_t i = 0; i < ctx->nservices; i++) {
		pthread_mutex_init(&ctx->services[i].reload_mu, NULL);
		s_stack_after_fork(atomic_load(&ctx->services[i].stack));
	}
	ac_ebr_each(ctx, s_retired_after_fork);
}

static atomic_uint_fast64_t s_ctx_ids;

/* APICRED_DEBUG=1 (or a level name: info, debug...) raises the log level
 * without editing apicred.conf; it never lowers it. secure_getenv: a
 * set-user-ID program's user cannot make it talk. */
static void s_debug_env(struct ac_ctx *ctx)
{
	const char *env = secure_getenv("APICRED_DEBUG");
	int lv;

	if (!env || !*env || strcmp(env, "0") == 0)
		return;
	lv = strcmp(env, "1") == 0 ? LOG_DEBUG : ac_log_level(env);
	if (lv > ctx->log_level)
		ctx->log_level = lv;
}

/* ---- services ------------------------------------------------------------ */

static int s_svc_cmp(const void *a, const void *b)
{
	return strcmp((*(struct ac_service *const *)a)->name, (*(struct ac_service *const *)b)->name);
}

/* Keeps the first thing wrong with conf.d for apicred_check(ctx, NULL). */
static void s_scan_problem(struct ac_ctx *ctx, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void s_scan_problem(struct ac_ctx *ctx, int code, const char *fmt, ...)
{
	va_list ap;

	if (ctx->scan_code)
		return;
	va_start(ap, fmt);
	if (vasprintf(&ctx->scan_msg, fmt, ap) < 0)
		ctx->scan_msg = NULL;
	va_end(ap);
	ctx->scan_code = code;
}

/* A hash of a service name from its length and its first and last eight
 * bytes: a few instructions whatever the length; the lookup compares the
 * whole name anyway. */
static uint64_t s_name_hash(const char *name, size_t len)
{
	uint64_t a = 0, b = 0, h;

	if (len >= 8) {
		memcpy(&a, name, 8);
		memcpy(&b, name + len - 8, 8);
	} else {
		for (size_t i = 0; i < len; i++)
			a |= (uint64_t)(unsigned char)name[i] << (8 * i);
	}
	h = (a ^ (b * UINT64_C(0x9e3779b97f4a7c15)) ^ len) * UINT64_C(0xff51afd7ed558ccd);
	return h ^ (h >> 32);
}

/* The services by name hash, at most half full; fixed after open. */
static int s_index(struct ac_ctx *ctx)
{
	size_t n = 16;

	while (n < 2 * ctx->nservices)
		n *= 2;
	if (!(ctx->htab = calloc(n, sizeof(*ctx->htab))))
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	ctx->hmask = n - 1;
	for (size_t i = 0; i < ctx->nservices; i++) {
		struct ac_service *svc = &ctx->services[i];
		size_t k;

		svc->name_len = strlen(svc->name);
		svc->hash = s_name_hash(svc->name, svc->name_len);
		for (k = svc->hash & ctx->hmask; ctx->htab[k]; k = (k + 1) & ctx->hmask)
			;
		ctx->htab[k] = svc;
	}
	return APICRED_OK;
}

/* conf.d's services as read, NAME\0DIR/NAME.conf\0 each, in one block: a
 * thousand services cost two growing allocations, not two thousand. */
struct s_names {
	char *buf;
	size_t len, cap;
	size_t *off;
	size_t n, ncap;
};

/* One file of conf.d: a service if it is NAME.conf with a valid name. Its
 * type and owner are checked when it is loaded (ac_config_service), with
 * every file the service reads: a listing decides nothing yet. */
static int s_scan_entry(struct ac_ctx *ctx, const char *dir, const char *file,
                        struct s_names *nm)
{
	size_t flen = strlen(file), dlen = strlen(dir), len, need;

	if (flen <= 5 || memcmp(file + flen - 5, ".conf", 5) != 0)
		return APICRED_OK;
	len = flen - 5;
	need = len + 1 + dlen + 1 + flen + 1;
	if (nm->len + need > nm->cap) {
		size_t cap = nm->cap ? 2 * nm->cap : 4096;
		char *p;
		while (cap < nm->len + need)
			cap *= 2;
		if (!(p = realloc(nm->buf, cap)))
			return APICRED_ERR_NOMEM;
		nm->buf = p;
		nm->cap = cap;
	}
	memcpy(nm->buf + nm->len, file, len);
	nm->buf[nm->len + len] = '\0';
	if (!ac_name_valid(nm->buf + nm->len)) {
		ac_log(ctx, LOG_WARNING, NULL, "ignoring %s/%s: not a valid service name",
		       dir, file);
		s_scan_problem(ctx, APICRED_ERR_BAD_NAME, "%s/%s: not a valid service name "
		               "([A-Za-z0-9][A-Za-z0-9._-]*.conf)", dir, file);
		return APICRED_OK;
	}
	if (nm->n == nm->ncap) {
		size_t *p = realloc(nm->off, (nm->ncap ? 2 * nm->ncap : 256) * sizeof(*p));
		if (!p)
			return APICRED_ERR_NOMEM;
		nm->off = p;
		nm->ncap = nm->ncap ? 2 * nm->ncap : 256;
	}
	nm->off[nm->n++] = nm->len;
	nm->len += len + 1;
	memcpy(nm->buf + nm->len, dir, dlen);
	nm->buf[nm->len + dlen] = '/';
	memcpy(nm->buf + nm->len + dlen + 1, file, flen + 1);
	nm->len += dlen + 1 + flen + 1;
	return APICRED_OK;
}

/* The service table from the names, each name and path pointing into one
 * block that ctx keeps. In conf.d's order: sorting a thousand names costs a fifth of
 * a millisecond that only listings need (ac_service_at). */
static int s_table(struct ac_ctx *ctx, struct s_names *nm)
{
	if (!nm->n)
		return APICRED_OK;
	if (nm->len < nm->cap) { /* give back the doubling's slack */
		char *p = realloc(nm->buf, nm->len);
		if (p)
			nm->buf = p;
	}
	ctx->names = nm->buf;
	nm->buf = NULL;
	ctx->services = calloc(nm->n, sizeof(*ctx->services));
	ctx->sorted_buf = malloc(nm->n * sizeof(*ctx->sorted_buf));
	if (!ctx->services || !ctx->sorted_buf)
		return APICRED_ERR_NOMEM;
	for (size_t i = 0; i < nm->n; i++) {
		struct ac_service *svc = &ctx->services[i];

		svc->name = ctx->names + nm->off[i];
		svc->path = svc->name + strlen(svc->name) + 1;
		pthread_mutex_init(&svc->reload_mu, NULL);
	}
	ctx->nservices = nm->n;
	return APICRED_OK;
}

struct ac_service *ac_service_at(struct ac_ctx *ctx, size_t i)
{
	struct ac_service **v = atomic_load_explicit(&ctx->sorted, memory_order_acquire);

	if (i >= ctx->nservices)
		return NULL;
	if (!v) {
		ac_fork_check(ctx); /* a parent's thread may have held sorted_mu */
		pthread_mutex_lock(&ctx->sorted_mu);
		if (!(v = atomic_load_explicit(&ctx->sorted, memory_order_relaxed))) {
			v = ctx->sorted_buf;
			for (size_t k = 0; k < ctx->nservices; k++)
				v[k] = &ctx->services[k];
			qsort(v, ctx->nservices, sizeof(*v), s_svc_cmp);
			atomic_store_explicit(&ctx->sorted, v, memory_order_release);
		}
		pthread_mutex_unlock(&ctx->sorted_mu);
	}
	return v[i];
}

static int s_scan(struct ac_ctx *ctx)
{
	struct s_names nm = { 0 };
	char *dir;
	DIR *d;
	struct dirent *de;
	int rc = APICRED_OK;

	if (asprintf(&dir, "%s/conf.d", ctx->confdir) < 0)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	/* Whoever can write in conf.d can rename a service file of theirs over
	 * a good one. */
	if (access(dir, F_OK) == 0 && ac_path_safe(dir, "conf.d", AC_PATH_DIR) != APICRED_OK) {
		free(dir);
		return APICRED_ERR_CONFIG;
	}
	d = opendir(dir);
	if (!d) {
		int e = errno;
		ac_log(ctx, e == ENOENT ? LOG_INFO : LOG_WARNING, NULL,
		       "no services: cannot open %s: %s", dir, strerror(e));
		s_scan_problem(ctx, APICRED_ERR_CONFIG, "no services: cannot open %s: %s", dir,
		               strerror(e));
		free(dir);
		return APICRED_OK;
	}
	while (rc == APICRED_OK && (de = readdir(d)))
		rc = s_scan_entry(ctx, dir, de->d_name, &nm);
	closedir(d);
	if (rc == APICRED_OK)
		rc = s_table(ctx, &nm);
	free(nm.buf);
	free(nm.off);
	if (rc == APICRED_OK && !ctx->nservices)
		s_scan_problem(ctx, APICRED_ERR_NO_SERVICE, "no services: %s holds no "
		               "SERVICE.conf file", dir);
	free(dir);
	if (rc != APICRED_OK)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	/* Nothing is parsed here: each service loads on first use. */
	return s_index(ctx);
}

/* This thread's last lookup: applications mostly ask for one service
 * again and again, often with the same string. Keyed by the context's id
 * (an address may be reused after a close) and the caller's pointer, and
 * confirmed by comparing the text: the buffer may hold another name now. */
static _Thread_local __attribute__((tls_model("initial-exec"))) struct {
	uint64_t ctx_id;
	const char *name;
	struct ac_service *svc;
} t_last;

/* a == b, for a service name: a few bytes, where a call to strcmp costs
 * more than the loop. */
static inline bool s_same_name(const char *a, const char *b)
{
	for (; *a == *b; a++, b++)
		if (!*a)
			return true;
	return false;
}

__attribute__((noinline)) static struct ac_service *s_find(struct ac_ctx *ctx,
                                                          const char *name)
{
	size_t len;
	uint64_t h;

	len = strlen(name);
	h = s_name_hash(name, len);
	for (size_t k = h & ctx->hmask; ctx->htab && ctx->htab[k]; k = (k + 1) & ctx->hmask) {
		struct ac_service *svc = ctx->htab[k];
		if (svc->hash == h && svc->name_len == len && memcmp(svc->name, name, len) == 0) {
			t_last.ctx_id = ctx->id;
			t_last.name = name;
			t_last.svc = svc;
			return svc;
		}
	}
	if (!ac_name_valid(name))
		ac_error(APICRED_ERR_BAD_NAME, "%s: not a valid service name "
		         "([A-Za-z0-9][A-Za-z0-9._-]*, no \"..\")", name);
	else
		ac_error(APICRED_ERR_NO_SERVICE, "%s: no such service (no %s/conf.d/%s.conf)", name,
		         ctx->confdir, name);
	return NULL;
}

struct ac_service *ac_service_find(struct ac_ctx *ctx, const char *name)
{
	if (t_last.ctx_id == ctx->id && t_last.name == name && s_same_name(name, t_last.svc->name))
		return t_last.svc;
	return s_find(ctx, name);
}

/* ---- the public functions ------------------------------------------------ */

API int apicred_open_opts(apicred_ctx **out, const apicred_options *opts)
{
	apicred_options o = { 0 };
	struct ac_ctx *ctx;
	char *moduledir = NULL;
	const char *env;
	int rc;

	if (!out)
		return ac_error(APICRED_ERR_INVALID, "apicred_open: ctx is NULL");
	*out = NULL;
	if (opts) {
		if (opts->size < offsetof(apicred_options, flags))
			return ac_error(APICRED_ERR_INVALID, "apicred_open: options.size not set");
		memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
	}
	pthread_once(&s_atfork_once, s_atfork);
	ac_http_global_init();

	apicred_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	ctx = &c->c;
	ctx->flags = o.flags;
	ctx->log = o.log;
	ctx->log_user = o.log_user;
	ctx->log_level = LOG_NOTICE;
	ctx->clock_mono_ms = o.clock_mono_ms;
	ctx->coarse_res_ms = o.clock_mono_ms ? -1 : ac_clock_init();
	ctx->id = atomic_fetch_add(&s_ctx_ids, 1) + 1;
	ctx->clock_wall_ms = o.clock_wall_ms;
	ctx->random = o.random;
	ctx->hook_user = o.hook_user;
	ac_config_defaults(ctx);
	ctx->bg.fork_gen = atomic_load(&s_fork_gen);
	pthread_mutex_init(&ctx->modules_mu, NULL);
	pthread_mutex_init(&ctx->sorted_mu, NULL);
	pthread_mutex_init(&ctx->bg.mu, NULL);
	pthread_cond_init(&ctx->bg.cv, NULL);

	/* secure_getenv: a setuid program can never be pointed elsewhere. */
	env = secure_getenv("APICRED_CONFDIR");
	ctx->confdir = ac_strdup(o.confdir ? o.confdir : env && *env ? env : APICRED_CONFDIR);
	if (!ctx->confdir) {
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((rc = ac_config_global(ctx, &moduledir)) != APICRED_OK)
		goto fail;
	s_debug_env(ctx);
	env = secure_getenv("APICRED_MODULEDIR");
	ctx->moduledir = ac_strdup(o.moduledir ? o.moduledir : env && *env ? env :
	                           moduledir ? moduledir : APICRED_MODULEDIR);
	free(moduledir);
	moduledir = NULL;
	if (!ctx->moduledir) {
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((rc = ac_store_open(ctx)) != APICRED_OK)
		goto fail;
	if ((rc = s_scan(ctx)) != APICRED_OK)
		goto fail;
	ac_error_clear();
	*out = c;
	return APICRED_OK;
fail:
	free(moduledir);
	{
		/* apicred_close would clobber the message; keep it. */
		char keep[1024];
		snprintf(keep, sizeof(keep), "%s", apicred_errmsg());
		apicred_close(c);
		ac_error(rc, "%s", keep);
	}
	return rc;
}

API int apicred_open(apicred_ctx **ctx, const char *confdir, unsigned flags)
{
	apicred_options o = { .size = sizeof(o), .confdir = confdir, .flags = flags };

	return apicred_open_opts(ctx, &o);
}

API void apicred_close(apicred_ctx *c)
{
	struct ac_ctx *ctx;

	if (!c)
		return;
	ctx = &c->c;
	ac_fork_check(ctx); /* a child's close must not wait for its parent's threads */
	ac_bg_stop(ctx);
	for (size_t i = 0; i < ctx->nservices; i++) {
		struct ac_service *svc = &ctx->services[i];
		ac_stack_free(atomic_load(&svc->stack));
		while (svc->descs) {
			struct ac_desc *d = svc->descs;
			svc->descs = d->next;
			free(d);
		}
		pthread_mutex_destroy(&svc->reload_mu);
	}
	ac_ebr_drain(ctx);
	ac_store_close(ctx);
	free(ctx->store_spec);
	ac_modules_free(ctx);
	free(ctx->services);
	free(ctx->sorted_buf);
	free(ctx->names);
	free(ctx->htab);
	free(ctx->confdir);
	free(ctx->moduledir);
	free(ctx->http.ca_file);
	free(ctx->http.ca_path);
	free(ctx->http.proxy);
	free(ctx->scan_msg);
	pthread_mutex_destroy(&ctx->modules_mu);
	pthread_mutex_destroy(&ctx->sorted_mu);
	pthread_mutex_destroy(&ctx->bg.mu);
	pthread_cond_destroy(&ctx->bg.cv);
	free(c);
}

API int apicred_reload(apicred_ctx *c)
{
	if (!c)
		return ac_error(APICRED_ERR_INVALID, "apicred_reload: ctx is NULL");
	ac_fork_check(&c->c);
	for (size_t i = 0; i < c->c.nservices; i++) {
		struct ac_service *svc = &c->c.services[i];
		struct ac_stack *st;
		bool changed;
		ac_ebr_enter();
		st = atomic_load(&svc->stack);
		changed = st && ac_watch_changed(st); /* not loaded: nothing to re-read */
		ac_ebr_leave();
		if (changed)
			ac_service_maybe_reload(&c->c, svc, true);
	}
	return APICRED_OK;
}

API size_t apicred_service_count(const apicred_ctx *c)
{
	return c ? c->c.nservices : 0;
}

API const char *apicred_service_name(const apicred_ctx *c, size_t index)
{
	/* Sorting on first need writes to the context: a cache, not a change
	 * a caller could see. */
	struct ac_service *svc = c ? ac_service_at((struct ac_ctx *)&c->c, index) : NULL;

	return svc ? svc->name : NULL;
}
