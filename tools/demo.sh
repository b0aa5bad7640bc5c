#!/bin/sh
# The apicred demo (`./run.sh demo`): starts the local HTTPS sandbox that
# emulates the seed APIs, writes a configuration directory with one service
# per seed system pointed at it, and shows for each what `apicred get` and
# `apicred request` do. A failing step is reported and the demo goes on.
#
# Environment: APICRED_BUILDDIR (default: the source tree) holds the build.
set -u

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
top_builddir=${APICRED_BUILDDIR:-$top_srcdir}
APICRED_TEST_MODULEDIR=$top_builddir/providers/.libs
PYTHON3=${PYTHON3:-$(command -v python3)}
OPENSSL=${OPENSSL:-$(command -v openssl)}
export top_srcdir top_builddir APICRED_TEST_MODULEDIR PYTHON3 OPENSSL

if [ ! -x "$top_builddir/tools/apicred" ]; then
	echo "demo: $top_builddir/tools/apicred not built: run ./run.sh demo" >&2
	exit 1
fi
. "$top_srcdir/tests/integration/lib.sh"

STEPS=0
GOOD=0
FAILED=

if [ -t 1 ]; then B=$(printf '\033[1m'); G=$(printf '\033[32m'); R=$(printf '\033[31m'); N=$(printf '\033[0m')
else B= G= R= N=; fi

section() { # name, what it shows
	printf '\n%s== %s%s: %s\n' "$B" "$1" "$N" "$2"
	SERVICE=$1
}

indent() { sed 's/^/    /'; }

# step EXPECTED-EXIT apicred-args...: runs the tool and shows what happened.
step() {
	want=$1; shift
	STEPS=$((STEPS + 1))
	printf '  $ apicred'
	for a in "$@"; do
		case $a in
		*[!A-Za-z0-9_./:=@%+,-]* | '') printf " '%s'" "$a" ;;
		*) printf ' %s' "$a" ;;
		esac
	done
	echo
	run "$@"
	if [ -n "$OUT" ]; then
		printf '%s\n' "$OUT" | indent
	elif [ "$1" = request ] && [ "$RC" = 0 ]; then
		echo "    (2xx with an empty body)"
	fi
	[ -n "$ERR" ] && printf '%s\n' "$ERR" | indent
	if [ "$RC" = "$want" ]; then
		GOOD=$((GOOD + 1))
		printf '  %s-> ok%s\n' "$G" "$N"
	else
		FAILED="$FAILED $SERVICE"
		printf '  %s-> FAILED (exit %s, expected %s)%s\n' "$R" "$RC" "$want" "$N"
	fi
}

echo "${B}apicred demo${N}: outbound API credentials by service name."
echo "Starting the HTTPS sandbox on 127.0.0.1 (certificates made now with openssl)..."
if ! sandbox_start; then
	echo "demo: the sandbox did not start" >&2
	exit 1
fi
confdir_new
echo "Sandbox at $SB; configuration in $CONF"
echo "Every credential below is a sandbox test value."

# ---- the services -----------------------------------------------------------
secret_file totsco.apikey sb-apikey-0123456789
service_file totsco-apikey <<EOF
description = "TOTSCo hub: standard TLS + API key";
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/totsco.apikey"; } );
EOF

secret_file edgecast.token 11111111-2222-3333-4444-555555555555
secret_file edgecast.backup 99999999-8888-7777-6666-555555555555
service_file edgecast <<EOF
description = "Edgecast REST API: TOK: token with a backup";
url = "$SB/";
stack = ( { provider = "tok"; token = "file:secrets/edgecast.token";
            backup_token = "file:secrets/edgecast.backup"; } );
EOF

secret_file momo.subkey sb-momo-subkey-abcdef
service_file momo-collection <<EOF
description = "MTN MoMo Collection (sandbox): subscription key + OAuth 2.0";
url = "$SB/";
headers = ( "X-Target-Environment: sandbox" );
stack = (
  { provider = "apikey"; header = "Ocp-Apim-Subscription-Key";
    key = "file:secrets/momo.subkey"; },
  { provider = "oauth2"; token_url = "$SB/momo/collection/token/";
    client_id = "file:secrets/momo.user"; client_secret = "file:secrets/momo.key";
    provision_url = "$SB/momo/v1_0"; callback_host = "demo.example"; }
);
EOF

secret_file vdms.client sb-vdms-client
secret_file vdms.secret sb-vdms-secret
service_file vdms-rules <<EOF
description = "VDMS Rules Engine: OAuth 2.0 (post), scope ec.rules, 300 s tokens";
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/vdms/connect/token";
            client_id = "file:secrets/vdms.client"; client_secret = "file:secrets/vdms.secret";
            client_auth = "post"; scope = ( "ec.rules" ); } );
EOF

secret_file tpv.token sb-tpv-token
secret_file tpv.secret sb-tpv-secret-0123456789abcdef
service_file tpv <<EOF
description = "TPV vendor API: HMAC-SHA256 login + signed requests";
url = "$SB/";
stack = ( { provider = "hmac"; auth_url = "$SB/tpv/api/v1/auth";
            app_token = "file:secrets/tpv.token"; app_secret = "file:secrets/tpv.secret"; } );
EOF

secret_file tcx.public sb-tcx-public
service_file tcx-app <<EOF
description = "TCX one-way (OWTC), app pass over the sorted parameters";
url = "$SB/";
stack = ( { provider = "tcx"; type = "owtc"; app_id = "sb-tcx-app";
            app_public = "file:secrets/tcx.public"; mode = "param"; } );
EOF

secret_file totsco.client sb-totsco-client
secret_file totsco.secret sb-totsco-secret
service_file totsco-hub <<EOF
description = "TOTSCo hub: mutual TLS + OAuth 2.0 (token endpoint behind mTLS)";
url = "${SB_MTLS:-https://127.0.0.1:1}/";
stack = (
  { provider = "mtls"; cert = "$SB_CERTS/client.pem"; key = "$SB_CERTS/client.key";
    ca = "$SB_CA"; },
  { provider = "oauth2"; token_url = "${SB_MTLS:-https://127.0.0.1:1}/oauth2/token";
    client_id = "file:secrets/totsco.client"; client_secret = "file:secrets/totsco.secret"; }
);
EOF

# ---- what apicred sees --------------------------------------------------------
section "configuration" "the services and providers apicred finds; check resolves every secret,
   so it flags momo-collection, whose API user and key are only created by provision below"
step 0 list
step 1 check

section totsco-apikey "an API key in a header"
step 0 get totsco-apikey
step 0 request totsco-apikey "$SB/apikey/echo"

section edgecast "Authorization: TOK:<token>; the sandbox has revoked the primary, so the
   403 is reported, the layer fails over to the backup and the request is retried once"
ctl set '{"tok_primary": "00000000-0000-0000-0000-000000000000"}'
step 0 get edgecast
step 0 request edgecast "$SB/tok/echo"
ctl reset

section momo-collection "provision a sandbox API user and key, then an OAuth 2.0 token
   (Basic apiUser:apiKey, subscription key carried to the token endpoint) and a requesttopay"
step 0 provision momo-collection
step 0 provision --show momo-collection
step 0 check momo-collection
step 0 get momo-collection
ref=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || "$PYTHON3" -c 'import uuid; print(uuid.uuid4())')
step 0 request momo-collection "$SB/momo/collection/v1_0/requesttopay" -X POST \
	-H "X-Reference-Id: $ref" \
	-d '{"amount":"5","currency":"EUR","externalId":"demo-1","payer":{"partyIdType":"MSISDN","partyId":"46733123450"},"payerMessage":"demo","payeeNote":"demo"}'

section vdms-rules "OAuth 2.0 client credentials with client_secret_post and a scope; --json shows expires_at"
step 0 get vdms-rules --json
step 0 request vdms-rules "$SB/vdms/rules"

section tpv "HMAC-SHA256 login, then Authorization: <auth_token> and a Signature over the query"
step 0 get tpv -u "$SB/tpv/api/v1/products?page=1"
step 0 request tpv "$SB/tpv/api/v1/products?page=1"

section tcx-app "TCX OWTC headers with an app pass over the sorted request parameters"
ctl set '{"tcx_mode": "param"}'
step 0 get tcx-app -u "$SB/tcx/api/hello?b=2&a=1"
step 0 request tcx-app "$SB/tcx/api/hello?b=2&a=1"
ctl reset

section totsco-hub "client certificate (key kept in memory, never printed) + OAuth 2.0 token fetched over mTLS"
step 0 get totsco-hub --json
step 0 request totsco-hub "${SB_MTLS:-https://127.0.0.1:1}/api/hello"

section "bad input" "clear errors naming the service: an unknown service, a URL outside the service's origin"
step 1 get no-such-service
step 1 request totsco-apikey "https://127.0.0.2:1/elsewhere"

# ---- summary ----------------------------------------------------------------------
echo
if [ "$GOOD" = "$STEPS" ]; then
	echo "${B}demo: all $STEPS steps succeeded${N}"
	exit 0
fi
failed_list=$(printf '%s\n' $FAILED | sort -u | tr '\n' ' ')
echo "${B}demo: $GOOD of $STEPS steps succeeded; failed in: ${failed_list% }${N}"
exit 1
