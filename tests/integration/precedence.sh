#!/bin/sh
# What the manuals promise about where things come from: the module
# directory's precedence (-m, $APICRED_MODULEDIR, apicred.conf, built-in),
# and client_id as an identifier that may be a literal in a 0644 file while
# client_secret may not.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new
secret_file k sb-apikey-0123456789
service_file keyed <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/k"; } );
EOF
mkdir -p "$T/empty"
# apicred.conf names a directory without modules.
printf 'moduledir = "%s";\n' "$T/empty" >>"$CONF/apicred.conf"

tool() { # tool ARGS: the tool without run's -m
	RC=0
	"$top_builddir/tools/apicred" -c "$CONF" "$@" >"$T/o" 2>"$T/e" || RC=$?
	OUT=$(cat "$T/o") ERR=$(cat "$T/e")
}
tool get keyed
is "apicred.conf's moduledir is used" "$RC" 1
like "... and named when the provider is missing" "$ERR" "*$T/empty*"
APICRED_MODULEDIR=$APICRED_TEST_MODULEDIR tool get keyed
is "\$APICRED_MODULEDIR wins over apicred.conf" "$RC" 0
APICRED_MODULEDIR=$T/empty tool -m "$APICRED_TEST_MODULEDIR" get keyed
is "-m wins over \$APICRED_MODULEDIR" "$RC" 0

# ---- client_id is no secret --------------------------------------------------
secret_file gen.secret 's3cr:t+/%&=é'
service_file lit-id 644 <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "sb-client"; client_secret = "file:secrets/gen.secret"; } );
EOF
run get lit-id
is "literal client_id in a 0644 file: accepted" "$RC" 0
like "... and a token obtained with it" "$OUT" "Authorization: Bearer ?*"
service_file lit-secret 644 <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "sb-client"; client_secret = "not-the-secret"; } );
EOF
run get lit-secret
is "literal client_secret in a 0644 file: refused" "$RC" 1
like "... naming client_secret" "$ERR" "*client_secret*literal*"
unlike "... without the value" "$ERR" "*not-the-secret*"

done_testing
