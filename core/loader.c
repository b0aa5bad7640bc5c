/*
 * loader.c - finds, loads and checks provider modules, once per context.
 *
 * A module that cannot be used is remembered with the reason, so every
 * layer naming it fails closed with the same clear message (Linux-PAM's
 * rule: never a silent skip).
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

typedef int (*s_initvt_fn)(int major, int minor, void *vtable);

static void s_fail(struct ac_module *m, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void s_fail(struct ac_module *m, int code, const char *fmt, ...)
{
	char buf[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	m->code = code;
	m->why = ac_strdup(buf);
}

static void s_load(struct ac_ctx *ctx, struct ac_module *m)
{
	struct stat sb;
	s_initvt_fn initvt;
	int rc;

	if (!ac_name_valid(m->name)) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider name '%s' is not a valid module name", m->name);
		return;
	}
	if (stat(m->path, &sb) != 0) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider '%s' not found: %s: %s", m->name, m->path,
		       strerror(errno));
		return;
	}
	/* dlopen runs the module's code as the caller: only from files and a
	 * directory that nobody else can change. */
	if (ac_path_safe(ctx->moduledir, "module directory", AC_PATH_DIR) != APICRED_OK ||
	    ac_path_safe(m->path, "provider module", AC_PATH_FILE) != APICRED_OK) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider '%s': %s", m->name, apicred_errmsg());
		return;
	}
	/* RTLD_LOCAL: providers never see each other's symbols. */
	m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
	if (!m->handle) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider '%s' failed to load from %s: %s", m->name,
		       m->path, dlerror());
		return;
	}
	initvt = (s_initvt_fn)(uintptr_t)dlsym(m->handle, "apicred_provider_initvt");
	if (!initvt) {
		s_fail(m, APICRED_ERR_PROVIDER,
		       "provider '%s' (%s) does not export apicred_provider_initvt", m->name, m->path);
		return;
	}
	memset(&m->vt, 0, sizeof(m->vt));
	rc = initvt(APICRED_PROVIDER_MAJOR, APICRED_PROVIDER_MINOR, &m->vt);
	if (rc == APICRED_ERR_ABI) {
		s_fail(m, APICRED_ERR_ABI,
		       "provider '%s' (%s) does not implement provider ABI version %d", m->name,
		       m->path, APICRED_PROVIDER_MAJOR);
		return;
	}
	if (rc != APICRED_OK) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider '%s' (%s): initvt failed with code %d",
		       m->name, m->path, rc);
		return;
	}
	if (!m->vt.name || !m->vt.schema || !m->vt.init || !m->vt.apply || !m->vt.fini ||
	    (m->vt.fetch && !m->vt.session_free)) {
		s_fail(m, APICRED_ERR_PROVIDER,
		       "provider '%s' (%s) lacks a mandatory method (name, schema, init, apply, fini, "
		       "or session_free with fetch)", m->name, m->path);
		return;
	}
	if (!m->vt.session_export != !m->vt.session_import ||
	    (m->vt.session_export && !m->vt.fetch)) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider '%s' (%s) has one of session_export and "
		       "session_import without the other, or without fetch", m->name, m->path);
		return;
	}
	if (strcmp(m->vt.name, m->name) != 0) {
		s_fail(m, APICRED_ERR_PROVIDER, "provider module %s calls itself '%s', not '%s'",
		       m->path, m->vt.name, m->name);
		return;
	}
	ac_log(ctx, LOG_DEBUG, NULL, "loaded provider '%s' from %s", m->name, m->path);
	m->code = APICRED_OK;
}

struct ac_module *ac_module_get(struct ac_ctx *ctx, const char *name)
{
	struct ac_module *m;

	pthread_mutex_lock(&ctx->modules_mu);
	for (m = ctx->modules; m; m = m->next)
		if (strcmp(m->name, name) == 0)
			goto out;
	m = calloc(1, sizeof(*m));
	if (!m)
		goto out;
	m->name = ac_strdup(name);
	if (m->name && asprintf(&m->path, "%s/%s.so", ctx->moduledir, name) < 0)
		m->path = NULL;
	if (!m->name || !m->path) {
		free(m->name);
		free(m);
		m = NULL;
		goto out;
	}
	s_load(ctx, m);
	if (m->code != APICRED_OK) {
		ac_log(ctx, LOG_ERR, NULL, "%s", m->why ? m->why : "provider failed to load");
		if (m->handle) {
			dlclose(m->handle);
			m->handle = NULL;
		}
	}
	m->next = ctx->modules;
	ctx->modules = m;
out:
	pthread_mutex_unlock(&ctx->modules_mu);
	return m;
}

void ac_modules_free(struct ac_ctx *ctx)
{
	struct ac_module *m = ctx->modules, *next;

	for (; m; m = next) {
		next = m->next;
		/* Sanitizer builds keep modules mapped so leak reports can name them. */
#ifndef __SANITIZE_ADDRESS__
		if (m->handle)
			dlclose(m->handle);
#endif
		free(m->name);
		free(m->path);
		free(m->why);
		free(m);
	}
	ctx->modules = NULL;
}

static int s_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ac_module_names(struct ac_ctx *ctx, char ***out, size_t *nout)
{
	DIR *d = opendir(ctx->moduledir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*nout = 0;
	if (!d)
		return ac_error(APICRED_ERR_PROVIDER, "cannot open module directory %s: %s",
		                ctx->moduledir, strerror(errno));
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		if (n == cap) {
			char **p = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*names));
			if (!p)
				break;
			names = p;
		}
		if (!(names[n] = strndup(de->d_name, len - 3)))
			break;
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), s_strcmp);
	*out = names;
	*nout = n;
	return APICRED_OK;
}
