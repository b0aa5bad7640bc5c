/*
 * prelude.h - put before the C example extracted from README.md (see
 * tests/drivers.am), so that the example runs against the sandbox: its
 * "https://sandbox.momodeveloper.mtn.com/PATH" literals become
 * readme_url("PATH"), which prefixes $README_ORIGIN instead.
 */
#include <stdio.h>
#include <stdlib.h>

static const char *readme_url(const char *path)
{
	static char url[1024];
	const char *origin = getenv("README_ORIGIN");

	snprintf(url, sizeof(url), "%s%s", origin ? origin : "https://invalid.example/", path);
	return url;
}
