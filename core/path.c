/*
 * path.c - who may change the files that decide where secrets go or what
 * code runs (sshd's StrictModes). One rule for apicred.conf, conf.d, service
 * and included files, secret, certificate and key files, the module
 * directory and each module: the file and every directory above it belong
 * to root or the effective user and are not group or world writable; a
 * sticky directory of root's (/tmp) is fine above it. A symlink counts as
 * its target, and the directory holding the link is checked as well:
 * whoever can write there can point the link elsewhere.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int s_code(enum ac_path_kind kind)
{
	return kind == AC_PATH_SECRET ? APICRED_ERR_SECRET : APICRED_ERR_CONFIG;
}

static bool s_owner_ok(const struct stat *sb)
{
	return sb->st_uid == 0 || sb->st_uid == geteuid();
}

/* Someone else could change it: the message says what to chown. name is
 * path or a directory above it. */
static int s_owner_error(const char *what, const char *name, const char *path,
                         const struct stat *sb, int code)
{
	bool above = strcmp(name, path) != 0;

	return ac_error(code, "%s: %s%s%s%s is owned by uid %u, neither root nor the effective "
	                "user (uid %u); refusing to use it (chown %u %s)", what,
	                above ? "directory " : "", name, above ? " above " : "", above ? path : "",
	                (unsigned)sb->st_uid, (unsigned)geteuid(), (unsigned)geteuid(), name);
}

/* Group or world writable, and not a sticky directory of root's (/tmp). */
static bool s_dir_writable(const struct stat *sb)
{
	return (sb->st_mode & (S_IWGRP | S_IWOTH)) && !((sb->st_mode & S_ISVTX) && sb->st_uid == 0);
}

/* Every directory from dir (absolute, resolved) up to "/". */
static int s_dirs(const char *dir, const char *what, const char *path, int code)
{
	char d[PATH_MAX];
	struct stat sb;

	if (snprintf(d, sizeof(d), "%s", dir) >= (int)sizeof(d))
		return ac_error(code, "%s: %s: path too long", what, path);
	for (;;) {
		if (stat(d, &sb) != 0)
			return ac_error(code, "%s: cannot check %s (above %s): %s", what, d, path,
			                strerror(errno));
		if (!s_owner_ok(&sb))
			return s_owner_error(what, d, path, &sb, code);
		if (s_dir_writable(&sb))
			return ac_error(code, "%s: directory %s (above %s) is group or world "
			                "writable (mode %04o); refusing to use it (chmod go-w %s)",
			                what, d, path, (unsigned)(sb.st_mode & 07777), d);
		if (strcmp(d, "/") == 0)
			return APICRED_OK;
		char *slash = strrchr(d, '/');
		if (!slash)
			return ac_error(code, "%s: %s: not an absolute path", what, d);
		slash[slash == d] = '\0'; /* "/a" -> "/" */
	}
}

/* The directories above the resolved form of p's parent. */
static int s_parent_dirs(const char *p, const char *what, const char *path, int code)
{
	char copy[PATH_MAX], real[PATH_MAX];

	if (snprintf(copy, sizeof(copy), "%s", p) >= (int)sizeof(copy))
		return ac_error(code, "%s: %s: path too long", what, path);
	if (!realpath(dirname(copy), real))
		return ac_error(code, "%s: cannot resolve the directory of %s: %s", what, p,
		                strerror(errno));
	return s_dirs(real, what, path, code);
}

int ac_stat_safe(const struct stat *sb, const char *what, const char *path,
                 enum ac_path_kind kind)
{
	int code = s_code(kind);
	mode_t m = sb->st_mode;
	bool reg = S_ISREG(m), dir = S_ISDIR(m);

	if ((kind == AC_PATH_DIR && !dir) || (kind == AC_PATH_ANY && !reg && !dir) ||
	    ((kind == AC_PATH_FILE || kind == AC_PATH_SECRET) && !reg))
		return ac_error(code, "%s: %s is not a %s", what, path,
		                kind == AC_PATH_DIR ? "directory" :
		                kind == AC_PATH_ANY ? "regular file or directory" : "regular file");
	if (!s_owner_ok(sb))
		return s_owner_error(what, path, path, sb, code);
	if (m & (S_IWGRP | S_IWOTH))
		return ac_error(code, "%s: %s is group or world writable (mode %04o); refusing "
		                "to use it (chmod go-w %s)", what, path, (unsigned)(m & 07777), path);
	/* A group may read a secret (0640 root:apicred), the world never. */
	if (kind == AC_PATH_SECRET && (m & S_IROTH))
		return ac_error(code, "%s: %s is world readable (mode %04o); refusing to use "
		                "it (chmod o-r %s)", what, path, (unsigned)(m & 07777), path);
	return APICRED_OK;
}

/* The usual case in one lstat per component: an absolute path without
 * ".", ".." or "//" and with no symlink on the way is its own resolved
 * form, and what lstat says of each prefix is what the general walk below
 * would stat: the same checks from the same results, in a third of the
 * system calls. Anything else (a symlink, a missing file, a check that
 * fails) is left to the general walk, which words the error. */
static bool s_plain_safe(char *abs, const char *what, const char *path, enum ac_path_kind kind)
{
	struct stat sb;
	size_t n = strlen(abs);

	if (n < 2 || abs[n - 1] == '/' || strstr(abs, "//") || strstr(abs, "/./") ||
	    strstr(abs, "/../") || strcmp(abs + n - 2, "/.") == 0 ||
	    (n >= 3 && strcmp(abs + n - 3, "/..") == 0))
		return false;
	if (lstat("/", &sb) != 0 || !s_owner_ok(&sb) || s_dir_writable(&sb))
		return false;
	for (char *p = abs + 1;; p++) {
		bool ok;
		char c;

		if (*p != '/' && *p != '\0')
			continue;
		c = *p;
		*p = '\0';
		ok = lstat(abs, &sb) == 0 && !S_ISLNK(sb.st_mode) &&
		     (c == '\0' ? ac_stat_safe(&sb, what, path, kind) == APICRED_OK :
		                  S_ISDIR(sb.st_mode) && s_owner_ok(&sb) && !s_dir_writable(&sb));
		*p = c;
		if (!ok || c == '\0')
			return ok;
	}
}

int ac_path_safe(const char *path, const char *what, enum ac_path_kind kind)
{
	int code = s_code(kind), rc;
	char abs[PATH_MAX], real[PATH_MAX];
	struct stat sb;
	size_t n;

	if (path[0] == '/') {
		n = (size_t)snprintf(abs, sizeof(abs), "%s", path);
	} else {
		if (!getcwd(abs, sizeof(abs)))
			return ac_error(code, "%s: %s: cannot find the current directory: %s", what,
			                path, strerror(errno));
		n = strlen(abs);
		n += (size_t)snprintf(abs + n, sizeof(abs) - n, "/%s", path);
	}
	if (n >= sizeof(abs))
		return ac_error(code, "%s: %s: path too long", what, path);
	if (s_plain_safe(abs, what, path, kind))
		return APICRED_OK;
	if (lstat(abs, &sb) != 0)
		return ac_error(code, "%s: cannot open %s: %s", what, path, strerror(errno));

	/* The directory each symlink on the way lives in, the last one's too. */
	for (char *p = abs + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		rc = lstat(abs, &sb) == 0 && S_ISLNK(sb.st_mode) ?
		     s_parent_dirs(abs, what, path, code) : APICRED_OK;
		*p = c;
		if (rc != APICRED_OK)
			return rc;
		if (c == '\0')
			break;
	}
	if (!realpath(abs, real))
		return ac_error(code, "%s: cannot resolve %s: %s", what, path, strerror(errno));
	if (stat(real, &sb) != 0)
		return ac_error(code, "%s: cannot open %s: %s", what, path, strerror(errno));
	if ((rc = ac_stat_safe(&sb, what, path, kind)) != APICRED_OK)
		return rc;
	return strcmp(real, "/") == 0 ? APICRED_OK : s_parent_dirs(real, what, path, code);
}

/* A file named in the configuration: absolute, or relative to the confdir. */
int ac_path_resolve(struct ac_ctx *ctx, const char *ref, char **out)
{
	if (ref[0] == '/')
		*out = ac_strdup(ref);
	else if (asprintf(out, "%s/%s", ctx->confdir, ref) < 0)
		*out = NULL;
	return *out ? APICRED_OK : ac_error(APICRED_ERR_NOMEM, "out of memory");
}
