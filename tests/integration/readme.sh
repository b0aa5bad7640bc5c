#!/bin/sh
# The README's C example, as extracted and built by tests/drivers.am, run against
# the sandbox's MoMo emulation: it must POST its JSON body, with the content
# type it told apicred, carrying the credentials, and retry once after a 401.
. "$top_srcdir/tests/integration/lib.sh"

PROG="$top_builddir/tests/readme/readme_c"
[ -x "$PROG" ] || bail "$PROG not built"

sandbox_start
confdir_new
sed "s#https://sandbox.momodeveloper.mtn.com/#$SB/momo/#g" \
	"$top_srcdir/conf.d/momo-collection.conf" >"$CONF/conf.d/momo-collection.conf"
chmod 600 "$CONF/conf.d/momo-collection.conf"
secret_file momo.subkey sb-momo-subkey-abcdef
run provision momo-collection
is "provision the MoMo API user" "$RC" 0

# The example takes everything from the environment an application has.
example() {
	RC=0
	APICRED_CONFDIR=$CONF APICRED_MODULEDIR=$APICRED_TEST_MODULEDIR \
		README_ORIGIN="$SB/momo/" $APICRED_TEST_WRAPPER "$PROG" \
		>"$T/ex.out" 2>"$T/ex.err" || RC=$?
	OUT=$(cat "$T/ex.out")
	ERR=$(cat "$T/ex.err")
}

# The body the README sends, read from the README itself.
WANT=$(sed -n 's/^ *static const char json\[\] = "\(.*\)"$/\1/p; s/^ *"\(.*\)";$/\1/p' \
	"$top_srcdir/README.md" | head -n 2 | tr -d '\n' | sed 's/\\"/"/g')
like "the README's body was found" "$WANT" '{"amount"*}}'

example
is "example: exit 0" "$RC" 0
is "example: prints the status" "$OUT" "HTTP 202"
is "example: nothing on stderr" "$ERR" ""
is "server: POST" "$(last momo-rtp method)" POST
is "server: the body" "$(last momo-rtp body)" "$WANT"
is "server: the content type signed is the one sent" \
	"$(last momo-rtp headers.content-type)" application/json
is "server: the application's own header" \
	"$(last momo-rtp headers.x-reference-id)" 0a1c7d4e-59a3-4c6b-9d1f-3e2a5b8c7d60
is "server: the subscription key" \
	"$(last momo-rtp headers.ocp-apim-subscription-key)" sb-momo-subkey-abcdef
like "server: a Bearer token" "$(last momo-rtp headers.authorization)" "Bearer ?*"
is "server: the static header" "$(last momo-rtp headers.x-target-environment)" sandbox

# The server refuses the token once: 401, the report drops it, and the one
# retry fetches a new token and succeeds.
ctl fault momo-rtp invalid_client 1
tok_before=$(count momo-token)
rtp_before=$(count momo-rtp)
example
is "after a 401: exit 0" "$RC" 0
like "after a 401: HTTP 202 last (curl printed the 401's body)" "$OUT" "*}HTTP 202"
is "after a 401: a token, then a new one" "$(count momo-token)" $((tok_before + 2))
is "after a 401: two requests (401, then 202)" "$(count momo-rtp)" $((rtp_before + 2))

# A server that does not answer: the transport error is reported, exit 1.
ctl fault momo-rtp close
example
is "connection dropped: exit 1" "$RC" 1
like "connection dropped: curl's error named" "$ERR" "momo-collection: *"
is "connection dropped: no status" "$OUT" "HTTP 0"

done_testing
