/*
 * store_file.c - the shared store in a directory: one file per entry,
 * replaced atomically (write a temporary file, rename it over), and one
 * lock file per entry held with flock(), which the kernel releases when
 * its holder exits, however it exits. A lease that outlasts the flock
 * (after a failed fetch) is written in the lock file: the monotonic time
 * in ms before which nobody takes the lock.
 *
 * The directory is created 0700 and refused when someone else owns it or
 * anyone else may enter it: entries are sealed, but their presence, size
 * and timing are nobody else's business, and a directory others can write
 * would let them delete or swap entries (denial of service, never forgery).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "store.h"

struct s_file {
	char *dir;
};

/* Opens (creating it if needed) and checks the directory. */
static int s_dir(struct ac_store *st)
{
	struct s_file *f = st->impl;
	struct stat sb;
	int fd;

	fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mkdir(f->dir, 0700) != 0 && errno != EEXIST)
			return -ac_error(APICRED_ERR_UNAVAILABLE, "cannot create the directory: %s",
			                 strerror(errno));
		fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return -ac_error(APICRED_ERR_UNAVAILABLE, "cannot open the directory: %s",
		                 strerror(errno));
	if (fstat(fd, &sb) != 0 || sb.st_uid != geteuid()) {
		close(fd);
		return -ac_error(APICRED_ERR_UNAVAILABLE, "the directory is owned by uid %u, not "
		                 "by this user (uid %u): refusing it", (unsigned)sb.st_uid,
		                 (unsigned)geteuid());
	}
	if (sb.st_mode & 077) {
		close(fd);
		return -ac_error(APICRED_ERR_UNAVAILABLE, "the directory is open to others (mode "
		                 "%04o): refusing it (chmod 700 it)", (unsigned)(sb.st_mode & 07777));
	}
	return fd;
}

static int s_get(struct ac_store *st, const char *name, unsigned char **blob, size_t *len)
{
	struct stat sb;
	unsigned char *b;
	size_t got = 0;
	int dfd = s_dir(st), fd, rc = APICRED_OK;

	if (dfd < 0)
		return -dfd;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	close(dfd);
	if (fd < 0)
		return errno == ENOENT ? AC_STORE_MISS
		       : ac_error(APICRED_ERR_UNAVAILABLE, "cannot read an entry: %s",
		                  strerror(errno));
	/* Ours and regular, or it is not an entry (garbled ones fail to open). */
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
	    sb.st_size > AC_STORE_MAX_BLOB) {
		close(fd);
		return AC_STORE_MISS;
	}
	b = malloc((size_t)sb.st_size + 1);
	while (b && got < (size_t)sb.st_size) {
		ssize_t n = read(fd, b + got, (size_t)sb.st_size - got);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (!b)
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	*blob = b;
	*len = got;
	return rc;
}

static int s_put(struct ac_store *st, const char *name, const unsigned char *blob, size_t len,
                 int64_t ttl_ms)
{
	unsigned char r[8];
	char tmp[128];
	size_t done = 0;
	int dfd = s_dir(st), fd, err = 0;

	if (dfd < 0)
		return -dfd;
	RAND_bytes(r, sizeof(r));
	snprintf(tmp, sizeof(tmp), ".%s.%02x%02x%02x%02x%02x%02x%02x%02x", name, r[0], r[1], r[2],
	         r[3], r[4], r[5], r[6], r[7]);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = errno;
		goto out;
	}
	while (done < len) {
		ssize_t n = write(fd, blob + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : ENOSPC;
			break;
		}
		done += (size_t)n;
	}
	if (close(fd) != 0 && !err)
		err = errno;
	if (!err && renameat(dfd, tmp, dfd, name) != 0)
		err = errno;
	if (err)
		unlinkat(dfd, tmp, 0);
out:
	close(dfd);
	return err ? ac_error(APICRED_ERR_UNAVAILABLE, "cannot write an entry: %s", strerror(err))
	           : APICRED_OK;
}

static int s_lockfile(struct ac_store *st, const char *name)
{
	char path[128];
	int dfd = s_dir(st), fd;

	if (dfd < 0)
		return dfd;
	snprintf(path, sizeof(path), "%s.lock", name);
	fd = openat(dfd, path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	close(dfd);
	if (fd < 0)
		return -ac_error(APICRED_ERR_UNAVAILABLE, "cannot open a lock file: %s",
		                 strerror(errno));
	return fd;
}

/* Whether the lock file holds a lease that has not ended. One longer than
 * any lease is garbage, or from an earlier boot: ignored. */
static bool s_leased(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	int64_t now = ac_real_ms();
	long long until;

	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (sscanf(buf, "%lld", &until) != 1)
		return false;
	return until > now && until - now <= AC_ATTEMPT_GAP_MS;
}

static int s_trylock(struct ac_store *st, const char *name, int64_t ttl_ms,
                     struct ac_store_lock *lk)
{
	int fd = s_lockfile(st, name);

	if (fd < 0)
		return -fd;
	/* flock: per open file, so two layers of one process exclude each other. */
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = errno;
		if (err == EINTR)
			continue;
		close(fd);
		return err == EWOULDBLOCK ? AC_STORE_BUSY
		       : ac_error(APICRED_ERR_UNAVAILABLE, "cannot lock an entry: %s",
		                  strerror(err));
	}
	if (s_leased(fd)) {
		flock(fd, LOCK_UN);
		close(fd);
		return AC_STORE_BUSY;
	}
	lk->fd = fd;
	return APICRED_OK;
}

static void s_unlock(struct ac_store *st, const char *name, struct ac_store_lock *lk,
                     int64_t hold_ms)
{
	if (lk->fd >= 0) {
		if (hold_ms > 0) {
			char buf[32];
			int n = snprintf(buf, sizeof(buf), "%lld\n",
			                 (long long)(ac_real_ms() + hold_ms));
			/* At worst no lease: the next fetch comes sooner. */
			if (pwrite(lk->fd, buf, (size_t)n, 0) != n || ftruncate(lk->fd, n) != 0)
				ac_error_clear();
		}
		flock(lk->fd, LOCK_UN); /* a forked child may share the descriptor */
		close(lk->fd);
		lk->fd = -1;
	}
}

/* Compare-and-delete. Writers hold the entry's lock, so under it the test
 * and the unlink are one step. When the lock is busy a fetch is under way
 * and its entry will replace this one: then the unlocked test is enough
 * (at worst it deletes that newer entry, costing one fetch, never a wrong
 * session). */
static int s_del(struct ac_store *st, const char *name, const unsigned char *prefix,
                 size_t plen)
{
	struct ac_store_lock lk = { .fd = -1 };
	unsigned char *b = NULL;
	size_t len = 0;
	int rc, locked, dfd;

	locked = s_trylock(st, name, 0, &lk);
	if (locked != APICRED_OK && locked != AC_STORE_BUSY)
		return locked;
	rc = plen ? s_get(st, name, &b, &len) : APICRED_OK;
	if (rc == APICRED_OK && plen && (len < plen || memcmp(b, prefix, plen) != 0))
		rc = AC_STORE_MISS;
	free(b);
	if (rc == APICRED_OK) {
		if ((dfd = s_dir(st)) < 0) {
			rc = -dfd;
		} else {
			if (unlinkat(dfd, name, 0) != 0)
				rc = errno == ENOENT ? AC_STORE_MISS
				     : ac_error(APICRED_ERR_UNAVAILABLE, "cannot delete an entry: %s",
				                strerror(errno));
			close(dfd);
		}
	}
	if (locked == APICRED_OK)
		s_unlock(st, name, &lk, 0);
	return rc;
}

static void s_after_fork(struct ac_store *st)
{
	(void)st; /* nothing held between operations */
}

static void s_free(struct ac_store *st)
{
	struct s_file *f = st->impl;

	free(f->dir);
	free(f);
	free(st->desc);
	free(st);
}

static const struct ac_store_ops s_ops = {
	.get = s_get,
	.put = s_put,
	.del = s_del,
	.trylock = s_trylock,
	.unlock = s_unlock,
	.after_fork = s_after_fork,
	.free = s_free,
};

int ac_store_file_open(struct ac_ctx *ctx, const char *dir, struct ac_store **out)
{
	struct ac_store *st = calloc(1, sizeof(*st));
	struct s_file *f = calloc(1, sizeof(*f));

	if (!st || !f || !(f->dir = ac_strdup(dir)) || asprintf(&st->desc, "file:%s", dir) < 0) {
		if (f)
			free(f->dir);
		free(f);
		free(st);
		return ac_error(APICRED_ERR_NOMEM, "out of memory");
	}
	st->ops = &s_ops;
	st->ctx = ctx;
	st->impl = f;
	atomic_init(&st->warned_ms, 0);
	*out = st;
	return APICRED_OK;
}
