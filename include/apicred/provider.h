/*
 * provider.h - the provider ABI of libapicred (version 1).
 *
 * A provider is a shared object implementing one credential scheme. It is
 * found as $moduledir/<scheme>.so and exports exactly one function:
 *
 *     int apicred_provider_initvt(int major, int minor, void *vtable);
 *
 * The core allocates a zeroed vtable of the version it knows and calls
 * initvt(APICRED_PROVIDER_MAJOR, APICRED_PROVIDER_MINOR, vt). The provider
 * returns APICRED_ERR_ABI if it does not speak that major version; otherwise
 * it fills the fields it has and returns APICRED_OK. Fields are only ever
 * appended to the vtable, so a provider copies min(its, the core's) minor.
 *
 * The core owns everything that is not the scheme itself: configuration and
 * its validation (against the provider's schema: types such as URLs and
 * header names, non-empty values), secrets and the files a layer names,
 * caching of sessions, single-flight fetching, refresh ahead, retries and
 * back-off, HTTP(S), JSON, locking and logging; struct apicred_host offers
 * them. A provider therefore holds no locks, no threads and no caches, and
 * repeats none of the core's checks. Its methods are:
 *
 *   init      parse configuration into immutable state           (Mandatory)
 *   fetch     obtain a session: token, login, ... (network I/O)  (Optional)
 *   apply     turn state + session into request decorations      (Mandatory)
 *   feedback  read a server's answer; tell the core what to do   (Optional)
 *   feedback_headers  the same, with the response's headers      (Optional)
 *   provision create the account/secrets a layer refers to       (Optional)
 *   fini      release state                                      (Mandatory)
 *   session_export / session_import                              (Optional, minor 1)
 *             turn a session into bytes and back, so the core can
 *             share it with other processes and hosts (cache.store)
 *
 * Concurrency: state is shared by every thread after init returns. apply and
 * feedback may run concurrently with each other and with one fetch, so they
 * must treat state and sessions as read-only (atomics are fine): a session
 * that feedback refuses is dropped (APICRED_FEEDBACK_INVALIDATE) and the
 * next fetch learns why it runs (host->fetch_reason), never by a mark on
 * the session. The core never runs two fetches of one layer at once.
 *
 * Errors: methods return APICRED_OK or an apicred_err code. Report the
 * reason with host->error(), which prefixes service and layer; never put a
 * secret into a message. From fetch, APICRED_ERR_HTTP, _UNAVAILABLE and
 * _PROTOCOL mean "worth retrying" (network, 5xx, 429, garbled reply);
 * APICRED_ERR_AUTH and others mean "retrying will not help".
 */
#ifndef APICRED_PROVIDER_H
#define APICRED_PROVIDER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <apicred/apicred.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APICRED_PROVIDER_MAJOR 1
#define APICRED_PROVIDER_MINOR 1

/* ---- configuration schema ---------------------------------------------- */

typedef enum apicred_cfg_type {
	APICRED_T_STRING = 1, /* "text" */
	APICRED_T_INT = 2,    /* 42 */
	APICRED_T_BOOL = 3,   /* true / false */
	APICRED_T_LIST = 4,   /* "one" or ( "one", "two" ) */
	APICRED_T_GROUP = 5,  /* { name = "value"; ... } string values only */
	/* Since minor 1: strings the core checks before init runs. */
	APICRED_T_URL = 6,         /* an absolute http:// or https:// URL libcurl parses */
	APICRED_T_HEADER_NAME = 7, /* an HTTP header name (RFC 9110 token) */
	APICRED_T_HEADERS = 8      /* "Name: value" or a list of them; no CR or LF */
} apicred_cfg_type;

#define APICRED_F_REQUIRED 0x1u /* the key must be present */
#define APICRED_F_SECRET   0x2u /* value is a secret: a literal only in a private file */
#define APICRED_F_SECRET_FILE 0x4u /* value names a file holding a private key: host->path
                                    * refuses it unless it is private (see apicred.conf(5)) */
#define APICRED_F_NONEMPTY 0x8u /* since minor 1: "" is refused (file:line); with
                                 * APICRED_F_SECRET, host->secret refuses an empty secret */

/* One accepted key. The table ends with an entry whose name is NULL.
 * The core rejects unknown keys (except "x-..."), missing required keys,
 * wrong types and values outside choices, citing file:line. */
typedef struct apicred_schema {
	const char *name;
	apicred_cfg_type type;
	unsigned flags;      /* APICRED_F_* */
	const char *def;     /* default, as text ("300", "true", "X-API-Key"), or NULL */
	const char *choices; /* "a|b|c" for enumerated strings, or NULL */
	const char *help;    /* one line for `apicred providers -v` */
} apicred_schema;

/* ---- host services ----------------------------------------------------- */

typedef struct apicred_host apicred_host;
typedef struct apicred_out apicred_out;
typedef struct apicred_header apicred_header; /* a header checked once (header_new) */

/* An HTTP request made for a layer (token endpoints, logins). The core adds
 * the service's TLS policy, time-outs and size cap, and, when the URL has
 * the same origin as the service (or the layer's `carry` says so), the
 * headers and TLS material of the layers above. */
typedef struct apicred_http_request {
	size_t size;                /* sizeof(apicred_http_request) */
	const char *method;         /* "GET", "POST", ... */
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const void *body;           /* may be NULL */
	size_t body_len;
	const char *content_type;   /* of body, or NULL */
	size_t max_body;            /* response cap in bytes; 0: http.max_body */
	/* Since minor 1 (the core tests size). A response header the caller
	 * wants (e.g. "DPoP-Nonce"): its value, or NULL when absent, goes to
	 * *resp_header_value (free()) whatever the status. */
	const char *resp_header;
	char **resp_header_value;
} apicred_http_request;

typedef struct apicred_http_response {
	long status;            /* HTTP status */
	char *body;             /* NUL-terminated; never NULL after success */
	size_t body_len;
	char *content_type;     /* or NULL */
	int64_t retry_after_ms; /* from Retry-After, or -1 */
} apicred_http_response;

/* One item of a request's query as it is sent: slices of the URL, still
 * percent-encoded (not NUL-terminated); value is NULL when the item has no
 * '=' (value_len 0). */
typedef struct apicred_query_item {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
} apicred_query_item;

/* Why the core calls fetch (host->fetch_reason). */
typedef enum apicred_fetch_reason {
	APICRED_FETCH_FIRST = 1,       /* no session yet (previous is NULL) */
	APICRED_FETCH_REFRESH = 2,     /* ahead of expiry: previous is still valid */
	APICRED_FETCH_EXPIRED = 3,     /* previous has expired */
	APICRED_FETCH_INVALIDATED = 4  /* feedback dropped previous (a 401, a refusal) */
} apicred_fetch_reason;

/* What json_get returns for a path that is absent (also null or a
 * container). The functions of minor 1 say "absent" the same way for all:
 * APICRED_OK with the value NULL. */
#define APICRED_ABSENT (-1)

/* The core's services for one layer; the table is valid from init until
 * fini returns.
 *
 * Conventions: every function takes the host as its first argument, except
 * add_header, add_query and add_tls of minor 0, which take the apply's out
 * (it names the layer). Functions return APICRED_OK or an apicred_err code
 * with the detail set (by the core, prefixed with service and layer), so a
 * provider returns their code as it is. Strings the core allocates are
 * freed with free(), or with wipe_free when they held a secret. What is
 * "absent" is said by APICRED_OK and a NULL value in the functions of minor
 * 1; of minor 0, cfg_int returns 0 and json_get APICRED_ABSENT. */
struct apicred_host {
	size_t size; /* sizeof(struct apicred_host): test before using fields */

	/* Configuration (validated, defaults applied). Strings belong to the
	 * configuration and live as long as the layer.
	 *   cfg_str:   the value, or NULL if unset
	 *   cfg_int:   1 and *value if set (or defaulted), 0 if not (unlike
	 *              the rest, a boolean: it predates the conventions)
	 *   cfg_bool:  the value; 0 if unset
	 *   cfg_count: items of a T_LIST (a lone string counts 1) or T_GROUP
	 *   cfg_item:  APICRED_OK and the i-th item (name NULL for lists), or
	 *              APICRED_ERR_INVALID past the end
	 *   cfg_line:  the key's line in the service file (the layer's if
	 *              key is NULL or unset), for messages */
	const char *(*cfg_str)(const apicred_host *h, const char *key);
	int (*cfg_int)(const apicred_host *h, const char *key, long long *value);
	int (*cfg_bool)(const apicred_host *h, const char *key);
	size_t (*cfg_count)(const apicred_host *h, const char *key);
	int (*cfg_item)(const apicred_host *h, const char *key, size_t i,
	                const char **name, const char **value);
	int (*cfg_line)(const apicred_host *h, const char *key);

	/* Secrets: resolve the reference held by key (file:PATH, env:NAME or
	 * a literal; a literal only in a private service file when the schema
	 * marks key APICRED_F_SECRET). The value is NUL-terminated, without a
	 * trailing newline; free with secret_free, which wipes it. file:
	 * references are watched: when the file changes, the core re-creates
	 * the layer. */
	int (*secret)(const apicred_host *h, const char *key, char **value, size_t *len);
	void (*secret_free)(const apicred_host *h, char *value, size_t len);
	/* Writes a new value where the file: reference of key points, atomically
	 * and with mode 0600; APICRED_ERR_EXISTS unless force. */
	int (*secret_store)(const apicred_host *h, const char *key, const char *value,
	                    size_t len, int force);
	/* Resolves a file name from the configuration relative to the confdir
	 * and watches it like a secret file. Free with free(). Refuses a file
	 * that anyone but root or the effective user could change (with
	 * APICRED_F_SECRET_FILE, also one the world can read), like the core's
	 * own files; the provider still opens it with O_NONBLOCK and checks it
	 * is a regular file. */
	int (*path)(const apicred_host *h, const char *key, char **path);

	/* HTTP(S). APICRED_OK whatever the status; transport failures, an
	 * oversize body or a refused URL return an error with the detail set. */
	int (*http)(const apicred_host *h, const apicred_http_request *req,
	            apicred_http_response *resp);
	void (*http_free)(const apicred_host *h, apicred_http_response *resp);
	/* Turns a non-2xx response into an error: keeps the server's
	 * error/error_description (JSON) or the first line of the body, and
	 * returns APICRED_ERR_UNAVAILABLE for 5xx/429, _AUTH for other 4xx. */
	int (*http_error)(const apicred_host *h, const apicred_http_response *resp,
	                  const char *what);

	/* JSON: the value at a dotted path ("data.token") of a JSON object, as
	 * text (integers in decimal, reals as %.17g, true/false; null and
	 * containers count as absent). Returns APICRED_OK, APICRED_ABSENT when
	 * the path is absent, or APICRED_ERR_PROTOCOL (detail set) when body is
	 * not a JSON object. Free *value with free(). Each call parses body:
	 * for several paths of one reply use json_get_many (minor 1). Providers
	 * may also use jansson directly (link it themselves), as tcx does for
	 * the bodies it signs. */
	int (*json_get)(const apicred_host *h, const char *body, size_t len,
	                const char *path, char **value);

	/* Encoding: base64 (standard alphabet, padded), lowercase hex,
	 * application/x-www-form-urlencoded escaping. Free results with free(). */
	int (*base64)(const apicred_host *h, const void *in, size_t len, char **out);
	int (*hex)(const apicred_host *h, const void *in, size_t len, char **out);
	int (*form_escape)(const apicred_host *h, const char *in, char **out);

	/* Clocks (milliseconds) and random bytes; tests replace them. */
	int64_t (*now_mono_ms)(const apicred_host *h);
	int64_t (*now_wall_ms)(const apicred_host *h);
	int (*random)(const apicred_host *h, unsigned char *buf, size_t len);

	/* Logging (syslog levels) and errors. error() records the thread's
	 * detail message, prefixed with service and layer, and returns code. */
	void (*log)(const apicred_host *h, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	int (*error)(const apicred_host *h, int code, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/* Output of apply. Values with CR or LF are refused (header injection).
	 * They take out, not the host: out names the layer. */
	int (*add_header)(apicred_out *out, const char *name, const char *value);
	int (*add_query)(apicred_out *out, const char *name, const char *value);
	int (*add_tls)(apicred_out *out, const char *name, const void *value, size_t len);

	/* Identity, for messages and provisioning reports. */
	const char *service; /* service name */
	int layer;           /* 1-based position in the stack */
	/* minor 0 ends here */

	/* Fields below were appended later: a provider that may meet an older
	 * core tests APICRED_HOST_HAS(h, field) before using one. */

	/* Untrusted text (a server's) made safe to show: control characters
	 * (CR, LF, ESC, ...) become '?', at most cap - 1 bytes, ending "..."
	 * when cut; returns the length written. error() and log() already do
	 * this to every message; use it for text that goes elsewhere (a
	 * provisioning report). out may be in. */
	size_t (*safe_text)(const apicred_host *h, const char *in, size_t len,
	                    char *out, size_t cap);
	/* Stores n secrets together, like secret_store: all are written and
	 * flushed to temporary files first, then renamed into place; if any
	 * step fails, none is changed (renamed ones are put back) and the
	 * temporary files are gone. APICRED_ERR_EXISTS unless force. */
	int (*secret_store_all)(const apicred_host *h, size_t n, const char *const *keys,
	                        const char *const *values, const size_t *lens, int force);

	/* Wipes len bytes at p, then frees p (NULL is fine): for whatever held
	 * a secret, a token or a signature. len APICRED_WIPE_STR: p is a
	 * NUL-terminated string, wiped up to its NUL. */
	void (*wipe_free)(const apicred_host *h, void *p, size_t len);
	/* Reads the file that key names, resolved, watched and checked like
	 * path() (a key marked APICRED_F_SECRET_FILE under the secret-file
	 * rule), then opened without blocking: a regular file of at most 1 MiB.
	 * *data is NUL-terminated (*len excludes the NUL); free it with
	 * wipe_free(h, *data, *len). Errors name the key and the file:
	 * APICRED_ERR_SECRET for secret files, else APICRED_ERR_CONFIG. */
	int (*read_file)(const apicred_host *h, const char *key, char **data, size_t *len);
	/* Whether len bytes at s may be sent as a token: not empty, no control
	 * character (C0, DEL) and no NUL. APICRED_OK, else code with the detail
	 * "what: empty" or "what: control characters ...". For what a
	 * server, a file or the shared store gives before a header carries it. */
	int (*check_text)(const apicred_host *h, int code, const char *what,
	                  const void *s, size_t len);
	/* Appends path below base: base without its trailing '/'s, one '/',
	 * path without its leading ones ("https://x/api/" + "tcx/authorize").
	 * Free *out with free(). */
	int (*url_join)(const apicred_host *h, const char *base, const char *path, char **out);
	/* The query of req, the request apply received (only then), as it is
	 * sent: the text after '?' and before '#' (query, len: "" and 0 when
	 * there is none), and its items split at '&' (empty ones skipped).
	 * Any output may be NULL. The core parses it on the first call of an
	 * apply and keeps the result until apply returns: a stack's layers
	 * share one parse, and a layer that never asks costs nothing. Its
	 * req->content_type is resolved too: the application's, else a
	 * Content-Type among its header lines, else the guess for a body (JSON
	 * when it starts with '{' or '[', else a form); NULL without a body. */
	int (*request_query)(const apicred_host *h, const apicred_request *req,
	                     const char **query, size_t *len,
	                     const apicred_query_item **items, size_t *n);
	/* During fetch, given its previous: why the core calls it
	 * (apicred_fetch_reason), so that fetch never marks a session. */
	int (*fetch_reason)(const apicred_host *h, const void *previous);
	/* During init: this layer has no session with its configuration (a
	 * provider whose other configurations have one); the core then never
	 * calls its fetch, and apply gets session NULL. APICRED_OK. */
	int (*no_session)(const apicred_host *h);
	/* json_get for n paths of one reply, parsed once: values[i] is the
	 * text of paths[i], or NULL when absent. APICRED_OK, or an error
	 * (APICRED_ERR_PROTOCOL when body is not a JSON object) with every
	 * value NULL. Free each value with free(). */
	int (*json_get_many)(const apicred_host *h, const char *body, size_t len, size_t n,
	                     const char *const *paths, char **values);
	/* A header whose value is known before apply (an API key at init, a
	 * token at fetch or session_import): header_new checks it once, as
	 * add_header would (APICRED_ERR_PROTOCOL, detail set, for CR, LF or
	 * ':' in the name, CR or LF in the value), and keeps a copy with its
	 * lengths; apply then adds it with add_prepared, which only copies:
	 * the per-request cost of add_header's checks is gone. header_free
	 * wipes and frees it (NULL is a no-op): in fini, or in session_free
	 * for a header kept in a session. */
	int (*header_new)(const apicred_host *h, const char *name, const char *value,
	                  apicred_header **out);
	int (*add_prepared)(const apicred_host *h, apicred_out *out, const apicred_header *hdr);
	void (*header_free)(const apicred_host *h, apicred_header *hdr);
	/* Whether len bytes at pin are one public-key pin as the core applies
	 * it (libcurl's CURLOPT_PINNEDPUBLICKEY, apicred_ssl_ctx_apply):
	 * "sha256//" and the base64 of a 32-byte SHA-256 digest. 1 or 0. */
	int (*tls_pin_ok)(const apicred_host *h, const char *pin, size_t len);
	/* During init: what this layer's apply adds depends on its state and
	 * session alone, never on the request, the clock or random bytes, up
	 * to until_wall_ms (now_wall_ms time; 0: for ever). The core then
	 * keeps the stack's output while its sessions stay the same and hands
	 * a copy to the next gets without calling apply: a cached get costs a
	 * copy. A layer that signs the request, or makes a fresh value per
	 * request, never says so. APICRED_OK. */
	int (*apply_static)(const apicred_host *h, int64_t until_wall_ms);
	/* hex's lowercase text written to out, which holds 2 * len + 1 bytes
	 * and does not overlap in: NUL-terminated; returns 2 * len. It
	 * allocates nothing, for a digest per request (a signature). */
	size_t (*hex_into)(const apicred_host *h, const void *in, size_t len, char *out);
	/* From apply: adds the header hdr (header_new) with its value followed
	 * by len bytes of in, encoded (APICRED_ENC_HEX: lowercase hex;
	 * APICRED_ENC_BASE64: standard alphabet, padded). The core writes that
	 * text itself, so it checks nothing again: a signature or digest goes
	 * out with no allocation (up to 511 bytes of value) and no scan. A hdr
	 * made with value "" adds the encoding alone; "sha256=" a prefix.
	 * APICRED_OK, or APICRED_ERR_INVALID (no hdr, another encoding). */
	int (*add_encoded)(const apicred_host *h, apicred_out *out, const apicred_header *hdr,
	                   int encoding, const void *in, size_t len);
	/* minor 1 ends here */
};

/* add_encoded's encodings. */
#define APICRED_ENC_HEX 1
#define APICRED_ENC_BASE64 2

/* wipe_free's len for a NUL-terminated string. */
#define APICRED_WIPE_STR ((size_t)-1)

/* Whether a host (of whatever core loaded the provider) has a field. */
#define APICRED_HOST_HAS(h, field) \
	((h)->size >= offsetof(struct apicred_host, field) + sizeof((h)->field))

/* ---- sessions ---------------------------------------------------------- */

/* What fetch produces. The core caches it, decides when to refresh it and
 * frees it with session_free once no thread can still be using it. */
typedef struct apicred_session {
	void *data;             /* the provider's, immutable once returned */
	int64_t lifetime_ms;    /* from now; <= 0: the layer's default_ttl */
	int64_t retry_after_ms; /* on failure: the server's Retry-After, or 0 */
} apicred_session;

/* What the core should do after feedback. */
typedef enum apicred_feedback {
	APICRED_FEEDBACK_NONE = 0,       /* nothing */
	APICRED_FEEDBACK_INVALIDATE = 1, /* drop this session; fetch anew */
	APICRED_FEEDBACK_CHANGED = 2     /* state changed (e.g. failed over): retry */
} apicred_feedback;

/* ---- methods ----------------------------------------------------------- */

/* Mandatory. Reads configuration and secrets through host (which stays
 * valid until fini) and builds *state. Fails with a clear host->error(). */
typedef int (*apicred_init_fn)(const apicred_host *host, void **state);

/* Optional. Obtains a new session, e.g. a token. previous is the current
 * session's data (still valid, e.g. for a refresh token) or NULL;
 * host->fetch_reason says why the core asks (minor 1). A layer whose
 * configuration needs no session says so at init (host->no_session): its
 * fetch is never called. */
typedef int (*apicred_fetch_fn)(void *state, const apicred_host *host,
                                const void *previous, apicred_session *out);

/* Optional (mandatory with fetch). Frees a session's data. */
typedef void (*apicred_session_free_fn)(void *state, void *data);

/* Mandatory. Adds what one request must carry to out, with host->add_*.
 * session is the current session's data (NULL without fetch); req is never
 * NULL (fields may be). req is the request as it will be sent: its url
 * carries the query parameters of the layers above, its content_type is
 * resolved for a body, and host->request_query gives its query, parsed
 * once per request (minor 1). Pure and fast: no I/O, no blocking. */
typedef int (*apicred_apply_fn)(void *state, const apicred_host *host,
                                const void *session, const apicred_request *req,
                                apicred_out *out);

/* Optional. Reads how the server answered a request made with session. */
typedef apicred_feedback (*apicred_feedback_fn)(void *state, const apicred_host *host,
                                                const void *session, long status,
                                                const void *body, size_t body_len);

/* Optional (minor 1). Same, with the response's header lines ("Name:
 * value", NULL-terminated; NULL when the application handed none over):
 * the core calls it instead of feedback when the provider has it. */
typedef apicred_feedback (*apicred_feedback_headers_fn)(void *state, const apicred_host *host,
                                                        const void *session, long status,
                                                        const char *const *headers,
                                                        const void *body, size_t body_len);

/* Optional. Creates what the layer's secrets refer to (see
 * APICRED_PROVISION_*); *report receives a summary (malloc'ed). */
typedef int (*apicred_provision_fn)(void *state, const apicred_host *host,
                                    unsigned flags, char **report);

/* Mandatory. Releases state. */
typedef void (*apicred_fini_fn)(void *state);

/* Optional (minor 1), both or neither. With them the core shares a layer's
 * sessions through the shared store (apicred.conf's cache.store): another
 * process, or another host, that holds the same configuration and secrets
 * imports the session instead of fetching its own. The core seals the bytes
 * (AEAD, keyed from the layer's secrets) and carries the absolute expiry
 * itself: export only what apply and the next fetch need from data.
 *
 * session_export: *out = malloc'ed bytes standing for data (the core wipes
 *   and frees them); APICRED_ERR_UNSUPPORTED keeps this session local.
 * session_import: rebuilds data from bytes that session_export of the same
 *   provider produced, possibly in another process or version of it; bytes
 *   it does not understand are refused with APICRED_ERR_PROTOCOL (the core
 *   then fetches). The data is freed with session_free like fetched data.
 * Neither may block or do I/O; both may run concurrently with apply. */
typedef int (*apicred_session_export_fn)(void *state, const apicred_host *host,
                                         const void *data, void **out, size_t *len);
typedef int (*apicred_session_import_fn)(void *state, const apicred_host *host,
                                         const void *in, size_t len, void **data);

typedef struct apicred_vtable_v1 {
	const char *name;              /* the scheme: equals the module's file name */
	const apicred_schema *schema;  /* accepted keys */
	apicred_init_fn init;
	apicred_fetch_fn fetch;
	apicred_session_free_fn session_free;
	apicred_apply_fn apply;
	apicred_feedback_fn feedback;
	apicred_provision_fn provision;
	apicred_fini_fn fini;
	/* minor 0 ends here */
	apicred_session_export_fn session_export;
	apicred_session_import_fn session_import;
	apicred_feedback_headers_fn feedback_headers;
	/* minor 1 ends here */
} apicred_vtable_v1;

/* The one exported symbol of a provider module. */
int apicred_provider_initvt(int major, int minor, void *vtable);

/* Bytes of a v1 vtable that a given minor version defines: a provider copies
 * only min(its minor, the core's) of them, so a provider built against a
 * later minor never writes past an older core's vtable. */
#define APICRED_VTABLE_V1_END_MINOR0 \
	(offsetof(apicred_vtable_v1, fini) + sizeof(apicred_fini_fn))
#define APICRED_VTABLE_V1_END_MINOR1 \
	(offsetof(apicred_vtable_v1, feedback_headers) + sizeof(apicred_feedback_headers_fn))

static inline size_t apicred_vtable_v1_size(int minor)
{
	return minor >= 1 ? APICRED_VTABLE_V1_END_MINOR1 : APICRED_VTABLE_V1_END_MINOR0;
}

/* Defines apicred_provider_initvt for a provider whose v1 vtable is vt:
 *     static const apicred_vtable_v1 s_vtable = { .name = "x", ... };
 *     APICRED_PROVIDER_V1(s_vtable)
 * It copies the fields of min(APICRED_PROVIDER_MINOR, minor); the core has
 * zeroed the rest. */
#define APICRED_PROVIDER_V1(vt)                                                 \
	__attribute__((visibility("default")))                                  \
	int apicred_provider_initvt(int major, int minor, void *vtable)         \
	{                                                                       \
		if (major != APICRED_PROVIDER_MAJOR || minor < 0)               \
			return APICRED_ERR_ABI;                                 \
		memcpy(vtable, &(vt),                                           \
		       apicred_vtable_v1_size(minor < APICRED_PROVIDER_MINOR    \
		                                  ? minor                       \
		                                  : APICRED_PROVIDER_MINOR));   \
		return APICRED_OK;                                              \
	}

#ifdef __cplusplus
}
#endif

#endif /* APICRED_PROVIDER_H */
