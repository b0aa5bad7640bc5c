/*
 * alltypes: a test provider whose schema has every key type, flag, default
 * and choices, and whose apply shows what the core handed to init:
 *
 *   X-Label: <label>   X-Number: <number>   X-Flag: true|false   X-Color: <color>
 *   X-Items: a,b    X-Pairs: k=v,k2=v2    X-Secret: <secret>   (when set)
 *
 * With fail = true, apply fails, which the control tests use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

/* ---- schema ---------------------------------------------------------- */

static const apicred_schema s_schema[] = {
	{ "label", APICRED_T_STRING, APICRED_F_REQUIRED, NULL, NULL, "a required string" },
	{ "number", APICRED_T_INT, 0, "42", NULL, "an integer" },
	{ "flag", APICRED_T_BOOL, 0, "false", NULL, "a boolean" },
	{ "items", APICRED_T_LIST, 0, NULL, NULL, "a list of strings" },
	{ "pairs", APICRED_T_GROUP, 0, NULL, NULL, "a group of strings" },
	{ "color", APICRED_T_STRING, 0, "red", "red|green|blue", "an enumerated string" },
	{ "secret", APICRED_T_STRING, APICRED_F_SECRET, NULL, NULL, "a secret reference" },
	{ "fail", APICRED_T_BOOL, 0, "false", NULL, "make apply fail" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

/* ---- state ----------------------------------------------------------- */

enum { S_MAX = 8 };

struct s_state {
	const apicred_host *host;
	int fail;
	int n;
	const char *name[S_MAX];
	char *value[S_MAX];
};

/* ---- init ------------------------------------------------------------ */

static void s_fini(void *state);

static int s_add(struct s_state *st, const char *name, char *value)
{
	if (!value)
		return APICRED_ERR_NOMEM;
	st->name[st->n] = name;
	st->value[st->n++] = value;
	return APICRED_OK;
}

/* Joins a list ("a,b") or a group ("k=v,k2=v2"). */
static char *s_join(const apicred_host *host, const char *key)
{
	size_t n = host->cfg_count(host, key), len = 1;
	const char *name, *value;
	char *out;

	for (size_t i = 0; i < n; i++) {
		if (host->cfg_item(host, key, i, &name, &value) != APICRED_OK)
			return NULL;
		len += (name ? strlen(name) + 1 : 0) + strlen(value) + 1;
	}
	out = calloc(1, len);
	for (size_t i = 0; out && i < n; i++) {
		host->cfg_item(host, key, i, &name, &value);
		if (i)
			strcat(out, ",");
		if (name) {
			strcat(out, name);
			strcat(out, "=");
		}
		strcat(out, value);
	}
	return out;
}

static int s_init(const apicred_host *host, void **state)
{
	struct s_state *st = calloc(1, sizeof(*st));
	long long num = -1;
	char buf[32], *secret;
	size_t len;
	int rc;

	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	st->fail = host->cfg_bool(host, "fail");
	if (!host->cfg_int(host, "number", &num))
		num = -1; /* the default should have been applied */
	snprintf(buf, sizeof(buf), "%lld", num);

	rc = s_add(st, "X-Label", strdup(host->cfg_str(host, "label")));
	if (!rc)
		rc = s_add(st, "X-Number", strdup(buf));
	if (!rc)
		rc = s_add(st, "X-Flag", strdup(host->cfg_bool(host, "flag") ? "true" : "false"));
	if (!rc)
		rc = s_add(st, "X-Color", strdup(host->cfg_str(host, "color")));
	if (!rc && host->cfg_count(host, "items"))
		rc = s_add(st, "X-Items", s_join(host, "items"));
	if (!rc && host->cfg_count(host, "pairs"))
		rc = s_add(st, "X-Pairs", s_join(host, "pairs"));
	if (!rc && host->cfg_str(host, "secret")) {
		rc = host->secret(host, "secret", &secret, &len);
		if (rc != APICRED_OK) {
			s_fini(st);
			return rc;
		}
		rc = s_add(st, "X-Secret", strdup(secret));
		host->secret_free(host, secret, len);
	}
	if (rc) {
		s_fini(st);
		return host->error(host, rc, "out of memory");
	}
	*state = st;
	return APICRED_OK;
}

/* ---- apply ----------------------------------------------------------- */

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	const struct s_state *st = state;
	int rc = APICRED_OK;

	if (st->fail)
		return host->error(host, APICRED_ERR_AUTH, "alltypes fails on purpose");
	for (int i = 0; rc == APICRED_OK && i < st->n; i++)
		rc = host->add_header(out, st->name[i], st->value[i]);
	return rc;
}

/* ---- fini ------------------------------------------------------------ */

static void s_fini(void *state)
{
	struct s_state *st = state;

	for (int i = 0; i < st->n; i++)
		free(st->value[i]);
	free(st);
}

/* ---- vtable ---------------------------------------------------------- */

static const apicred_vtable_v1 s_vtable = {
	.name = "alltypes",
	.schema = s_schema,
	.init = s_init,
	.apply = s_apply,
	.fini = s_fini,
};

__attribute__((visibility("default")))
int apicred_provider_initvt(int major, int minor, void *vtable)
{
	if (major != APICRED_PROVIDER_MAJOR)
		return APICRED_ERR_ABI;
	*(apicred_vtable_v1 *)vtable = s_vtable;
	return APICRED_OK;
}
