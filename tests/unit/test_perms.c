/*
 * test_perms.c - who may change what (sshd's StrictModes for every file that
 * decides where secrets go or what code runs), secret files that are not
 * regular files, symlinks, NUL bytes, origins, and what a setuid or setgid
 * caller must not be able to choose (proxy, -c/-m).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "../../core/secure.h"

#define S_NOBODY 65534
#define S_APIKEY_K \
	"stack = ( { provider = \"apikey\"; key = \"file:secrets/k\"; } );\n"

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

/* Copies a provider into the module directory (fx_module links it, and a
 * chmod would then change the build tree's file). */
static void s_module_copy(fx *f, const char *name)
{
	char link[600], data[1 << 16];
	int in, out;
	ssize_t n;

	fx_module(f, name);
	snprintf(link, sizeof(link), "%s/%s.so", f->mod, name);
	in = open(link, O_RDONLY);
	assert_true(in >= 0);
	assert_int_equal(unlink(link), 0);
	out = open(link, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(out >= 0);
	while ((n = read(in, data, sizeof(data))) > 0)
		assert_int_equal(write(out, data, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	assert_int_equal(close(out), 0);
}

/* A context that opens and a service "svc" that works: every refusal
 * below differs from it by one chmod or chown. The service includes
 * conf/inc.conf, which holds its url. */
static fx *s_good(void)
{
	fx *f = fx_new();

	s_module_copy(f, "apikey");
	fx_global(f, "http = { retries = 0; };\n");
	fx_secret(f, "k", "sb-perm-secret", 0600);
	fx_service_raw(f, "svc", 0600, "@include \"inc.conf\"\n" S_APIKEY_K);
	{
		char path[600];
		FILE *fp;

		snprintf(path, sizeof(path), "%s/inc.conf", f->conf);
		fp = fopen(path, "w");
		assert_non_null(fp);
		fputs("url = \"https://127.0.0.1/\";\n", fp);
		assert_int_equal(fclose(fp), 0);
		assert_int_equal(chmod(path, 0600), 0);
	}
	return f;
}

static int s_open(fx *f)
{
	apicred_options o = { .size = sizeof(o) };

	o.confdir = f->conf;
	o.moduledir = f->mod;
	o.flags = APICRED_OPEN_NO_BACKGROUND;
	return apicred_open_opts(&f->ctx, &o);
}

struct s_case {
	const char *path;  /* below the fixture's directory */
	mode_t mode;       /* chmod to this, or chown to nobody when 0 */
	bool at_open;      /* apicred_open fails, else the service does */
	int code;
	const char *want;  /* in the message */
};

/* Applies one change to a good setup and checks the refusal. */
static void s_refused(const struct s_case *c)
{
	fx *f = s_good();
	char path[700];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", f->dir, c->path);
	if (c->mode)
		assert_int_equal(chmod(path, c->mode), 0);
	else
		assert_int_equal(lchown(path, S_NOBODY, S_NOBODY), 0);
	rc = s_open(f);
	print_message("# %s %04o: %s\n", c->path, (unsigned)c->mode, apicred_errmsg());
	if (c->at_open) {
		assert_int_equal(rc, c->code);
		assert_non_null(strstr(apicred_errmsg(), c->path));
	} else {
		assert_int_equal(rc, APICRED_OK);
		fx_assert_err(f, fx_get(f, "svc"), c->code, "svc", c->path, NULL);
		assert_int_equal(apicred_check(f->ctx, "svc"), c->code);
	}
	assert_non_null(strstr(apicred_errmsg(), c->want));
	fx_assert_no_secret(f, apicred_errmsg());
	fx_free(f);
}

static void test_good_setup_works(void **state)
{
	fx *f = s_good();

	(void)state;
	assert_int_equal(s_open(f), APICRED_OK);
	assert_int_equal(fx_get(f, "svc"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-perm-secret", NULL);
	fx_free(f);
}

static void test_modes_refused(void **state)
{
	static const struct s_case cases[] = {
		{ "conf/apicred.conf", 0666, true, APICRED_ERR_CONFIG, "chmod go-w" },
		{ "conf/apicred.conf", 0620, true, APICRED_ERR_CONFIG, "writable" },
		{ "conf", 0777, true, APICRED_ERR_CONFIG, "chmod go-w" },
		{ "conf", 0770, true, APICRED_ERR_CONFIG, "group or world writable" },
		{ "conf/conf.d", 0777, true, APICRED_ERR_CONFIG, "chmod go-w" },
		{ "conf/conf.d", 0775, true, APICRED_ERR_CONFIG, "conf.d" },
		{ "conf/conf.d/svc.conf", 0666, false, APICRED_ERR_CONFIG, "chmod go-w" },
		{ "conf/inc.conf", 0666, false, APICRED_ERR_CONFIG, "included file" },
		{ "conf/inc.conf", 0620, false, APICRED_ERR_CONFIG, "chmod go-w" },
		{ "modules", 0777, false, APICRED_ERR_PROVIDER, "module directory" },
		{ "modules/apikey.so", 0666, false, APICRED_ERR_PROVIDER, "chmod go-w" },
		{ "modules/apikey.so", 0664, false, APICRED_ERR_PROVIDER, "writable" },
		{ "conf/secrets", 0777, false, APICRED_ERR_SECRET, "chmod go-w" },
		{ "conf/secrets/k", 0604, false, APICRED_ERR_SECRET, "chmod o-r" },
		{ "conf/secrets/k", 0644, false, APICRED_ERR_SECRET, "world readable" },
		{ "conf/secrets/k", 0620, false, APICRED_ERR_SECRET, "chmod go-w" },
		{ "conf/secrets/k", 0602, false, APICRED_ERR_SECRET, "writable" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		s_refused(&cases[i]);
}

/* A directory above everything, writable by others: whoever can write
 * there can rename the whole configuration away and put theirs instead. */
static void test_parent_directory_refused(void **state)
{
	static const struct s_case c = { "", 0777, true, APICRED_ERR_CONFIG, "above" };

	(void)state;
	s_refused(&c);
}

/* Owned by someone else: only root can make such a file. */
static void test_owner_refused(void **state)
{
	static const struct s_case cases[] = {
		{ "conf/apicred.conf", 0, true, APICRED_ERR_CONFIG, "chown" },
		{ "conf/conf.d", 0, true, APICRED_ERR_CONFIG, "owned by uid 65534" },
		{ "conf/conf.d/svc.conf", 0, false, APICRED_ERR_CONFIG, "chown" },
		{ "conf/inc.conf", 0, false, APICRED_ERR_CONFIG, "owned by uid 65534" },
		{ "modules/apikey.so", 0, false, APICRED_ERR_PROVIDER, "chown" },
		{ "modules", 0, false, APICRED_ERR_PROVIDER, "owned by uid 65534" },
		{ "conf/secrets/k", 0, false, APICRED_ERR_SECRET, "chown" },
	};

	(void)state;
	if (geteuid() != 0) {
		/* Without root no file can be given away; the good setup, owned by
		 * us, must still work. */
		print_message("# not root: cannot chown to another user; checking that "
		              "files of our own are accepted instead\n");
		test_good_setup_works(state);
		return;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		s_refused(&cases[i]);
}

/* 0640 root:apicred is how a group of services shares a secret; a sticky
 * directory of root's (like /tmp) above the configuration is fine. */
static void test_group_readable_secret_and_sticky_dir(void **state)
{
	fx *f = s_good();
	char path[700];

	(void)state;
	snprintf(path, sizeof(path), "%s/secrets/k", f->conf);
	assert_int_equal(chmod(path, 0640), 0);
	if (geteuid() == 0) {
		assert_int_equal(chmod(f->dir, 01777), 0);
	} else {
		print_message("# not root: a sticky directory of our own does not count; "
		              "checking a group-readable secret only\n");
	}
	assert_int_equal(s_open(f), APICRED_OK);
	assert_int_equal(fx_get(f, "svc"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-perm-secret", NULL);
	fx_free(f);
}

/* A FIFO where a secret should be used to hang apicred_open for every
 * service. alarm: a hang fails the test instead of stalling the suite. */
static void test_fifo_secret(void **state)
{
	fx *f = *state;
	char path[700];

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-fifo-neighbour", 0600);
	snprintf(path, sizeof(path), "%s/secrets/fifo", f->conf);
	assert_int_equal(mkfifo(path, 0600), 0);
	fx_service(f, "fifo", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/fifo\"; } );\n");
	fx_service(f, "good", 0600, S_APIKEY_K);
	alarm(20);
	fx_open(f);
	assert_int_equal(apicred_service_count(f->ctx), 2);
	fx_assert_err(f, fx_get(f, "fifo"), APICRED_ERR_SECRET, "fifo", "secrets/fifo",
	              "not a regular file", NULL);
	assert_int_equal(fx_get(f, "good"), APICRED_OK);
	alarm(0);
}

/* A symlink is as good as its target, and as the directory holding it. */
static void test_symlink_secret(void **state)
{
	fx *f = *state;
	char dir[700], path[sizeof(dir) + sizeof("/link")], target[700];

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-link-good", 0600);
	fx_secret(f, "loose", "sb-link-loose", 0644);
	snprintf(path, sizeof(path), "%s/secrets/to-good", f->conf);
	assert_int_equal(symlink("k", path), 0);
	snprintf(path, sizeof(path), "%s/secrets/to-loose", f->conf);
	assert_int_equal(symlink("loose", path), 0);
	/* A good target, but the link lives where anyone can replace it. */
	snprintf(dir, sizeof(dir), "%s/open", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(path, sizeof(path), "%s/link", dir);
	snprintf(target, sizeof(target), "%s/secrets/k", f->conf);
	assert_int_equal(symlink(target, path), 0);
	fx_service(f, "good", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/to-good\"; } );\n");
	fx_service(f, "loose", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/to-loose\"; } );\n");
	fx_service(f, "open", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:%s\"; } );\n", path);
	fx_open(f);
	assert_int_equal(fx_get(f, "good"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-link-good", NULL);
	fx_assert_err(f, fx_get(f, "loose"), APICRED_ERR_SECRET, "loose", "to-loose",
	              "world readable", NULL);
	fx_assert_err(f, fx_get(f, "open"), APICRED_ERR_SECRET, "open", "/open",
	              "writable", NULL);
}

/* A NUL would cut the secret short (hmac used to sign with half a key). */
static void test_nul_in_secret(void **state)
{
	fx *f = *state;
	char path[700];
	int fd;

	fx_module(f, "apikey");
	fx_remember(f, "sb-before-nul");
	snprintf(path, sizeof(path), "%s/secrets/nul", f->conf);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "sb-before-nul\0after", 19), 19);
	assert_int_equal(close(fd), 0);
	fx_service(f, "nul", 0600,
	           "stack = ( { provider = \"apikey\"; key = \"file:secrets/nul\"; } );\n");
	fx_open(f);
	fx_assert_err(f, fx_get(f, "nul"), APICRED_ERR_SECRET, "nul", "secrets/nul", "NUL",
	              NULL);
	assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);
}

/* Included files decide as much as the service file: a literal secret is
 * allowed only when every file is private, and a changed included file
 * reloads the service. */
static void test_include(void **state)
{
	fx *f = *state;
	char path[700];
	FILE *fp;

	fx_module(f, "apikey");
	fx_remember(f, "sb-included-literal");
	snprintf(path, sizeof(path), "%s/lit.conf", f->conf);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("description = \"first\";\n"
	      "stack = ( { provider = \"apikey\"; key = \"sb-included-literal\"; } );\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, 0644), 0);
	fx_service(f, "inc", 0600, "@include \"lit.conf\"\n");
	fx_open(f);
	fx_assert_err(f, fx_get(f, "inc"), APICRED_ERR_SECRET, "inc", "literal", NULL);

	/* Private now, with another description: the watch reloads it. */
	assert_int_equal(chmod(path, 0600), 0);
	fp = fopen(path, "a");
	assert_non_null(fp);
	fputs("x-changed = true;\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(apicred_reload(f->ctx), APICRED_OK);
	assert_int_equal(fx_get(f, "inc"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-included-literal", NULL);
}

/* Without a url the credentials would go wherever the application says. */
static void test_origins(void **state)
{
	static const struct { const char *svc, *text, *want; } bad[] = {
		{ "nourl", S_APIKEY_K, "missing 'url'" },
		{ "http", "url = \"http://127.0.0.1:8080/\";\n" S_APIKEY_K, "https" },
		{ "http-remote", "insecure_http = true;\nurl = \"http://api.example/\";\n"
		  S_APIKEY_K, "loopback" },
		{ "http-false", "insecure_http = false;\nurl = \"http://localhost/\";\n"
		  S_APIKEY_K, "insecure_http" },
		{ "not-bool", "insecure_http = 1;\nurl = \"http://localhost/\";\n" S_APIKEY_K,
		  "insecure_http" },
		{ "ftp", "url = \"ftp://api.example/\";\n" S_APIKEY_K, "url" },
	};
	fx *f = *state;

	fx_module(f, "apikey");
	fx_secret(f, "k", "sb-origin-secret", 0600);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		fx_service_raw(f, bad[i].svc, 0600, bad[i].text);
	fx_service_raw(f, "loopback", 0600,
	               "insecure_http = true;\nurl = \"http://127.0.0.1:8080/\";\n" S_APIKEY_K);
	fx_service_raw(f, "https", 0600, "url = \"https://api.example/\";\n" S_APIKEY_K);
	fx_open(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx_assert_err(f, fx_get(f, bad[i].svc), APICRED_ERR_CONFIG, bad[i].svc,
		              bad[i].want, NULL);
		assert_int_equal(apicred_cred_count(f->cred, APICRED_HEADER), 0);
	}
	assert_int_equal(fx_get(f, "loopback"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-origin-secret", NULL);
	assert_int_equal(fx_get(f, "https"), APICRED_OK);
	fx_assert_headers(f, "X-API-Key: sb-origin-secret", NULL);
}

/* ---- setuid and setgid callers ------------------------------------------ */

static void test_proxy_decision(void **state)
{
	(void)state;
	/* Not secure: libcurl's environment lookup stays, http.proxy wins. */
	assert_null(ac_proxy_for(NULL, false));
	assert_string_equal(ac_proxy_for("http://127.0.0.1:3128", false), "http://127.0.0.1:3128");
	/* Secure: "" switches the environment off, http.proxy still wins. */
	assert_string_equal(ac_proxy_for(NULL, true), "");
	assert_string_equal(ac_proxy_for("http://127.0.0.1:3128", true), "http://127.0.0.1:3128");
	/* This test is not setuid: the library's own requests use libcurl's
	 * environment (see test_proxy_honoured). */
	assert_false(ac_secure());
}

static void test_dirs_decision(void **state)
{
	(void)state;
	assert_null(ac_dirs_refused(false, true, true));
	assert_null(ac_dirs_refused(true, false, false));
	assert_non_null(strstr(ac_dirs_refused(true, true, false), "-c"));
	assert_non_null(strstr(ac_dirs_refused(true, false, true), "-m"));
	assert_non_null(strstr(ac_dirs_refused(true, true, true), "privileges"));
}

/* A listener that takes one connection and keeps its first line. */
struct s_proxy {
	int fd;
	pthread_t thread;
	char line[256];
};

static void *s_proxy_main(void *arg)
{
	struct s_proxy *p = arg;
	int c = accept(p->fd, NULL, NULL);
	size_t n = 0;

	if (c < 0)
		return NULL;
	while (n + 1 < sizeof(p->line)) {
		ssize_t r = read(c, p->line + n, 1);
		if (r <= 0 || p->line[n] == '\r' || p->line[n] == '\n')
			break;
		n++;
	}
	p->line[n] = '\0';
	close(c); /* libcurl gives up: the proxy went away */
	return NULL;
}

static int s_proxy_start(struct s_proxy *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(p->line, 0, sizeof(p->line));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->fd >= 0);
	assert_int_equal(bind(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p->fd, 1), 0);
	assert_int_equal(getsockname(p->fd, (struct sockaddr *)&a, &len), 0);
	assert_int_equal(pthread_create(&p->thread, NULL, s_proxy_main, p), 0);
	return ntohs(a.sin_port);
}

static void s_proxy_stop(struct s_proxy *p)
{
	pthread_join(p->thread, NULL);
	close(p->fd);
}

/* The token request of an oauth2 layer goes through the proxy: from
 * http.proxy, or (not setuid) from libcurl's environment. */
static void s_token_via_proxy(fx *f, bool from_env)
{
	struct s_proxy p;
	char global[200], url[100];
	int port = s_proxy_start(&p);

	fx_module(f, "oauth2");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	if (from_env) {
		setenv("https_proxy", url, 1);
		fx_global(f, "http = { retries = 0; };\n");
	} else {
		unsetenv("https_proxy");
		snprintf(global, sizeof(global), "http = { retries = 0; proxy = \"%s\"; };\n", url);
		fx_global(f, global);
	}
	fx_service(f, "tok", 0600,
	           "url = \"https://127.0.0.1:9/\";\n"
	           "stack = ( { provider = \"oauth2\"; token_url = \"https://127.0.0.1:9/token\";\n"
	           "  client_id = \"sb-proxy-id\"; client_secret = \"sb-proxy-secret\"; } );\n");
	fx_remember(f, "sb-proxy-secret");
	fx_open(f);
	assert_int_not_equal(fx_get(f, "tok"), APICRED_OK);
	s_proxy_stop(&p);
	unsetenv("https_proxy");
	print_message("# the proxy saw: %s\n", p.line);
	assert_string_equal(p.line, "CONNECT 127.0.0.1:9 HTTP/1.1");
}

static void test_proxy_honoured(void **state)
{
	s_token_via_proxy(*state, false);
}

static void test_env_proxy_honoured_when_not_setuid(void **state)
{
	s_token_via_proxy(*state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_good_setup_works),
		T(test_modes_refused),
		T(test_parent_directory_refused),
		T(test_owner_refused),
		T(test_group_readable_secret_and_sticky_dir),
		T(test_fifo_secret),
		T(test_symlink_secret),
		T(test_nul_in_secret),
		T(test_include),
		T(test_origins),
		T(test_proxy_decision),
		T(test_dirs_decision),
		T(test_proxy_honoured),
		T(test_env_proxy_honoured_when_not_setuid),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
