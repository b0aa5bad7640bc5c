#!/bin/sh
# The apicred command-line tool: arguments, output formats, exit codes,
# error messages, and `request` against the sandbox's API-key endpoint.
. "$top_srcdir/tests/integration/lib.sh"

KEY=sb-apikey-0123456789
usage_ok() { # what: exit 2, usage on stderr, nothing on stdout
	ok "$1: exit 2 (got $RC)" [ "$RC" = 2 ]
	like "$1: usage on stderr" "$ERR" "*usage: apicred*"
	is "$1: nothing on stdout" "$OUT" ""
}

sandbox_start
confdir_new
secret_file apikey "$KEY"
service_file keyed <<EOF
description = "sandbox API-key service";
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
service_file inquery <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; in = "query"; } );
EOF
service_file prefixed <<EOF
description = "key with a prefix and a static header";
url = "$SB/";
headers = ( "X-Target-Environment: sandbox" );
stack = ( { provider = "apikey"; key = "file:secrets/apikey";
            header = "Authorization"; prefix = "apikey "; } );
EOF
secret_file wrongkey "not-the-key"
service_file wrong <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/wrongkey"; } );
EOF

# ---- --help, --version, bad arguments ------------------------------------
run --help
ok "--help: exit 0" [ "$RC" = 0 ]
like "--help: usage on stdout" "$OUT" "usage: apicred*get SERVICE*request SERVICE URL*check*list*providers*provision*"
run --version
ok "--version: exit 0" [ "$RC" = 0 ]
like "--version: names the version" "$OUT" "apicred [0-9]*.[0-9]*"
run get --help
ok "get --help: exit 0" [ "$RC" = 0 ]

run;                               usage_ok "no command"
run frobnicate;                    usage_ok "unknown command"
run --bogus list;                  usage_ok "unknown global option"
run get;                           usage_ok "get without SERVICE"
run get keyed extra;               usage_ok "get with two services"
run get keyed --bogus;             usage_ok "get with unknown option"
run get keyed -X;                  usage_ok "get -X without argument"
run get keyed -X 'GE T';           usage_ok "get with bad method"
run get keyed -u;                  usage_ok "get -u without argument"
run request;                       usage_ok "request without arguments"
run request keyed;                 usage_ok "request without URL"
run request keyed "$SB/" extra;    usage_ok "request with extra argument"
run request keyed "$SB/" -H novalue; usage_ok "request with malformed -H"
run request keyed "$SB/" -o;       usage_ok "request -o without argument"
run request keyed "$SB/" -Z;       usage_ok "request with unknown option"
run check --bogus;                 usage_ok "check with unknown option"
run list extra;                    usage_ok "list with an argument"
run list -x;                       usage_ok "list with unknown option"
run providers extra;               usage_ok "providers with an argument"
run provision;                     usage_ok "provision without SERVICE"
run provision a b;                 usage_ok "provision with two services"
run provision keyed --force --show; usage_ok "provision --force --show"
run provision keyed --bogus;       usage_ok "provision with unknown option"
run get keyed -d @"$T/does-not-exist"
ok "get -d @missing: exit 1" [ "$RC" = 1 ]
like "get -d @missing: names the file" "$ERR" "apicred: $T/does-not-exist: *"

# ---- unknown and invalid services ----------------------------------------
run get no-such-service
ok "unknown service: exit 1" [ "$RC" = 1 ]
like "unknown service: 'apicred: NAME: ...'" "$ERR" "apicred: no-such-service: ?*"
is "unknown service: nothing on stdout" "$OUT" ""
run get ../etc/passwd
ok "service name with ../: exit 1" [ "$RC" = 1 ]
like "service name with ../: error names it" "$ERR" "apicred: ../etc/passwd: ?*"
run request no-such-service "$SB/apikey/echo"
ok "request, unknown service: exit 1" [ "$RC" = 1 ]
like "request, unknown service: error format" "$ERR" "apicred: no-such-service: ?*"

# ---- get: text output ------------------------------------------------------
run get keyed
ok "get: exit 0" [ "$RC" = 0 ]
is "get: one header line" "$OUT" "X-API-Key: $KEY"
is "get: nothing on stderr" "$ERR" ""
run get inquery
is "get, key in query: ?name=value line" "$OUT" "?api_key=$KEY"
run get prefixed
ok "get, static header + prefix: exit 0" [ "$RC" = 0 ]
like "get: static header printed" "$OUT" "*X-Target-Environment: sandbox*"
like "get: prefixed key printed" "$OUT" "*Authorization: apikey $KEY*"
is "get: exactly two lines" "$(printf '%s\n' "$OUT" | wc -l)" 2
run get keyed -X POST -u "$SB/apikey/echo" -d '{"a":1}'
is "get with method, URL and body: same header" "$OUT" "X-API-Key: $KEY"

# ---- get --json ------------------------------------------------------------
json_check() { # file, python expression over j that must be true
	"$PYTHON3" -c 'import json,sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
run get keyed --json
ok "get --json: exit 0" [ "$RC" = 0 ]
printf '%s' "$OUT" > "$T/keyed.json"
ok "get --json: valid JSON object" json_check "$T/keyed.json" 'isinstance(j, dict)'
ok "get --json: exactly headers, query, tls, expires_at" json_check "$T/keyed.json" \
	'sorted(j) == ["expires_at", "headers", "query", "tls"]'
ok "get --json: the header" json_check "$T/keyed.json" "j['headers'] == {'X-API-Key': '$KEY'}"
ok "get --json: no query, no TLS" json_check "$T/keyed.json" "j['query'] == {} and j['tls'] == {}"
ok "get --json: expires_at null without a session" json_check "$T/keyed.json" 'j["expires_at"] is None'
run get --json inquery
printf '%s' "$OUT" > "$T/inquery.json"
ok "get --json before SERVICE: query parameter" json_check "$T/inquery.json" \
	"j['query'] == {'api_key': '$KEY'} and j['headers'] == {}"

# ---- check -----------------------------------------------------------------
run check
ok "check, all good: exit 0" [ "$RC" = 0 ]
is "check, all good: one ok line per service (sorted)" "$OUT" \
"inquery: ok
keyed: ok
prefixed: ok
wrong: ok"
run check keyed
is "check SERVICE: only that one" "$OUT" "keyed: ok"

service_file broken <<EOF
url = "$SB/";
stack = (
  { provider = "apikey";
    key = "file:secrets/apikey";
    colour = "blue"; }
);
EOF
run check
ok "check with a broken service: exit 1" [ "$RC" = 1 ]
like "check: broken service named with file:line" "$ERR" "*apicred: broken: *broken.conf:5*"
like "check: the reason (unknown key)" "$ERR" "*colour*"
like "check: the good ones still ok" "$OUT" "*keyed: ok*"
run check keyed
ok "check of a good service next to a broken one: exit 0" [ "$RC" = 0 ]
run check broken
ok "check broken: exit 1" [ "$RC" = 1 ]
is "check broken: nothing on stdout" "$OUT" ""
run check no-such-service
ok "check unknown service: exit 1" [ "$RC" = 1 ]
like "check unknown service: error format" "$ERR" "apicred: no-such-service: ?*"

service_file syntax <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = ; } );
EOF
run check syntax
ok "check, syntax error: exit 1" [ "$RC" = 1 ]
like "check, syntax error: file:line" "$ERR" "apicred: syntax: *syntax.conf:2*"
run get syntax
ok "get on a broken service: exit 1" [ "$RC" = 1 ]
like "get on a broken service: file:line" "$ERR" "apicred: syntax: *syntax.conf:2*"
is "get on a broken service: said once, on one line" "$(printf '%s\n' "$ERR" | wc -l)" 1
run get keyed
is "get on a good service next to broken ones: nothing on stderr" "$ERR" ""
rm -f "$CONF/conf.d/broken.conf" "$CONF/conf.d/syntax.conf"

# ---- list, providers ---------------------------------------------------------
run list
ok "list: exit 0" [ "$RC" = 0 ]
like "list: name and description" "$OUT" "*keyed*sandbox API-key service*"
like "list: service without description" "$OUT" "*inquery*"
is "list: one line per service" "$(printf '%s\n' "$OUT" | wc -l)" 4
# list reads the descriptions alone: a service whose provider module or
# secret file is missing is listed with its description; one whose file
# fails its checks, by name with its error on stderr, and list exits 1.
service_file nomodule <<EOF
description = "provider not installed";
url = "$SB/";
stack = ( { provider = "nosuch"; } );
EOF
service_file nosecret <<EOF
description = "secret file not there";
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/absent"; } );
EOF
run list
is "list, a provider or a secret missing: exit 0" "$RC" 0
like "list, a provider or a secret missing: their descriptions" "$OUT" \
	"*nomodule  *provider not installed
nosecret  *secret file not there*"
is "list, a provider or a secret missing: nothing on stderr" "$ERR" ""
service_file open 666 <<EOF
description = "anyone may edit this";
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
run list
is "list, an unsafe service file: exit 1" "$RC" 1
like "list, an unsafe service file: listed by name, the others too" "$OUT" \
	"*keyed *sandbox API-key service*
open
prefixed *"
unlike "list, an unsafe service file: not its description" "$OUT" "*anyone may edit*"
like "list, an unsafe service file: its error" "$ERR" "apicred: open: *open.conf*writable*"
is "list, an unsafe service file: one line on stderr" "$(printf '%s\n' "$ERR" | wc -l)" 1
rm -f "$CONF/conf.d/nomodule.conf" "$CONF/conf.d/nosecret.conf" "$CONF/conf.d/open.conf"
run providers
like "providers: apikey loads" "$OUT" "*apikey*$APICRED_TEST_MODULEDIR/apikey.so*ok*"

# ---- request ---------------------------------------------------------------
ctl reset
run request keyed "$SB/apikey/echo"
ok "request: exit 0 on 200" [ "$RC" = 0 ]
like "request: body printed" "$OUT" '*"ok"*true*'
is "request: nothing on stderr" "$ERR" ""
run request inquery "$SB/apikey/echo"
ok "request, key in query: exit 0" [ "$RC" = 0 ]
run request prefixed "$SB/apikey/echo" -X POST -d 'a=1' -H 'X-Extra: yes'
ok "request POST with -d and -H: exit 0" [ "$RC" = 0 ]
last apikey > "$T/last.json"
ok "request: method, body, credential and -H header reached the server" json_check "$T/last.json" \
	"j['method'] == 'POST' and j['body'] == 'a=1' and j['headers'].get('x-extra') == 'yes' and j['headers'].get('authorization') == 'apikey $KEY' and j['headers'].get('x-target-environment') == 'sandbox'"
printf '%s' 'from-a-file' > "$T/body.txt"
run request keyed "$SB/apikey/echo" -d @"$T/body.txt" -o "$T/out.json"
ok "request -d @FILE -o FILE: exit 0" [ "$RC" = 0 ]
is "request -o: nothing on stdout" "$OUT" ""
like "request -o: body in the file" "$(cat "$T/out.json")" '*"ok"*'
last apikey > "$T/last.json"
ok "request -d @FILE: the file's content was sent" json_check "$T/last.json" "j['body'] == 'from-a-file'"
before=$(count apikey)
run request wrong "$SB/apikey/echo"
ok "request refused (401): exit 22" [ "$RC" = 22 ]
like "request 401: 'apicred: SERVICE: HTTP 401'" "$ERR" "*apicred: wrong: HTTP 401*"
is "request 401: an API key is not retried" "$(count apikey)" $((before + 1))
case "$OUT$ERR" in *not-the-key*) leaked=1 ;; *) leaked=0 ;; esac
is "request 401: the key is not printed" "$leaked" 0
run request keyed "https://127.0.0.2:1/elsewhere"
ok "request to another origin: exit 1" [ "$RC" = 1 ]
like "request to another origin: error format" "$ERR" "apicred: keyed: ?*"

# ---- request: the one retry after a report (TOK: 403 -> backup) ----------
secret_file tok.primary 11111111-2222-3333-4444-555555555555
secret_file tok.backup 99999999-8888-7777-6666-555555555555
service_file cdn <<EOF
url = "$SB/";
stack = ( { provider = "tok"; token = "file:secrets/tok.primary";
            backup_token = "file:secrets/tok.backup"; } );
EOF
if [ ! -f "$APICRED_TEST_MODULEDIR/tok.so" ]; then
	skip "the tok provider is not built" 6
else
	ctl reset
	ctl set '{"tok_primary": "00000000-0000-0000-0000-000000000000"}'
	run request cdn "$SB/tok/echo"
	ok "request, primary revoked: exit 0 via the backup" [ "$RC" = 0 ]
	is "request, primary revoked: exactly one retry" "$(count tok)" 2
	like "request, primary revoked: the failover is shown" "$ERR" "apicred: cdn: *backup*"
	ctl reset
	ctl set '{"tok_primary": "00000000-0000-0000-0000-000000000000", "tok_backup": "00000000-0000-0000-0000-000000000001"}'
	run request cdn "$SB/tok/echo"
	ok "request, both tokens refused: exit 22" [ "$RC" = 22 ]
	like "request, both refused: 'HTTP 403'" "$ERR" "*apicred: cdn: HTTP 403*"
	is "request, both refused: retried once, not more" "$(count tok)" 2
	ctl reset
fi

# ---- the configuration directory itself ------------------------------------
confdir_new
run list
ok "empty confdir: list exits 0" [ "$RC" = 0 ]
is "empty confdir: says so" "$ERR" "apicred: no services configured"
is "empty confdir: empty list" "$OUT" ""
echo 'log = { level = "loud"; };' > "$CONF/apicred.conf"
run list
ok "bad apicred.conf: exit 1" [ "$RC" = 1 ]
like "bad apicred.conf: 'apicred: file:line: ...', said once" "$ERR" "apicred: $CONF/apicred.conf:1: *level*"
is "bad apicred.conf: one line" "$(printf '%s\n' "$ERR" | wc -l)" 1

done_testing
