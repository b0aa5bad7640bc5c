#!/bin/sh
# A provider written outside the tree: install apicred into a staging
# directory, build a provider against the *installed* provider.h found with
# `pkg-config --cflags apicred`, drop it into a module directory and use it
# with the installed `apicred` tool. This is what a third party does.
. "$top_srcdir/tests/integration/lib.sh"

# ---- install into $T/inst --------------------------------------------------
# From the build tree, as `make install DESTDIR=...` would be run by a
# packager; the parent make's flags (TESTS=..., -j jobserver) stay out.
DEST="$T/inst"
(cd "$top_builddir" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -s install DESTDIR="$DEST") >"$T/install.log" 2>&1
ok "make install DESTDIR=\$T/inst" test $? -eq 0 || cat "$T/install.log" >&2

# Where things went: ask the staged .pc rather than guessing the layout.
PC=$(find "$DEST" -name apicred.pc -path '*/pkgconfig/*' | head -n 1)
ok "apicred.pc installed" test -f "$PC"
PREFIX=$(pkg-config --variable=prefix "$PC")
STAGED="$DEST$PREFIX"
export PKG_CONFIG_PATH="$(dirname "$PC")"
export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"
pcvar() { pkg-config --define-variable=prefix="$STAGED" --variable="$1" apicred; }
INCLUDEDIR=$(pcvar includedir)
LIBDIR=$(pcvar libdir)
MODULEDIR=$(pcvar moduledir)
BINDIR="$STAGED/bin"
CFLAGS_APICRED=$(pkg-config --define-variable=prefix="$STAGED" --cflags apicred)

ok "provider.h installed" test -f "$INCLUDEDIR/apicred/provider.h"
ok "apicred.h installed" test -f "$INCLUDEDIR/apicred/apicred.h"
ok "libapicred.so.1 installed" test -e "$LIBDIR/libapicred.so.1"
ok "the apicred tool installed" test -x "$BINDIR/apicred"
ok "apikey provider installed in the module directory" test -f "$MODULEDIR/apikey.so"
ok "tok provider installed in the module directory" test -f "$MODULEDIR/tok.so"
like "pkg-config --cflags points into the staged install" "$CFLAGS_APICRED" "*-I$INCLUDEDIR*"
case "$CFLAGS_APICRED" in
*"$top_srcdir"*) ok "pkg-config --cflags does not point at the source tree" false ;;
*) ok "pkg-config --cflags does not point at the source tree" true ;;
esac

# ---- a provider of our own ---------------------------------------------
mkdir -p "$T/hello" "$T/modules"
cat >"$T/hello/hello.c" <<'EOF'
/* hello: greets with a header; its secret goes into a second one. Its
 * session, a random ticket, travels through the shared store. It leans on
 * the host services of minor 1: the core checks its URL, header name and
 * non-empty values, reads its motd file, parses the motd's JSON once,
 * checks token text, parses the request's query and says why fetch runs. */
#define _POSIX_C_SOURCE 200809L /* strdup, strndup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

static const apicred_schema s_schema[] = {
	{ "greeting", APICRED_T_STRING, APICRED_F_NONEMPTY, "hello", NULL, "the greeting" },
	{ "password", APICRED_T_STRING,
	  APICRED_F_REQUIRED | APICRED_F_SECRET | APICRED_F_NONEMPTY, NULL, NULL, "a secret" },
	{ "header", APICRED_T_HEADER_NAME, 0, "X-Hello", NULL, "the greeting's header" },
	{ "home", APICRED_T_URL, 0, NULL, NULL, "a home page; X-Home is its hello/ page" },
	{ "motd", APICRED_T_STRING, 0, NULL, NULL, "a JSON file {\"text\", \"by\"}" },
	{ "sessionless", APICRED_T_BOOL, 0, "false", NULL, "no ticket" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

struct state {
	const apicred_host *host;
	char *password;
	size_t len;
	char *home, *motd;
};

static void s_fini(void *state)
{
	struct state *st = state;

	if (st->password)
		st->host->secret_free(st->host, st->password, st->len);
	free(st->home);
	free(st->motd);
	free(st);
}

/* "text (by)" from the motd file: one read, one JSON parse. */
static int s_motd(const apicred_host *host, struct state *st)
{
	static const char *const paths[] = { "text", "by" };
	char *data, *v[2];
	size_t len;
	int rc = host->read_file(host, "motd", &data, &len);

	if (rc != APICRED_OK)
		return rc;
	rc = host->json_get_many(host, data, len, 2, paths, v);
	host->wipe_free(host, data, len);
	if (rc != APICRED_OK)
		return rc;
	if (!v[0])
		rc = host->error(host, APICRED_ERR_CONFIG, "motd (line %d): no \"text\"",
		                 host->cfg_line(host, "motd"));
	else if (!(st->motd = malloc(strlen(v[0]) + (v[1] ? strlen(v[1]) : 0) + 4)))
		rc = host->error(host, APICRED_ERR_NOMEM, "out of memory");
	else
		sprintf(st->motd, v[1] ? "%s (%s)" : "%s", v[0], v[1]);
	free(v[0]);
	free(v[1]);
	return rc;
}

static int s_init(const apicred_host *host, void **state)
{
	struct state *st;
	int rc;

	if (!APICRED_HOST_HAS(host, json_get_many))
		return host->error(host, APICRED_ERR_ABI, "this core is older than minor 1");
	if (!(st = calloc(1, sizeof(*st))))
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	st->host = host;
	rc = host->secret(host, "password", &st->password, &st->len);
	if (rc == APICRED_OK)
		rc = host->check_text(host, APICRED_ERR_SECRET, "password", st->password, st->len);
	if (rc == APICRED_OK && host->cfg_str(host, "home"))
		rc = host->url_join(host, host->cfg_str(host, "home"), "hello/", &st->home);
	if (rc == APICRED_OK && host->cfg_str(host, "motd"))
		rc = s_motd(host, st);
	if (rc == APICRED_OK && host->cfg_bool(host, "sessionless"))
		rc = host->no_session(host);
	if (rc != APICRED_OK) {
		s_fini(st);
		return rc;
	}
	*state = st;
	return APICRED_OK;
}

/* A session of 16 random bytes in hex, then '/' and why it was fetched. */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	unsigned char r[16];
	char *hex, *ticket;
	int rc = host->random(host, r, sizeof(r));

	if (rc == APICRED_OK)
		rc = host->hex(host, r, sizeof(r), &hex);
	if (rc != APICRED_OK)
		return rc;
	ticket = malloc(strlen(hex) + 3);
	if (ticket)
		sprintf(ticket, "%s/%d", hex, host->fetch_reason(host, previous));
	free(hex);
	if (!ticket)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	out->data = ticket;
	out->lifetime_ms = 600000;
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	struct state *st = state;

	st->host->wipe_free(st->host, data, APICRED_WIPE_STR);
}

static int s_export(void *state, const apicred_host *host, const void *data, void **out,
                    size_t *len)
{
	*len = strlen(data);
	*out = strdup(data);
	return *out ? APICRED_OK : APICRED_ERR_NOMEM;
}

static int s_import(void *state, const apicred_host *host, const void *in, size_t len,
                    void **data)
{
	const char *p = in;

	if (len != 34 || strspn(p, "0123456789abcdef") != 32 || p[32] != '/' ||
	    p[33] < '1' || p[33] > '4')
		return host->error(host, APICRED_ERR_PROTOCOL, "not a ticket");
	*data = strndup(in, len);
	return *data ? APICRED_OK : APICRED_ERR_NOMEM;
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct state *st = state;
	const apicred_query_item *items;
	size_t n;
	char count[24], first[64];
	int rc = host->add_header(out, host->cfg_str(host, "header"),
	                          host->cfg_str(host, "greeting"));

	if (rc == APICRED_OK && session)
		rc = host->add_header(out, "X-Ticket", session);
	if (rc == APICRED_OK && st->home)
		rc = host->add_header(out, "X-Home", st->home);
	if (rc == APICRED_OK && st->motd)
		rc = host->add_header(out, "X-Motd", st->motd);
	if (rc == APICRED_OK && req->url &&
	    (rc = host->request_query(host, req, NULL, NULL, &items, &n)) == APICRED_OK) {
		snprintf(count, sizeof(count), "%zu", n);
		rc = host->add_header(out, "X-Query-Items", count);
		if (rc == APICRED_OK && n) {
			/* Slices of the URL, not NUL-terminated. */
			snprintf(first, sizeof(first), "%.*s", (int)items[0].name_len,
			         items[0].name);
			rc = host->add_header(out, "X-Query-First", first);
		}
	}
	if (rc == APICRED_OK && req->content_type)
		rc = host->add_header(out, "X-Body-Type", req->content_type);
	return rc ? rc : host->add_header(out, "X-Password", st->password);
}

static const apicred_vtable_v1 s_vtable = {
	.name = "hello", .schema = s_schema,
	.init = s_init, .fetch = s_fetch, .session_free = s_session_free,
	.apply = s_apply, .fini = s_fini,
	.session_export = s_export, .session_import = s_import,
};

APICRED_PROVIDER_V1(s_vtable)
EOF
${CC:-cc} -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror -fPIC -shared \
	$CFLAGS_APICRED -o "$T/modules/hello.so" "$T/hello/hello.c" 2>"$T/cc.log"
ok "hello.so builds against the installed headers alone" test $? -eq 0 || cat "$T/cc.log" >&2
# The headers the compiler actually read: the staged ones, not the tree's.
DEPS=$(${CC:-cc} -M $CFLAGS_APICRED "$T/hello/hello.c" 2>/dev/null)
like "provider.h came from the staged install" "$DEPS" "*$INCLUDEDIR/apicred/provider.h*"
case "$DEPS" in
*"$top_srcdir/include"*) ok "no header came from the source tree" false ;;
*) ok "no header came from the source tree" true ;;
esac

# ---- the installed tool uses it -------------------------------------------
confdir_new "file:$T/store"
secret_file hello.password 'sb-hello-s3cret'
service_file greet <<'EOF'
url = "https://127.0.0.1/";
stack = ( { provider = "hello"; greeting = "bonjour"; password = "file:secrets/hello.password"; } );
EOF
service_file both <<'EOF'
url = "https://127.0.0.1/";
stack = (
  { provider = "hello"; password = "file:secrets/hello.password"; },
  { provider = "apikey"; key = "file:secrets/hello.password"; header = "X-Key"; }
);
EOF
# The installed apikey module next to ours: one module directory.
cp "$MODULEDIR/apikey.so" "$T/modules/"

# The installed binary, the installed library (not the build tree's).
inst() {
	LD_LIBRARY_PATH="$LIBDIR" "$BINDIR/apicred" -c "$CONF" -m "$T/modules" "$@" \
		>"$T/out" 2>"$T/err"
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
}
inst get greet
is "installed apicred get greet: exit 0" "$RC" 0
like "installed apicred get greet: our provider's headers" "$OUT" "X-Hello: bonjour
X-Ticket: ????????????????????????????????/1
X-Password: sb-hello-s3cret"
ticket=$(printf '%s\n' "$OUT" | sed -n 's/^X-Ticket: //p')
inst get greet
is "installed apicred get greet again: exit 0" "$RC" 0
is "installed apicred get greet again: the session came through the shared store" \
	"$(printf '%s\n' "$OUT" | sed -n 's/^X-Ticket: //p')" "$ticket"
inst get both
is "installed apicred get both: exit 0" "$RC" 0
like "installed apicred get both: default greeting, then apikey" "$OUT" "X-Hello: hello
X-Ticket: ????????????????????????????????/1
X-Password: sb-hello-s3cret
X-Key: sb-hello-s3cret"

# ---- the host services of minor 1 -----------------------------------------
# request_query: the request as sent (the layer above adds its query
# parameter first); the content type resolved by the core; no_session.
service_file query <<'EOF'
url = "https://127.0.0.1/";
stack = (
  { provider = "apikey"; key = "file:secrets/hello.password"; in = "query"; query = "k"; },
  { provider = "hello"; password = "file:secrets/hello.password"; sessionless = true; }
);
EOF
inst get query -u 'https://127.0.0.1/x?a=1&&b=2#frag' -d '  {"j": 1}'
is "get query: exit 0" "$RC" 0
like "request_query: three items, the apikey's appended" "$OUT" "*X-Query-Items: 3
X-Query-First: a
*"
like "the core resolved the body's content type (JSON by its look)" "$OUT" \
	"*X-Body-Type: application/json*"
unlike "no_session: a sessionless layer has no ticket" "$OUT" "*X-Ticket*"
inst get query -u 'https://127.0.0.1/x' -d 'a=1'
like "a body that is not JSON is a form" "$OUT" "*X-Body-Type: application/x-www-form-urlencoded*"
like "request_query: no query but the apikey's" "$OUT" "*X-Query-Items: 1
X-Query-First: k
*"
inst check query
is "check query (no session to fetch): exit 0" "$RC" 0

# read_file, json_get_many, url_join, a header name from the schema.
printf '{"text": "be kind", "by": "the admin"}' >"$CONF/motd.json"
chmod 644 "$CONF/motd.json"
service_file motd <<'EOF'
url = "https://127.0.0.1/";
stack = ( { provider = "hello"; password = "file:secrets/hello.password";
            motd = "motd.json"; home = "https://127.0.0.1/site//"; header = "X-Bonjour"; } );
EOF
inst get motd
is "get motd: exit 0" "$RC" 0
like "read_file + json_get_many: the motd" "$OUT" "*X-Motd: be kind (the admin)*"
like "url_join: below the home page, one '/'" "$OUT" "*X-Home: https://127.0.0.1/site/hello/*"
like "the configured header name" "$OUT" "X-Bonjour: hello*"
chmod 666 "$CONF/motd.json"
inst get motd
ok "read_file: a world-writable motd is refused" test "$RC" -ne 0
like "read_file: names the key and the file" "$ERR" "*motd*motd.json*"
chmod 644 "$CONF/motd.json"

# The core checks the schema's types and APICRED_F_NONEMPTY, with file:line.
service_file bad <<'EOF'
url = "https://127.0.0.1/";
stack = ( { provider = "hello"; password = "file:secrets/hello.password";
            home = "ftp://127.0.0.1/";
            header = "X Hello";
            greeting = ""; } );
EOF
inst check bad
ok "check bad: fails" test "$RC" -ne 0
like "T_URL: the line of home" "$ERR" "*bad.conf:3:*'home' must be an http:// or https:// URL*"
like "T_HEADER_NAME: the line of header" "$ERR" "*bad.conf:4:*'header' must be a header name*"
like "F_NONEMPTY: the line of greeting" "$ERR" "*bad.conf:5:*'greeting' must not be empty*"
secret_file empty ''
service_file nopass <<'EOF'
url = "https://127.0.0.1/";
stack = ( { provider = "hello";
            password = "file:secrets/empty"; } );
EOF
inst get nopass
ok "an empty secret: get fails" test "$RC" -ne 0
like "F_NONEMPTY on a secret: names the key and its line" "$ERR" \
	"*password (line 3): the secret is empty*"
secret_file ctl "$(printf 'pass\tword')"
service_file ctl <<'EOF'
url = "https://127.0.0.1/";
stack = ( { provider = "hello"; password = "file:secrets/ctl"; } );
EOF
inst get ctl
ok "check_text: a secret with a control character fails" test "$RC" -ne 0
like "check_text: says why" "$ERR" "*password: control characters*"

inst providers
is "installed apicred providers: exit 0" "$RC" 0
like "installed apicred providers lists hello" "$OUT" "*hello*"
like "installed apicred providers lists apikey" "$OUT" "*apikey*"
inst check greet
is "installed apicred check greet: exit 0" "$RC" 0

# The installed tool really runs on the installed library.
LIBS_USED=$(LD_LIBRARY_PATH="$LIBDIR" ldd "$BINDIR/apicred" | grep libapicred)
like "the installed tool loads the installed libapicred" "$LIBS_USED" "*$LIBDIR/libapicred.so.1*"

done_testing
