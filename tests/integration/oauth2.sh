#!/bin/sh
# oauth2 provider through the real tool against the sandbox's generic token
# endpoint: client authentication, form fields, header shaping, token types,
# error bodies and faults.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/oauth2-lib.sh"

sandbox_start
confdir_new

AWKWARD='s3cr:t+/%&=é'
secret_file gen.id sb-client
secret_file gen.secret "$AWKWARD"

# gen: basic (the default) with the awkward secret.
service_file gen <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF

# ---- client authentication ------------------------------------------------

run apicred get gen
is "basic: get succeeds" "$RC" 0
like "basic: Bearer token" "$OUT" 'Authorization: Bearer ?*'
# RFC 6749 2.3.1: each part form-encoded, then joined and base64-encoded.
want=$(printf '%s' 'sb-client:s3cr%3At%2B%2F%25%26%3D%C3%A9' | base64 | tr -d '\n')
is "basic: id and secret form-encoded before base64" "$(last token headers.authorization)" "Basic $want"
body=$(last token body)
is "basic: grant_type" "$(form_field "$body" grant_type)" client_credentials
is "basic: no secret in the body" "$(form_field "$body" client_secret)" ""
is "basic: form content type" "$(last token headers.content-type)" application/x-www-form-urlencoded
no_secret "basic: no secret in the output" "$OUT$ERR" "$AWKWARD" 's3cr%3A'

service_file genpost <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token"; client_auth = "post";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF
run apicred get genpost
is "post: get succeeds" "$RC" 0
like "post: Bearer token" "$OUT" 'Authorization: Bearer ?*'
body=$(last token body)
is "post: client_id in the body" "$(form_field "$body" client_id)" sb-client
is "post: secret form-encoded in the body" "$(form_field "$body" client_secret)" 's3cr%3At%2B%2F%25%26%3D%C3%A9'
is "post: no Authorization header" "$(last token headers.authorization)" ""

# A refused secret is an error; the other method is never tried behind it.
secret_file bad.secret 's3cr:t+/%&=e'
service_file genbad <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/bad.secret"; } );
EOF
ctl reset
run apicred get genbad
ok "wrong secret: fails" test "$RC" -ne 0
like "wrong secret: names the service" "$ERR" '*genbad*'
like "wrong secret: server's reason kept" "$ERR" '*invalid_client*'
is "wrong secret: exactly one token request (no fallback to post)" "$(count token)" 1
no_secret "wrong secret: no secret in the message" "$OUT$ERR" 's3cr'

# ---- form fields and extra headers ------------------------------------------

service_file fields <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret";
            scope = ( "read:all", "write" ); audience = "https://api.example/";
            resource = "urn:example:res"; params = { tenant = "a b&c=d"; };
            headers = ( "X-Trace: t-42", "X-Other: yes" ); } );
EOF
run apicred get fields
is "fields: get succeeds" "$RC" 0
body=$(last token body)
is "fields: scope list space-separated, form-encoded" "$(form_field "$body" scope)" 'read%3Aall+write'
is "fields: audience" "$(form_field "$body" audience)" 'https%3A%2F%2Fapi.example%2F'
is "fields: resource" "$(form_field "$body" resource)" 'urn%3Aexample%3Ares'
is "fields: params" "$(form_field "$body" tenant)" 'a+b%26c%3Dd'
is "fields: extra header 1" "$(last token headers.x-trace)" t-42
is "fields: extra header 2" "$(last token headers.x-other)" yes

service_file badparam <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret";
            params = { grant_type = "password"; }; } );
EOF
run apicred get badparam
ok "params: grant_type cannot be overridden" test "$RC" -ne 0
like "params: says which" "$ERR" '*grant_type*'

service_file badhdr <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret";
            headers = ( "no colon here" ); } );
EOF
run apicred get badhdr
ok "headers: a line without a name is refused" test "$RC" -ne 0
like "headers: says which" "$ERR" '*headers*'

# ---- header shaping and token types ------------------------------------------

service_file shaped <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret";
            header = "X-Auth"; prefix = ""; } );
EOF
run apicred get shaped
is "shaped: get succeeds" "$RC" 0
like "shaped: bare token in X-Auth" "$OUT" 'X-Auth: ?*'
case $OUT in *Bearer*|*Authorization*) ok "shaped: no Bearer, no Authorization" false ;;
*) ok "shaped: no Bearer, no Authorization" true ;; esac

for tt in access_token BEARER bearer; do
	ctl reset
	ctl set "{\"token_type\": \"$tt\"}"
	run apicred get gen
	like "token_type $tt: sent as Bearer" "$OUT" 'Authorization: Bearer ?*'
done

ctl reset
ctl set '{"token_type": "mac"}'
run apicred get gen
ok "token_type mac: refused without prefix" test "$RC" -ne 0
like "token_type mac: points at prefix" "$ERR" '*prefix*'

service_file macprefix <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret";
            prefix = "MAC "; } );
EOF
run apicred get macprefix
like "token_type mac: explicit prefix wins" "$OUT" 'Authorization: MAC ?*'

# ---- error bodies ------------------------------------------------------------

check_error() { # KIND GLOB (the fault lasts, whatever the core retries)
	ctl reset
	ctl fault token "$1" 100
	run apicred get gen
	ok "$1: fails" test "$RC" -ne 0
	like "$1: service and server text in the message" "$ERR" "apicred: gen:*$2*"
	no_secret "$1: no secret in the output" "$OUT$ERR" 's3cr' 'sb-client'
}
check_error invalid_scope invalid_scope
check_error invalid_client invalid_client
check_error forbidden_empty 403
check_error login_failed login_failed

# ---- faults ------------------------------------------------------------------

check_error badjson JSON
check_error crlf CR
check_error huge ''
check_error close ''
check_error 500 500
check_error 503 503

ctl reset
ctl fault token expires_str 1
run apicred get gen --json
is "expires_in as a string: accepted" "$RC" 0

# A slow token endpoint ends in a time-out, not a hang.
confdir_new
secret_file gen.id sb-client
secret_file gen.secret "$AWKWARD"
cat >"$CONF/apicred.conf" <<EOF
http = { ca_file = "$SB_CA"; timeout = 1; connect_timeout = 1; retries = 0; };
EOF
service_file gen <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF
ctl reset
ctl fault token slow 5 4
run apicred get gen
ok "slow: fails" test "$RC" -ne 0
like "slow: says time-out" "$ERR" '*gen*[Tt]ime*'
ctl fault token slow 0

done_testing
