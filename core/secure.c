/*
 * secure.c - what a process running with more privileges than its caller
 * (setuid, setgid, file capabilities: the kernel's AT_SECURE) must not take
 * from that caller's environment. The decisions take "secure" as an
 * argument so that tests can make them without a setuid binary.
 */
#include "config.h"

#include <stddef.h>
#include <sys/auxv.h>

#include "secure.h"

bool ac_secure(void)
{
	return getauxval(AT_SECURE) != 0;
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
