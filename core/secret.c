/*
 * secret.c - resolves secret references (file:, env:, literal), reads files
 * safely, stores provisioned secrets atomically. Values never reach a log or
 * an error message; buffers are wiped before they are freed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "internal.h"

#define S_SECRET_MAX (64 * 1024)

char *ac_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

void ac_secret_free(char *value, size_t len)
{
	if (value) {
		OPENSSL_cleanse(value, len);
		free(value);
	}
}

int ac_path_resolve(struct ac_ctx *ctx, const char *ref, char **out)
{
	if (ref[0] == '/')
		*out = ac_strdup(ref);
	else if (asprintf(out, "%s/%s", ctx->confdir, ref) < 0)
		*out = NULL;
	return *out ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "out of memory");
}

/* Reads a whole regular file (at most max bytes). With secret, refuses a
 * file that others could write, and wipes what it read on failure. */
int ac_read_file(const char *path, size_t max, char **data, size_t *len,
                 bool secret, const char *what)
{
	struct stat sb;
	char *buf;
	size_t n = 0;
	int fd, code = secret ? APICRED_ERR_SECRET : APICRED_ERR_CONFIG;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return ac_error(code, "%s: cannot open %s: %s", what, path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return ac_error(code, "%s: %s is not a regular file", what, path);
	}
	if (secret && (sb.st_mode & (S_IWGRP | S_IWOTH))) {
		close(fd);
		return ac_error(code, "%s: %s is group or world writable (mode %04o); "
		                "refusing to use it", what, path, (unsigned)(sb.st_mode & 07777));
	}
	if ((size_t)sb.st_size > max) {
		close(fd);
		return ac_error(code, "%s: %s is larger than %zu bytes", what, path, max);
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		close(fd);
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	while (n < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			close(fd);
			ac_secret_free(buf, n);
			return ac_error(code, "%s: cannot read %s: %s", what, path, strerror(e));
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*data = buf;
	*len = n;
	return APICRED_OK;
}

int ac_secret_resolve(struct ac_layer *L, const char *key, const char *ref,
                      char **value, size_t *len)
{
	struct ac_ctx *ctx = L->stack->ctx;
	char what[160];
	int rc;

	*value = NULL;
	*len = 0;
	snprintf(what, sizeof(what), "secret '%s'", key);
	if (strncmp(ref, "file:", 5) == 0) {
		char *path;
		if ((rc = ac_path_resolve(ctx, ref + 5, &path)) != APICRED_OK)
			return rc;
		ac_watch_add(L->stack, path); /* a rotated secret re-creates the layer */
		rc = ac_read_file(path, S_SECRET_MAX, value, len, true, what);
		free(path);
		if (rc != APICRED_OK)
			return ac_layer_error(L, rc, "%s", apicred_errmsg());
		/* Files written by editors and echo end with a newline: not part of it. */
		if (*len && (*value)[*len - 1] == '\n')
			(*value)[--*len] = '\0';
		if (*len && (*value)[*len - 1] == '\r')
			(*value)[--*len] = '\0';
	} else if (strncmp(ref, "env:", 4) == 0) {
		const char *v = secure_getenv(ref + 4);
		if (!v)
			return ac_layer_error(L, APICRED_ERR_SECRET,
			                      "%s: environment variable %s is not set", what, ref + 4);
		*value = ac_strdup(v);
		*len = strlen(v);
	} else {
		if (!L->stack->literal_ok)
			return ac_layer_error(L, APICRED_ERR_SECRET,
			                      "%s: a literal secret is only allowed in a service file "
			                      "that is not group or world readable (%s); use file: or "
			                      "env:, or chmod 600 it", what, L->stack->svc->path);
		*value = ac_strdup(ref);
		*len = strlen(ref);
	}
	if (!*value)
		return ac_layer_error(L, APICRED_ERR_NOMEM, "out of memory");
	return APICRED_OK;
}

/* Writes value to the file a file: reference names: a private temporary
 * file in the same directory, fsync'ed, then renamed over, so readers see
 * the old or the new secret, never half of one. */
int ac_secret_store(struct ac_layer *L, const char *key, const char *value,
                    size_t len, int force)
{
	const char *ref = NULL;
	char *path = NULL, *tmp = NULL;
	struct stat sb;
	int fd = -1, rc;
	size_t n = 0;

	if (!config_setting_lookup_string(L->cfg, key, &ref) || strncmp(ref, "file:", 5) != 0)
		return ac_layer_error(L, APICRED_ERR_CONFIG,
		                      "cannot store secret '%s': it must be a file: reference", key);
	if ((rc = ac_path_resolve(L->stack->ctx, ref + 5, &path)) != APICRED_OK)
		return rc;
	if (!force && lstat(path, &sb) == 0) {
		rc = ac_layer_error(L, APICRED_ERR_EXISTS,
		                    "secret '%s': %s exists; use --force to replace it", key, path);
		goto out;
	}
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
		tmp = NULL;
		rc = ac_error(APICRED_ERR_NOMEM, "out of memory");
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC); /* created 0600 */
	if (fd < 0) {
		rc = ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot create a file "
		                    "next to %s: %s", key, path, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	while (n < len) {
		ssize_t w = write(fd, value + n, len - n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		n += (size_t)w;
	}
	if (n != len || fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		rc = ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot write %s: %s", key,
		                    tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot rename to %s: %s",
		                    key, path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	rc = APICRED_OK;
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(path);
	return rc;
}
