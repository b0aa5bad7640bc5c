#!/bin/sh
# sigv4 provider through the real `apicred` tool and the C API against the
# sandbox's SigV4 routes, where botocore (python3-botocore) recomputes every
# signature from the request as received: GET with a query, POST with a
# body and headers, S3 with UNSIGNED-PAYLOAD and with a signed payload, a
# session token, a wrong secret; then the sample conf.d/s3-bucket.conf.
. "$top_srcdir/tests/integration/lib.sh"

"$PYTHON3" -c 'import botocore.auth' 2>/dev/null ||
	bail "$PYTHON3 cannot import botocore: install python3-botocore"

sandbox_start
confdir_new

AKID=AKIDSANDBOX0123456789
SECRET='sb-sigv4/secret+0123456789EXAMPLEKEY'
TOKEN='sb-sigv4-session/token+0123456789=='
secret_file aws.id "$AKID"
secret_file aws.key "$SECRET"
secret_file bad.key 'sb-sigv4/secret+0123456789EXAMPLEKEX'
secret_file aws.token "$TOKEN"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# sigv4_service NAME SERVICE [KEY = VALUE; ...]: a sigv4 layer for the sandbox
sigv4_service() {
	_name=$1
	_svc=$2
	shift 2
	service_file "$_name" <<EOF
url = "$SB/";
stack = ( { provider = "sigv4"; region = "us-east-1"; service = "$_svc";
            access_key_id = "file:secrets/aws.id"; secret_access_key = "file:secrets/aws.key";
            $* } );
EOF
}

sha256_hex() {
	printf '%s' "$1" | "$OPENSSL" dgst -sha256 | sed 's/^.*= *//'
}

no_secret() { # no_secret WHAT TEXT
	case $2 in
	*"$SECRET"* | *"$TOKEN"* | *EXAMPLEKEX*) _tap_result 1 "$1" ;;
	*) _tap_result 0 "$1" ;;
	esac
}

# ---- the peer: botocore's own signature passes, a forged one does not ----------

# boto_headers METHOD URL: -H options signed by botocore itself
boto_headers() {
	"$PYTHON3" - "$1" "$2" "$AKID" "$3" <<'EOF'
import sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
method, url, akid, secret = sys.argv[1:5]
r = AWSRequest(method=method, url=url)
SigV4Auth(Credentials(akid, secret), "execute-api", "us-east-1").add_auth(r)
for k, v in r.headers.items():
    print("-H\n%s: %s" % (k, v))
EOF
}
boto_request() { # boto_request SECRET URL
	_h=$(boto_headers GET "$2" "$1")
	_old=$IFS
	IFS='
'
	# shellcheck disable=SC2086 # one -H option and one header per line
	sb_request $_h "$2"
	IFS=$_old
}
boto_request "$SECRET" "$SB/sigv4/peer?x=1"
is "peer: a botocore-signed request is accepted" "$SB_STATUS" 200
boto_request 'not-the-secret' "$SB/sigv4/peer?x=1"
is "peer: a request signed with another key is refused" "$SB_STATUS" 403
like "peer: ... as SignatureDoesNotMatch" "$SB_BODY" '*SignatureDoesNotMatch*'

# ---- GET with a query ------------------------------------------------------------------

sigv4_service api execute-api
run apicred request api "$SB/sigv4/v1/items?sort=-name&b=2&a=1&a=0&empty=&sp=x%20y&u=%C3%A9&t=~.-_"
is "GET query: accepted by botocore's signature" "$RC" 0
like "GET query: the route's answer" "$OUT" '*"ok": true*'
auth=$(last sigv4 headers.authorization)
xdate=$(last sigv4 headers.x-amz-date)
TODAY=$(date -u +%Y%m%d)
YESTERDAY=$(date -u -d yesterday +%Y%m%d)
like "GET query: Authorization with the credential scope of X-Amz-Date's day" "$auth" \
	"AWS4-HMAC-SHA256 Credential=$AKID/${xdate%%T*}/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=*"
is "GET query: X-Amz-Content-Sha256 is the empty body's" "$(last sigv4 headers.x-amz-content-sha256)" \
	"$EMPTY_SHA256"
ok "GET query: X-Amz-Date is today or, at midnight, yesterday (UTC)" \
	test "${xdate%%T*}" = "$TODAY" -o "${xdate%%T*}" = "$YESTERDAY"
no_secret "GET query: no secret in the output" "$OUT$ERR"

# A path with an escape (encoded once more by the rule for non-S3 services)
# and dot segments (removed before sending).
run apicred request api "$SB/sigv4/a%20b/./c/../d%2Fe"
is "path with %20 and dot segments: accepted" "$RC" 0
is "path: as sent" "$(last sigv4 path)" "/sigv4/a%20b/d%2Fe"

run apicred get api -u "$SB/sigv4/v1/items?x=1"
is "get: succeeds" "$RC" 0
like "get: prints the Authorization line" "$OUT" '*Authorization: AWS4-HMAC-SHA256 Credential=*'
like "get: prints X-Amz-Date" "$OUT" '*X-Amz-Date: ????????T??????Z*'
like "get: prints X-Amz-Content-Sha256" "$OUT" "*X-Amz-Content-Sha256: $EMPTY_SHA256*"

# ---- POST with a body and signed headers ---------------------------------------------

BODY='{"name":"sandbox item","tags":["a","b"],"price":12.5}'
run apicred request api "$SB/sigv4/v1/items" -d "$BODY" \
	-H 'X-Amz-Meta-Note:   two   spaces  ' -H 'X-Custom: 1' -H 'User-Agent: test/1'
is "POST body: accepted by botocore's signature" "$RC" 0
is "POST body: X-Amz-Content-Sha256 is the body's SHA-256" \
	"$(last sigv4 headers.x-amz-content-sha256)" "$(sha256_hex "$BODY")"
like "POST body: Content-Type and the request's headers signed, User-Agent not" \
	"$(last sigv4 headers.authorization)" \
	'*SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-custom,*'

run apicred request api "$SB/sigv4/v1/items/7" -X PUT -H 'Content-Type: text/plain' -d 'plain text'
is "PUT text: accepted" "$RC" 0

# ---- S3: UNSIGNED-PAYLOAD, and a signed payload -------------------------------------

sigv4_service s3u s3 'sign_body = "unsigned";'
run apicred request s3u "$SB/s3/photos?list-type=2&prefix=photos%2F2024%2F&max-keys=10"
is "S3 unsigned listing: accepted by botocore's S3 signature" "$RC" 0
like "S3 unsigned listing: the bucket's keys under the prefix" "$OUT" \
	'*<KeyCount>2</KeyCount>*photos/2024/beach.jpg*photos/2024/city.jpg*'
is "S3 unsigned: X-Amz-Content-Sha256" "$(last s3 headers.x-amz-content-sha256)" UNSIGNED-PAYLOAD
run apicred request s3u "$SB/s3/photos/2024/My%20Pic.jpg" -X PUT -H 'Content-Type: image/jpeg' -d 'JPEG...'
is "S3 unsigned PUT with an escaped key: accepted" "$RC" 0

sigv4_service s3s s3
run apicred request s3s "$SB/s3/photos/notes.txt" -X PUT -H 'Content-Type: text/plain' -d 'hello s3'
is "S3 signed payload PUT: accepted" "$RC" 0
is "S3 signed payload: the body's SHA-256" "$(last s3 headers.x-amz-content-sha256)" \
	"$(sha256_hex 'hello s3')"

# ---- a session token -------------------------------------------------------------------

ctl set "{\"sigv4_session_token\": \"$TOKEN\"}"
run apicred request api "$SB/sigv4/v1/items"
ok "session token required, none sent: refused" test "$RC" -ne 0
like "... as InvalidToken" "$OUT" '*InvalidToken*'
sigv4_service sts execute-api 'session_token = "file:secrets/aws.token";'
run apicred request sts "$SB/sigv4/v1/items?x=1" -d 'a=1'
is "session token: accepted" "$RC" 0
is "session token: sent as X-Amz-Security-Token" "$(last sigv4 headers.x-amz-security-token)" "$TOKEN"
like "session token: signed" "$(last sigv4 headers.authorization)" \
	'*SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,*'
no_secret "session token: not in the output" "$OUT$ERR"
ctl reset

# ---- refusals ---------------------------------------------------------------------------

service_file badkey <<EOF
url = "$SB/";
stack = ( { provider = "sigv4"; region = "us-east-1"; service = "execute-api";
            access_key_id = "file:secrets/aws.id"; secret_access_key = "file:secrets/bad.key"; } );
EOF
run apicred request badkey "$SB/sigv4/v1/items?x=1"
ok "wrong secret: refused" test "$RC" -ne 0
like "wrong secret: the server's reason" "$OUT" '*SignatureDoesNotMatch*'
like "wrong secret: HTTP 403" "$ERR" '*403*'
no_secret "wrong secret: no secret in the output" "$OUT$ERR"

sigv4_service eu execute-api
sed -i 's/us-east-1/eu-west-1/' "$CONF/conf.d/eu.conf"
run apicred request eu "$SB/sigv4/v1/items"
ok "another region: refused" test "$RC" -ne 0
like "another region: the server says why" "$OUT" '*credential scope must be us-east-1/execute-api*'

run apicred request api "$SB/sigv4/v1/items" -H 'X-Amz-Date: 20200101T000000Z'
ok "the request's own X-Amz-Date: refused before sending" test "$RC" -ne 0
like "... naming the service and the header" "$ERR" '*api*X-Amz-Date header; sigv4 sets it*'

# ---- the C API: apicred_curl_apply and a tampered request -------------------------

ctl reset
APICRED_TEST_CONFDIR=$CONF
export APICRED_TEST_CONFDIR SB SB_CA
"$top_builddir/tests/drivers/sigv4_sandbox" api s3s >"$T/helper.out" 2>"$T/helper.err"
ok_lines <"$T/helper.out"
! grep -q "^FAIL" "$T/helper.out" || diag "$(cat "$T/helper.err")"

# ---- the sample ------------------------------------------------------------------------

confdir_new
secret_file s3.id "$AKID"
secret_file s3.secret "$SECRET"
sed "s|https://objects.example.net/|$SB/s3/|g" "$top_srcdir/conf.d/s3-bucket.conf" |
	service_file s3-bucket
run apicred check s3-bucket
is "sample s3-bucket.conf: check passes" "$RC" 0
run apicred request s3-bucket "$SB/s3/photos?list-type=2&prefix=notes"
is "sample s3-bucket.conf: lists the bucket through the sandbox" "$RC" 0
like "sample s3-bucket.conf: the listing" "$OUT" '*<Key>notes.txt</Key>*'

done_testing
