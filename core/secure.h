/*
 * secure.h - decisions for a process that runs with more privileges than its
 * caller (secure.c). Shared by the core and the apicred tool.
 */
#ifndef APICRED_SECURE_H
#define APICRED_SECURE_H

#include <stdbool.h>

/* AT_SECURE: setuid, setgid or file capabilities. */
bool ac_secure(void) __attribute__((visibility("hidden")));
/* The CURLOPT_PROXY to set, or NULL to leave libcurl's default (which
 * reads http_proxy, https_proxy and ALL_PROXY): http.proxy if configured,
 * else "" (no proxy) when secure. */
const char *ac_proxy_for(const char *configured, bool secure)
	__attribute__((visibility("hidden")));
/* Why the tool refuses its caller's -c/-m, or NULL. */
const char *ac_dirs_refused(bool secure, bool confdir, bool moduledir)
	__attribute__((visibility("hidden")));

#endif /* APICRED_SECURE_H */
