#define _GNU_SOURCE
/*
 * frozen10: a provider built against the frozen v1.0 headers in
 * tests/modules/v1.0 (never the current ones), using every v1.0 vtable
 * method and host service a simple scheme needs, so that a later core
 * that moved a field or changed a meaning fails tests/unit/test_abi.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

#if APICRED_PROVIDER_MAJOR != 1 || APICRED_PROVIDER_MINOR != 0
#error "frozen10 must be built against the v1.0 headers of tests/modules/v1.0"
#endif

static const apicred_schema s_schema[] = {
	{ "greeting", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL, "header value prefix" },
	{ "key", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET, NULL, NULL, "a secret" },
	{ "count", APICRED_T_INT, 0, "7", NULL, "a number" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

struct s_state {
	char *value; /* "<greeting> <count> <hex of key>" */
	int fetches;
};

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	long long count = 0;
	char *key, *hex;
	size_t len;
	int rc;

	if (host->size < offsetof(apicred_host, layer) + sizeof(int))
		return APICRED_ERR_ABI;
	if ((rc = host->secret(host, "key", &key, &len)) != APICRED_OK)
		return rc;
	rc = host->hex(host, key, len, &hex);
	host->secret_free(host, key, len);
	if (rc != APICRED_OK)
		return rc;
	host->cfg_int(host, "count", &count);
	if (!(st = calloc(1, sizeof(*st))) ||
	    asprintf(&st->value, "%s %lld %s", host->cfg_str(host, "greeting"), count, hex) < 0) {
		free(st);
		free(hex);
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
	free(hex);
	*state = st;
	return APICRED_OK;
}

static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	struct s_state *st = state;
	char *session;

	if (asprintf(&session, "session-%d", ++st->fetches) < 0)
		return APICRED_ERR_NOMEM;
	out->data = session;
	out->lifetime_ms = 3600 * 1000;
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	free(data);
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct s_state *st = state;
	int rc;

	if ((rc = host->add_header(out, "X-Frozen", st->value)) != APICRED_OK ||
	    (rc = host->add_header(out, "X-Frozen-Session", session)) != APICRED_OK)
		return rc;
	return host->add_query(out, "frozen", host->service);
}

static apicred_feedback s_feedback(void *state, const apicred_host *host, const void *session,
                                   long status, const void *body, size_t body_len)
{
	return status == 401 ? APICRED_FEEDBACK_INVALIDATE : APICRED_FEEDBACK_NONE;
}

static void s_fini(void *state)
{
	struct s_state *st = state;

	free(st->value);
	free(st);
}

static const apicred_vtable_v1 s_vtable = {
	.name = "frozen10",
	.schema = s_schema,
	.init = s_init,
	.fetch = s_fetch,
	.session_free = s_session_free,
	.apply = s_apply,
	.feedback = s_feedback,
	.fini = s_fini,
};

APICRED_PROVIDER_V1(s_vtable)
