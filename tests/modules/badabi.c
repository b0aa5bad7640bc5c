/*
 * badabi: a provider built for provider ABI major 2 only. It answers any
 * other major with APICRED_ERR_ABI, as provider.h asks, and fills nothing.
 */
#include <apicred/provider.h>

__attribute__((visibility("default")))
int apicred_provider_initvt(int major, int minor, void *vtable)
{
	if (major != 2)
		return APICRED_ERR_ABI;
	return APICRED_OK;
}
