/*
 * internal.h - what the core's files share. Nothing here is ABI.
 *
 * Object graph (one ctx):
 *   ctx -> services[] (in conf.d's order, fixed after open; by name through
 *          ac_service_at)
 *   service -> stack (atomic pointer; replaced whole on reload, old one
 *              retired through the EBR domain so readers never see it freed)
 *   stack -> layers[] -> provider module, provider state, cached session
 *
 * Locking: a layer's mu guards its fetch bookkeeping (fetching, back-off,
 * last error); sessions are published with atomic stores and read without
 * locks. Functions suffixed _inlock expect the caller to hold that lock.
 * No lock is held during network I/O.
 */
#ifndef APICRED_INTERNAL_H
#define APICRED_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>

#include <libconfig.h>

#include <apicred/apicred.h>
#include <apicred/provider.h>

#include "secure.h"

#define API __attribute__((visibility("default"))) /* the application ABI */
#define AC_MAX_LAYERS 16

struct ac_ctx;
struct ac_stack;

/* ---- errors and logging (error.c, log.c) --------------------------------- */

/* Errors and traces are cold: the compiler moves the paths that lead to
 * them out of the hot functions, which then fit in fewer cache lines (a
 * request loop runs them with caches its transfers have cooled). */
#define AC_COLD __attribute__((cold))
/* And the functions of a cached get and apicred_curl_apply are hot: they
 * sit together in .text.hot, fewer cache lines and pages to fetch. */
#define AC_HOT __attribute__((hot))
int ac_error(int code, const char *fmt, ...) AC_COLD __attribute__((format(printf, 2, 3)));
void ac_error_clear(void);
struct ac_layer;
/* The same about one layer: "service: layer N (provider): ..." */
int ac_layer_error(const struct ac_layer *L, int code, const char *fmt, ...)
	AC_COLD __attribute__((format(printf, 3, 4)));
int ac_layer_verror(const struct ac_layer *L, int code, const char *fmt, va_list ap)
	AC_COLD __attribute__((format(printf, 3, 0)));
/* Untrusted (server) text made safe to show: control characters (C0, DEL,
 * C1 in UTF-8) become '?'; at most cap - 1 bytes, ending "..." when cut.
 * Returns the length written. ac_text_clean does it in place. Every error
 * message and log line goes through it. */
size_t ac_text_copy(char *out, size_t cap, const char *in, size_t len);
void ac_text_clean(char *s);
void ac_log(struct ac_ctx *ctx, int level, const char *service, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int ac_log_level(const char *name); /* -1 if unknown */
/* Debug traces of a layer's decisions (never a secret): "layer N (p): ...".
 * Costs one load and a branch when the level is below debug, so they may
 * sit on the hot path. */
#define AC_TRACE(L, ...)                                                      \
	do {                                                                  \
		if ((L)->stack->ctx->log_level >= LOG_DEBUG)                  \
			ac_trace((L), __VA_ARGS__);                           \
	} while (0)
void ac_trace(const struct ac_layer *L, const char *fmt, ...)
	AC_COLD __attribute__((format(printf, 2, 3)));

/* ---- small helpers (util.c) ---------------------------------------------- */

char *ac_strdup(const char *s); /* NULL stays NULL */
bool ac_name_valid(const char *name); /* a service or provider name */
int64_t ac_now_mono(struct ac_ctx *ctx); /* the context's clocks (hooks for tests) */
int64_t ac_now_wall(struct ac_ctx *ctx);
/* Once per process: the coarse clock's resolution (ac_now_fast), or -1. */
int64_t ac_clock_init(void);
int64_t ac_real_ms(void); /* the system's monotonic clock, never a hook */
/* A monotonic time as the wall-clock time it will be: "12:34:56Z". */
const char *ac_mono_clock(struct ac_ctx *ctx, int64_t mono_ms, char buf[16]);
int ac_random(struct ac_ctx *ctx, unsigned char *buf, size_t len);

/* ---- epoch-based reclamation (ebr.c) ------------------------------------- */

/* Readers bracket every use of a stack or session with enter/leave (nesting
 * allowed); writers unpublish an object, then retire it; it is freed once
 * no reader that could have seen it remains. */
struct ac_ebr_node {
	struct ac_ebr_node *next;
	void *owner;
	void (*fn)(struct ac_ebr_node *);
	uint64_t tag;
};

/* The readers' side, inline: apicred_get enters and leaves on every call.
 * Each thread owns a slot (its own cache line) holding the epoch it
 * entered at, or 0 when outside (ebr.c says how writers use them). */
struct ac_ebr_slot {
	_Atomic uint64_t epoch;
	atomic_bool in_use;
	struct ac_ebr_slot *next;
} __attribute__((aligned(64)));
extern struct ac_ebr_reader {
	_Atomic uint64_t epoch;
	bool asym; /* membarrier(2) registered: readers skip their fence */
} ac_ebr;
/* initial-exec: a plain %fs-relative access, not a __tls_get_addr call
 * (a few bytes of the static TLS surplus). */
#define AC_EBR_TLS _Thread_local __attribute__((tls_model("initial-exec")))
extern AC_EBR_TLS struct ac_ebr_slot *ac_ebr_t_slot;
extern AC_EBR_TLS unsigned ac_ebr_t_depth;
struct ac_ebr_slot *ac_ebr_slot_acquire(void); /* the thread's first enter */

static inline void ac_ebr_enter(void)
{
	struct ac_ebr_slot *slot;

	if (ac_ebr_t_depth++ > 0)
		return;
	slot = ac_ebr_t_slot ? ac_ebr_t_slot : ac_ebr_slot_acquire();
	atomic_store_explicit(&slot->epoch, atomic_load_explicit(&ac_ebr.epoch, memory_order_relaxed),
	                      memory_order_relaxed);
	/* ac_ebr.asym is set once, before this thread's first enter
	 * (pthread_once in ac_ebr_slot_acquire). */
	if (ac_ebr.asym)
		atomic_signal_fence(memory_order_seq_cst); /* ac_ebr_safe's membarrier */
	else
		atomic_thread_fence(memory_order_seq_cst);
}

static inline void ac_ebr_leave(void)
{
	if (--ac_ebr_t_depth > 0)
		return;
	atomic_store_explicit(&ac_ebr_t_slot->epoch, 0, memory_order_release);
}
/* Tags an object just unpublished: it may be freed once tag < ac_ebr_safe(). */
uint64_t ac_ebr_advance(void);
uint64_t ac_ebr_safe(void);
/* Queues n (embedded in the object) for fn; frees nothing. */
void ac_ebr_retire(struct ac_ebr_node *n, void *owner, void (*fn)(struct ac_ebr_node *));
void ac_ebr_collect(void);      /* frees what is safe; call with no lock held */
void ac_ebr_drain(void *owner); /* frees owner's objects; no reader may exist */
void ac_ebr_each(void *owner, void (*fn)(struct ac_ebr_node *)); /* retired, not freed */
void ac_ebr_prefork(void);
void ac_ebr_postfork_parent(void);
void ac_ebr_postfork_child(void);

/* ---- modules (loader.c) -------------------------------------------------- */

struct ac_module {
	struct ac_module *next;
	char *name;
	char *path;
	void *handle;
	apicred_vtable_v1 vt;
	int code;   /* APICRED_OK if usable */
	char *why;  /* reason when not */
};

struct ac_module *ac_module_get(struct ac_ctx *ctx, const char *name);
void ac_modules_free(struct ac_ctx *ctx);
/* The modules of the module directory, sorted: free each and the array. */
int ac_module_names(struct ac_ctx *ctx, char ***names, size_t *n);

/* ---- sessions, layers, stacks, services ---------------------------------- */

struct ac_session {
	void *data;
	struct ac_layer *layer;  /* for session_free */
	uint64_t gen;            /* per layer, increasing */
	int64_t refresh_at_ms;   /* monotonic */
	int64_t expires_ms;      /* monotonic hard expiry */
	int64_t wall_expires_s;  /* for apicred_cred_expires_at */
	int64_t wall_issued_ms;  /* wall-clock lifetime, for the shared store */
	int64_t wall_expires_ms;
	atomic_bool invalid;     /* dropped by feedback */
	struct ac_session *dead_next; /* in layer->dead, once replaced */
	uint64_t tag;            /* ac_ebr_advance() when replaced */
	bool shared;             /* read from or written to the shared store */
	unsigned char sid[13];   /* then: the entry's version and nonce */
};

/* A session of L from a fetch or the store (session.c): lifetime life_ms
 * from mono_start (the monotonic clock) and wall_start (the wall clock). */
struct ac_session *ac_session_new(struct ac_layer *L, void *data, int64_t mono_start,
                                  int64_t wall_start, int64_t life_ms);

/* A layer's place in the shared store (store.c). */
struct ac_layer_store {
	bool on;                  /* sessions travel through ctx->store */
	char name[65];            /* entry name: hex of HKDF(identity) */
	unsigned char key[32];    /* AEAD key: HKDF(identity); wiped with the layer */
	unsigned char chain[32];  /* identity digest, bound into the layers below */
};

enum ac_control { AC_REQUIRED, AC_OPTIONAL, AC_SUFFICIENT };
enum ac_carry { AC_CARRY_SAME_ORIGIN, AC_CARRY_ALWAYS, AC_CARRY_NEVER };

struct ac_layer {
	apicred_host host;          /* first: the provider's handle to us */
	struct ac_stack *stack;
	int index;                  /* 0-based */
	const char *provider;       /* name, from the config */
	struct ac_module *mod;      /* NULL when failed */
	void *state;
	config_setting_t *cfg;      /* the layer's group */
	enum ac_control control;
	enum ac_carry carry;
	bool insecure_http;
	int64_t default_ttl_ms;
	int64_t refresh_ahead_ms;
	bool setup_ok;              /* its keys are valid: init may run */
	bool no_session;            /* init said so (host->no_session): no fetch */
	bool apply_static;          /* init said so (host->apply_static): ac_snap */
	int64_t static_until_wall_ms; /* its until_wall_ms; 0: for ever */
	int fail_code;              /* fail closed: a layer that could not init */
	char *fail_msg;
	struct ac_layer_store store;

	/* cache */
	_Atomic(struct ac_session *) session;
	/* Until then, callers holding a valid session skip the refresh check
	 * (a refresh is queued or running, or backing off): no lock taken. */
	_Atomic int64_t quiet_until_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool fetching;              /* under mu */
	bool queued;                /* in the refresher's queue; under ctx->bg.mu */
	int64_t due_ms;             /* when the refresher should run it */
	struct ac_layer *qnext;
	uint64_t gen;
	int failures;
	int64_t retry_at_ms;        /* back-off of a refresh (a valid session) */
	int64_t cold_at_ms;         /* next attempt for callers with no valid session */
	int64_t takeover_ms;        /* a queued refresh not started by then: a caller runs it */
	int last_code;
	char *last_msg;
	struct ac_session *dead;    /* replaced sessions awaiting readers; under mu */
};

struct ac_watch {
	struct ac_watch *next;
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
	bool missing;
};

/* ---- watched files (watch.c) --------------------------------------------- */

int ac_watch_add(struct ac_stack *st, const char *path); /* once per path */
bool ac_watch_changed(struct ac_stack *st);

struct ac_stack {
	struct ac_ebr_node ebr;    /* retired on reload */
	struct ac_ctx *ctx;
	struct ac_service *svc;
	config_t cfg;
	bool cfg_loaded;
	int fail_code;             /* file-level failure (syntax, validation) */
	char *fail_msg;
	char **problems;           /* every problem found, "svc: file:line: msg" */
	size_t nproblems;
	char *description;
	char *origin;              /* "https://host:port" from url, or NULL */
	char *origin_short;        /* the same without a default port */
	size_t origin_len, origin_short_len;
	size_t nheaders;
	char **headers;            /* static: name, value, name, value ... */
	size_t *header_lens;       /* their lengths, in the same order */
	size_t nlayers;
	struct ac_layer *layers;
	struct ac_watch *watches;
	bool literal_ok;           /* the service file is private */
	_Atomic(struct ac_snap *) snap; /* its output, kept (stack.c); or NULL */
	atomic_bool snap_busy;     /* one thread makes or collects snapshots */
	struct ac_snap *snap_dead; /* replaced ones, until no reader holds them */
	bool retired;              /* under ctx->bg.mu: never queue its layers again */
};

/* A description as apicred_service_description returned it: kept until
 * apicred_close, since callers may hold it across a reload. */
struct ac_desc {
	struct ac_desc *next;
	char text[];
};

struct ac_service {
	const char *name;           /* in ctx->names */
	const char *path;           /* CONFDIR/conf.d/NAME.conf, in ctx->names */
	size_t name_len;
	uint64_t hash;              /* of the name, for ac_service_find */
	/* NULL until first use (ac_service_load); then replaced only whole. */
	_Atomic(struct ac_stack *) stack;
	_Atomic(const char *) desc; /* the current stack's, from descs */
	struct ac_desc *descs;      /* every one published; under reload_mu */
	_Atomic int64_t next_check_ms;
	pthread_mutex_t reload_mu;
};

/* ---- the context (ctx.c) ------------------------------------------------- */

struct ac_http_conf {
	long connect_timeout_ms;
	long timeout_ms;
	int64_t deadline_ms;        /* for all attempts of one cold fetch */
	size_t max_body;
	int retries;
	char *ca_file;
	char *ca_path;
	char *proxy;
};

struct ac_ctx {
	char *confdir;
	char *moduledir;
	unsigned flags;
	apicred_log_fn log;
	void *log_user;
	int log_level;
	uint64_t id;                /* unique per open, for the lookup cache */
	int64_t coarse_res_ms;      /* ac_now_fast; -1: the precise (or injected) clock */
	int64_t (*clock_mono_ms)(void *);
	int64_t (*clock_wall_ms)(void *);
	int (*random)(void *, unsigned char *, size_t);
	void *hook_user;

	struct ac_http_conf http;
	int64_t refresh_ahead_ms;
	int64_t default_ttl_ms;
	int64_t check_interval_ms;
	int64_t backoff_max_ms;
	char *store_spec;           /* cache.store */
	struct ac_store *store;     /* NULL: "none" */

	size_t nservices;
	struct ac_service *services; /* in conf.d's order */
	char *names;                /* every service's name and path, one block */
	/* services by name: sorted on first need (ac_service_at), not by open */
	_Atomic(struct ac_service **) sorted;
	struct ac_service **sorted_buf;
	pthread_mutex_t sorted_mu;
	struct ac_service **htab;   /* open addressing by name hash; hmask + 1 slots */
	size_t hmask;
	int scan_code;              /* what is wrong with conf.d itself, or 0 */
	char *scan_msg;

	pthread_mutex_t modules_mu;
	struct ac_module *modules;

	struct {                    /* the background refresher */
		pthread_mutex_t mu;
		pthread_cond_t cv;
		pthread_t thread;
		bool running;
		bool stop;
		unsigned long fork_gen;
		struct ac_layer *queue;
	} bg;
};

struct apicred_ctx { struct ac_ctx c; };

/* The monotonic clock as the hot path reads it: once per call, cheaply.
 * CLOCK_MONOTONIC_COARSE costs a fraction of CLOCK_MONOTONIC and lags it
 * by less than its resolution: adding that keeps it at or ahead of the
 * precise clock, so a session is never taken for valid past its expiry. */
static inline int64_t ac_now_fast(struct ac_ctx *ctx)
{
#ifdef CLOCK_MONOTONIC_COARSE
	struct timespec ts;

	if (ctx->coarse_res_ms >= 0 && clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
		return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ctx->coarse_res_ms;
#endif
	return ac_now_mono(ctx);
}

struct ac_service *ac_service_find(struct ac_ctx *ctx, const char *name) AC_HOT;
/* The i-th service in name order (apicred_service_name's), or NULL. */
struct ac_service *ac_service_at(struct ac_ctx *ctx, size_t i);
void ac_fork_check(struct ac_ctx *ctx) AC_HOT;

/* ---- configuration files (config.c) -------------------------------------- */

void ac_config_defaults(struct ac_ctx *ctx); /* of the settings of apicred.conf */
/* Reads $confdir/apicred.conf, if any, into ctx (its moduledir: *moduledir). */
int ac_config_global(struct ac_ctx *ctx, char **moduledir);

/* Parses st->svc's file into st (its settings, layers and problems):
 * whether its layers may be created. */
bool ac_config_service(struct ac_stack *st);
/* The description of st->svc from its file alone, read and checked as
 * above into a fresh st the caller frees; no provider loaded, no secret
 * resolved: *out (free()) or NULL if none. */
int ac_config_description(struct ac_stack *st, char **out);
/* The line of st's file a message about "layer N" is most likely about. */
int ac_problem_line(const struct ac_stack *st, const char *msg);
void ac_problem_layer(struct ac_layer *L, const char *msg); /* at the line it blames */
void ac_problems_sort(struct ac_stack *st); /* in the order of the file */
const apicred_schema *ac_schema_find(const apicred_schema *schema, const char *name);

/* ---- a stack's lifecycle (lifecycle.c) ------------------------------------ */

/* Parses svc's file and creates its layers: NULL only without memory; a
 * stack that failed says why (ac_stack_error). */
struct ac_stack *ac_stack_load(struct ac_ctx *ctx, struct ac_service *svc);
int ac_stack_error(struct ac_stack *st); /* sets the detail; APICRED_OK if fine */
void ac_stack_free(void *stack);
/* Loads svc on first use (once, whichever threads ask): APICRED_OK, or
 * APICRED_ERR_NOMEM. A service that fails to load is still loaded: its
 * stack fails every call with the reason, until its files change. */
int ac_service_load(struct ac_ctx *ctx, struct ac_service *svc);
/* Reloads svc if one of its files changed (checked at most every
 * cache.check_interval), or anyway with force. */
void ac_service_maybe_reload(struct ac_ctx *ctx, struct ac_service *svc, bool force);

/* ---- walking a stack (stack.c) ------------------------------------------ */

/* The request as apply receives it (host->request_query): the
 * application's, with its content type resolved, and its query parsed on
 * the first request_query of a walk of the stack. */
struct ac_request {
	apicred_request r;             /* first: apply gets &r */
	const struct ac_request *self; /* marks one the core made */
	bool parsed;                   /* query, query_len found */
	const char *query;
	size_t query_len;
	apicred_query_item *items;     /* once split: inline_items or malloc'ed */
	size_t nitems;
	apicred_query_item inline_items[16];
};
/* The body's Content-Type as the server gets it: a Content-Type among
 * req->headers (*in_headers set, may be NULL), else req->content_type, else
 * the guess for a body (JSON when it starts with '{' or '[', else a form:
 * what libcurl sends), else NULL. */
const char *ac_content_type(const apicred_request *req, bool *in_headers);
void ac_request_init(struct ac_request *R, const apicred_request *req);
void ac_request_set_url(struct ac_request *R, const char *url); /* drops the parse */
void ac_request_fini(struct ac_request *R);

const char *ac_control_name(enum ac_control c); /* "required"... */
/* One layer's output (its session's, if it fetches) added to cred. */
int ac_layer_apply(struct ac_layer *L, struct ac_request *req, apicred_cred *cred,
                   int64_t now);
/* Adds the service's static headers, then walks layers [0, upto) adding
 * their output to cred; now is the call's
 * clock reading (ac_now_fast), for the layers' sessions. */
int ac_stack_apply(struct ac_stack *st, size_t upto, const apicred_request *req,
                   apicred_cred *cred, int64_t now);
/* Frees them all: st is being freed. */
void ac_snap_fini(struct ac_stack *st);
/* A get of st at now that copies the stack's kept output
 * into cred, reset, when it is still what the layers would add; false:
 * walk the stack (cred is left reset). */
bool ac_snap_get(struct ac_stack *st, apicred_cred *cred, int64_t now) AC_HOT;
/* ac_stack_apply for apicred_get: the whole stack, then its output kept
 * for the next gets when every layer's apply is static. */
int ac_stack_get(struct ac_stack *st, const apicred_request *req, apicred_cred *cred,
                 int64_t now);
/* The output of the layers above L for L's own request (method, url), when
 * L's carry rule lets it go there; else *out is NULL. Free with
 * apicred_cred_free. */
int ac_stack_carried(struct ac_layer *L, const char *method, const char *url,
                     apicred_cred **out);

/* ---- cache (cache.c) ----------------------------------------------------- */

/* Whether L has sessions: a provider with fetch whose init did not say
 * host->no_session. */
static inline bool ac_layer_fetches(const struct ac_layer *L)
{
	return L->mod->vt.fetch && !L->no_session;
}
/* Whether s, L's current session, serves a call made at now as it is:
 * valid, and not due for a refresh this caller must see to. */
static inline bool ac_session_fresh(const struct ac_layer *L, struct ac_session *s,
                                    int64_t now)
{
	return !atomic_load_explicit(&s->invalid, memory_order_relaxed) &&
	       (now < s->refresh_at_ms ||
	        (now < s->expires_ms &&
	         now < atomic_load_explicit(&L->quiet_until_ms, memory_order_relaxed)));
}
/* L's session for a call made at now (ac_now_fast): lock-free when fresh. */
int ac_layer_session(struct ac_layer *L, int64_t now, struct ac_session **out);
void ac_layer_cache_init(struct ac_layer *L);
/* Frees st's replaced snapshots (stack.c) whose tag is below safe
 * (ac_ebr_safe()); never waits: skipped while another thread makes one. */
void ac_snap_collect(struct ac_stack *st, uint64_t safe);
void ac_layer_cache_fini(struct ac_layer *L);
void ac_layer_invalidate(struct ac_layer *L, uint64_t gen);
void ac_bg_dequeue_stack(struct ac_ctx *ctx, struct ac_stack *st);
void ac_bg_stop(struct ac_ctx *ctx);
void ac_bg_after_fork(struct ac_ctx *ctx);

/* ---- the shared store (store.c, store_file.c, store_redis.c) ------------- */

struct ac_store;
#define AC_STORE_MISS (-1) /* no such entry */
#define AC_STORE_BUSY (-2) /* someone else holds the lock */
typedef int (*ac_fetch_fn)(struct ac_layer *L, const void *prev, struct ac_session **out,
                           int64_t *retry_after_ms);

int ac_store_open(struct ac_ctx *ctx);   /* from ctx->store_spec */
void ac_store_close(struct ac_ctx *ctx);
void ac_store_after_fork(struct ac_ctx *ctx);
int ac_store_spec_check(const char *spec); /* APICRED_OK or a message in the detail */
void ac_store_layer_init(struct ac_layer *L); /* after the provider's init */
/* A session for L when cur (may be NULL) is not valid, or due for refresh
 * (refresh): from the store, or from fetch under the store's lock, then
 * shared. AC_STORE_BUSY (refresh only): another process is refreshing. */
int ac_store_fetch(struct ac_layer *L, struct ac_session *cur, bool refresh, ac_fetch_fn fetch,
                   struct ac_session **out, int64_t *retry_after_ms);
/* While callers have no valid session, an attempt to fetch at most this
 * often: in the process (cache.c) and across the store's users (store.c). */
#define AC_ATTEMPT_GAP_MS 1000
/* Deletes s's entry if it still holds s (a 401 on a shared session). */
void ac_store_invalidate(struct ac_layer *L, const struct ac_session *s);
/* L's entry in the shared store, described in e (apicred_cache_list) or,
 * with cleared, deleted and counted (apicred_cache_clear); errors name
 * the store. */
int ac_store_entry(struct ac_layer *L, apicred_cache_entry *e, size_t *cleared);

/* ---- credentials (cred.c) ------------------------------------------------ */

struct ac_item {
	apicred_kind kind;
	size_t name_off, value_off, value_len;
};

struct ac_used {
	const struct ac_layer *layer;
	uint64_t gen;
};

struct apicred_cred {
	char *arena;
	size_t used, cap;
	struct ac_item *items;
	size_t nitems, capitems;
	size_t nquery;            /* items of kind APICRED_QUERY */
	struct ac_used layers[AC_MAX_LAYERS];
	size_t nlayers;
	int64_t expires_at;
	uint64_t snap_serial;     /* the ac_snap it is a copy of, untouched; or 0 */
	/* The header list of apicred_curl_apply: nodes and "Name: value"
	 * lines in memory kept from call to call (lines wiped by each reset),
	 * so a loop builds it without allocating. */
	struct curl_slist *hnodes;
	size_t hnodes_cap;
	char *hlines;
	size_t hused, hcap;
	uint64_t hserial;         /* the snapshot hlines were made of alone, or 0 */
};

struct apicred_out {
	apicred_cred *cred;
	struct ac_layer *layer; /* for messages; NULL for static headers */
};

/* A copy of a cred's items, kept by a stack for the next gets (stack.c):
 * the sessions it came from and how long it holds, then the cred's
 * arena, items and layers in one block. */
struct ac_snap {
	struct ac_snap *dead_next;     /* in its stack's snap_dead, once replaced */
	uint64_t tag;                  /* ac_ebr_advance() when replaced */
	uint64_t serial;               /* unique: a cred that holds it needs no copy */
	int64_t until_wall_ms;         /* the layers' static_until; INT64_MAX: none */
	size_t nsess;
	struct ac_used sess[AC_MAX_LAYERS]; /* while these are current and fresh */
	size_t used, nitems, nquery, nlayers;
	int64_t expires_at;
	struct ac_used layers[AC_MAX_LAYERS];
	struct ac_item items[];        /* nitems, then the arena's used bytes */
};

void ac_cred_reset(apicred_cred *cred);
/* The curl header lines only (ac_cred_slist's). */
static inline void ac_cred_reset_lines(apicred_cred *cred)
{
	if (cred->hused)
		explicit_bzero(cred->hlines, cred->hused);
	cred->hused = 0;
	cred->hserial = 0;
}
/* A snapshot of cred's items (NULL: out of memory); free with ac_snap_free. */
struct ac_snap *ac_snap_new(const apicred_cred *cred);
void ac_snap_free(struct ac_snap *sn);
/* cred, reset first, becomes a copy of sn's items; false when out of
 * memory. */
bool ac_cred_from_snap(apicred_cred *cred, const struct ac_snap *sn);
int ac_cred_add(apicred_cred *cred, apicred_kind kind, const char *name, size_t name_len,
                const void *value, size_t len);
void ac_cred_truncate(apicred_cred *cred, size_t nitems);
/* Builds cred's curl header list: lines (NULL-terminated, may be NULL),
 * then cred's headers, then ct_line (may be NULL); *out is NULL if empty.
 * It lives in cred until the next reset; with neither lines nor ct_line,
 * a cred still holding the snapshot it was made from gets it again. */
int ac_cred_slist(apicred_cred *cred, const char *const *lines, const char *ct_line,
                  struct curl_slist **out) AC_HOT;
int ac_out_header(apicred_out *out, const char *name, const char *value);
int ac_out_query(apicred_out *out, const char *name, const char *value);
int ac_out_tls(apicred_out *out, const char *name, const void *value, size_t len);
/* A header checked once, by the provider's host->header_new: "name\0value\0". */
struct apicred_header {
	size_t name_len, value_len;
	char text[];
};
int ac_header_new(struct ac_layer *L, const char *name, const char *value,
                  apicred_header **out);
int ac_out_prepared(apicred_out *out, const apicred_header *hdr);
void ac_header_free(apicred_header *hdr);
bool ac_header_value_ok(const char *v, size_t len);
struct curl_slist;
/* Appends lines (NULL-terminated, may be NULL) and then the headers of cred
 * (may be NULL) as "Name: value" to *list; on failure frees it all. */
int ac_slist_headers(struct curl_slist **list, const char *const *lines,
                     const apicred_cred *cred);
/* Frees a header list, wiping it first: it holds credentials. */
void ac_slist_free(struct curl_slist *list);
/* The checks of APICRED_T_HEADER_NAME and _HEADERS (one line). */

/* ---- TLS material (tls.c) ------------------------------------------------ */

/* Applies the TLS items of cred to a CURL handle; ca_file and ca_path are
 * apicred.conf's, used unless a layer names a CA of its own. */
int ac_curl_tls(void *easy, const apicred_cred *cred, const char *ca_file, const char *ca_path)
	AC_HOT;
/* Whether pin[0..len) is one pinned key, "sha256//" and the base64 of a
 * SHA-256 digest (curl's syntax), and that digest (sha256 may be NULL).
 * The one check of the core and the mtls provider. */
bool ac_tls_pin(const char *pin, size_t len, unsigned char sha256[32]);

/* ---- HTTP (http.c) ------------------------------------------------------- */

/* A provider's request for layer L, with carried (may be NULL): the output
 * of the layers above that this request may carry (ac_stack_carried). */
int ac_http(struct ac_layer *L, const apicred_http_request *req, const apicred_cred *carried,
            apicred_http_response *resp);
void ac_http_free(apicred_http_response *resp);
int ac_http_error(struct ac_layer *L, const apicred_http_response *resp, const char *what);
char *ac_url_origin(const char *url); /* "scheme://host:port" lowercased; NULL if bad */
bool ac_url_same_origin(const char *origin, const char *url);
bool ac_url_loopback(const char *url); /* its host is 127.0.0.1, ::1 or localhost */
/* APICRED_OK for an https URL, or http to a loopback host with the layer's
 * insecure_http; else the error, detail set. */
int ac_url_allowed(struct ac_layer *L, const char *url);
/* Once per process, at apicred_open: jansson's wiping allocator; libcurl's
 * set-up too when libcurl is not thread-safe. */
void ac_http_global_init(void);
/* libcurl's global set-up, once, before the first request (curl_easy_init):
 * its URL API, used before, needs none. */
void ac_curl_init(void);
/* Whether jansson failed an allocation in this thread since the last call. */
bool ac_json_oom_take(void);
/* One total deadline for a cold fetch, all attempts (http.deadline), on
 * the fetching thread; requests get only what is left. A fetch started
 * within one (for a layer above) shares it: begin returns whether it
 * started one, to give to end. */
bool ac_deadline_begin(int64_t len_ms);
void ac_deadline_end(bool began);
int64_t ac_deadline_left(void); /* ms; INT64_MAX without a deadline */
/* code, or APICRED_ERR_HTTP naming the deadline once it has passed (or
 * when late: the next attempt would pass it). */
int ac_deadline_error(struct ac_layer *L, int code, bool late);

#ifdef APICRED_FUZZING
/* Fuzzing builds only (tests/fuzz links a copy of the core built with
 * APICRED_FUZZING; libapicred never has this): when set, the fuzzer answers
 * instead of the network. It sees what would be sent and returns nonzero
 * for a transport failure, else the reply: head is "Name: value\r\n"
 * lines, which go through the same callbacks as libcurl's would. */
struct ac_fuzz_reply {
	long status;
	const char *content_type;
	const char *head;
	size_t head_len;
	const char *body;
	size_t body_len;
};
extern int (*ac_fuzz_http)(const char *method, const char *url,
                           const struct curl_slist *headers, const void *body,
                           size_t body_len, struct ac_fuzz_reply *reply);
#endif
/* The check of APICRED_T_URL: http:// or https:// with a host. */
bool ac_http_url_ok(const char *s);

/* ---- secrets (secret.c) and host services (host.c) ------------------------ */

int ac_secret_resolve(struct ac_layer *L, const char *key, const char *ref,
                      char **value, size_t *len);
/* Resolves and drops a secret, for apicred_check: no watch is added to a
 * stack that other threads may be reading. */
int ac_secret_check(struct ac_layer *L, const char *key, const char *ref);
int ac_secret_store(struct ac_layer *L, const char *key, const char *value,
                    size_t len, int force);
int ac_secret_store_all(struct ac_layer *L, size_t n, const char *const *keys,
                        const char *const *values, const size_t *lens, int force);
void ac_secret_free(char *value, size_t len);
int ac_read_file(const char *path, size_t max, char **data, size_t *len,
                 bool secret, const char *what);
void ac_host_setup(struct ac_layer *L);
/* Schema types the core checks (APICRED_T_URL, _HEADER_NAME, _HEADERS). */
bool ac_http_url_ok(const char *s);
bool ac_header_name_ok(const char *s, size_t len);
bool ac_header_line_ok(const char *s);

/* ---- who may change what (path.c) ---------------------------------------- */

enum ac_path_kind {
	AC_PATH_FILE,   /* a regular file: configuration, module, certificate */
	AC_PATH_DIR,    /* a directory: conf.d, the module directory */
	AC_PATH_ANY,    /* either (a CA file or hashed directory) */
	AC_PATH_SECRET  /* a regular file that the world cannot read either */
};

/* ref as a path: absolute, or relative to ctx->confdir; ref is not a secret. */
int ac_path_resolve(struct ac_ctx *ctx, const char *ref, char **out);
/* APICRED_OK if path, and every directory above it, belongs to root or the
 * effective user and is not group or world writable (a root-owned sticky
 * directory is fine above it); else the detail says what to chmod or chown.
 * Errors are APICRED_ERR_SECRET for AC_PATH_SECRET, else _CONFIG. */
int ac_path_safe(const char *path, const char *what, enum ac_path_kind kind);
/* The same rule for the file itself only (an fstat of what was opened). */
int ac_stat_safe(const struct stat *sb, const char *what, const char *path,
                 enum ac_path_kind kind);

#endif /* APICRED_INTERNAL_H */
