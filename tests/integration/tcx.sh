#!/bin/sh
# tcx provider through the real `apicred` tool against the sandbox's TCX
# emulation: OWTC, TWTC and FTC in each server mode (param, time, none) with
# query, JSON and form parameters; the app pass checked independently with
# openssl(1); failure bodies; TCXTFX drop; the samples; then reauthorize and
# TCXTFX within one process (tests/drivers/signing_sandbox.c).
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new

APP=sb-tcx-app
PUB=sb-tcx-public
MASTER=sb-tcx-master
secret_file tcx.public "$PUB"
secret_file tcx.master "$MASTER"
secret_file bad.public 'sb-tcx-publiX'
secret_file bad.master 'sb-tcx-masteX'

# tcx_service NAME TYPE MODE [KEY = VALUE; ...]
tcx_service() {
	_name=$1 _type=$2 _mode=$3
	shift 3
	_extra=
	case $_type in
	twtc) _extra="base_url = \"$SB/tcx/\";" ;;
	ftc) _extra='master_key = "file:secrets/tcx.master";' ;;
	esac
	service_file "$_name" <<EOF
url = "$SB/tcx/";
stack = ( { provider = "tcx"; type = "$_type"; mode = "$_mode"; app_id = "$APP";
            app_public = "file:secrets/tcx.public"; $_extra $* } );
EOF
}

# pass_ok J PASS: PASS = base64(hex(sha1(J + PUB + dyn)) ":" dyn), by openssl(1)
pass_ok() {
	_plain=$(printf '%s' "$2" | "$OPENSSL" base64 -d -A)
	_hex=${_plain%%:*}
	_dyn=${_plain#*:}
	case $_dyn in *[!a-z0-9]*) return 1 ;; esac
	[ "${#_dyn}" -eq 32 ] || return 1
	[ "$_hex" = "$(printf '%s%s%s' "$1" "$PUB" "$_dyn" | "$OPENSSL" sha1 | sed 's/^.*= *//')" ]
}

QUERY='b=2&a=x+y&_z=%C3%A9t%C3%A9&Z=%26%3D%2B%25%23%22&e='
JSON='{"n":1.0,"t":true,"f":false,"nul":null,"s":"& = + % # \"","u":"\u00e9","i":-7}'

# ---- every type in every mode -------------------------------------------------------

for mode in param time none; do
	ctl reset
	ctl set "{\"tcx_mode\": \"$mode\"}"
	for type in owtc twtc ftc; do
		[ "$type$mode" = twtcparam ] && continue
		svc=$type-$mode
		tcx_service "$svc" "$type" "$mode"
		run apicred request "$svc" "$SB/tcx/api/items?$QUERY"
		is "$svc: GET with query parameters" "$RC" 0
		like "$svc: accepted" "$OUT" '*TCXSSS*'
		is "$svc: X-TCX-TYPE" "$(last tcx headers.x-tcx-type)" "$(echo "$type" | tr a-z A-Z)"
		is "$svc: X-TCX-APP-ID" "$(last tcx headers.x-tcx-app-id)" "$APP"
		run apicred request "$svc" "$SB/tcx/api/items?q=1" -X POST -d "$JSON"
		like "$svc: POST JSON accepted" "$OUT" '*TCXSSS*'
		run apicred request "$svc" "$SB/tcx/api/items?q=1&b=q" -X PUT -d 'b=f&c=x+y%21' \
			-H 'Content-Type: application/x-www-form-urlencoded'
		like "$svc: PUT form accepted" "$OUT" '*TCXSSS*'
		case $type in
		owtc) is "$svc: no X-TCX-TOKEN" "$(last tcx headers.x-tcx-token)" "" ;;
		ftc) is "$svc: X-TCX-TOKEN = base64(master key)" "$(last tcx headers.x-tcx-token)" \
			"$(printf '%s' "$MASTER" | "$OPENSSL" base64 -A)" ;;
		twtc) is "$svc: X-TCX-TOKEN = base64(access token)" \
			"$(last tcx headers.x-tcx-token | "$OPENSSL" base64 -d -A | wc -c | tr -d ' ')" 40 ;;
		esac
	done
	[ "$mode" = param ] || is "twtc-$mode: one authorize per process" "$(count tcx-authorize)" 3
done

# ---- the app pass, checked outside the code under test -------------------------------

ctl reset
ctl set '{"tcx_mode": "param"}'
run apicred request owtc-param "$SB/tcx/api/items?abc=123&_xyz=789&foo=bar&def=456&bar=ghi"
like "README sample: accepted" "$OUT" '*TCXSSS*'
ok "README sample: pass over _xyz=789&abc=123&bar=ghi&def=456&foo=bar&" \
	pass_ok '_xyz=789&abc=123&bar=ghi&def=456&foo=bar&' "$(last tcx headers.x-tcx-app-pass)"
run apicred request owtc-param "$SB/tcx/api/items?a=q&b=q" -X POST -d '{"a":true,"c":1.5,"d":null}'
ok "JSON body wins, PHP casts" pass_ok 'a=1&b=q&c=1.5&d=&' "$(last tcx headers.x-tcx-app-pass)"
run apicred request owtc-param "$SB/tcx/api/items"
ok "no parameters: J is empty" pass_ok '' "$(last tcx headers.x-tcx-app-pass)"
p1=$(last tcx headers.x-tcx-app-pass)
run apicred request owtc-param "$SB/tcx/api/items"
unlike "a fresh dyn per request" "$(last tcx headers.x-tcx-app-pass)" "$p1"

ctl set '{"tcx_mode": "time"}'
run apicred request owtc-time "$SB/tcx/api/items?a=1"
dt=$(last tcx query | tr '&' '\n' | sed -n 's/^tcx_datetime=//p')
ok "time: tcx_datetime is UTC now (YYYYMMDDHHmmss)" "$PYTHON3" -c '
import datetime, sys, time
t = datetime.datetime.strptime(sys.argv[1], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
sys.exit(0 if abs(t.timestamp() - time.time()) < 60 else 1)' "$dt"
ok "time: pass over the datetime" pass_ok "$dt" "$(last tcx headers.x-tcx-app-pass)"

# ---- refusals: HTTP 200 failure bodies, logged with their code -----------------------

ctl reset
ctl set '{"tcx_mode": "param"}'
run apicred -v request owtc-none "$SB/tcx/api/items?a=1"
like "mode mismatch: TCXPFX body" "$OUT" '*TCXPFX*'
like "mode mismatch: logged with code and hint" "$ERR" '*owtc-none*TCXPFX 505003*mode*'

service_file badpub <<EOF
url = "$SB/tcx/";
stack = ( { provider = "tcx"; type = "owtc"; mode = "param"; app_id = "$APP";
            app_public = "file:secrets/bad.public"; } );
EOF
run apicred -v request badpub "$SB/tcx/api/items?a=1"
like "wrong app_public: TCXPFX" "$ERR" '*TCXPFX 505003*'
case $OUT$ERR in *"$PUB"*) _tap_result 1 "wrong app_public: no secret shown" ;;
*) _tap_result 0 "wrong app_public: no secret shown" ;; esac

service_file badid <<EOF
url = "$SB/tcx/";
stack = ( { provider = "tcx"; type = "owtc"; mode = "param"; app_id = "other-app";
            app_public = "file:secrets/tcx.public"; } );
EOF
run apicred -v request badid "$SB/tcx/api/items"
like "unknown app_id: TCXAFX 405002" "$ERR" '*TCXAFX 405002*'

service_file badmaster <<EOF
url = "$SB/tcx/";
stack = ( { provider = "tcx"; type = "ftc"; mode = "param"; app_id = "$APP";
            app_public = "file:secrets/tcx.public"; master_key = "file:secrets/bad.master"; } );
EOF
run apicred -v request badmaster "$SB/tcx/api/items"
like "wrong master key: TCXMKF 505004" "$ERR" '*TCXMKF 505004*'

ctl set '{"tcx_mode": "none"}'
service_file badtwtc <<EOF
url = "$SB/tcx/";
stack = ( { provider = "tcx"; type = "twtc"; mode = "none"; app_id = "$APP";
            base_url = "$SB/tcx"; app_public = "file:secrets/bad.public"; } );
EOF
run apicred get badtwtc
ok "authorize refused: fails" test "$RC" -ne 0
like "authorize refused: TCXAFX 505001, service named" "$ERR" '*badtwtc*TCXAFX 505001*'

ctl reset
ctl set '{"tcx_mode": "none"}'
ctl fault tcx-authorize tcx_fault 1
run apicred request twtc-none "$SB/tcx/api/items"
like "server fault once: retried, accepted" "$OUT" '*TCXSSS*'
is "server fault once: two authorize requests" "$(count tcx-authorize)" 2
ctl fault tcx-authorize tcx_fault 3
run apicred get twtc-none
ok "server fault: fails" test "$RC" -ne 0
like "server fault: TCXERX" "$ERR" '*TCXERX 105002*'

# TCXTFX: tokens that the server considers expired at once.
ctl reset
ctl set '{"tcx_mode": "none", "tcx_token_ttl": 0}'
run apicred -v request twtc-none "$SB/tcx/api/items"
like "TCXTFX: the body" "$OUT" '*TCXTFX*'
like "TCXTFX: logged, token dropped" "$ERR" '*TCXTFX 505005*dropping*'
is "TCXTFX: authorized afresh for the retry" "$(count tcx-authorize)" 2
is "TCXTFX: no reauthorize of the refused token" "$(count tcx-reauthorize)" 0

# ---- configuration refusals and the samples ------------------------------------------

tcx_service twtc-param twtc param
run apicred check twtc-param
ok "twtc + param: refused" test "$RC" -ne 0
like "twtc + param: explained" "$ERR" '*twtc-param*app_pass itself*'

for s in tcx-app tcx-twtc tcx-ftc; do
	sed -e "s|https://api.example/|$SB/tcx/|g" -e "s|\"my-app\"|\"$APP\"|" \
		"$top_srcdir/conf.d/$s.conf" | service_file "sample-$s"
	run apicred check "sample-$s"
	is "sample $s.conf: check passes" "$RC" 0
done
ctl reset
ctl set '{"tcx_mode": "param"}'
run apicred request sample-tcx-app "$SB/tcx/api/items?x=1"
like "sample tcx-app.conf: accepted" "$OUT" '*TCXSSS*'
ctl set '{"tcx_mode": "time"}'
run apicred request sample-tcx-twtc "$SB/tcx/api/items?x=1"
like "sample tcx-twtc.conf: accepted" "$OUT" '*TCXSSS*'
ctl set '{"tcx_mode": "none"}'
run apicred request sample-tcx-ftc "$SB/tcx/api/items?x=1"
like "sample tcx-ftc.conf: accepted" "$OUT" '*TCXSSS*'

# ---- within one process: reauthorize, TCXTFX ------------------------------------------

ctl reset
ctl set '{"tcx_mode": "time"}'
APICRED_TEST_CONFDIR=$CONF
export APICRED_TEST_CONFDIR SB SB_CA
"$top_builddir/tests/drivers/signing_sandbox" tcx twtc-time >"$T/helper.out" 2>"$T/helper.err"
ok_lines <"$T/helper.out"
is "in process: authorize, then authorize afresh after TCXTFX" "$(count tcx-authorize)" 2
is "in process: one reauthorize" "$(count tcx-reauthorize)" 1
is "in process: reauthorize sent base64(refresh)" \
	"$(last tcx-reauthorize body | "$PYTHON3" -c 'import json,sys; print(sorted(json.load(sys.stdin)))')" \
	"['app_id', 'token']"

ctl reset
ctl set '{"tcx_mode": "time"}'
ctl fault tcx-reauthorize tcx_fault 1
"$top_builddir/tests/drivers/signing_sandbox" tcx-renew-fail twtc-time >"$T/helper.out" 2>"$T/helper.err"
ok_lines <"$T/helper.out"
is "in process, refused reauthorize: authorized twice" "$(count tcx-authorize)" 2
like "in process, refused reauthorize: logged" "$(cat "$T/helper.err")" '*reauthorize*authorizing afresh*'

done_testing
