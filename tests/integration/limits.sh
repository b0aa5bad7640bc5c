#!/bin/sh
# Issue 8, items 9-13 through the real tool against the sandbox: one total
# deadline for a cold fetch, Retry-After within cache.backoff_max, no
# server text with control characters in messages or logs, provisioning
# that stores both secrets or neither, a non-dumpable tool, and
# `apicred check` doing everything `get` does but the network.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/oauth2-lib.sh"

sandbox_start
confdir_new

# global HTTP [CACHE]: apicred.conf with the sandbox's CA, HTTP inside
# http { }, CACHE inside cache { }. No shared store: these cases count what
# one process does.
global() {
	printf 'http = { ca_file = "%s"; %s };\ncache = { store = "none"; %s };\n' \
		"$SB_CA" "$1" "${2:-}" >"$CONF/apicred.conf"
}
CR=$(printf '\r')
ESC=$(printf '\033')

# gen_service: the generic OAuth 2.0 client of the sandbox as service "gen".
gen_service() {
	secret_file gen.id sb-client
	secret_file gen.secret 's3cr:t+/%&=é'
	printf '%s\n' "url = \"$SB/\";" \
		"stack = ( { provider = \"oauth2\"; token_url = \"$SB/oauth2/token\";" \
		"  client_id = \"file:secrets/gen.id\"; client_secret = \"file:secrets/gen.secret\"; } );" |
		service_file gen
}
gen_service

# ---- bounded time ----------------------------------------------------------------

# A token endpoint that does not answer for 5 s, with a 1 s time-out and
# 2 retries: one 2 s deadline for all of it, not 3 x 1 s plus the waits.
global 'timeout = 1; deadline = 2;'
ctl fault token slow -1 5
start=$(date +%s)
run -v get gen
elapsed=$(($(date +%s) - start))
ctl fault token slow 0
ok "deadline: get fails" test "$RC" -ne 0
like "deadline: the message names http.deadline" "$ERR" '*apicred: gen: layer 1 (oauth2): *http.deadline of 2000 ms*'
ok "deadline: no hang (under 30 s, a guard, not a measure)" test "$elapsed" -lt 30

run get gen
is "deadline: the endpoint answering again, get succeeds" "$RC" 0

global 'timeout = 0;'
run get gen
ok "timeout = 0: refused" test "$RC" -ne 0
like "timeout = 0: file:line and the range" "$ERR" "*apicred.conf:1*'timeout'*from 1 to 86400*"

global 'timeout = 9223372036854775807L;'
run get gen
ok "timeout that would overflow: refused" test "$RC" -ne 0
like "timeout that would overflow: file:line" "$ERR" "*apicred.conf:1*'timeout'*"

# Retry-After of ~3e9 years (its milliseconds overflow 64 bits): the layer
# waits cache.backoff_max (7 s here), not until the end of time.
global '' 'backoff_max = 7;'
ctl fault token 503 1 99999999999999999
run -v get gen
ok "huge Retry-After: get fails" test "$RC" -ne 0
next=$(printf '%s\n' "$ERR" | sed -n 's/.*next in \([-0-9]*\) ms.*/\1/p' | head -n 1)
diag "next attempt in ${next:-?} ms"
ok "huge Retry-After: next attempt within backoff_max" test "${next:-0}" -gt 6000 -a "${next:-0}" -le 7000
global ''

# ---- no text forged ------------------------------------------------------------------

# clean WHAT: nothing the server sent may start a line or move the cursor.
clean() {
	ok "$1: no CR" ! grep -q "$CR" "$T/run.err"
	ok "$1: no escape sequence" ! grep -q "$ESC" "$T/run.err"
	ok "$1: no forged line" ! grep -q '^X-Forged' "$T/run.err"
	ok "$1: no forged line (2)" ! grep -q '^forged line' "$T/run.err"
}

ctl fault token crlf_error 1
run -v get gen
ok "error text with CR LF (HTTP 400): get fails" test "$RC" -ne 0
like "error text with CR LF (HTTP 400): kept, made safe" "$ERR" '*invalid_request??X-Forged: 1*'
clean "error text (HTTP 400)"

ctl fault token crlf_error -1 200 # a garbled reply is retried
run -v get gen
ctl fault token crlf_error 0
ok "OAuth error object with CR LF (HTTP 200): get fails" test "$RC" -ne 0
like "OAuth error object with CR LF (HTTP 200): kept, made safe" "$ERR" '*without access_token: invalid_request??X-Forged: 1*'
clean "OAuth error object (HTTP 200)"

ctl fault token crlf_type 1
run -v get gen
ok "token_type with CR LF: refused" test "$RC" -ne 0
like "token_type with CR LF: named, made safe" "$ERR" '*type "mac??X-Forged: 3"*'
clean "token_type"

# ---- no data lost: provisioning -----------------------------------------------------

confdir_new
momo() { # momo KEYFILE: the MoMo sample for the sandbox, its key stored at KEYFILE
	sed "s#https://sandbox.momodeveloper.mtn.com/#$SB/momo/#g;s#file:secrets/momo.key#file:$1#" \
		"$top_srcdir/conf.d/momo-collection.conf" | service_file momo-collection
}
leftovers() { find "$CONF" -name '*.tmp.*' | wc -l | tr -d ' '; }
secret_file momo.subkey sb-momo-subkey-abcdef

# The key's directory does not exist: the second secret cannot be written.
momo secrets/keys/momo.key
run provision momo-collection
ok "second secret unwritable: provisioning fails" test "$RC" -ne 0
like "second secret unwritable: says why" "$ERR" '*momo-collection*client_secret*keys/momo.key*'
ok "second secret unwritable: the first was not stored either" test ! -e "$CONF/secrets/momo.user"
is "second secret unwritable: no temporary file left" "$(leftovers)" 0

(umask 077 && mkdir "$CONF/secrets/keys")
run provision momo-collection
is "rerun: succeeds without --force" "$RC" 0
user=$(cat "$CONF/secrets/momo.user")
key=$(cat "$CONF/secrets/keys/momo.key")
ok "rerun: both stored" test -n "$user" -a -n "$key"
run get momo-collection
is "rerun: the stored pair works" "$RC" 0

# A full disk: no write succeeds (RLIMIT_FSIZE 0, SIGXFSZ ignored: EFBIG).
# The tool's stderr goes through a pipe, which the limit does not touch.
# shellcheck disable=SC2016 # the script's own expansions
printf '%s\n' '#!/bin/sh' "trap '' XFSZ" \
	'{ ( (ulimit -f 0 && exec "$@"); echo $? >"$0.rc" ) 2>&1 >&3 | cat >&2; } 3>&1' \
	'exit "$(cat "$0.rc")"' >"$T/fulldisk"
chmod +x "$T/fulldisk"
keep_wrapper=${APICRED_TEST_WRAPPER:-}
APICRED_TEST_WRAPPER="$T/fulldisk $keep_wrapper"
run provision --force momo-collection
APICRED_TEST_WRAPPER=$keep_wrapper
ok "full disk: --force provisioning fails" test "$RC" -ne 0
like "full disk: says why" "$ERR" '*momo-collection*File too large*'
is "full disk: user file untouched" "$(cat "$CONF/secrets/momo.user")" "$user"
is "full disk: key file untouched" "$(cat "$CONF/secrets/keys/momo.key")" "$key"
is "full disk: no temporary file left" "$(leftovers)" 0
run provision --force momo-collection
is "full disk over: --force succeeds" "$RC" 0
ok "full disk over: a new user" test "$(cat "$CONF/secrets/momo.user")" != "$user"
no_secret "provisioning: no key printed" "$OUT$ERR" "$(cat "$CONF/secrets/keys/momo.key")"

# A server's error code with CR LF (provisioning, 409).
ctl fault momo-apiuser crlf_error 1 409
run provision --force momo-collection
ok "provisioning error code with CR LF: fails" test "$RC" -ne 0
like "provisioning error code with CR LF: kept, made safe" "$ERR" '*409 BAD??X-Forged: 2*'
clean "provisioning error code"

# ---- secrets in memory: the tool is not dumpable --------------------------------------

# While the tool waits for a slow token endpoint, another process of the
# same user without CAP_SYS_PTRACE cannot read its memory or environment
# (root drops its capabilities for both sides: one with more than the
# other may never read it anyway).
NOCAPS=
[ "$(id -u)" != 0 ] || NOCAPS="setpriv --bounding-set=-all --inh-caps=-all"
# shellcheck disable=SC2086,SC2317 # a word list on purpose; called by ok
can_read() { $NOCAPS cat "/proc/$1/environ" >/dev/null 2>&1; }
# shellcheck disable=SC2086
if ! $NOCAPS true 2>/dev/null; then
	skip "cannot drop capabilities (setpriv)" 3
else
	confdir_new
	gen_service
	ctl reset
	ctl fault token slow 1 4
	# (simple commands in the background: $! is the process itself)
	# shellcheck disable=SC2086
	$NOCAPS "$top_builddir/tools/apicred" -c "$CONF" -m "$APICRED_TEST_MODULEDIR" get gen \
		>/dev/null 2>&1 &
	pid=$!
	i=0
	while [ "$(count token)" -lt 1 ] && [ "$i" -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	ok "non-dumpable: the tool is waiting for the token" kill -0 "$pid"
	ok "non-dumpable: its environment cannot be read" ! can_read "$pid"
	# shellcheck disable=SC2086
	$NOCAPS sleep 5 &
	other=$!
	# Its capabilities drop when setpriv execs sleep: wait for that exec.
	i=0
	while [ "$(cat "/proc/$other/comm" 2>/dev/null)" != sleep ] && [ "$i" -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	ok "non-dumpable: another such process can be read" can_read "$other"
	kill "$other" 2>/dev/null || :
	wait "$pid" "$other" 2>/dev/null || :
fi

# ---- apicred check -----------------------------------------------------------------------

run -c "$T/nonexistent" check
ok "check, no confdir: fails" test "$RC" -ne 0
like "check, no confdir: says so" "$ERR" "*$T/nonexistent/conf.d*"

confdir_new
run check
ok "check, empty conf.d: fails" test "$RC" -ne 0
like "check, empty conf.d: says no services" "$ERR" '*no services*'

secret_file k sb-apikey-0123456789
printf '%s\n' "url = \"$SB/\";" \
	'stack = ( { provider = "apikey"; header = "X-API-Key"; key = "file:secrets/k"; } );' |
	service_file ok1
run check
is "check, one good service: ok" "$RC" 0
is "check, one good service: says ok" "$OUT" 'ok1: ok'

cp "$CONF/conf.d/ok1.conf" "$CONF/conf.d/-bad name.conf"
run check
ok "check, a file that is no service name: fails" test "$RC" -ne 0
like "check, a file that is no service name: names it" "$ERR" '*-bad name.conf*not a valid service name*'
is "check, a file that is no service name: still checks the others" "$OUT" 'ok1: ok'
run check ok1
is "check SERVICE: a bad sibling file does not matter" "$RC" 0
rm "$CONF/conf.d/-bad name.conf"

# A secret with CR LF, sent as a header value: get refuses it, so does check.
secret_file crlf "$(printf 'sb-apikey\r\nX-Injected: 1')"
printf '%s\n' "url = \"$SB/\";" \
	'stack = ( { provider = "apikey"; header = "X-API-Key"; key = "file:secrets/crlf"; } );' |
	service_file inject
run get inject
ok "header injection: get refuses" test "$RC" -ne 0
run check inject
ok "header injection: check refuses" test "$RC" -ne 0
like "header injection: check says why" "$ERR" '*inject*X-API-Key*CR, LF or NUL*'

# A plain-http token endpoint without insecure_http.
printf '%s\n' "url = \"$SB/\";" \
	"stack = ( { provider = \"oauth2\"; token_url = \"$SB_HTTP/oauth2/token\";" \
	'  client_id = "file:secrets/k"; client_secret = "file:secrets/k"; } );' |
	service_file plain
run check plain
ok "plain http endpoint: check refuses" test "$RC" -ne 0
like "plain http endpoint: names the key and line" "$ERR" "*plain*'token_url' (line 2)*insecure_http*"

# Two layers that differ: no warning.
printf '%s\n' "url = \"$SB/\";" \
	'stack = ( { provider = "apikey"; header = "X-API-Key"; key = "file:secrets/k"; },' \
	'  { provider = "apikey"; header = "X-Other"; key = "file:secrets/k"; } );' |
	service_file ok2
run check ok2
is "two different layers: ok" "$RC" 0
is "two different layers: no warning" "$ERR" ''

# Two identical layers: both would be sent.
printf '%s\n' "url = \"$SB/\";" \
	'stack = ( { provider = "apikey"; header = "X-API-Key"; key = "file:secrets/k"; },' \
	'  { provider = "apikey"; header = "X-API-Key"; key = "file:secrets/k"; } );' |
	service_file twice
run check twice
is "two identical layers: still ok" "$RC" 0
like "two identical layers: warned" "$ERR" '*twice: layers 1 and 2 are identical*'

done_testing
