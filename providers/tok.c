/*
 * tok: Edgecast / VDMS REST API tokens, "Authorization: TOK:<token>".
 *
 *   { provider = "tok"; token = "file:secrets/edgecast.primary";
 *     backup_token = "file:secrets/edgecast.backup"; }
 *
 * Edgecast lets an account hold a primary and a backup token; rotating the
 * primary turns the old primary into the backup. A request refused with 403
 * while the primary is in use makes the layer fail over to the backup until
 * the layer is re-created: the core does that when the service file or a
 * file: secret changes, so an admin who writes the new primary into its file
 * gets it used again without a restart.
 *
 * The token in use is the layer's session, so the core shares a failover
 * with the other processes through its shared store (the next `apicred`
 * run sends the backup too), and feedback learns which token a refused
 * request carried.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "token", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY,
	  NULL, NULL,
	  "the primary REST API token (file:PATH, env:NAME or literal)" },
	{ "backup_token", APICRED_T_STRING, APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "the backup token, used after the primary is refused with 403" },
	{ "prefix", APICRED_T_STRING, 0, "TOK:", NULL,
	  "text before the token in the header value" },
	{ "header", APICRED_T_HEADER_NAME, 0, "Authorization", NULL, "header name" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ---------------------------------------------------------- */

struct s_state {
	const apicred_host *host;
	const char *header;   /* owned by the config */
	char *value[2];       /* prefix + token, prefix + backup (or NULL): secrets */
	size_t value_len[2];
};

/* Which token apply sends; refused marks a 403 already logged (once per
 * session); the failover itself follows the session's invalidation. */
struct s_session {
	int backup;           /* 0: the primary, 1: the backup */
	atomic_bool refused;
};

#define S_LIFETIME_MS (365LL * 86400 * 1000) /* until the layer is re-created */

/* ---- init ------------------------------------------------------------ */

/* Reads the secret of key and stores prefix + secret in *value. */
static int s_load(const apicred_host *host, const char *key, const char *prefix,
                  char **value, size_t *value_len)
{
	size_t plen = strlen(prefix), len;
	char *secret;
	int rc;

	rc = host->secret(host, key, &secret, &len); /* not empty: APICRED_F_NONEMPTY */
	if (rc != APICRED_OK)
		return rc;
	/* The core would refuse it in apply too, but the backup is only applied
	 * on the bad day the primary is refused: find out now. */
	rc = host->check_text(host, APICRED_ERR_SECRET, key, secret, len);
	if (rc == APICRED_OK && !(*value = malloc(plen + len + 1)))
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
	if (rc != APICRED_OK) {
		host->secret_free(host, secret, len);
		return rc;
	}
	memcpy(*value, prefix, plen);
	memcpy(*value + plen, secret, len + 1);
	*value_len = plen + len;
	host->secret_free(host, secret, len);
	return APICRED_OK;
}

static void s_fini(void *state);

static int s_init(const apicred_host *host, void **state)
{
	const char *prefix = host->cfg_str(host, "prefix");
	struct s_state *st;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->header = host->cfg_str(host, "header");

	rc = s_load(host, "token", prefix, &st->value[0], &st->value_len[0]);
	if (rc == APICRED_OK && host->cfg_str(host, "backup_token"))
		rc = s_load(host, "backup_token", prefix, &st->value[1], &st->value_len[1]);
	if (rc != APICRED_OK) {
		s_fini(st);
		return rc;
	}
	*state = st;
	/* Which token goes out is the session's (its backup flag) alone. */
	return APICRED_HOST_HAS(host, apply_static) ? host->apply_static(host, 0) : APICRED_OK;
}

/* ---- fetch ----------------------------------------------------------- */

/* No I/O: the session names the token. A refused primary fails over. */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	const struct s_session *prev = previous;
	struct s_session *sess = calloc(1, sizeof(*sess));

	if (!sess)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	sess->backup = prev ? prev->backup : 0;
	/* Feedback drops a refused primary only when there is a backup. */
	if (prev && !prev->backup && st->value[1] &&
	    host->fetch_reason(host, previous) == APICRED_FETCH_INVALIDATED) {
		sess->backup = 1;
		host->log(host, LOG_WARNING, "the primary token was refused (403): "
		          "failing over to backup_token until the configuration changes");
	}
	atomic_init(&sess->refused, false);
	out->data = sess;
	out->lifetime_ms = S_LIFETIME_MS;
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	free(data);
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state;
	const struct s_session *sess = session;

	return host->add_header(out, st->header, st->value[sess && sess->backup ? 1 : 0]);
}

/* ---- feedback -------------------------------------------------------- */

/* Edgecast answers 403 to a token it does not accept (401 is not used).
 * session is the token the refused request carried. */
static apicred_feedback s_feedback(void *state, const apicred_host *host,
                                   const void *session, long status,
                                   const void *body, size_t body_len)
{
	struct s_state *st = state;
	struct s_session *sess = (struct s_session *)(uintptr_t)session;
	bool expected = false;

	if (status != 403 || !sess)
		return APICRED_FEEDBACK_NONE;
	/* Said once per session, like the failover itself. */
	if (sess->backup) {
		if (atomic_compare_exchange_strong(&sess->refused, &expected, true))
			host->log(host, LOG_ERR, "refused (403) again after failing over: "
			          "the backup token may be revoked too");
		return APICRED_FEEDBACK_NONE;
	}
	if (!st->value[1]) {
		if (atomic_compare_exchange_strong(&sess->refused, &expected, true))
			host->log(host, LOG_ERR, "the primary token was refused (403) "
			          "and no backup_token is configured");
		return APICRED_FEEDBACK_NONE;
	}
	return APICRED_FEEDBACK_INVALIDATE; /* the next fetch fails over */
}

/* ---- sharing ----------------------------------------------------------- */

/* One byte: which token. */
static int s_session_export(void *state, const apicred_host *host, const void *data,
                            void **out, size_t *len)
{
	const struct s_session *sess = data;
	unsigned char *b = malloc(1);

	if (!b)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	b[0] = (unsigned char)sess->backup;
	*out = b;
	*len = 1;
	return APICRED_OK;
}

static int s_session_import(void *state, const apicred_host *host, const void *in,
                            size_t len, void **data)
{
	const struct s_state *st = state;
	const unsigned char *b = in;
	struct s_session *sess;

	if (len != 1 || b[0] > 1 || (b[0] && !st->value[1]))
		return host->error(host, APICRED_ERR_PROTOCOL, "garbled shared session");
	if (!(sess = calloc(1, sizeof(*sess))))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	sess->backup = b[0];
	atomic_init(&sess->refused, false);
	*data = sess;
	return APICRED_OK;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	for (int i = 0; i < 2; i++)
		if (st->value[i])
			st->host->secret_free(st->host, st->value[i], st->value_len[i]);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "tok",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.feedback = s_feedback,
	.fini = s_fini,
	.session_export = s_session_export,
	.session_import = s_session_import,
};

APICRED_PROVIDER_V1(s_vtable)
