/*
 * initfail: a well-formed provider whose init always refuses, the way a
 * real one does on bad configuration: through host->error().
 */
#include <apicred/provider.h>

static const apicred_schema s_schema[] = {
	{ NULL, 0, 0, NULL, NULL, NULL }
};

static int s_init(const apicred_host *host, void **state)
{
	return host->error(host, APICRED_ERR_UNSUPPORTED,
	                   "initfail refuses to start on purpose");
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	return APICRED_ERR_INTERNAL; /* never reached: init always fails */
}

static void s_fini(void *state)
{
}

static const apicred_vtable_v1 s_vtable = {
	.name = "initfail",
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
