/*
 * noinitvt: a module that forgot to export apicred_provider_initvt. The
 * core must refuse it, naming the path and the missing symbol.
 */
__attribute__((visibility("default"))) int apicred_provider_init(void);

__attribute__((visibility("default")))
int apicred_provider_init(void)
{
	return 0;
}
