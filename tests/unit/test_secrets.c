/*
 * test_secrets.c - secret references (file:, env:, literal), the checks on
 * the files holding them, and header injection through secret values.
 * Every failure must name the service and never the secret.
 */
#include "config.h"

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"

#define S_NOBODY 65534

static int setup(void **state)
{
	*state = fx_new();
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

#define APIKEY_FILE(name) \
	"stack = ( { provider = \"apikey\"; key = \"file:secrets/" name "\"; } );\n"

static void test_file_secret(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "plain", "sb-secret-plain", 0600);
	fx_secret(f, "newline", "sb-secret-newline\n", 0400);
	fx_service(f, "plain", 0600, APIKEY_FILE("plain"));
	fx_service(f, "newline", 0644, APIKEY_FILE("newline"));
	fx_open(f);
	assert_int_equal(fx_get(f, "plain"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-secret-plain", NULL);
	/* One trailing newline (as written by echo) is not part of the secret. */
	assert_int_equal(fx_get(f, "newline"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-secret-newline", NULL);
	fx_assert_no_secret(f, NULL);
}

static void test_file_secret_missing(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_service(f, "missing", 0600, APIKEY_FILE("not-there"));
	fx_open(f);
	fx_assert_err(f, fx_get(f, "missing"), APICRED_ERR_SECRET, "missing",
	              "secrets/not-there", NULL);
	assert_int_equal(apicred_check(f->ctx, "missing"), APICRED_ERR_SECRET);
}

static int s_chown(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return lchown(path, S_NOBODY, S_NOBODY);
}

/* Replaces the module directory's link to the build tree with a copy, so
 * the child needs nothing outside the fixture: the tree may live where
 * nobody cannot go (/root, a 0700 mktemp -d). */
static void s_copy_module(fx *f, const char *name)
{
	char path[400], tmp[420], buf[65536];
	int in, out;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s.so", f->mod, name);
	snprintf(tmp, sizeof(tmp), "%s.copy", path);
	in = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(in >= 0);
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, n), n);
	assert_int_equal(n, 0);
	assert_int_equal(close(in), 0);
	assert_int_equal(close(out), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* Runs as nobody in a child: root reads any file, so would prove nothing.
 * Exit 0: refused as it should be; 77: cannot test here; else: failed. */
static int s_unreadable_as_nobody(fx *f, const char *path)
{
	apicred_options o = { .size = sizeof(o) };
	apicred_ctx *ctx = NULL;
	apicred_cred *cred = NULL;
	const char *msg;
	int rc, fd;

	if (setgroups(0, NULL) || setgid(S_NOBODY) || setuid(S_NOBODY))
		return 77;
	if (access(f->dir, X_OK) != 0)
		return 77; /* $TMPDIR is where nobody cannot go */
	fd = open(path, O_RDONLY);
	if (fd >= 0)
		return 77; /* still privileged somehow */
	o.confdir = f->conf;
	o.moduledir = f->mod;
	o.flags = APICRED_OPEN_NO_BACKGROUND | APICRED_OPEN_LOG_STDERR;
	if (apicred_open_opts(&ctx, &o) || apicred_cred_new(&cred))
		return 2;
	rc = apicred_get(ctx, "locked", NULL, cred);
	msg = apicred_errmsg();
	if (rc != APICRED_ERR_SECRET || !strstr(msg, "locked") ||
	    !strstr(msg, "secrets/locked") || strstr(msg, "sb-secret-locked")) {
		fprintf(stderr, "# as nobody: got %d: %s\n", rc,
		        strstr(msg, "sb-secret-locked") ? "(message holds the secret)" : msg);
		rc = 1;
	} else {
		rc = 0;
	}
	apicred_cred_free(cred);
	apicred_close(ctx);
	return rc;
}

static void test_file_secret_unreadable(void **state)
{
	fx *f = *state;
	const char *path;
	int fd, status;
	pid_t pid;

	fx_module(f, "apikey");
	path = fx_secret(f, "locked", "sb-secret-locked", 0000);
	fx_service(f, "locked", 0600, APIKEY_FILE("locked"));
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fx_open(f);
		fx_assert_err(f, fx_get(f, "locked"), APICRED_ERR_SECRET, "locked",
		              "secrets/locked", NULL);
		return;
	}
	close(fd);
	/* We read it anyway (root): try as nobody, in a child. */
	if (geteuid() != 0)
		skip();
	s_copy_module(f, "apikey");
	assert_int_equal(nftw(f->dir, s_chown, 16, FTW_PHYS), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(s_unreadable_as_nobody(f, path));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_file_secret_writable_by_others(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "gw", "sb-secret-group-writable", 0620);
	fx_secret(f, "ww", "sb-secret-world-writable", 0602);
	fx_secret(f, "ok", "sb-secret-owner-only", 0600);
	fx_service(f, "gw", 0600, APIKEY_FILE("gw"));
	fx_service(f, "ww", 0600, APIKEY_FILE("ww"));
	fx_service(f, "ok", 0600, APIKEY_FILE("ok"));
	fx_open(f);
	fx_assert_err(f, fx_get(f, "gw"), APICRED_ERR_SECRET, "gw", "secrets/gw", NULL);
	fx_assert_err(f, fx_get(f, "ww"), APICRED_ERR_SECRET, "ww", "secrets/ww", NULL);
	assert_int_equal(fx_get(f, "ok"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-secret-owner-only", NULL);
}

#define APIKEY_LITERAL(value) \
	"stack = ( { provider = \"apikey\";\n  key = \"" value "\"; } );\n"

static void test_literal_secret(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_remember(f, "sb-literal-private");
	fx_remember(f, "sb-literal-group");
	fx_remember(f, "sb-literal-world");
	fx_service(f, "private", 0600, APIKEY_LITERAL("sb-literal-private"));
	fx_service(f, "group", 0640, APIKEY_LITERAL("sb-literal-group"));
	fx_service(f, "world", 0604, APIKEY_LITERAL("sb-literal-world"));
	fx_open(f);
	assert_int_equal(fx_get(f, "private"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-literal-private", NULL);
	fx_assert_err(f, fx_get(f, "group"), APICRED_ERR_SECRET, "group", "group.conf", NULL);
	fx_assert_err(f, fx_get(f, "world"), APICRED_ERR_SECRET, "world", "world.conf", NULL);
	assert_int_equal(apicred_check(f->ctx, "world"), APICRED_ERR_SECRET);
}

/* A service file others can write could send the secrets anywhere. */
static void test_writable_service_file(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-secret-writable-conf", 0600);
	fx_service(f, "gw", 0620, APIKEY_FILE("k"));
	fx_service(f, "ww", 0602, APIKEY_FILE("k"));
	fx_open(f);
	fx_assert_err(f, fx_get(f, "gw"), APICRED_ERR_CONFIG, "gw", "gw.conf", "writable", NULL);
	fx_assert_err(f, fx_get(f, "ww"), APICRED_ERR_CONFIG, "ww", "ww.conf", "writable", NULL);
	assert_int_equal(apicred_check(f->ctx, "ww"), APICRED_ERR_CONFIG);
}

/* A readable service file is fine when it only refers to secrets. */
static void test_readable_file_with_references(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-secret-referenced", 0600);
	fx_service(f, "public", 0644, APIKEY_FILE("k"));
	fx_open(f);
	assert_int_equal(fx_get(f, "public"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-secret-referenced", NULL);
}

static void test_env_secret(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_remember(f, "sb-secret-from-env");
	setenv("APICRED_TEST_ENV_KEY", "sb-secret-from-env", 1);
	unsetenv("APICRED_TEST_ENV_UNSET");
	fx_service(f, "env", 0644,
	           "stack = ( { provider = \"apikey\"; key = \"env:APICRED_TEST_ENV_KEY\"; } );\n");
	fx_service(f, "noenv", 0644,
	           "stack = ( { provider = \"apikey\"; key = \"env:APICRED_TEST_ENV_UNSET\"; } );\n");
	fx_open(f);
	assert_int_equal(fx_get(f, "env"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-secret-from-env", NULL);
	fx_assert_err(f, fx_get(f, "noenv"), APICRED_ERR_SECRET, "noenv",
	              "APICRED_TEST_ENV_UNSET", NULL);
	unsetenv("APICRED_TEST_ENV_KEY");
}

static void test_empty_secret(void **state)
{
	fx *f = *state;

	fx_module(f, "apikey");
	fx_module(f, "tok");
	fx_secret(f, "empty", "", 0600);
	fx_service(f, "empty-key", 0600, APIKEY_FILE("empty"));
	fx_service(f, "empty-tok", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/empty\"; } );\n");
	fx_open(f);
	fx_assert_err(f, fx_get(f, "empty-key"), APICRED_ERR_SECRET, "empty-key", NULL);
	fx_assert_err(f, fx_get(f, "empty-tok"), APICRED_ERR_SECRET, "empty-tok", "token",
	              NULL);
}

/* A secret whose value would inject a header never reaches the wire. tok
 * refuses at init, so a bad backup_token is found before the day it is
 * needed; apikey's header is refused when it is added. */
static void test_secret_with_crlf(void **state)
{
	static const struct { const char *svc; int code; } c[] = {
		{ "key-crlf", APICRED_ERR_PROTOCOL }, { "key-lf", APICRED_ERR_PROTOCOL },
		{ "key-cr", APICRED_ERR_PROTOCOL }, { "tok-crlf", APICRED_ERR_SECRET },
		{ "tok-backup-lf", APICRED_ERR_SECRET },
	};
	fx *f = *state;

	fx_module(f, "apikey");
	fx_module(f, "tok");
	fx_secret(f, "crlf", "sb-a\r\nX-Injected: 1", 0600);
	fx_secret(f, "lf", "sb-b\nX-Injected: 1", 0600);
	fx_secret(f, "cr", "sb-c\rX-Injected: 1", 0600);
	fx_secret(f, "good", "sb-good-token", 0600);
	fx_service(f, "key-crlf", 0600, APIKEY_FILE("crlf"));
	fx_service(f, "key-lf", 0600, APIKEY_FILE("lf"));
	fx_service(f, "key-cr", 0600, APIKEY_FILE("cr"));
	fx_service(f, "tok-crlf", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/crlf\"; } );\n");
	fx_service(f, "tok-backup-lf", 0600,
	           "stack = ( { provider = \"tok\"; token = \"file:secrets/good\";\n"
	           "  backup_token = \"file:secrets/lf\"; } );\n");
	fx_open(f);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		fx_assert_err(f, fx_get(f, c[i].svc), c[i].code, c[i].svc, NULL);
		assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);
	}
	/* tok's are found by a check, before any request. */
	fx_assert_err(f, apicred_check(f->ctx, "tok-backup-lf"), APICRED_ERR_SECRET,
	              "tok-backup-lf", "backup_token", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_file_secret),
		T(test_file_secret_missing),
		T(test_file_secret_unreadable),
		T(test_file_secret_writable_by_others),
		T(test_literal_secret),
		T(test_writable_service_file),
		T(test_readable_file_with_references),
		T(test_env_secret),
		T(test_empty_secret),
		T(test_secret_with_crlf),
#undef T
	};

	return cmocka_run_group_tests_name("secrets", tests, NULL, NULL);
}
