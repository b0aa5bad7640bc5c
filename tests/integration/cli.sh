#!/bin/sh
# The command line's habits (issue 11, 16-19): options anywhere, short usage
# errors with a hint, `apicred help`, request's curl-like options, --json for
# check/list/providers, get --value, providers -v, -v/-vv and APICRED_DEBUG.
. "$top_srcdir/tests/integration/lib.sh"

KEY=sb-apikey-0123456789
json_check() { # FILE EXPRESSION: a python expression over j must be true
	"$PYTHON3" -c 'import json,sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
lines() { printf '%s\n' "$1" | wc -l; }
usage2() { # WHAT CMD: exit 2, two lines on stderr: the problem, then the usage hint
	is "$1: exit 2" "$RC" 2
	is "$1: two lines on stderr" "$(lines "$ERR")" 2
	like "$1: the hint names the command's help" "$ERR" "*
usage: apicred $2*(more: apicred help $2)"
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
service_file twoheaders <<EOF
url = "$SB/";
headers = ( "X-Target-Environment: sandbox" );
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
service_file inquery <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; in = "query"; } );
EOF
secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
service_file oauth <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF

# ---- options anywhere -----------------------------------------------------
tool() { # the tool with -c/-m where the caller puts them
	RC=0
	"$top_builddir/tools/apicred" "$@" >"$T/o" 2>"$T/e" || RC=$?
	OUT=$(cat "$T/o") ERR=$(cat "$T/e")
}
M=$APICRED_TEST_MODULEDIR
tool get keyed -c "$CONF" -m "$M"
is "get SERVICE -c DIR -m DIR" "$OUT" "X-API-Key: $KEY"
tool get -c "$CONF" keyed -m "$M"
is "get -c DIR SERVICE -m DIR" "$OUT" "X-API-Key: $KEY"
tool -c "$CONF" get --moduledir="$M" keyed --json
ok "long options with = after the command" [ "$RC" = 0 ]
tool --confdir "$CONF" list -m "$M"
like "list -m DIR after the command" "$OUT" "*keyed*sandbox API-key service*"
run get keyed -v
is "get SERVICE -v: exit 0" "$RC" 0

# ---- usage errors: one line, one hint ------------------------------------
run get;                      usage2 "get without SERVICE" get
run get keyed --bogus;        usage2 "get --bogus" get
like "get --bogus: names the option" "$ERR" "apicred: get: unknown option '--bogus'*"
run request keyed;            usage2 "request without URL" request
run request keyed "$SB/" -w '%{nope}'; usage2 "request -w with an unknown variable" request
like "-w: names the variable" "$ERR" "*%{nope}*"
run list extra;               usage2 "list with an argument" list
run get keyed --json --value; usage2 "get --json --value" get
run;                          is "no command: exit 2" "$RC" 2
like "no command: the general hint" "$ERR" "apicred: COMMAND missing
usage: apicred ?OPTIONS? COMMAND ?ARGS? (more: apicred help)"
run frobnicate
is "unknown command: two lines" "$(lines "$ERR")" 2

# ---- help ----------------------------------------------------------------
run help
is "help: exit 0" "$RC" 0
like "help: every command" "$OUT" "usage: apicred*get SERVICE*request SERVICE URL*check*list*providers*provision*help*"
run help request
is "help request: exit 0" "$RC" 0
like "help request: its synopsis first" "$OUT" "usage: apicred request SERVICE URL*"
like "help request: its options" "$OUT" "*--include*--silent*--fail*--write-out*"
like "help request: the global options too" "$OUT" "*--confdir*"
run request --help
is "request --help = help request" "$OUT" "$(run help request; printf '%s' "$OUT")"
run help nope
is "help of an unknown command: exit 2" "$RC" 2

# ---- get --value -----------------------------------------------------------
run get keyed --value
is "get --value: the one value" "$OUT" "$KEY"
run get twoheaders --value X-API-Key
is "get --value ITEM" "$OUT" "$KEY"
run get twoheaders --value=x-target-environment
is "get --value=ITEM, case-insensitive" "$OUT" sandbox
run get inquery --value
is "get --value: a query parameter" "$OUT" "$KEY"
run get twoheaders --value
is "get --value with two headers: exit 1" "$RC" 1
like "get --value with two headers: names them" "$ERR" "apicred: twoheaders: 2 values; name one with --value=NAME (there are: X-Target-Environment, X-API-Key)"
run get oauth --value
like "get --value: Authorization's token without 'Bearer '" "$OUT" "[A-Za-z0-9]*"
unlike "get --value: no scheme word" "$OUT" "Bearer*"
# ---- request: -i -o -s -w -f, redirects --------------------------------------
run request keyed "$SB/apikey/echo" -i
is "request -i: exit 0" "$RC" 0
like "request -i: status line, headers, blank line, body" "$OUT" "HTTP/1.[01] 200*Content-Type: application/json*
*{\"ok\"*"
run request keyed "$SB/apikey/echo" -w '%{http_code} %{content_type}\n' -o "$T/body"
is "request -w after -o: only the -w line on stdout" "$OUT" "200 application/json"
like "request -o: the body in the file" "$(cat "$T/body")" '{"ok"*'
run request keyed "$SB/nothing-here" -f
is "request -f on 404: exit 22" "$RC" 22
is "request -f on 404: no body" "$OUT" ""
like "request -f on 404: the status on stderr" "$ERR" "apicred: keyed: HTTP 404"
run request keyed "$SB/nothing-here" -s -w '%{http_code}'
is "request -s -w on 404: exit 22" "$RC" 22
like "request -s: the body and the code" "$OUT" "*404"
is "request -s: nothing on stderr" "$ERR" ""
before=$(count apikey)
run request inquery "$SB/redirect?to=/apikey/echo"
is "redirect: exit 22" "$RC" 22
like "redirect: Location shown, not followed" "$ERR" "apicred: inquery: HTTP 302: redirected to $SB/apikey/echo?(query not shown) (not followed)"
unlike "redirect: the echoed key is not shown" "$OUT$ERR" "*$KEY*"
is "redirect: not followed" "$(count apikey)" "$before"
run request keyed "$SB/redirect" -s -w '%{redirect_url}'
is "-w %{redirect_url}" "$OUT$ERR" '{"moved": true}'"$SB/apikey/echo"
run request keyed "$SB/apikey/echo" -X POST -d '{"a":1}'
is "request -d JSON: sent as JSON" "$(last apikey headers.content-type)" application/json
run request keyed "$SB/apikey/echo" -d 'a=1'
is "request -d form: sent as a form" "$(last apikey headers.content-type)" application/x-www-form-urlencoded
run request keyed "$SB/apikey/echo" -d '{"a":1}' -H 'Content-Type: text/plain'
is "request -H Content-Type wins, sent once" "$(last apikey headers.content-type)" text/plain

# ---- --json for check, list, providers ---------------------------------------
run check --json
printf '%s' "$OUT" >"$T/check.json"
ok "check --json: one entry per service, all ok" json_check "$T/check.json" \
	"[e['service'] for e in j] == ['inquery', 'keyed', 'oauth', 'twoheaders'] and all(e['ok'] and e['error'] is None for e in j)"
service_file broken <<EOF
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; colour = "blue"; } );
EOF
run check broken --json
printf '%s' "$OUT" >"$T/check.json"
is "check --json, broken: exit 1" "$RC" 1
ok "check --json, broken: the error with file:line" json_check "$T/check.json" \
	"not j[0]['ok'] and 'broken.conf:2' in j[0]['error'] and 'colour' in j[0]['error']"
rm "$CONF/conf.d/broken.conf"
run list --json
printf '%s' "$OUT" >"$T/list.json"
ok "list --json: names and descriptions" json_check "$T/list.json" \
	"j[1] == {'name': 'keyed', 'description': 'sandbox API-key service', 'error': None} and j[0]['description'] is None and j[0]['error'] is None"
service_file open 666 <<EOF
description = "anyone may edit this";
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/apikey"; } );
EOF
run list --json
printf '%s' "$OUT" >"$T/list.json"
is "list --json, an unsafe service file: exit 1" "$RC" 1
ok "list --json, an unsafe service file: its error, no description" json_check "$T/list.json" \
	"[e for e in j if e['name'] == 'open' and e['description'] is None and 'writable' in e['error'] and not e['error'].startswith('open:')] and len(j) == 5"
rm "$CONF/conf.d/open.conf"
run providers --json
printf '%s' "$OUT" >"$T/prov.json"
ok "providers --json: apikey with its keys" json_check "$T/prov.json" \
	"[k for p in j['providers'] if p['name'] == 'apikey' and p['ok'] for k in p['keys'] if k['name'] == 'header' and k['type'] == 'header-name' and not k['required'] and not k['secret'] and k['default'] == 'X-API-Key' and k['choices'] is None and k['help']]"
ok "providers --json: the keys of every layer" json_check "$T/prov.json" \
	"[k for k in j['layer_keys'] if k['name'] == 'control' and k['choices'] == ['required', 'optional', 'sufficient']]"
ok "providers --json: oauth2's url and header types" json_check "$T/prov.json" \
	"{k['name']: k['type'] for p in j['providers'] if p['name'] == 'oauth2' for k in p['keys']}.items() >= {'token_url': 'url', 'headers': 'headers', 'header': 'header-name', 'client_id': 'string'}.items()"
ok "providers --json: oauth2's client_secret is secret, client_id is not" json_check "$T/prov.json" \
	"{k['name']: k['secret'] for p in j['providers'] if p['name'] == 'oauth2' for k in p['keys']}.items() >= {'client_id': False, 'client_secret': True}.items()"

# ---- providers -v --------------------------------------------------------------
run providers -v
like "providers -v: the keys of every layer first" "$OUT" "keys of every layer:*control (string, one of required|optional|sufficient, default required)*"
like "providers -v: apikey's keys with type, default and help" "$OUT" "*apikey *ok*
    key (string, required, secret)
        ?*
*    header (header-name, default X-API-Key)
        ?*"
like "providers -v: the checked string types by their names" "$OUT" "*oauth2 *ok*
    token_url (url, required)
*    headers (headers)
*    header (header-name, default Authorization)
*"
unlike "providers -v: no unknown type" "$OUT" "*(unknown*"

# ---- -v, -vv, APICRED_DEBUG ------------------------------------------------------
printf 'http = { ca_file = "%s"; };\n' "$SB_CA" >"$CONF/apicred.conf" # no log.level
run get oauth
is "quiet by default" "$ERR" ""
run get oauth -v
unlike "-v: no debug traces" "$ERR" "*apicred\[debug\]*"
run get oauth -vv
like "-vv: debug traces on stderr" "$ERR" "*apicred\[debug\]: oauth: *"
APICRED_DEBUG=1 run get oauth -v
like "APICRED_DEBUG=1: debug traces" "$ERR" "*apicred\[debug\]: oauth: *"
unlike "debug traces: no secret" "$ERR" "*s3cr*"

done_testing
