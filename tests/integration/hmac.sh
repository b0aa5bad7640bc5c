#!/bin/sh
# hmac provider (TPV profile) through the real `apicred` tool against the
# sandbox's TPV emulation: the login signature, Authorization + Signature for
# each `sign` option, milliseconds, error bodies and faults, the sample file;
# then a 401 within one process (tests/drivers/signing_sandbox.c).
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new

TOKEN=sb-tpv-token
SECRET=sb-tpv-secret-0123456789abcdef
secret_file tpv.token "$TOKEN"
secret_file tpv.secret "$SECRET"
secret_file bad.secret 'sb-tpv-secret-0123456789abcdeX'
secret_file bad.token 'sb-tpv-tokeX'

# tpv_service NAME [KEY = VALUE; ...]: a TPV service on the sandbox
tpv_service() {
	_name=$1
	shift
	service_file "$_name" <<EOF
url = "$SB/tpv/";
stack = ( { provider = "hmac"; auth_url = "$SB/tpv/api/v1/auth";
            app_token = "file:secrets/tpv.token"; app_secret = "file:secrets/tpv.secret";
            $* } );
EOF
}

# hmac_hex MESSAGE [KEY]: lowercase hex HMAC-SHA256 by openssl(1)
hmac_hex() {
	printf '%s' "$1" | "$OPENSSL" dgst -sha256 -hmac "${2:-$SECRET}" | sed 's/^.*= *//'
}

# qparam QUERY NAME: a raw parameter of a query string
qparam() {
	printf '%s\n' "$1" | tr '&' '\n' | sed -n "s/^$2=//p" | head -n 1
}

no_secret() { # no_secret WHAT TEXT
	case $2 in
	*"$SECRET"* | *"$TOKEN"*) _tap_result 1 "$1" ;;
	*) _tap_result 0 "$1" ;;
	esac
}

# ---- login and the default signature (query) ---------------------------------

tpv_service tpv
run apicred request tpv "$SB/tpv/api/v1/products?brand=7&q=a+b%26c&e=&u=%C3%A9"
is "query: request succeeds" "$RC" 0
like "query: the server's answer" "$OUT" '*Sandbox product*'
is "query: one login" "$(count tpv-auth)" 1
is "login: POST" "$(last tpv-auth method)" POST
lq=$(last tpv-auth query)
is "login: token in the query" "$(qparam "$lq" token)" "$TOKEN"
ts=$(qparam "$lq" timestamp)
ok "login: timestamp is Unix seconds, now" test "$(( ts - $(date +%s) ))" -le 5 -a "$(( $(date +%s) - ts ))" -le 60
is "login: _signature = HMAC(secret, token=T&timestamp=TS)" "$(qparam "$lq" _signature)" \
	"$(hmac_hex "token=$TOKEN&timestamp=$ts")"
auth=$(last tpv headers.authorization)
like "request: Authorization is the login token, no Bearer" "$auth" '?*'
unlike "request: no Bearer" "$auth" 'Bearer*'
is "request: Signature over the query string as sent" "$(last tpv headers.signature)" \
	"$(hmac_hex 'brand=7&q=a+b%26c&e=&u=%C3%A9')"
no_secret "query: no secret in the output" "$OUT$ERR"

run apicred get tpv -u "$SB/tpv/api/v1/products?x=1"
is "get: succeeds" "$RC" 0
like "get: Authorization line" "$OUT" '*Authorization: ?*'
like "get: Signature line" "$OUT" "*Signature: $(hmac_hex 'x=1')*"

# The seed's TPV post: JSON body, no query (Signature over "").
TPV_JSON='{"digital_delivery":"email","channel":"dtd","language":"english","external_id":null,"authorizing_first_name":"Bill","btn":"19181112222","products":[{"program_code":"555"}]}'
run apicred request tpv "$SB/tpv/api/v1/tpv" -X POST -d "$TPV_JSON"
is "tpv post: succeeds" "$RC" 0
like "tpv post: confirmation code" "$OUT" '*"success"*'
is "tpv post: Signature of the empty query" "$(last tpv headers.signature)" "$(hmac_hex '')"

# The server's 400 body explains itself (feedback logs it).
run apicred -v request tpv "$SB/tpv/api/v1/tpv" -X POST -d '{"channel":"phone"}'
ok "400: exit status non-zero" test "$RC" -ne 0
like "400: body printed" "$OUT" '*channel must be defined*'
like "400: logged with the server's text" "$ERR" '*tpv*channel must be defined*'

# ---- the other sign options ----------------------------------------------------

ctl set '{"tpv_sign": "body"}'
tpv_service tpvbody 'sign = "body";'
run apicred request tpvbody "$SB/tpv/api/v1/tpv?ignored=1" -X POST -d "$TPV_JSON"
is "body: request succeeds" "$RC" 0
is "body: Signature over the body" "$(last tpv headers.signature)" "$(hmac_hex "$TPV_JSON")"
# A client that signs the query where the server wants the body is refused.
run apicred -v request tpv "$SB/tpv/api/v1/products?a=1"
ok "sign mismatch: fails" test "$RC" -ne 0
like "sign mismatch: the server says why" "$ERR" '*invalid signature*'

ctl set '{"tpv_sign": "query+body"}'
tpv_service tpvqb 'sign = "query+body";'
run apicred request tpvqb "$SB/tpv/api/v1/tpv?a=1&b=x+y" -X POST -d "$TPV_JSON"
is "query+body: request succeeds" "$RC" 0
is "query+body: Signature over query then body" "$(last tpv headers.signature)" \
	"$(hmac_hex "a=1&b=x+y$TPV_JSON")"

ctl set '{"tpv_sign": "none"}'
tpv_service tpvnone 'sign = "none";'
run apicred request tpvnone "$SB/tpv/api/v1/products?a=1"
is "none: request succeeds" "$RC" 0
is "none: no Signature header" "$(last tpv headers.signature)" ""
run apicred get tpvnone
unlike "none: get prints no Signature" "$OUT" '*Signature:*'

# ---- milliseconds ---------------------------------------------------------------

ctl reset
tpv_service tpvms 'timestamp = "milliseconds";'
run apicred request tpvms "$SB/tpv/api/v1/products"
is "milliseconds: request succeeds" "$RC" 0
lq=$(last tpv-auth query)
ts=$(qparam "$lq" timestamp)
is "milliseconds: 13-digit timestamp" "${#ts}" 13
is "milliseconds: signature over it" "$(qparam "$lq" _signature)" \
	"$(hmac_hex "token=$TOKEN&timestamp=$ts")"

# ---- login failures ---------------------------------------------------------------

service_file badsecret <<EOF
url = "$SB/tpv/";
stack = ( { provider = "hmac"; auth_url = "$SB/tpv/api/v1/auth";
            app_token = "file:secrets/tpv.token"; app_secret = "file:secrets/bad.secret"; } );
EOF
run apicred get badsecret
ok "wrong secret: fails" test "$RC" -ne 0
like "wrong secret: names the service" "$ERR" '*badsecret*'
like "wrong secret: the server's text" "$ERR" '*invalid signature*'
case $ERR in *sb-tpv-secret*) _tap_result 1 "wrong secret: no secret in the message" ;;
*) _tap_result 0 "wrong secret: no secret in the message" ;; esac

service_file badtoken <<EOF
url = "$SB/tpv/";
stack = ( { provider = "hmac"; auth_url = "$SB/tpv/api/v1/auth";
            app_token = "file:secrets/bad.token"; app_secret = "file:secrets/tpv.secret"; } );
EOF
run apicred get badtoken
ok "wrong token: fails" test "$RC" -ne 0
like "wrong token: the server's text" "$ERR" '*invalid application token*'

ctl reset
ctl fault tpv-auth crlf 3
run apicred get tpv
ok "CR LF in auth_token: refused" test "$RC" -ne 0
like "CR LF in auth_token: says so" "$ERR" '*control characters*'
unlike "CR LF in auth_token: nothing injected" "$OUT" '*X-Injected*'

ctl reset
ctl fault tpv-auth badjson 3
run apicred get tpv
ok "garbled login answer: fails" test "$RC" -ne 0
like "garbled login answer: says JSON" "$ERR" '*JSON*'

ctl reset
ctl fault tpv-auth login_failed 1
run apicred request tpv "$SB/tpv/api/v1/products"
is "login 500 once: retried and succeeds" "$RC" 0
is "login 500 once: two logins" "$(count tpv-auth)" 2

# ---- the sample file --------------------------------------------------------------

sed "s|https://portal.example/|$SB/tpv/|g" "$top_srcdir/conf.d/tpv.conf" | service_file sample-tpv
run apicred check sample-tpv
is "sample tpv.conf: check passes" "$RC" 0
run apicred request sample-tpv "$SB/tpv/api/v1/products?x=1"
is "sample tpv.conf: works against the sandbox" "$RC" 0

# ---- within one process: a 401 logs in again ---------------------------------------

ctl reset
APICRED_TEST_CONFDIR=$CONF
export APICRED_TEST_CONFDIR SB SB_CA
"$top_builddir/tests/drivers/signing_sandbox" hmac tpv >"$T/helper.out" 2>"$T/helper.err"
ok_lines <"$T/helper.out"
is "in process: two logins" "$(count tpv-auth)" 2

done_testing
