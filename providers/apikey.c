/*
 * apikey: a static API key sent as a header or as a query parameter.
 *
 *   { provider = "apikey"; key = "file:secrets/momo.subkey";
 *     header = "Ocp-Apim-Subscription-Key"; }          # MoMo
 *   { provider = "apikey"; key = "env:HUB_KEY"; prefix = "apikey "; }
 *   { provider = "apikey"; key = "file:k"; in = "query"; query = "api_key"; }
 *
 * The key is read once at init; the core re-creates the layer when the
 * secret file changes, so a rotated key needs no restart.
 */
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "key", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL,
	  "the API key (file:PATH, env:NAME or literal)" },
	{ "in", APICRED_T_STRING, 0, "header", "header|query",
	  "send the key as a header or as a query parameter" },
	{ "header", APICRED_T_HEADER_NAME, 0, "X-API-Key", NULL, "header name" },
	{ "prefix", APICRED_T_STRING, 0, "", NULL,
	  "text before the key in the header value, e.g. \"apikey \"" },
	{ "query", APICRED_T_STRING, APICRED_F_NONEMPTY, "api_key", NULL, "query parameter name" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

struct s_state {
	const apicred_host *host;
	int in_query;
	const char *name;  /* header or parameter name; owned by the config */
	char *value;       /* prefix + key: a secret */
	size_t value_len;
	apicred_header *hdr; /* the header, checked once (a core with header_new) */
};

/* ---- init ------------------------------------------------------------ */

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st;
	const char *prefix = host->cfg_str(host, "prefix");
	char *key;
	size_t key_len, plen = strlen(prefix);
	int rc;

	rc = host->secret(host, "key", &key, &key_len); /* not empty: APICRED_F_NONEMPTY */
	if (rc != APICRED_OK)
		return rc;
	st = calloc(1, sizeof(*st));
	if (st)
		st->value = malloc(plen + key_len + 1);
	if (!st || !st->value) {
		free(st);
		host->secret_free(host, key, key_len);
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	}
	memcpy(st->value, prefix, plen);
	memcpy(st->value + plen, key, key_len + 1);
	st->value_len = plen + key_len;
	host->secret_free(host, key, key_len);

	st->host = host;
	st->in_query = strcmp(host->cfg_str(host, "in"), "query") == 0;
	st->name = host->cfg_str(host, st->in_query ? "query" : "header");
	/* Checked here, once: apply then only copies it. */
	if (!st->in_query && APICRED_HOST_HAS(host, header_free) &&
	    (rc = host->header_new(host, st->name, st->value, &st->hdr)) != APICRED_OK) {
		host->secret_free(host, st->value, st->value_len);
		free(st);
		return rc;
	}
	*state = st;
	/* The key, as it is, on every request: the core may keep the output. */
	return APICRED_HOST_HAS(host, apply_static) ? host->apply_static(host, 0) : APICRED_OK;
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	const struct s_state *st = state;

	if (st->in_query)
		return host->add_query(out, st->name, st->value);
	if (st->hdr)
		return host->add_prepared(host, out, st->hdr);
	return host->add_header(out, st->name, st->value);
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	if (st->hdr)
		st->host->header_free(st->host, st->hdr);
	st->host->secret_free(st->host, st->value, st->value_len);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "apikey",
	.schema = s_schema,
	.init = s_init,
	.apply = s_apply,
	.fini = s_fini,
};

APICRED_PROVIDER_V1(s_vtable)
