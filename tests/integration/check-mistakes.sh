#!/bin/sh
# apicred check as a teacher (issue 11, 11-14): a table of realistic
# mistakes, each a service file and the exact problems check must print,
# "apicred: SERVICE: FILE:LINE: message", every one of a file, in order.
# A case with no problem must print "SERVICE: ok" and nothing on stderr.
#
# Table: "=== NAME MODE", the file, "---", then "LINE: message" lines;
# {conf}, {mod} and {available} stand for the confdir, the module directory
# and the modules in it.
. "$top_srcdir/tests/integration/lib.sh"

confdir_new
secret_file loose k 620
cat >"$T/table" <<'TABLE'
=== heder 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY";
            heder = "X-Key"; } );
---
3: layer 1: unknown key 'heder' for provider 'apikey'; did you mean 'header'?
=== oauth 600
url = "https://api.example/";
stack = ( { provider = "oauth"; token_url = "https://api.example/token";
            client_id = "me"; client_secret = "env:APICRED_TEST_KEY"; } );
---
2: layer 1: unknown provider 'oauth' ({mod}/oauth.so: No such file or directory); did you mean 'oauth2'? (available: {available})
=== kerberos 600
url = "https://api.example/";
stack = ( { provider = "kerberos"; } );
---
2: layer 1: unknown provider 'kerberos' ({mod}/kerberos.so: No such file or directory) (available: {available})
=== urll 600
urll = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: unknown key 'urll'; did you mean 'url'?
1: missing 'url': the origin (https://host[:port]/) the credentials may be sent to
=== contorl 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; contorl = "optional"; } );
---
2: layer 1: unknown key 'contorl' for provider 'apikey'; did you mean 'control'?
=== insecure-yes 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY";
            insecure_http = "yes"; } );
---
3: layer 1: 'insecure_http' must be true or false
=== requisite 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY";
            control = "requisite"; } );
---
3: layer 1: 'control' must be one of required|optional|sufficient
=== in-body 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; in = "body"; } );
---
2: layer 1: 'in' must be one of header|query
=== nokey 600
url = "https://api.example/";
stack = (
  { provider = "apikey"; header = "X-Key"; }
);
---
3: layer 1: missing required key 'key' for provider 'apikey'
=== noprovider 600
url = "https://api.example/";
stack = ( { key = "env:APICRED_TEST_KEY"; } );
---
2: layer 1: missing required key 'provider' (a string)
=== layer-string 600
url = "https://api.example/";
stack = ( "apikey" );
---
2: layer 1: must be a group { ... }
=== stack-string 600
url = "https://api.example/";
stack = "apikey";
---
2: 'stack' must be a list of layers: ( { provider = ...; }, ... )
=== stack-empty 600
url = "https://api.example/";
stack = ( );
---
2: 'stack' is empty: a service needs at least one layer
=== stack-missing 600
description = "no layers";
url = "https://api.example/";
---
1: missing 'stack': a service needs at least one layer
=== novalue 600
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = ; } );
---
3: syntax error: expected name = value; (is a ';', a value after '=', a closing quote, ')' or '}' missing on this line or the one before?)
=== unclosed 600
description = "forgot the quote;
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: syntax error: a string is not closed (a '"' is missing on this line)
=== noparen 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; };
---
2: syntax error: expected name = value; (is a ';', a value after '=', a closing quote, ')' or '}' missing on this line or the one before?)
=== relurl 600
url = "api.example.com/v1";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: 'url' is not an absolute http(s) URL
=== url-int 600
url = 443;
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: 'url' must be a string
=== header-nocolon 600
url = "https://api.example/";
headers = ( "Accept application/json" );
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
2: headers: expected "Name: value"
=== header-crlf 600
url = "https://api.example/";
headers = ( "X-A: b\r\nX-B: c" );
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
2: headers: value contains CR, LF or NUL (header injection)
=== ttl-negative 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; default_ttl = -5; } );
---
2: layer 1: 'default_ttl' must not be negative
=== ttl-zero 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; default_ttl = 0; } );
---
2: layer 1: 'default_ttl' must be from 1 to 31622400 seconds
=== secret-missing 600
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = "file:secrets/nope"; } );
---
3: layer 1 (apikey): secret 'key': cannot open {conf}/secrets/nope: No such file or directory
=== env-unset 600
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = "env:APICRED_TEST_UNSET"; } );
---
3: layer 1 (apikey): secret 'key': environment variable APICRED_TEST_UNSET is not set
=== env-empty 600
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = "env:APICRED_TEST_EMPTY"; } );
---
3: layer 1 (apikey): secret 'key': environment variable APICRED_TEST_EMPTY is empty
=== literal-public 644
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = "sb-literal-in-a-public-file"; } );
---
3: layer 1 (apikey): secret 'key': a literal secret is only allowed in a service file (and the files it includes) that is not group or world readable ({conf}/conf.d/literal-public.conf); use file: or env:, or chmod 600 it
=== writable 664
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: service file: {conf}/conf.d/writable.conf is group or world writable (mode 0664); refusing to use it (chmod go-w {conf}/conf.d/writable.conf)
=== secret-writable 600
url = "https://api.example/";
stack = ( { provider = "apikey";
            key = "file:secrets/loose"; } );
---
3: layer 1 (apikey): secret 'key': {conf}/secrets/loose is group or world writable (mode 0620); refusing to use it (chmod go-w {conf}/secrets/loose)
=== path-provider 600
url = "https://api.example/";
stack = ( { provider = "../apikey"; key = "env:APICRED_TEST_KEY"; } );
---
2: layer 1 (../apikey): provider name '../apikey' is not a valid module name
=== description-list 600
description = ( "two", "lines" );
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; } );
---
1: 'description' must be a string
=== scpoe 600
url = "https://api.example/";
stack = ( { provider = "oauth2"; token_url = "https://api.example/token";
            client_id = "me";
            scpoe = "read"; } );
---
4: layer 1: unknown key 'scpoe' for provider 'oauth2'; did you mean 'scope'?
=== several 600
descripton = "three mistakes";
url = "https://api.example/";
stack = (
  { provider = "apikey"; key = "env:APICRED_TEST_KEY"; in = "cookie"; },
  { provider = "tok"; tokn = "file:secrets/t"; }
);
---
1: unknown key 'descripton'; did you mean 'description'?
4: layer 1: 'in' must be one of header|query
5: layer 2: unknown key 'tokn' for provider 'tok'; did you mean 'token'?
5: layer 2: missing required key 'token' for provider 'tok'
=== carry 600
url = "https://api.example/";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; carry = "sometimes"; } );
---
2: layer 1: 'carry' must be one of same-origin|always|never
=== mtls-nocert 600
url = "https://api.example/";
stack = ( { provider = "mtls";
            cert = "certs/none.pem"; key = "certs/none.key"; } );
---
3: layer 1 (mtls): 'cert': cannot open {conf}/certs/none.pem: No such file or directory
=== plain-http 600
url = "https://api.example/";
stack = ( { provider = "oauth2";
            token_url = "http://api.example/token";
            client_id = "me"; client_secret = "env:APICRED_TEST_KEY"; } );
---
3: layer 1 (oauth2): 'token_url' (line 3) is plain http:// (set insecure_http = true, allowed for loopback hosts only)
=== good-with-x 600
url = "https://api.example/";
x-owner = "team payments";
stack = ( { provider = "apikey"; key = "env:APICRED_TEST_KEY"; x-ticket = "OPS-1"; } );
---
TABLE

# Writes each case's file and its expected stderr (NAME.want) under $T.
"$PYTHON3" - "$T/table" "$CONF" "$APICRED_TEST_MODULEDIR" "$T" <<'PY' || bail "bad table"
import os, sys
table, conf, mod, t = sys.argv[1:]
avail = ", ".join(sorted(f[:-3] for f in os.listdir(mod) if f.endswith(".so")))
names = []
for block in open(table).read().split("=== ")[1:]:
    head, rest = block.split("\n", 1)
    name, mode = head.split()
    body, want = rest.split("---\n", 1)
    path = "%s/conf.d/%s.conf" % (conf, name)
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, int(mode, 8))
    with open("%s/%s.want" % (t, name), "w") as f:
        for l in want.splitlines():
            line, msg = l.split(": ", 1)
            msg = msg.replace("{conf}", conf).replace("{mod}", mod).replace("{available}", avail)
            f.write("apicred: %s: %s:%s: %s\n" % (name, path, line, msg))
    names.append(name)
open(t + "/names", "w").write("\n".join(names) + "\n")
PY
n=$(wc -l <"$T/names")
ok "at least 30 mistakes in the table ($n cases)" [ "$n" -ge 30 ]

export APICRED_TEST_KEY=sb-apikey-0123456789 APICRED_TEST_EMPTY=
unset APICRED_TEST_UNSET || :
while read -r name; do
	run check "$name"
	want=$(cat "$T/$name.want")
	if [ -z "$want" ]; then
		is "$name: ok" "$OUT|$ERR|$RC" "$name: ok||0"
	else
		is "$name: exit 1, nothing on stdout" "$RC|$OUT" "1|"
		is "$name: the problems, file:line" "$ERR" "$want"
	fi
done <"$T/names"

# All at once: every file's problems, one line each, the good one ok.
run check
is "check of all: exit 1" "$RC" 1
is "check of all: the one good service on stdout" "$OUT" "good-with-x: ok"
# Services in name order (strcmp), each one's problems in file order.
is "check of all: every problem" "$ERR" \
	"$(LC_ALL=C sort "$T/names" | while read -r n; do cat "$T/$n.want"; done)"
unlike "no secret in any message" "$ERR" "*sb-literal-in-a-public-file*"
unlike "no environment value in any message" "$ERR" "*$APICRED_TEST_KEY*"

# get says the first problem only, the same way.
run get several
is "get of a broken service: exit 1" "$RC" 1
is "get: the first problem" "$ERR" "$(head -n 1 "$T/several.want")"

done_testing
