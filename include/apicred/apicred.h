/*
 * apicred.h - the application ABI of libapicred.
 *
 * An application asks for the credentials of a *service* by name; the admin
 * describes the service in $confdir/conf.d/<service>.conf as a stack of
 * provider layers; the library loads the providers, fetches and caches any
 * session (OAuth 2.0 token, login token, ...), and hands back what the next
 * request must carry: headers, query parameters and TLS material.
 *
 *   apicred_ctx *ctx;
 *   apicred_cred *cred;
 *   apicred_open(&ctx, NULL, 0);
 *   apicred_cred_new(&cred);
 *   apicred_request req = APICRED_REQUEST_INIT;
 *   req.method = "POST"; req.url = url; req.body = body; req.body_len = len;
 *   if (apicred_get(ctx, "momo-collection", &req, cred) != APICRED_OK)
 *       fprintf(stderr, "%s\n", apicred_errmsg());
 *   ... send the request with the headers from apicred_cred_item() ...
 *   apicred_report(ctx, "momo-collection", cred, status, NULL, 0, NULL);
 *
 * Threads: one apicred_ctx is shared by every thread of a process; all
 * functions taking a ctx are thread-safe. An apicred_cred belongs to one
 * thread at a time. After fork() the child may keep using the ctx: the
 * library notices the fork and restarts its background work.
 *
 * Errors: every function returning int returns APICRED_OK (0) or an
 * apicred_err code; apicred_errmsg() then tells, for the calling thread,
 * which service, layer, file:line or HTTP status was at fault. Messages
 * never contain secret values.
 */
#ifndef APICRED_APICRED_H
#define APICRED_APICRED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APICRED_VERSION_MAJOR 1
#define APICRED_VERSION_MINOR 0

typedef struct apicred_ctx apicred_ctx;
typedef struct apicred_cred apicred_cred;

/* Stable error codes: values are never renumbered, only appended. */
typedef enum apicred_err {
	APICRED_OK = 0,
	APICRED_ERR_NOMEM = 1,       /* out of memory */
	APICRED_ERR_INVALID = 2,     /* bad argument from the caller */
	APICRED_ERR_CONFIG = 3,      /* configuration file invalid */
	APICRED_ERR_NO_SERVICE = 4,  /* no such service */
	APICRED_ERR_BAD_NAME = 5,    /* service name not allowed */
	APICRED_ERR_PROVIDER = 6,    /* provider missing or failed to load */
	APICRED_ERR_ABI = 7,         /* provider built for another ABI major */
	APICRED_ERR_SECRET = 8,      /* secret missing, unreadable or unsafe */
	APICRED_ERR_HTTP = 9,        /* network or transport failure */
	APICRED_ERR_AUTH = 10,       /* the server refused the credentials */
	APICRED_ERR_PROTOCOL = 11,   /* the server's reply made no sense */
	APICRED_ERR_TLS = 12,        /* TLS material or handshake failure */
	APICRED_ERR_UNAVAILABLE = 13, /* temporarily failing; retried later */
	APICRED_ERR_UNSUPPORTED = 14, /* operation not offered by the service */
	APICRED_ERR_ORIGIN = 15,     /* request URL outside the service's origin */
	APICRED_ERR_EXISTS = 16,     /* would overwrite existing data */
	APICRED_ERR_INTERNAL = 17    /* a bug: please report it */
} apicred_err;

/* Static description of a code ("secret missing or unsafe"). Never NULL. */
const char *apicred_strerror(int code);

/* Detail of the calling thread's last failure, e.g.
 * "momo-collection: layer 2 (oauth2): token endpoint: HTTP 401: invalid_client".
 * Valid until the thread's next apicred call. Never NULL (may be ""). */
const char *apicred_errmsg(void);

/* ---- contexts ---------------------------------------------------------- */

/* Log levels are syslog's: LOG_ERR (3) .. LOG_DEBUG (7). */
typedef void (*apicred_log_fn)(void *user, int level, const char *service,
                               const char *message);

/* Options for apicred_open_opts(). Zero-initialise, set .size, then set what
 * you need; fields are only ever appended. */
typedef struct apicred_options {
	size_t size;            /* sizeof(apicred_options) */
	const char *confdir;    /* NULL: $APICRED_CONFDIR (secure_getenv) or built-in */
	const char *moduledir;  /* NULL: $APICRED_MODULEDIR (secure_getenv), else
	                         * apicred.conf's moduledir, else built-in */
	unsigned flags;         /* APICRED_OPEN_* */
	apicred_log_fn log;     /* NULL: syslog */
	void *log_user;
	/* Test hooks. Monotonic and wall clocks in milliseconds; random bytes.
	 * NULL: the real clocks and OpenSSL's RAND_bytes. */
	int64_t (*clock_mono_ms)(void *user);
	int64_t (*clock_wall_ms)(void *user);
	int (*random)(void *user, unsigned char *buf, size_t len);
	void *hook_user;
} apicred_options;

#define APICRED_OPEN_NO_BACKGROUND 0x1u /* refresh ahead in callers' threads */
#define APICRED_OPEN_LOG_STDERR    0x2u /* default logger writes to stderr, not syslog */

/* Opens a context reading $confdir/apicred.conf and the list of
 * $confdir/conf.d/ . Each service is parsed, its providers loaded and its
 * secrets resolved on first use (apicred_get, apicred_curl_apply,
 * apicred_report, apicred_check, ...), once, whatever the number of
 * threads asking. A service that fails to load does not fail the open nor
 * touch the others: every call for it fails with the reason, naming the
 * service, until its files change (see apicred_check_all). */
int apicred_open(apicred_ctx **ctx, const char *confdir, unsigned flags);
int apicred_open_opts(apicred_ctx **ctx, const apicred_options *opts);

/* Frees everything. No thread may be using ctx. NULL is a no-op. */
void apicred_close(apicred_ctx *ctx);

/* Re-reads the configuration of every service whose files changed. The
 * library also does this by itself, at most every cache.check_interval. */
int apicred_reload(apicred_ctx *ctx);

/* ---- services ---------------------------------------------------------- */

/* Number of services found under conf.d, and the name of the i-th (sorted). */
size_t apicred_service_count(const apicred_ctx *ctx);
const char *apicred_service_name(const apicred_ctx *ctx, size_t index);

/* Everything apicred_get does for service but the network (files,
 * providers, every secret, header values, no plain http:// endpoint):
 * APICRED_OK, or the code with the reason (file:line, provider path, ...)
 * in apicred_errmsg(). With service NULL, checks conf.d itself: it exists,
 * holds a service, and no .conf file whose name is no service name. */
int apicred_check(apicred_ctx *ctx, const char *service);

/* Like apicred_check, calling fn with every problem found in the
 * service's files, "service: file:line: message", in file order. The
 * message is valid during the call. */
typedef void (*apicred_problem_fn)(void *user, const char *message);
int apicred_check_report(apicred_ctx *ctx, const char *service, apicred_problem_fn fn,
                         void *user);

/* Loads and checks conf.d and every service, as apicred_check does for
 * one (services otherwise load on first use, so a broken one shows only
 * when used). With fn (may be NULL), every problem of every service, as
 * apicred_check_report gives them. APICRED_OK if all are fine, else the
 * first failure's code, its reason (naming the service) in
 * apicred_errmsg(). Since 1.1. */
int apicred_check_all(apicred_ctx *ctx, apicred_problem_fn fn, void *user);

/* The service file's description, or NULL (none, or the service failed:
 * then apicred_errmsg() says why). The text stays valid until apicred_close,
 * even if a reload changes it meanwhile. */
const char *apicred_service_description(apicred_ctx *ctx, const char *service);

/* The current description as a copy the caller frees (*out = NULL if there
 * is none). APICRED_OK, or the service's error. Since 1.1. */
int apicred_service_description_copy(apicred_ctx *ctx, const char *service, char **out);

/* The description as the service file gives it, read from that file alone
 * (`apicred list`): the file passes the same ownership and mode checks and
 * must parse, but no provider is loaded and no secret resolved, so a
 * service that would fail for those still has its description. *out
 * (free(); NULL if the file has none). APICRED_OK, or the file's error,
 * naming service and file. Since 1.1. */
int apicred_service_description_read(apicred_ctx *ctx, const char *service, char **out);

/* ---- getting credentials ----------------------------------------------- */

/* What the next request will be; signing schemes need it, others ignore it.
 * The library resolves the body's content type once and hands the layers
 * the request as it will be sent. */
typedef struct apicred_request {
	size_t size;              /* sizeof(apicred_request) */
	const char *method;       /* NULL: "GET" */
	const char *url;          /* absolute URL, may be NULL */
	const void *body;         /* may be NULL */
	size_t body_len;
	const char *content_type; /* of body; a Content-Type line among headers
	                           * wins (it is what is sent); NULL: the
	                           * library's guess (JSON when the body starts
	                           * with '{' or '[', else a form) */
	const char *const *headers; /* NULL-terminated "Name: value" lines the
	                             * application sends too, or NULL;
	                             * apicred_curl_apply puts them on the handle */
} apicred_request;

#define APICRED_REQUEST_INIT { sizeof(apicred_request), NULL, NULL, NULL, 0, NULL, NULL }

/* A credential result. Reusable: each apicred_get() clears and refills it,
 * keeping its memory, so a loop allocates nothing after the first call.
 * Freeing wipes it. */
int apicred_cred_new(apicred_cred **cred);
void apicred_cred_free(apicred_cred *cred);

/* Fills cred with what a request to the service must carry. Fetches a
 * session (token) first when none is cached; otherwise does no I/O.
 * req may be NULL. */
int apicred_get(apicred_ctx *ctx, const char *service,
                const apicred_request *req, apicred_cred *cred);

typedef enum apicred_kind {
	APICRED_HEADER = 1, /* name: header name, value: header value */
	APICRED_QUERY = 2,  /* name=value to append to the URL's query (raw values) */
	APICRED_TLS = 3     /* TLS material: see below */
} apicred_kind;

/* TLS items (kind APICRED_TLS): "cert" (PEM), "key" (PEM; secret),
 * "ca_file", "ca_path", "pinned_pubkey" (curl's "sha256//..;sha256//.."),
 * "min_tls" ("1.2" or "1.3"), and descriptive "cert_subject",
 * "cert_issuer", "cert_serial", "cert_sha256", "cert_not_after". */

size_t apicred_cred_count(const apicred_cred *cred, apicred_kind kind);

/* The index-th item of a kind; value_len covers binary material.
 * Pointers stay valid until the next apicred_get on cred or its free. */
int apicred_cred_item(const apicred_cred *cred, apicred_kind kind, size_t index,
                      const char **name, const char **value, size_t *value_len);

/* Looks an item up by name (headers case-insensitively); NULL if absent. */
const char *apicred_cred_find(const apicred_cred *cred, apicred_kind kind,
                              const char *name);

/* Wall-clock time (Unix seconds) when the earliest session used expires,
 * or 0 when no layer has a session. */
int64_t apicred_cred_expires_at(const apicred_cred *cred);

/* Builds url with the credential's query parameters appended, properly
 * escaped. Free the result with free(). */
int apicred_cred_url(const apicred_cred *cred, const char *url, char **out);

/* One call that gets credentials and decorates a libcurl easy handle
 * (a CURL *): CURLOPT_URL (req->url plus the query parameters),
 * CURLOPT_HTTPHEADER (req->headers plus the credential's headers), client
 * certificate and key (in memory), CA, pinned key, TLS version, and the
 * Content-Type the signing layers saw (req->content_type or the library's
 * guess for the body) unless req->headers has one. Peer verification stays on.
 * Method and body are the application's to set (CURLOPT_POSTFIELDS...).
 * Never set CURLOPT_HTTPHEADER afterwards: it would replace the list, and
 * the credential headers with it; use req->headers. The header list lives
 * in cred: keep cred alive until curl_easy_perform() returns. req must
 * have a url. On failure, whatever the cause, the handle is left with no
 * header list (CURLOPT_HTTPHEADER is NULL, the application's lines too)
 * and cred empty: run anyway, it sends no credential, stale or wiped. */
int apicred_curl_apply(apicred_ctx *ctx, const char *service, void *curl_easy,
                       const apicred_request *req, apicred_cred *cred);

/* Same, for an OpenSSL SSL_CTX: client certificate, key, CA and minimum
 * version from the TLS items of cred. */
int apicred_ssl_ctx_apply(const apicred_cred *cred, void *ssl_ctx);

/* ---- feedback ---------------------------------------------------------- */

/* Tells the library how the server answered a request made with cred
 * (NULL: the current credentials). A 401 drops the token that failed (not a
 * newer one), a 403 on a TOK: layer fails over to the backup token, and
 * providers may read the body (TCX answers 200 with a failure body).
 * *retry, if not NULL, is set to 1 when the credentials changed so that
 * repeating the request once may succeed. */
int apicred_report(apicred_ctx *ctx, const char *service,
                   const apicred_cred *cred, long http_status,
                   const void *body, size_t body_len, int *retry);

/* Same, with the response's header lines ("Name: value", NULL-terminated),
 * so that providers see e.g. WWW-Authenticate and DPoP-Nonce. Since 1.1. */
int apicred_report_headers(apicred_ctx *ctx, const char *service,
                           const apicred_cred *cred, long http_status,
                           const char *const *headers, const void *body,
                           size_t body_len, int *retry);

/* Same, reading status and headers from a libcurl easy handle (a CURL *)
 * after curl_easy_perform() returned CURLE_OK; the body is the caller's to
 * pass. Since 1.1. */
int apicred_curl_report(apicred_ctx *ctx, const char *service, void *curl_easy,
                        const apicred_cred *cred, const void *body, size_t body_len,
                        int *retry);

/* ---- providers and provisioning ---------------------------------------- */

/* Calls fn for each provider module in the module directory, with the
 * result of loading it (APICRED_OK or the code and a reason). */
typedef void (*apicred_provider_fn)(void *user, const char *name,
                                    const char *path, int status,
                                    const char *detail);
int apicred_providers(apicred_ctx *ctx, apicred_provider_fn fn, void *user);

/* One configuration key a provider accepts, from its schema. */
typedef struct apicred_key {
	size_t size;          /* sizeof(apicred_key); fields are only appended */
	const char *name;
	const char *type;     /* "string", "integer", "boolean", "list", "group", "url",
	                       * "header-name", "headers" (or "unknown") */
	int required;
	int secret;           /* a literal only in a private service file */
	const char *def;      /* the default as text, or NULL */
	const char *choices;  /* "a|b|c", or NULL */
	const char *help;     /* one line, or NULL */
} apicred_key;

typedef void (*apicred_key_fn)(void *user, const apicred_key *key);

/* Calls fn for each key of the provider's schema; provider NULL: the keys
 * every layer accepts (provider, control, carry, ...). Strings are valid
 * during the call. */
int apicred_provider_keys(apicred_ctx *ctx, const char *provider, apicred_key_fn fn,
                          void *user);

#define APICRED_PROVISION_FORCE 0x1u /* overwrite existing secret files */
#define APICRED_PROVISION_SHOW  0x2u /* only show what exists */

/* Runs the provisioning operation of the service's layers (e.g. creating a
 * MoMo sandbox API user and key, stored in the files the layer references).
 * *report, if not NULL, receives a human-readable summary (free()). */
int apicred_provision(apicred_ctx *ctx, const char *service, unsigned flags,
                      char **report);

/* ---- the shared session store (apicred.conf's cache.store) ------------- */

enum apicred_entry_state {
	APICRED_ENTRY_ABSENT = 0,    /* no entry for this layer */
	APICRED_ENTRY_VALID = 1,     /* a session other processes will use */
	APICRED_ENTRY_EXPIRED = 2,   /* left behind; replaced on the next fetch */
	APICRED_ENTRY_UNREADABLE = 3 /* tampered with or garbled; replaced likewise */
};

/* One layer's entry in the shared store. Values are never shown: reading
 * an entry needs the layer's secrets, which this process holds. */
typedef struct apicred_cache_entry {
	size_t size;          /* sizeof(apicred_cache_entry) */
	const char *service;
	int layer;            /* 1-based */
	const char *provider;
	const char *store;    /* "file:DIR" or "redis://host:port/db", no password */
	int state;            /* enum apicred_entry_state */
	int64_t expires_at;   /* Unix seconds (VALID, EXPIRED), else 0 */
} apicred_cache_entry;

typedef void (*apicred_cache_fn)(void *user, const apicred_cache_entry *entry);

/* Calls fn for each layer of service (NULL: of every service) whose
 * sessions go through the shared store. APICRED_ERR_UNSUPPORTED when
 * cache.store is "none". A layer the store fails on stops nothing: the
 * walk goes on, then returns the first failure's code, and apicred_errmsg()
 * gives each failed service with its reason ("svc: ...; svc2: ..."). */
int apicred_cache_list(apicred_ctx *ctx, const char *service, apicred_cache_fn fn,
                       void *user);

/* Deletes those entries (going on past failures likewise); *cleared (may
 * be NULL) counts the ones that were there. Processes keep the sessions
 * they hold until these expire. */
int apicred_cache_clear(apicred_ctx *ctx, const char *service, size_t *cleared);

#ifdef __cplusplus
}
#endif

#endif /* APICRED_APICRED_H */
