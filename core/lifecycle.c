/*
 * lifecycle.c - a service's stack from load to reclaim: parsed by
 * config.c, its layers' provider state created (init), its first error,
 * reloaded when a file it came from changes, retired through the EBR
 * domain and freed once no reader is left.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

/* Creates each layer's provider state. A layer that cannot be created fails
 * closed: it keeps the reason and fails every request that reaches it. */
static void s_init_layers(struct ac_stack *st)
{
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];

		if (!L->setup_ok)
			continue; /* already a problem of the file */
		ac_host_setup(L);
		ac_error_clear();
		int rc = L->mod->vt.init(&L->host, &L->state);
		if (rc != APICRED_OK) {
			L->state = NULL;
			L->fail_code = rc;
			L->fail_msg = ac_strdup(*apicred_errmsg() ? apicred_errmsg() : apicred_strerror(rc));
			/* fail_msg already names service and layer. */
			ac_log(st->ctx, LOG_ERR, NULL, "%s", L->fail_msg ? L->fail_msg : "layer failed");
			if (L->fail_msg && L->control == AC_REQUIRED) {
				size_t n = strlen(st->svc->name);
				const char *m = L->fail_msg;

				if (strncmp(m, st->svc->name, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
					m += n + 2;
				ac_problem_layer(L, m);
			}
			continue;
		}
		ac_store_layer_init(L); /* its name and key in the shared store */
	}
}

struct ac_stack *ac_stack_load(struct ac_ctx *ctx, struct ac_service *svc)
{
	struct ac_stack *st = calloc(1, sizeof(*st));
	bool parsed;

	if (!st)
		return NULL;
	st->ctx = ctx;
	st->svc = svc;
	parsed = ac_config_service(st);
	for (size_t i = 0; i < st->nlayers; i++)
		ac_layer_cache_init(&st->layers[i]);
	/* Layers whose own keys are right are created even when other parts
	 * of the file are wrong: check reports all at once. */
	if (parsed)
		s_init_layers(st);
	ac_problems_sort(st);
	if (st->fail_code)
		ac_log(ctx, LOG_ERR, NULL, "%s",
		       st->fail_msg ? st->fail_msg : apicred_strerror(st->fail_code));
	return st;
}

int ac_stack_error(struct ac_stack *st)
{
	if (st->fail_code)
		return ac_error(st->fail_code, "%s", st->fail_msg ? st->fail_msg : "out of memory");
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		if (L->fail_code && L->control == AC_REQUIRED)
			return ac_error(L->fail_code, "%s", L->fail_msg ? L->fail_msg : "layer failed");
	}
	return APICRED_OK;
}

void ac_stack_free(void *p)
{
	struct ac_stack *st = p;

	if (!st)
		return;
	for (size_t i = 0; i < st->nlayers; i++) {
		struct ac_layer *L = &st->layers[i];
		ac_layer_cache_fini(L);
		if (L->state)
			L->mod->vt.fini(L->state);
		free(L->fail_msg);
	}
	free(st->layers);
	ac_snap_fini(st);
	for (size_t i = 0; st->headers && i < 2 * st->nheaders; i++)
		free(st->headers[i]);
	free(st->headers);
	free(st->header_lens);
	while (st->watches) {
		struct ac_watch *w = st->watches;
		st->watches = w->next;
		free(w->path);
		free(w);
	}
	if (st->cfg_loaded)
		config_destroy(&st->cfg);
	free(st->description);
	free(st->origin);
	free(st->origin_short);
	free(st->fail_msg);
	for (size_t i = 0; i < st->nproblems; i++)
		free(st->problems[i]);
	free(st->problems);
	free(st);
}

/* Publishes st's description, keeping every earlier text until close. */
static void s_describe_inlock(struct ac_service *svc, const struct ac_stack *st)
{
	const char *cur = atomic_load(&svc->desc);
	struct ac_desc *d;
	size_t len;

	if (!st->description) {
		atomic_store(&svc->desc, NULL);
		return;
	}
	if (cur && strcmp(cur, st->description) == 0)
		return;
	len = strlen(st->description);
	d = malloc(sizeof(*d) + len + 1);
	if (!d) {
		atomic_store(&svc->desc, NULL);
		return;
	}
	memcpy(d->text, st->description, len + 1);
	d->next = svc->descs;
	svc->descs = d;
	atomic_store(&svc->desc, d->text);
}

int ac_service_load(struct ac_ctx *ctx, struct ac_service *svc)
{
	struct ac_stack *st;

	if (atomic_load_explicit(&svc->stack, memory_order_acquire))
		return APICRED_OK;
	pthread_mutex_lock(&svc->reload_mu);
	st = atomic_load_explicit(&svc->stack, memory_order_relaxed);
	if (!st && (st = ac_stack_load(ctx, svc))) {
		s_describe_inlock(svc, st);
		atomic_store(&svc->next_check_ms, ac_now_mono(ctx) + ctx->check_interval_ms);
		atomic_store_explicit(&svc->stack, st, memory_order_release);
	}
	pthread_mutex_unlock(&svc->reload_mu);
	return st ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "%s: out of memory", svc->name);
}

static void s_stack_reclaim(struct ac_ebr_node *n)
{
	ac_stack_free((char *)n - offsetof(struct ac_stack, ebr));
}

static void s_stack_retire(struct ac_ctx *ctx, struct ac_stack *st)
{
	ac_bg_dequeue_stack(ctx, st);
	ac_ebr_retire(&st->ebr, ctx, s_stack_reclaim);
}

void ac_service_maybe_reload(struct ac_ctx *ctx, struct ac_service *svc, bool force)
{
	int64_t now = ac_now_mono(ctx), next = atomic_load_explicit(&svc->next_check_ms,
	                                                            memory_order_relaxed);
	struct ac_stack *old, *st;

	if (!force && (now < next ||
	               !atomic_compare_exchange_strong(&svc->next_check_ms, &next,
	                                               now + ctx->check_interval_ms)))
		return;
	pthread_mutex_lock(&svc->reload_mu);
	old = atomic_load(&svc->stack);
	if (!old || (!force && !ac_watch_changed(old))) { /* not loaded: its first use reads it */
		pthread_mutex_unlock(&svc->reload_mu);
		return;
	}
	st = ac_stack_load(ctx, svc);
	if (st) {
		s_describe_inlock(svc, st);
		atomic_store_explicit(&svc->stack, st, memory_order_release);
		s_stack_retire(ctx, old);
		ac_log(ctx, LOG_INFO, svc->name, "configuration reloaded (a file changed)");
	}
	pthread_mutex_unlock(&svc->reload_mu);
	ac_ebr_collect(); /* the old stack's fini runs under no lock of ours */
}
