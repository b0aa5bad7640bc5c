/*
 * secure.c - what a process running with more privileges than its caller
 * (setuid, setgid, file capabilities: the kernel's AT_SECURE) must not take
 * from that caller's environment. The decisions take "secure" as an
 * argument so that tests can make them without a setuid binary.
 */
#include "config.h"

#include <stdatomic.h>
#include <stddef.h>
#include <sys/auxv.h>

#include "secure.h"

/* Fixed for the life of the process: asked once (apicred_curl_apply asks
 * on every call). */
bool ac_secure(void)
{
	static atomic_int known = -1;
	int v = atomic_load_explicit(&known, memory_order_relaxed);

	if (v < 0) {
		v = getauxval(AT_SECURE) != 0;
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v;
}

/* libcurl itself reads http_proxy, https_proxy and ALL_PROXY: a caller
 * could have the credentials sent through a proxy of theirs. "" switches
 * that off; NULL leaves libcurl's default. */
const char *ac_proxy_for(const char *configured, bool secure)
{
	if (configured)
		return configured;
	return secure ? "" : NULL;
}

/* The apicred tool compiles this file too: its caller may name the
 * configuration or module directory only when it runs with no more
 * privileges than theirs, or their modules would run as root. */
const char *ac_dirs_refused(bool secure, bool confdir, bool moduledir)
{
	return secure && (confdir || moduledir)
	       ? "-c and -m are refused: this program runs with more privileges than its "
	         "caller (setuid, setgid or file capabilities)" : NULL;
}
