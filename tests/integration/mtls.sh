#!/bin/sh
# mtls.sh - client certificates and TLS policy through the real apicred tool
# against the sandbox's TLS listeners (tests/sandbox/SPEC.md): every failure
# the issue lists is a clear error naming its cause, never a crash, and no
# output ever holds key material; mTLS alone and mTLS + OAuth 2.0 work end
# to end, the certificate reaches the token endpoint by the same-origin rule
# only, and a rotated certificate takes effect in a running process.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new

# The sandbox's certificates, copied so that modes and rotation are ours.
mkdir -m 700 "$CONF/certs"
cp "$SB_CERTS"/*.pem "$SB_CERTS"/*.key "$SB_CERTS"/client.p12 "$CONF/certs/"
chmod 600 "$CONF"/certs/*.key "$CONF/certs/client.p12"

# The first two base64 lines of every key hold its private scalar (the
# rest of an EC key is the public point, which the certificate rightly
# shows too): none may appear in any output. client-enc.key decrypted is
# client.key's PKCS#8, as is the key in client.p12.
for k in "$CONF"/certs/*.key; do
	grep -v -e '-----' -e ':' -e '^$' "$k" | head -n 2
done >"$T/keylines"

# no_key WHAT: neither $OUT nor $ERR holds key material.
no_key() {
	if printf '%s\n%s\n' "$OUT" "$ERR" | grep -q -F -e 'PRIVATE KEY' -f "$T/keylines"; then
		ok "$1: no key material in the output" false
	else
		ok "$1: no key material in the output" true
	fi
}

# fails WHAT PATTERN...: the last run failed, said so on stderr as
# "apicred: SERVICE: ..." matching every glob, did not crash (exit < 128),
# and printed no key material.
fails() {
	what=$1
	shift
	diag "$(printf '%s\n' "$ERR" | tail -n 1)"
	ok "$what: fails" test "$RC" -ne 0
	ok "$what: exits, no crash (rc $RC)" test "$RC" -lt 128
	for p in "$@"; do
		like "$what: says why" "$ERR" "*$p*"
	done
	no_key "$what"
}

# succeeds WHAT: the last run exited 0 and printed no key material.
succeeds() {
	ok "$1: succeeds" test "$RC" -eq 0
	[ "$RC" -eq 0 ] || diag "stderr: $ERR"
	no_key "$1"
}

# mtls NAME URL LAYER-BODY [MORE-LAYERS]: a service with an mtls layer.
# Some sandbox certificates live 30 days: warn 7 days ahead only, so that
# the expiry warning shows where it is tested and nowhere else.
mtls() {
	service_file "$1" <<EOF
url = "$2/";
stack = ( { provider = "mtls"; expiry_warn_days = 7; $3 } $4 );
EOF
}

json() { # json KEY: a TLS item of `get --json` in $OUT ("None" if absent)
	printf '%s' "$OUT" | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["tls"].get(sys.argv[1]))' "$1"
}

client='cert = "certs/client.pem"; key = "certs/client.key";'
apikey_layer=', { provider = "apikey"; key = "file:secrets/apikey"; }'
secret_file apikey sb-apikey-0123456789
secret_file keypass sb-keypass
secret_file wrongpass not-the-key-password
secret_file p12pass sb-p12pass
secret_file wrongp12 not-the-p12-password
secret_file totsco.client sb-totsco-client
secret_file totsco.secret sb-totsco-secret
secret_file oauth.client sb-client
secret_file oauth.secret 's3cr:t+/%&=é'

# ---- happy paths: mTLS alone --------------------------------------------

# The mTLS listener's token endpoint is an API that wants nothing but the
# client certificate at the TLS level (the form is the request's own data).
mtls mtls-only "$SB_MTLS" "$client"
run request mtls-only "$SB_MTLS/oauth2/token" -X POST \
	-d 'grant_type=client_credentials&client_id=sb-totsco-client&client_secret=sb-totsco-secret'
succeeds "mtls-only request"
like "mtls-only: answered" "$OUT" '*access_token*'
like "mtls-only: the server saw the client certificate" "$(last mtls-token client_cert_subject)" '*CN=sb-client,*'

run get mtls-only --json
succeeds "get --json"
is "get --json: subject" "$(json cert_subject)" "$("$OPENSSL" x509 -in "$CONF/certs/client.pem" -noout -subject -nameopt sep_comma_plus_space,utf8 | sed 's/^subject=//')"
is "get --json: issuer" "$(json cert_issuer)" "$("$OPENSSL" x509 -in "$CONF/certs/client.pem" -noout -issuer -nameopt sep_comma_plus_space,utf8 | sed 's/^issuer=//')"
is "get --json: serial" "$(json cert_serial)" "$("$OPENSSL" x509 -in "$CONF/certs/client.pem" -noout -serial | sed 's/^serial=//')"
is "get --json: SHA-256 fingerprint" "$(json cert_sha256)" "$("$OPENSSL" x509 -in "$CONF/certs/client.pem" -noout -fingerprint -sha256 | sed 's/^.*=//')"
like "get --json: expiry" "$(json cert_not_after)" '20[0-9][0-9]-[01][0-9]-[0-3][0-9]T*Z'
is "get --json: no key item" "$(json key)" "None"
run get mtls-only
succeeds "get (text)"
like "get (text): shows the subject" "$OUT" '*sb-client*'

# From here on, services are an mtls layer + the API key, against
# /apikey/echo of the listener at hand ({"ok":true} with the key).
echo_url="$SB_MTLS/apikey/echo"
saw_cert() { last mtls-apikey client_cert_subject; }

ctl reset
mtls enc-key "$SB_MTLS" 'cert = "certs/client.pem"; key = "certs/client-enc.key"; key_password = "file:secrets/keypass";' "$apikey_layer"
run request enc-key "$echo_url"
succeeds "encrypted key with the right password"
like "encrypted key: the server saw the client certificate" "$(saw_cert)" '*CN=sb-client,*'

ctl reset
mtls p12 "$SB_MTLS" 'pkcs12 = "certs/client.p12"; pkcs12_password = "file:secrets/p12pass";' "$apikey_layer"
run request p12 "$echo_url"
succeeds "PKCS#12 with the right password"
like "PKCS#12: the server saw the client certificate" "$(saw_cert)" '*CN=sb-client,*'

# A CA directory of the layer's own replaces the global CA file: one that
# holds only another CA makes the sandbox's server certificate unknown.
mkdir "$CONF/cadir-good" "$CONF/cadir-bad"
cp "$SB_CERTS/ca.pem" "$CONF/cadir-good/"
cp "$SB_CERTS/client-ca.pem" "$CONF/cadir-bad/"
"$OPENSSL" rehash "$CONF/cadir-good" "$CONF/cadir-bad"
mtls cadir-good "$SB_MTLS" "$client ca = \"cadir-good\";" "$apikey_layer"
run request cadir-good "$echo_url"
succeeds "ca = directory holding the server's CA"
mtls cadir-bad "$SB_MTLS" "$client ca = \"cadir-bad\";" "$apikey_layer"
run request cadir-bad "$echo_url"
fails "ca = directory without the server's CA" "apicred: cadir-bad:" "certificate"
mtls cafile-bad "$SB_MTLS" "$client ca = \"certs/client-ca.pem\";" "$apikey_layer"
run request cafile-bad "$echo_url"
fails "ca = file without the server's CA" "apicred: cafile-bad:" "certificate"

# Expiry ahead: a warning naming the file and the date, and it still works.
run get mtls-only
unlike "no expiry warning outside expiry_warn_days" "$ERR" '*expires on*'
ctl reset
mtls soon "$SB_MTLS" 'cert = "certs/soon.pem"; key = "certs/soon.key";' "$apikey_layer"
sed -i 's/expiry_warn_days = 7;/expiry_warn_days = 30;/' "$CONF/conf.d/soon.conf"
run request soon "$echo_url"
succeeds "certificate expiring in 5 days"
like "certificate expiring in 5 days: warned" "$ERR" '*soon.pem*expires on 20*in 4 day*'
like "certificate expiring in 5 days: presented" "$(saw_cert)" '*CN=sb-soon,*'

# ---- refused client material: each names the file and the reason ---------

service_file nocert <<EOF
url = "$SB_MTLS/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
# In TLS 1.3 the server judges the client certificate after the client's
# handshake is done: its alert reaches libcurl at the first read (the
# sandbox lingers so that the alert is not lost to a connection reset).
run request nocert "$echo_url"
fails "no client certificate" "apicred: nocert:" "certificate required"

# One handle, the service with a certificate first: the next service of the
# same origin has none, and the handle must not lend it the first one's.
OUT=$("$top_builddir/tests/drivers/curl_reuse" "$CONF" "$APICRED_TEST_MODULEDIR" "$echo_url" \
	enc-key nocert enc-key 2>&1)
like "one handle: the service with a certificate" "$(printf '%s\n' "$OUT" | sed -n 1p)" '1 200'
like "one handle: the next service presents no certificate" "$(printf '%s\n' "$OUT" | sed -n 2p)" \
	'2 error: *'
like "one handle: the first service again" "$(printf '%s\n' "$OUT" | sed -n 3p)" '3 200'

mtls otherca "$SB_MTLS" 'cert = "certs/other-ca-client.pem"; key = "certs/other-ca-client.key";' "$apikey_layer"
run request otherca "$echo_url"
fails "client certificate from another CA" "apicred: otherca:" "unknown ca"

mtls expired "$SB_MTLS" 'cert = "certs/expired.pem"; key = "certs/expired.key";'
run request expired "$echo_url"
fails "expired certificate" "apicred: expired:" "expired.pem" "expired on"
run get expired
fails "expired certificate (get)" "expired.pem" "expired on"

mtls future "$SB_MTLS" 'cert = "certs/future.pem"; key = "certs/future.key";'
run get future
fails "not yet valid certificate" "future.pem" "not valid before"

mtls mismatch "$SB_MTLS" 'cert = "certs/client.pem"; key = "certs/mismatch.key";'
run request mismatch "$echo_url"
fails "key that does not match" "apicred: mismatch:" "mismatch.key" "does not match" "client.pem"

mtls wrongpass "$SB_MTLS" 'cert = "certs/client.pem"; key = "certs/client-enc.key"; key_password = "file:secrets/wrongpass";'
run request wrongpass "$echo_url"
fails "encrypted key, wrong password" "apicred: wrongpass:" "client-enc.key" "wrong password"
case "$ERR" in *not-the-key-password*) ok "wrong password not echoed" false ;; *) ok "wrong password not echoed" true ;; esac

mtls nopass "$SB_MTLS" 'cert = "certs/client.pem"; key = "certs/client-enc.key";'
run get nopass
fails "encrypted key, no password" "client-enc.key" "key_password"

mtls wrongp12 "$SB_MTLS" 'pkcs12 = "certs/client.p12"; pkcs12_password = "file:secrets/wrongp12";'
run request wrongp12 "$echo_url"
fails "PKCS#12, wrong password" "apicred: wrongp12:" "client.p12" "wrong pkcs12_password"
case "$ERR" in *not-the-p12-password*) ok "wrong p12 password not echoed" false ;; *) ok "wrong p12 password not echoed" true ;; esac

cp "$CONF/certs/client.key" "$CONF/certs/loose.key"
chmod 644 "$CONF/certs/loose.key"
mtls loose "$SB_MTLS" 'cert = "certs/client.pem"; key = "certs/loose.key";'
run request loose "$echo_url"
fails "key file mode 0644" "apicred: loose:" "loose.key" "mode 0644"
cp "$CONF/certs/client.p12" "$CONF/certs/loose.p12"
chmod 604 "$CONF/certs/loose.p12"
mtls loosep12 "$SB_MTLS" 'pkcs12 = "certs/loose.p12"; pkcs12_password = "file:secrets/p12pass";'
run get loosep12
fails "PKCS#12 file mode 0604" "loose.p12" "mode 0604"

# ---- refused servers ----------------------------------------------------

service_file badhost <<EOF
url = "$SB_BADHOST/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
run request badhost "$SB_BADHOST/apikey/echo"
fails "server certificate for another host name" "apicred: badhost:" "127.0.0.1"

service_file unknownca <<EOF
url = "$SB_UNKNOWNCA/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
run request unknownca "$SB_UNKNOWNCA/apikey/echo"
fails "server certificate from an unknown CA" "apicred: unknownca:" "certificate"

pin=$("$OPENSSL" x509 -in "$SB_CERTS/server.pem" -noout -pubkey | "$OPENSSL" pkey -pubin -outform der |
	"$OPENSSL" dgst -sha256 -binary | "$OPENSSL" base64 -A)
otherpin=$("$OPENSSL" x509 -in "$SB_CERTS/badhost.pem" -noout -pubkey | "$OPENSSL" pkey -pubin -outform der |
	"$OPENSSL" dgst -sha256 -binary | "$OPENSSL" base64 -A)
mtls badpin "$SB_MTLS" "$client pinned_pubkey = \"sha256//$otherpin\";" "$apikey_layer"
run request badpin "$echo_url"
fails "pin mismatch" "apicred: badpin:" "pinned"
mtls goodpin "$SB_MTLS" "$client pinned_pubkey = ( \"sha256//$otherpin\", \"sha256//$pin\" );" "$apikey_layer"
run request goodpin "$echo_url"
succeeds "pin match (second of two)"
mtls malformedpin "$SB_MTLS" "$client pinned_pubkey = \"sha256//nonsense\";"
run get malformedpin
fails "malformed pin" "pinned_pubkey"

mtls tls13-on-12 "$SB_TLS12" 'min_tls = "1.3";' "$apikey_layer"
run request tls13-on-12 "$SB_TLS12/apikey/echo"
fails "TLS 1.2 server with min_tls 1.3" "apicred: tls13-on-12:"
like "TLS 1.2 server with min_tls 1.3: a protocol version error" "$ERR" '*[Vv]ersion*'
mtls tls13-on-13 "$SB_TLS13" 'min_tls = "1.3";' "$apikey_layer"
run request tls13-on-13 "$SB_TLS13/apikey/echo"
succeeds "TLS 1.3 server with min_tls 1.3"
mtls tls12-on-12 "$SB_TLS12" '' "$apikey_layer"
run request tls12-on-12 "$SB_TLS12/apikey/echo"
succeeds "TLS 1.2 server with the default min_tls"

# ---- mTLS + OAuth 2.0 (the TOTSCo hub) ----------------------------------

# hub NAME TOKEN_URL [EXTRA-OAUTH2-KEYS]: mtls above oauth2, url = SB_MTLS.
hub() {
	service_file "$1" <<EOF
url = "$SB_MTLS/";
stack = (
  { provider = "mtls"; cert = "certs/$4client.pem"; key = "certs/$4client.key"; expiry_warn_days = 7; },
  { provider = "oauth2"; token_url = "$2"; client_id = "file:secrets/totsco.client";
    client_secret = "file:secrets/totsco.secret"; $3 }
);
EOF
}

ctl reset
hub totsco-hub "$SB_MTLS/oauth2/token"
run request totsco-hub "$SB_MTLS/api/letterbox"
succeeds "totsco-hub: mTLS + OAuth 2.0 request"
like "totsco-hub: the API saw the client certificate" "$OUT" '*CN=sb-client,*'
is "totsco-hub: one token request" "$(count mtls-token)" 1
like "totsco-hub: the token request carried the client certificate (same origin)" "$(last mtls-token client_cert_subject)" '*CN=sb-client,*'


# Token endpoint on another origin (the main listener asks for, but does not
# need, a client certificate, and records whether one came): not carried...
ctl reset
service_file other-origin <<EOF
url = "$SB_MTLS/";
stack = (
  { provider = "mtls"; $client expiry_warn_days = 7; },
  { provider = "oauth2"; token_url = "$SB/oauth2/token"; client_id = "file:secrets/oauth.client";
    client_secret = "file:secrets/oauth.secret"; }
);
EOF
run get other-origin
succeeds "token endpoint on another origin"
is "another origin: the token request did not carry the certificate" "$(last token client_cert_subject)" ""
like "another origin: but the token request was made" "$(last token method)" POST

# ... unless the layer says carry = "always".
service_file other-origin-carry <<EOF
url = "$SB_MTLS/";
stack = (
  { provider = "mtls"; $client expiry_warn_days = 7; },
  { provider = "oauth2"; token_url = "$SB/oauth2/token"; client_id = "file:secrets/oauth.client";
    client_secret = "file:secrets/oauth.secret"; carry = "always"; }
);
EOF
run get other-origin-carry
succeeds "token endpoint on another origin, carry = always"
like "carry = always: the token request carried the certificate" "$(last token client_cert_subject)" '*CN=sb-client,*'

# The same listener by another name is another origin too: a token endpoint
# that requires the certificate then fails the handshake, clearly.
lh=$(printf '%s' "$SB_MTLS" | sed 's/127\.0\.0\.1/localhost/')
ctl reset
hub lh-hub "$lh/oauth2/token"
run request lh-hub "$SB_MTLS/api/letterbox"
fails "token endpoint on another origin that needs the certificate" "apicred: lh-hub:" \
	"layer 2 (oauth2)" "certificate required"
is "no token issued without the certificate" "$(count mtls-token)" 0
hub lh-hub-carry "$lh/oauth2/token" 'carry = "always";'
run request lh-hub-carry "$SB_MTLS/api/letterbox"
succeeds "same, with carry = always"

# ---- the conf.d samples -------------------------------------------------

# Copied into a confdir of their own with the files they name in place,
# they pass the tool's check: every key is one the providers accept.
SAVED=$CONF
confdir_new
mkdir -m 700 "$CONF/certs"
cp "$SB_CERTS/client.pem" "$CONF/certs/totsco-client.pem"
cp "$SB_CERTS/client.key" "$CONF/certs/totsco-client.key"
cp "$SB_CERTS/client.pem" "$CONF/certs/client.pem"
cp "$SB_CERTS/client.key" "$CONF/certs/client.key"
cp "$SB_CA" "$CONF/certs/totsco-ca.pem"
cp "$SB_CA" "$CONF/certs/server-ca.pem"
chmod 600 "$CONF"/certs/*.key
secret_file totsco.client sb-totsco-client
secret_file totsco.secret sb-totsco-secret
secret_file totsco.apikey sb-apikey-0123456789
for s in totsco-hub totsco-apikey mtls-only; do
	cp "$top_srcdir/conf.d/$s.conf" "$CONF/conf.d/"
	chmod 600 "$CONF/conf.d/$s.conf"
	run check "$s"
	ok "conf.d/$s.conf passes apicred check" test "$RC" -eq 0
	[ "$RC" -eq 0 ] || diag "$ERR"
done
run get mtls-only --json
succeeds "conf.d/mtls-only.conf: get"
like "conf.d/mtls-only.conf: shows the certificate" "$(json cert_subject)" '*CN=sb-client'

# The totsco-hub sample, pointed at the sandbox's mTLS listener, end to end.
ctl reset
sed "s#https://hub.totsco.example/#$SB_MTLS/#g" "$top_srcdir/conf.d/totsco-hub.conf" \
	>"$CONF/conf.d/totsco-hub.conf"
cp "$SB_CA" "$CONF/certs/totsco-ca.pem"
run request totsco-hub "$SB_MTLS/api/letterbox"
succeeds "conf.d/totsco-hub.conf: request through the sandbox"
like "conf.d/totsco-hub.conf: Bearer with the client certificate" "$OUT" '*"ok": *true*CN=sb-client,*'
like "conf.d/totsco-hub.conf: token request with the certificate, Basic auth" \
	"$(last mtls-token client_cert_subject) $(last mtls-token headers.authorization)" '*CN=sb-client,* Basic *'
CONF=$SAVED

# ---- rotation in a running process --------------------------------------

# The admin replaces the files (new inodes, as mv does). The token obtained
# with the old certificate must not be reused: the sandbox binds tokens to
# the certificate and answers 401 otherwise.
rotate_cmd="cp '$CONF/certs/client2.pem' '$CONF/certs/cur.pem.new' && mv '$CONF/certs/cur.pem.new' '$CONF/certs/curclient.pem' && cp '$CONF/certs/client2.key' '$CONF/certs/cur.key.new' && mv '$CONF/certs/cur.key.new' '$CONF/certs/curclient.key'"
for how in reload 5; do
	cp "$CONF/certs/client.pem" "$CONF/certs/curclient.pem"
	cp "$CONF/certs/client.key" "$CONF/certs/curclient.key"
	chmod 600 "$CONF/certs/curclient.key"
	hub rotating "$SB_MTLS/oauth2/token" "" cur
	ctl reset
	OUT=$("$top_builddir/tests/drivers/mtls_rotate" "$CONF" "$APICRED_TEST_MODULEDIR" \
		rotating "$SB_MTLS/api/letterbox" "$rotate_cmd" "$how" 2>"$T/rotate.err")
	RC=$?
	ERR=$(cat "$T/rotate.err")
	ok "rotation ($how): the process ran to the end" test "$RC" -eq 0
	like "rotation ($how): before, with the old certificate" "$(printf '%s\n' "$OUT" | sed -n 1p)" '1 200 *CN=sb-client,*'
	like "rotation ($how): token reused before rotation" "$(printf '%s\n' "$OUT" | sed -n 2p)" '2 200 *'
	like "rotation ($how): after, the new certificate and a token for it" "$(printf '%s\n' "$OUT" | sed -n 3p)" '3 200 *CN=sb-client2,*'
	is "rotation ($how): a second token, for the new certificate" "$(count mtls-token)" 2
	no_key "rotation ($how)"
done

done_testing
