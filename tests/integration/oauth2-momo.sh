#!/bin/sh
# The conf.d samples that use oauth2 (momo-collection, vdms-rules,
# totsco-hub), pointed at the sandbox and used with the real tool: MoMo
# sandbox provisioning, requesttopay end to end with a retry after 401,
# VDMS IDS scopes, TOTSCo's token.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/oauth2-lib.sh"

sandbox_start
confdir_new

# sample NAME SED-SCRIPT: installs conf.d/NAME.conf rewritten for the sandbox.
sample() {
	sed "$2" "$top_srcdir/conf.d/$1.conf" >"$CONF/conf.d/$1.conf"
	chmod 0600 "$CONF/conf.d/$1.conf"
}
mode() { stat -c %a "$1"; }
uuid4_re='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

# ---- MoMo: provisioning -------------------------------------------------------

sample momo-collection "s#https://sandbox.momodeveloper.mtn.com/#$SB/momo/#g"
secret_file momo.subkey sb-momo-subkey-abcdef

run apicred get momo-collection
ok "momo: get before provisioning fails" test "$RC" -ne 0
like "momo: says a client secret is missing" "$ERR" '*momo-collection*client_*'

run apicred provision momo-collection
is "provision: succeeds" "$RC" 0
user=$(cat "$CONF/secrets/momo.user" 2>/dev/null)
key=$(cat "$CONF/secrets/momo.key" 2>/dev/null)
ok "provision: API user is a fresh UUIDv4" sh -c "printf '%s' '$user' | grep -Eq '$uuid4_re'"
ok "provision: API key stored" test -n "$key"
is "provision: user file mode 0600" "$(mode "$CONF/secrets/momo.user")" 600
is "provision: key file mode 0600" "$(mode "$CONF/secrets/momo.key")" 600
like "provision: report names the user" "$OUT" "*$user*"
no_secret "provision: API key not printed" "$OUT$ERR" "$key"
is "provision: X-Reference-Id is the stored user" "$(last momo-apiuser headers.x-reference-id)" "$user"
is "provision: subscription key carried (same origin)" \
	"$(last momo-apiuser headers.ocp-apim-subscription-key)" sb-momo-subkey-abcdef
like "provision: providerCallbackHost sent" "$(last momo-apiuser body)" '*"providerCallbackHost"*"clinic.example"*'
is "provision: API key asked for that user" "$(last momo-apikey path)" "/momo/v1_0/apiuser/$user/apikey"
is "provision: subscription key on the apikey request" \
	"$(last momo-apikey headers.ocp-apim-subscription-key)" sb-momo-subkey-abcdef

run apicred provision momo-collection
ok "provision again: refused" test "$RC" -ne 0
like "provision again: says --force" "$ERR" '*momo-collection*force*'
is "provision again: nothing created remotely" "$(count momo-apiuser)" 1
is "provision again: user file untouched" "$(cat "$CONF/secrets/momo.user")" "$user"

run apicred provision --show momo-collection
is "provision --show: succeeds" "$RC" 0
like "provision --show: callback host" "$OUT" '*providerCallbackHost*clinic.example*'
like "provision --show: target environment" "$OUT" '*targetEnvironment*sandbox*'
is "provision --show: asked for that user" "$(last momo-user path)" "/momo/v1_0/apiuser/$user"

# ---- MoMo: token and requesttopay ------------------------------------------------

run apicred get momo-collection
is "momo get: succeeds" "$RC" 0
like "momo get: subscription key" "$OUT" '*Ocp-Apim-Subscription-Key: sb-momo-subkey-abcdef*'
like "momo get: Bearer although token_type is access_token" "$OUT" '*Authorization: Bearer ?*'
like "momo get: static X-Target-Environment" "$OUT" '*X-Target-Environment: sandbox*'
want=$(printf '%s:%s' "$user" "$key" | base64 | tr -d '\n')
is "momo token: Basic(user:key)" "$(last momo-token headers.authorization)" "Basic $want"
is "momo token: subscription key carried" \
	"$(last momo-token headers.ocp-apim-subscription-key)" sb-momo-subkey-abcdef

rtp='{"amount":"5","currency":"EUR","externalId":"6353636","payer":{"partyIdType":"MSISDN","partyId":"46733123454"},"payerMessage":"hi","payeeNote":"hi"}'
# (No `ctl reset` from here on: it would forget the provisioned user.)
rtp_request() { # REFERENCE-ID
	tok0=$(count momo-token) rtp0=$(count momo-rtp)
	run apicred request momo-collection "$SB/momo/collection/v1_0/requesttopay" -X POST \
		-H "X-Reference-Id: $1" -H 'Content-Type: application/json' -d "$rtp"
	toks=$(($(count momo-token) - tok0)) rtps=$(($(count momo-rtp) - rtp0))
}

rtp_request 0b0e2e1c-4f4e-4a4e-8e8e-1234567890ab
is "requesttopay: succeeds" "$RC" 0
is "requesttopay: one token request" "$toks" 1
is "requesttopay: one call" "$rtps" 1
is "requesttopay: Bearer sent" "$(last momo-rtp headers.authorization | cut -c1-7)" "Bearer "
is "requesttopay: subscription key sent" "$(last momo-rtp headers.ocp-apim-subscription-key)" sb-momo-subkey-abcdef
is "requesttopay: target environment sent" "$(last momo-rtp headers.x-target-environment)" sandbox
is "requesttopay: the application's header kept" "$(last momo-rtp headers.x-reference-id)" 0b0e2e1c-4f4e-4a4e-8e8e-1234567890ab

# The API refuses the token once: the tool reports the 401, the token is
# dropped, a new one is fetched and the call repeated, once.
ctl fault momo-rtp invalid_client 1
rtp_request 0b0e2e1c-4f4e-4a4e-8e8e-1234567890ac
is "requesttopay after 401: succeeds on the retry" "$RC" 0
is "requesttopay after 401: a second token" "$toks" 2
is "requesttopay after 401: two calls" "$rtps" 2

ctl fault momo-rtp invalid_client 2
rtp_request 0b0e2e1c-4f4e-4a4e-8e8e-1234567890ad
ok "requesttopay refused twice: fails" test "$RC" -ne 0
is "requesttopay refused twice: retried only once" "$rtps" 2
ctl fault momo-rtp invalid_client 0

# ---- MoMo: --force and a bad subscription key -----------------------------------

run apicred provision --force momo-collection
is "provision --force: succeeds" "$RC" 0
user2=$(cat "$CONF/secrets/momo.user")
ok "provision --force: a new user" test "$user2" != "$user"
is "provision --force: mode still 0600" "$(mode "$CONF/secrets/momo.user")" 600

secret_file momo.subkey not-the-subscription-key
run apicred provision --force momo-collection
ok "bad subscription key: fails" test "$RC" -ne 0
like "bad subscription key: says 401 and subscription key" "$ERR" '*momo-collection*subscription key*401*'
is "bad subscription key: files untouched" "$(cat "$CONF/secrets/momo.user")" "$user2"
no_secret "bad subscription key: no secret printed" "$OUT$ERR" not-the-subscription-key
secret_file momo.subkey sb-momo-subkey-abcdef

# ---- VDMS IDS -------------------------------------------------------------------------

sample vdms-rules "s#https://id.vdms.io/#$SB/vdms/#g;s#https://api.vdms.io/#$SB/vdms/#g"
secret_file vdms.client sb-vdms-client
secret_file vdms.secret sb-vdms-secret
ctl reset
run apicred request vdms-rules "$SB/vdms/rules"
is "vdms: request succeeds" "$RC" 0
body=$(last vdms-token body)
is "vdms: post auth, id in the body" "$(form_field "$body" client_id)" sb-vdms-client
is "vdms: scope" "$(form_field "$body" scope)" ec.rules
is "vdms: no Basic" "$(last vdms-token headers.authorization)" ""

sample vdms-rules "s#https://id.vdms.io/#$SB/vdms/#g;s#https://api.vdms.io/#$SB/vdms/#g;s#scope = ( \"ec.rules\" );#scope = ( \"ec.rules\", \"ec.purge\" );#"
run apicred get vdms-rules
is "vdms two scopes: succeeds" "$RC" 0
is "vdms two scopes: ec.rules+ec.purge" "$(form_field "$(last vdms-token body)" scope)" 'ec.rules+ec.purge'

sample vdms-rules "s#https://id.vdms.io/#$SB/vdms/#g;s#https://api.vdms.io/#$SB/vdms/#g;s#scope = ( \"ec.rules\" );#scope = \"ec.rules ec.bogus\";#"
run apicred get vdms-rules
ok "vdms unknown scope: fails" test "$RC" -ne 0
like "vdms unknown scope: invalid_scope" "$ERR" '*vdms-rules*invalid_scope*'
is "vdms unknown scope: string scope sent as is" "$(form_field "$(last vdms-token body)" scope)" 'ec.rules+ec.bogus'

# ---- TOTSCo -------------------------------------------------------------------------

# The sample is mTLS + OAuth 2.0 (the mtls layer's files from the sandbox's
# certificates): the hub is the sandbox's mTLS listener.
sample totsco-hub "s#https://hub.totsco.example/#$SB_MTLS/#g"
(umask 077 && mkdir -p "$CONF/certs")
cp "$SB_CERTS/client.pem" "$CONF/certs/totsco-client.pem"
cp "$SB_CERTS/client.key" "$CONF/certs/totsco-client.key"
cp "$SB_CA" "$CONF/certs/totsco-ca.pem"
secret_file totsco.client sb-totsco-client
secret_file totsco.secret sb-totsco-secret
run apicred request totsco-hub "$SB_MTLS/api/letterbox"
is "totsco: request with the token succeeds" "$RC" 0
like "totsco: basic auth" "$(last mtls-token headers.authorization)" 'Basic *'

# Every sample checks clean once its secrets exist.
run apicred check momo-collection vdms-rules totsco-hub
is "samples: apicred check" "$RC" 0

done_testing
