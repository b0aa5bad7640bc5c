#!/bin/sh
# bench-env.sh - started by bench programs: starts the sandbox and a confdir
# (tests/integration/lib.sh), prints them, and keeps them until stdin closes.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start >&2
confdir_new >&2
# The hot path as applications run it: a debug trace of every hit would be
# measured instead.
sed 's/level = "debug"/level = "notice"/' "$CONF/apicred.conf" >"$CONF/apicred.conf.new" &&
	mv "$CONF/apicred.conf.new" "$CONF/apicred.conf"
secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2
printf 'SB=%s\nSB_CA=%s\nCONF=%s\nBENCH-ENV-READY\n' "$SB" "$SB_CA" "$CONF"
read _ || true
