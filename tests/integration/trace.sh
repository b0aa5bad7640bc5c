#!/bin/sh
# Debug traces (issue 11, 9): with -vv or APICRED_DEBUG=1, the library says
# what it decided (cache hit and time left, refresh scheduled, fetch and why,
# each HTTP request with its redacted URL, status and time, back-off, what a
# 401 dropped), each service name once per line, and never a secret.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new
# level: default; no shared store (it traces what one process does)
printf 'http = { ca_file = "%s"; };\ncache = { store = "none"; };\n' "$SB_CA" >"$CONF/apicred.conf"
SECRET='s3cr:t+/%&=é'
secret_file gen.id sb-client
secret_file gen.secret "$SECRET"
service_file oauth <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token?tenant=t1";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF

# once_per_line TEXT: no line names the service twice
once_per_line() {
	! printf '%s\n' "$1" | grep -q 'oauth: .*oauth: '
}
# no_token TEXT: the token the API last saw is not in TEXT
no_secrets() { # WHAT TEXT
	_tok=$(last api headers.authorization | sed 's/^Bearer //')
	case $2 in
	*"$SECRET"* | *"$_tok"*) ok "$1: no secret, no token" false ;;
	*) ok "$1: no secret, no token" true ;;
	esac
}

run check --online oauth oauth -vv
is "check --online twice: exit 0" "$RC" 0
like "check --online: the session's expiry" "$OUT" "oauth: ok (online: session valid until ????-??-??T??:??:??Z)*"
like "fetch started and why" "$ERR" "*apicred\[debug\]: oauth: layer 1 (oauth2): fetch started, the caller waits: no session yet*"
like "the token request: method, redacted URL, status, time" "$ERR" \
	"*layer 1 (oauth2): POST $SB/oauth2/token -> HTTP 200, * bytes, * ms*"
unlike "the token request's query is not shown" "$ERR" "*tenant=t1*"
like "refresh scheduled" "$ERR" "*layer 1 (oauth2): new session (generation 1), expires in 3??? s, refresh scheduled in 3??? s (at ??:??:??Z)*"
like "the second check: a cache hit with the time left" "$ERR" "*layer 1 (oauth2): cache hit, 3??? s left*"
ok "each service name once per line" once_per_line "$ERR"

# A refused token, reported: what was dropped; the retry fetches anew.
ctl fault api invalid_client 1
APICRED_DEBUG=1 run request oauth "$SB/api/x" -v
is "401 then retry: exit 0" "$RC" 0
like "401: what was dropped" "$ERR" "*oauth: layer 1 (oauth2): HTTP 401: dropping the cached session (generation 1)*"
like "401: the new fetch says why" "$ERR" "*fetch started, the caller waits: the session was dropped (a 401 or 403 reported)*"
no_secrets "401 and retry" "$OUT$ERR"
ok "401 and retry: each service name once per line" once_per_line "$ERR"

# A token endpoint that fails: the back-off and the next attempt.
ctl fault token 500 -1
run get oauth -vv
is "token endpoint down: exit 1" "$RC" 1
like "back-off: the attempts and the next one" "$ERR" "*layer 1 (oauth2): retrying in * ms*attempt 1; back-off: next in * ms*"
ok "back-off: each service name once per line" once_per_line "$ERR"
no_secrets "back-off" "$ERR"
ctl fault token 500 0

# ---- check --online: what the server said, and what to do about TLS -------
secret_file bad.secret not-the-secret
service_file refused <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/bad.secret"; } );
EOF
service_file otherca <<EOF
url = "$SB_UNKNOWNCA/";
stack = ( { provider = "oauth2"; token_url = "$SB_UNKNOWNCA/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF
run check refused otherca
is "offline, both files are fine" "$RC|$OUT" "0|refused: ok
otherca: ok"
run check --online refused otherca oauth
is "--online: exit 1" "$RC" 1
is "--online: the good one proven" "$(printf '%s\n' "$OUT" | sed 's/until .*)/until T)/')" \
	"oauth: ok (online: session valid until T)"
like "--online: the server's refusal" "$ERR" "*apicred: refused: layer 1 (oauth2): *HTTP 401*invalid_client*"
like "--online, unknown CA: the CA used and what to set" "$ERR" \
	"*apicred: otherca: layer 1 (oauth2): POST $SB_UNKNOWNCA/oauth2/token: *(trusted CA: $SB_CA, from apicred.conf; set http.ca_file in apicred.conf, or the mtls layer's ca, to the CA that signed the server's certificate)*"
no_secrets "--online" "$OUT$ERR"
case $ERR in *not-the-secret*) ok "--online: no secret" false ;; *) ok "--online: no secret" true ;; esac
run check --online --json refused
printf '%s' "$OUT" >"$T/online.json"
ok "--online --json: the refusal in the entry" "$PYTHON3" -c 'import json,sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if not j[0]["ok"] and "invalid_client" in j[0]["error"] else 1)' "$T/online.json"

# Without -v: nothing; -v alone: no debug.
run get oauth
is "quiet without -v" "$ERR" ""
run get oauth -v
unlike "-v: no debug lines" "$ERR" "*\[debug\]*"

# Store hits and misses (issue 9's shared store): the first process finds
# no entry and fetches, the next one takes the session from the store.
ctl reset
printf 'http = { ca_file = "%s"; };\ncache = { store = "file:%s"; };\n' "$SB_CA" "$T/store" \
	>"$CONF/apicred.conf"
run get oauth -vv
is "store miss: exit 0" "$RC" 0
like "store miss traced" "$ERR" "*oauth: layer 1 (oauth2): no entry in the shared store file:*"
run get oauth -vv
is "store hit: exit 0" "$RC" 0
like "store hit traced" "$ERR" "*oauth: layer 1 (oauth2): session from the shared store file:*"
tok=${OUT#Authorization: Bearer }
case $ERR in
*"$SECRET"* | *"$tok"*) ok "store traces: no secret, no token" false ;;
*) ok "store traces: no secret, no token" test -n "$tok" ;;
esac
ok "store traces: each service name once per line" once_per_line "$ERR"

done_testing
