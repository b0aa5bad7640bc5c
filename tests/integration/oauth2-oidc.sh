#!/bin/sh
# oauth2 client authentication and DPoP through the real tool against
# oidc-provider (tests/oidc/server.js, the npm package pinned in
# tests/oidc/package-lock.json, installed into the build tree by run.sh with
# `npm ci`): every client_auth method gets a token, the server's
# introspection shows who it was issued to and what it is bound to, and its
# resource route takes a DPoP request and refuses a replayed proof.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/oauth2-lib.sh"

OIDC_MODULES=$top_builddir/tests/oidc/node_modules
NODE=${NODE:-node}
command -v "$NODE" >/dev/null 2>&1 ||
	bail "node not found: install Debian's nodejs (run.sh installs it)"
[ -f "$OIDC_MODULES/oidc-provider/package.json" ] ||
	bail "oidc-provider is not installed in $top_builddir/tests/oidc: run ./run.sh build, or (cd $top_builddir/tests/oidc && npm ci) with tests/oidc/package*.json"
command -v curl >/dev/null 2>&1 || bail "curl not found (run.sh installs it)"

# ---- keys, certificates and the server -------------------------------------
D=$T/oidc
mkdir -p "$D/app" || bail "cannot make $D"
sh "$top_srcdir/tests/sandbox/mkcerts.sh" "$D" >"$T/mkcerts.log" 2>&1 ||
	bail "mkcerts.sh failed: $(cat "$T/mkcerts.log")"
(
	set -e
	cd "$D"
	umask 077
	"$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
	"$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-wrong.key
	"$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key
	"$OPENSSL" pkcs8 -topk8 -v2 aes-256-cbc -in ec.key -passout pass:ec-pass -out ec-enc.key
	"$OPENSSL" pkey -in rsa.key -pubout -out rsa.pub
	"$OPENSSL" pkey -in ec.key -pubout -out ec.pub
	"$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout self.key -subj "/CN=sb-self-signed" -days 30 -out self.pem
) >"$T/keys.log" 2>&1 || bail "making keys failed: $(cat "$T/keys.log")"

cp "$top_srcdir/tests/oidc/server.js" "$D/app/server.js"
ln -s "$OIDC_MODULES" "$D/app/node_modules"
"$NODE" "$D/app/server.js" "$D" </dev/null >"$D/server.out" 2>&1 &
SB_PID=$! # lib.sh's exit trap stops it
_i=0
while [ ! -f "$D/oidc.port" ]; do
	kill -0 "$SB_PID" 2>/dev/null || { SB_PID=; bail "oidc-provider exited: $(cat "$D/server.out")"; }
	_i=$((_i + 1))
	[ "$_i" -le 400 ] || bail "oidc-provider not listening after 20 s: $(cat "$D/server.out")"
	sleep 0.05
done
ISS=https://127.0.0.1:$(cat "$D/oidc.port")
SB_CA=$D/ca.pem # confdir_new trusts it
export SB_CA
confdir_new
(umask 077 && mkdir -p "$CONF/keys" && cp "$D"/*.key "$D"/*.pem "$CONF/keys/")

# introspect TOKEN: the server's introspection answer (JSON)
introspect() {
	curl -sS --cacert "$D/ca.pem" -u introspector:introspector-secret \
		--data-urlencode "token=$1" "$ISS/token/introspection"
}
# json FIELD: a top-level or dotted field of the JSON on stdin ("" if absent)
json() {
	"$PYTHON3" -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("/"):
    v=v.get(k) if isinstance(v,dict) else None
print("" if v is None else (json.dumps(v) if isinstance(v,bool) else v))' "$1"
}
# token: the access token in the last `apicred get` output
token() { printf '%s\n' "$OUT" | sed -n 's/^Authorization: [A-Za-z]* //p'; }
# x5t FILE: base64url SHA-256 of a certificate's DER (RFC 8705 §3.1)
x5t() {
	"$OPENSSL" x509 -in "$1" -outform der | "$OPENSSL" dgst -sha256 -binary |
		base64 | tr '+/' '-_' | tr -d '=\n'
}

# ---- private_key_jwt ---------------------------------------------------------
for case in "RS256 rsa.key rsa1" "PS256 rsa.key rsa1" "ES256 ec.key ec1"; do
	# shellcheck disable=SC2086 # three words on purpose
	set -- $case
	service_file "pkjwt-$1" <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "pkjwt";
            client_auth = "private_key_jwt"; client_key = "file:keys/$2";
            assertion_alg = "$1"; kid = "$3"; } );
EOF
	run apicred get "pkjwt-$1"
	is "private_key_jwt $1: token issued" "$RC" 0
	[ "$RC" -eq 0 ] || diag "$ERR"
	like "private_key_jwt $1: Bearer token" "$OUT" 'Authorization: Bearer ?*'
	intro=$(introspect "$(token)")
	is "private_key_jwt $1: introspection: active" "$(printf '%s' "$intro" | json active)" true
	is "private_key_jwt $1: introspection: client_id" "$(printf '%s' "$intro" | json client_id)" pkjwt
done

# An encrypted PKCS#8 key with its password; the algorithm from the key type.
secret_file ec.pass ec-pass
service_file pkjwt-enc <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "pkjwt";
            client_auth = "private_key_jwt"; client_key = "file:keys/ec-enc.key";
            client_key_password = "file:secrets/ec.pass"; kid = "ec1"; } );
EOF
run apicred get pkjwt-enc
is "private_key_jwt, encrypted PKCS#8 key: token issued" "$RC" 0

# assertion_audience: the issuer is an audience oidc-provider accepts too.
service_file pkjwt-aud <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "pkjwt";
            client_auth = "private_key_jwt"; client_key = "file:keys/rsa.key";
            assertion_audience = "$ISS"; } );
EOF
run apicred get pkjwt-aud
is "private_key_jwt, assertion_audience = issuer: token issued" "$RC" 0

# A key the server does not know is refused, in the server's own words.
service_file pkjwt-wrong <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "pkjwt";
            client_auth = "private_key_jwt"; client_key = "file:keys/rsa-wrong.key";
            kid = "rsa1"; } );
EOF
run apicred get pkjwt-wrong
ok "private_key_jwt, wrong key: refused" test "$RC" -ne 0
like "private_key_jwt, wrong key: the service and the server's error" "$ERR" \
	'*pkjwt-wrong*invalid_client*'
like "private_key_jwt, wrong key: the server's description" "$ERR" '*client authentication failed*'

# ---- client_secret_jwt -----------------------------------------------------
secret_file csjwt.secret 'csjwt-secret-0123456789abcdefghijklmnopqrstuvwxyz'
secret_file csjwt.bad 'csjwt-secret-0123456789abcdefghijklmnopqrstuvwxyZ'
for s in secret bad; do
	service_file "csjwt-$s" <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "csjwt";
            client_auth = "client_secret_jwt"; client_secret = "file:secrets/csjwt.$s"; } );
EOF
done
run apicred get csjwt-secret
is "client_secret_jwt: token issued" "$RC" 0
is "client_secret_jwt: introspection: client_id" "$(introspect "$(token)" | json client_id)" csjwt
run apicred get csjwt-bad
ok "client_secret_jwt, wrong secret: refused" test "$RC" -ne 0
like "client_secret_jwt, wrong secret: the server's error" "$ERR" '*invalid_client*'
no_secret "client_secret_jwt: no secret in the output" "$OUT$ERR" 'csjwt-secret-0123'

# ---- tls_client_auth and self_signed_tls_client_auth --------------------------
# The mtls layer above supplies the certificate; no client_secret at all.
mtls_service() { # NAME CLIENT_ID METHOD CERT KEY
	service_file "$1" <<EOF
url = "$ISS/";
stack = (
  { provider = "mtls"; cert = "keys/$4"; key = "keys/$5"; ca = "keys/ca.pem"; },
  { provider = "oauth2"; token_url = "$ISS/token"; client_id = "$2"; client_auth = "$3"; }
);
EOF
}
mtls_service tls tls tls_client_auth client.pem client.key
run apicred get tls
is "tls_client_auth: token issued" "$RC" 0
[ "$RC" -eq 0 ] || diag "$ERR"
intro=$(introspect "$(token)")
is "tls_client_auth: introspection: client_id" "$(printf '%s' "$intro" | json client_id)" tls
is "tls_client_auth: introspection: cnf.x5t#S256 is the certificate's" \
	"$(printf '%s' "$intro" | json 'cnf/x5t#S256')" "$(x5t "$D/client.pem")"

mtls_service selfsigned selfsigned self_signed_tls_client_auth self.pem self.key
run apicred get selfsigned
is "self_signed_tls_client_auth: token issued" "$RC" 0
[ "$RC" -eq 0 ] || diag "$ERR"
intro=$(introspect "$(token)")
is "self_signed_tls_client_auth: introspection: client_id" \
	"$(printf '%s' "$intro" | json client_id)" selfsigned
is "self_signed_tls_client_auth: introspection: cnf.x5t#S256 is the certificate's" \
	"$(printf '%s' "$intro" | json 'cnf/x5t#S256')" "$(x5t "$D/self.pem")"

# Another client's certificate is refused by the server.
mtls_service selfsigned-wrong selfsigned self_signed_tls_client_auth client.pem client.key
run apicred get selfsigned-wrong
ok "self_signed_tls_client_auth, unregistered certificate: refused" test "$RC" -ne 0
like "self_signed_tls_client_auth, unregistered certificate: the server's error" "$ERR" \
	'*invalid_client*'

# ---- the FAPI-style sample ---------------------------------------------------
sed "s#https://api.bank.example/#$ISS/#g" "$top_srcdir/conf.d/fapi-client.conf" |
	service_file fapi-client
secret_file fapi.client fapi
(umask 077 && mkdir -p "$CONF/certs" && cp "$D/client.pem" "$CONF/certs/fapi-client.pem" &&
	cp "$D/client.key" "$CONF/certs/fapi-client.key" && cp "$D/ca.pem" "$CONF/certs/fapi-ca.pem" &&
	cp "$D/rsa.key" "$CONF/keys/fapi-signing.key")
run apicred get fapi-client
is "conf.d/fapi-client.conf: token issued" "$RC" 0
[ "$RC" -eq 0 ] || diag "$ERR"
intro=$(introspect "$(token)")
is "conf.d/fapi-client.conf: introspection: client_id" "$(printf '%s' "$intro" | json client_id)" fapi
is "conf.d/fapi-client.conf: introspection: scope" "$(printf '%s' "$intro" | json scope)" accounts
is "conf.d/fapi-client.conf: introspection: bound to the certificate" \
	"$(printf '%s' "$intro" | json 'cnf/x5t#S256')" "$(x5t "$D/client.pem")"

# ---- DPoP ------------------------------------------------------------------
secret_file basic.secret basic-secret
dpop_service() { # NAME [EXTRA]
	service_file "$1" <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "basic";
            client_secret = "file:secrets/basic.secret"; dpop = true; ${2:-} } );
EOF
}
dpop_service dpop
run apicred get dpop -u "$ISS/resource?x=1#frag"
is "dpop: token issued" "$RC" 0
[ "$RC" -eq 0 ] || diag "$ERR"
like "dpop: Authorization: DPoP" "$OUT" '*Authorization: DPoP ?*'
proof=$(printf '%s\n' "$OUT" | sed -n 's/^DPoP: //p')
ok "dpop: a DPoP proof header" test -n "$proof"
# The proof's header and claims, decoded by python3.
claims=$(printf '%s' "$proof" | "$PYTHON3" -c 'import base64,hashlib,json,sys
p=sys.stdin.read().split(".")
d=lambda s: json.loads(base64.urlsafe_b64decode(s+"="*(-len(s)%4)))
h,c=d(p[0]),d(p[1])
j=h["jwk"]
jkt=base64.urlsafe_b64encode(hashlib.sha256(json.dumps({"crv":j["crv"],"kty":j["kty"],"x":j["x"],"y":j["y"]},separators=(",",":")).encode()).digest()).decode().rstrip("=")
print(json.dumps({"typ":h["typ"],"alg":h["alg"],"htm":c["htm"],"htu":c["htu"],"jkt":jkt}))')
is "dpop: proof typ" "$(printf '%s' "$claims" | json typ)" dpop+jwt
is "dpop: proof alg" "$(printf '%s' "$claims" | json alg)" ES256
is "dpop: proof htu without query and fragment" "$(printf '%s' "$claims" | json htu)" "$ISS/resource"
intro=$(introspect "$(token)")
is "dpop: introspection: client_id" "$(printf '%s' "$intro" | json client_id)" basic
is "dpop: introspection: token_type DPoP" "$(printf '%s' "$intro" | json token_type)" DPoP
is "dpop: introspection: cnf.jkt is the proof key's thumbprint" \
	"$(printf '%s' "$intro" | json cnf/jkt)" "$(printf '%s' "$claims" | json jkt)"

# The resource server accepts the request once; the same proof again is a replay.
auth=$(printf '%s\n' "$OUT" | sed -n 's/^Authorization: //p')
resource_curl() {
	curl -sS --cacert "$D/ca.pem" -H "Authorization: $auth" -H "DPoP: $proof" \
		-o "$T/res.body" -w '%{http_code}' "$ISS/resource?x=1"
}
is "dpop: resource accepts the proof" "$(resource_curl)" 200
is "dpop: resource: issued to the client" "$(json client_id <"$T/res.body")" basic
is "dpop: resource refuses the replayed proof" "$(resource_curl)" 401
like "dpop: replay: the server's reason" "$(cat "$T/res.body")" '*replayed*'

# Through `apicred request` (apicred_curl_apply + apicred_curl_report): each
# request gets a fresh proof.
run apicred request dpop "$ISS/resource"
is "dpop: request: 200" "$RC" 0
is "dpop: request: accepted by the resource" "$(printf '%s' "$OUT" | json ok)" true
run apicred request dpop -X POST -d '{"a":1}' "$ISS/resource"
is "dpop: request POST: accepted (htm POST)" "$(printf '%s' "$OUT" | json htm)" POST
run apicred request dpop "$ISS/resource"
is "dpop: a second request: fresh proof accepted" "$RC" 0

# The resource server wants a nonce: a 401 use_dpop_nonce with DPoP-Nonce,
# which apicred_curl_report hands to the layer; one retry carries it.
run apicred -v request dpop "$ISS/resource-nonce"
is "dpop: resource nonce: 200 after one retry" "$RC" 0
[ "$RC" -eq 0 ] || diag "$OUT" "$ERR"
ok "dpop: resource nonce: the proof carried the server's nonce" \
	test -n "$(printf '%s' "$OUT" | json nonce)"
like "dpop: resource nonce: the tool retried once" "$ERR" '*retrying once*'

# The token endpoint wants a nonce: use_dpop_nonce, then one retry with it.
dpop_service dpop-asnonce 'headers = ( "X-Test-Nonce: 1" );'
run apicred -v get dpop-asnonce -u "$ISS/resource"
is "dpop: token endpoint nonce: token issued after one retry" "$RC" 0
[ "$RC" -eq 0 ] || diag "$ERR"
like "dpop: token endpoint nonce: asked for, then retried" "$ERR" '*wants a DPoP nonce*'
is "dpop: token endpoint nonce: exactly two token requests" \
	"$(grep -c 'POST https://127.0.0.1:[0-9]*/token ->' "$T/run.err")" 2
is "dpop: token endpoint nonce: a DPoP token" \
	"$(introspect "$(token)" | json token_type)" DPoP

# Without dpop the same server issues a bearer token.
service_file nodpop <<EOF
url = "$ISS/";
stack = ( { provider = "oauth2"; token_url = "$ISS/token"; client_id = "basic";
            client_secret = "file:secrets/basic.secret"; } );
EOF
run apicred get nodpop
like "no dpop: Bearer token" "$OUT" 'Authorization: Bearer ?*'
ok "no dpop: no proof" ! grep -q '^DPoP:' "$T/run.out"
is "no dpop: introspection: no cnf" "$(introspect "$(token)" | json cnf)" ""

done_testing
