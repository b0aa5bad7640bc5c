/*
 * badtype: a provider whose schema declares a key with a type the core
 * does not know (as a provider built for a later minor, or with a typo,
 * would): the core must refuse the layer, never index by that type.
 */
#include <apicred/provider.h>

static const apicred_schema s_schema[] = {
	{ "label", APICRED_T_STRING, 0, NULL, NULL, "a string" },
	{ "mode", (apicred_cfg_type)99, 0, NULL, NULL, "a key of an unknown type" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

static int s_init(const apicred_host *host, void **state)
{
	*state = NULL;
	return APICRED_OK;
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	return host->add_header(out, "X-Badtype", "reached");
}

static void s_fini(void *state)
{
}

static const apicred_vtable_v1 s_vtable = {
	.name = "badtype",
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
