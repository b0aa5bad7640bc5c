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

void ac_secret_free(char *value, size_t len)
{
	if (value) {
		OPENSSL_cleanse(value, len);
		free(value);
	}
}

/* Reads a whole regular file (at most max bytes) that passes
 * ac_path_safe; with secret, under the secret-file rule, and wipes what it
 * read on failure. */
int ac_read_file(const char *path, size_t max, char **data, size_t *len,
                 bool secret, const char *what)
{
	enum ac_path_kind kind = secret ? AC_PATH_SECRET : AC_PATH_FILE;
	struct stat sb;
	char *buf;
	size_t n = 0;
	int fd, rc, code = secret ? APICRED_ERR_SECRET : APICRED_ERR_CONFIG;

	if ((rc = ac_path_safe(path, what, kind)) != APICRED_OK)
		return rc;
	/* O_NONBLOCK: a FIFO swapped in after the check must not hang us; the
	 * fstat below refuses it. Regular files ignore the flag. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return ac_error(code, "%s: cannot open %s: %s", what, path, strerror(errno));
	if (fstat(fd, &sb) != 0) {
		rc = ac_error(code, "%s: cannot stat %s: %s", what, path, strerror(errno));
		close(fd);
		return rc;
	}
	if ((rc = ac_stat_safe(&sb, what, path, kind)) != APICRED_OK) {
		close(fd);
		return rc;
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

static int s_resolve(struct ac_layer *L, const char *key, const char *ref, char **value,
                     size_t *len, bool watch)
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
		if (watch) /* a rotated secret re-creates the layer */
			ac_watch_add(L->stack, path);
		rc = ac_read_file(path, S_SECRET_MAX, value, len, true, what);
		free(path);
		if (rc != APICRED_OK)
			return ac_layer_error(L, rc, "%s", apicred_errmsg());
		/* A NUL would silently cut the secret short where C strings end. */
		if (memchr(*value, '\0', *len)) {
			ac_secret_free(*value, *len);
			*value = NULL;
			*len = 0;
			return ac_layer_error(L, APICRED_ERR_SECRET, "%s: %s holds a NUL byte; "
			                      "a secret is text", what, ref + 5);
		}
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
		if (!*v)
			return ac_layer_error(L, APICRED_ERR_SECRET,
			                      "%s: environment variable %s is empty", what, ref + 4);
		*value = ac_strdup(v);
		*len = strlen(v);
	} else {
		/* Identifiers (client_id) may be resolved like secrets, but
		 * only keys the schema marks secret must hide from readers. */
		const apicred_schema *e = ac_schema_find(L->mod ? L->mod->vt.schema : NULL, key);

		if (!L->stack->literal_ok && (!e || (e->flags & APICRED_F_SECRET)))
			return ac_layer_error(L, APICRED_ERR_SECRET,
			                      "%s: a literal secret is only allowed in a service file "
			                      "(and the files it includes) that is not group or world "
			                      "readable (%s); use file: or env:, or chmod 600 it", what,
			                      L->stack->svc->path);
		*value = ac_strdup(ref);
		*len = strlen(ref);
	}
	if (!*value)
		return ac_layer_error(L, APICRED_ERR_NOMEM, "out of memory");
	return APICRED_OK;
}

int ac_secret_resolve(struct ac_layer *L, const char *key, const char *ref,
                      char **value, size_t *len)
{
	return s_resolve(L, key, ref, value, len, true);
}

int ac_secret_check(struct ac_layer *L, const char *key, const char *ref)
{
	char *v;
	size_t len;
	int rc = s_resolve(L, key, ref, &v, &len, false);

	if (rc == APICRED_OK)
		ac_secret_free(v, len);
	return rc;
}

/* One secret on its way to the file a file: reference names. */
struct s_staged {
	char *path, *tmp;
	bool exchanged; /* tmp now holds the old secret */
	bool created;   /* path did not exist before */
};

/* Writes value to a private temporary file next to path, flushed to disk;
 * the descriptor is closed on every path, the file removed on failure. */
static int s_stage(struct ac_layer *L, const char *key, const char *value, size_t len,
                   struct s_staged *sf)
{
	size_t n = 0;
	int fd, err = 0;

	if (asprintf(&sf->tmp, "%s.tmp.XXXXXX", sf->path) < 0) {
		sf->tmp = NULL;
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	fd = mkostemp(sf->tmp, O_CLOEXEC); /* created 0600 */
	if (fd < 0) {
		err = errno;
		free(sf->tmp);
		sf->tmp = NULL;
		return ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot create a file "
		                      "next to %s: %s", key, sf->path, strerror(err));
	}
	while (n < len) {
		ssize_t w = write(fd, value + n, len - n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = w < 0 ? errno : EIO;
			break;
		}
		n += (size_t)w;
	}
	if (!err && fsync(fd) != 0)
		err = errno;
	if (close(fd) != 0 && !err)
		err = errno;
	if (err) {
		unlink(sf->tmp);
		free(sf->tmp);
		sf->tmp = NULL;
		return ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot write next to "
		                      "%s: %s", key, sf->path, strerror(err));
	}
	return APICRED_OK;
}

/* Moves a staged file into place. With force an existing secret is swapped
 * with it (RENAME_EXCHANGE), so it can be put back; without force an
 * existing one is never replaced (RENAME_NOREPLACE, atomic). */
static int s_commit(struct ac_layer *L, const char *key, struct s_staged *sf, int force)
{
	if (force && renameat2(AT_FDCWD, sf->tmp, AT_FDCWD, sf->path, RENAME_EXCHANGE) == 0) {
		sf->exchanged = true;
		return APICRED_OK;
	}
	if ((!force || errno == ENOENT) &&
	    renameat2(AT_FDCWD, sf->tmp, AT_FDCWD, sf->path, RENAME_NOREPLACE) == 0) {
		sf->created = true;
		return APICRED_OK;
	}
	if (errno == EEXIST)
		return ac_layer_error(L, APICRED_ERR_EXISTS, "secret '%s': %s exists; use --force "
		                      "to replace it", key, sf->path);
	return ac_layer_error(L, APICRED_ERR_SECRET, "secret '%s': cannot rename to %s: %s", key,
	                      sf->path, strerror(errno));
}

/* Undoes s_commit: the old secret back, or none as before. */
static void s_rollback(struct s_staged *sf)
{
	if (sf->exchanged)
		renameat2(AT_FDCWD, sf->tmp, AT_FDCWD, sf->path, RENAME_EXCHANGE);
	else if (sf->created)
		unlink(sf->path);
	sf->exchanged = sf->created = false;
}

/* Stores n secrets as one: each value goes to a private temporary file in
 * its target's directory, fsync'ed; only when every one is written are they
 * renamed into place, and if one of those fails the others are put back.
 * Readers see the old or the new secret, never half of one, and a full
 * disk never leaves one secret of a pair provisioned without the other. */
int ac_secret_store_all(struct ac_layer *L, size_t n, const char *const *keys,
                        const char *const *values, const size_t *lens, int force)
{
	struct s_staged *sf = calloc(n ? n : 1, sizeof(*sf));
	struct stat sb;
	int rc = APICRED_OK;
	size_t i, done = 0;

	if (!sf)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	for (i = 0; rc == APICRED_OK && i < n; i++) {
		const char *ref = NULL;

		if (!config_setting_lookup_string(L->cfg, keys[i], &ref) ||
		    strncmp(ref, "file:", 5) != 0)
			rc = ac_layer_error(L, APICRED_ERR_CONFIG, "cannot store secret '%s': it must "
			                    "be a file: reference", keys[i]);
		else if ((rc = ac_path_resolve(L->stack->ctx, ref + 5, &sf[i].path)) != APICRED_OK)
			break;
		else if (!force && lstat(sf[i].path, &sb) == 0)
			rc = ac_layer_error(L, APICRED_ERR_EXISTS, "secret '%s': %s exists; use "
			                    "--force to replace it", keys[i], sf[i].path);
	}
	for (i = 0; rc == APICRED_OK && i < n; i++)
		rc = s_stage(L, keys[i], values[i], lens[i], &sf[i]);
	for (i = 0; rc == APICRED_OK && i < n; i++, done++)
		rc = s_commit(L, keys[i], &sf[i], force);
	if (rc != APICRED_OK)
		for (i = 0; i < done; i++)
			s_rollback(&sf[i]);
	for (i = 0; i < n; i++) {
		if (sf[i].tmp && !sf[i].created) /* the old secret, or an unused copy */
			unlink(sf[i].tmp);
		free(sf[i].tmp);
		free(sf[i].path);
	}
	free(sf);
	return rc;
}

int ac_secret_store(struct ac_layer *L, const char *key, const char *value,
                    size_t len, int force)
{
	return ac_secret_store_all(L, 1, &key, &value, &len, force);
}
