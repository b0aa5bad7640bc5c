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
 * session, a random ticket, travels through the shared store. */
#define _POSIX_C_SOURCE 200809L /* strdup, strndup */
#include <stdlib.h>
#include <string.h>

#include <apicred/provider.h>

static const apicred_schema s_schema[] = {
	{ "greeting", APICRED_T_STRING, 0, "hello", NULL, "the greeting" },
	{ "password", APICRED_T_STRING, APICRED_F_REQUIRED | APICRED_F_SECRET, NULL, NULL,
	  "a secret" },
	{ NULL, 0, 0, NULL, NULL, NULL }
};

struct state {
	const apicred_host *host;
	char *password;
	size_t len;
};

static int s_init(const apicred_host *host, void **state)
{
	struct state *st = calloc(1, sizeof(*st));
	int rc;

	if (!st)
		return host->error(host, APICRED_ERR_NOMEM, "out of memory");
	rc = host->secret(host, "password", &st->password, &st->len);
	if (rc != APICRED_OK) {
		free(st);
		return rc;
	}
	st->host = host;
	*state = st;
	return APICRED_OK;
}

/* A session of 16 random bytes, in hex. */
static int s_fetch(void *state, const apicred_host *host, const void *previous,
                   apicred_session *out)
{
	unsigned char r[16];
	char *hex;
	int rc = host->random(host, r, sizeof(r));

	if (rc == APICRED_OK)
		rc = host->hex(host, r, sizeof(r), &hex);
	if (rc != APICRED_OK)
		return rc;
	out->data = hex;
	out->lifetime_ms = 600000;
	return APICRED_OK;
}

static void s_session_free(void *state, void *data)
{
	free(data);
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

	for (size_t i = 0; i < len; i++)
		if (!strchr("0123456789abcdef", p[i]) || !p[i])
			return host->error(host, APICRED_ERR_PROTOCOL, "not a ticket");
	if (len != 32)
		return host->error(host, APICRED_ERR_PROTOCOL, "not a ticket");
	*data = strndup(in, len);
	return *data ? APICRED_OK : APICRED_ERR_NOMEM;
}

static int s_apply(void *state, const apicred_host *host, const void *session,
                   const apicred_request *req, apicred_out *out)
{
	struct state *st = state;
	int rc = host->add_header(out, "X-Hello", host->cfg_str(host, "greeting"));

	if (rc == APICRED_OK)
		rc = host->add_header(out, "X-Ticket", session);
	return rc ? rc : host->add_header(out, "X-Password", st->password);
}

static void s_fini(void *state)
{
	struct state *st = state;

	st->host->secret_free(st->host, st->password, st->len);
	free(st);
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
X-Ticket: ????????????????????????????????
X-Password: sb-hello-s3cret"
ticket=$(printf '%s\n' "$OUT" | sed -n 's/^X-Ticket: //p')
inst get greet
is "installed apicred get greet again: exit 0" "$RC" 0
is "installed apicred get greet again: the session came through the shared store" \
	"$(printf '%s\n' "$OUT" | sed -n 's/^X-Ticket: //p')" "$ticket"
inst get both
is "installed apicred get both: exit 0" "$RC" 0
like "installed apicred get both: default greeting, then apikey" "$OUT" "X-Hello: hello
X-Ticket: ????????????????????????????????
X-Password: sb-hello-s3cret
X-Key: sb-hello-s3cret"
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
