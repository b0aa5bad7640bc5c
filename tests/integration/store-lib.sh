# shellcheck shell=sh disable=SC2034 # APICRED_BIN FORK are for the sourcing test
# store-lib.sh - sourced by store.sh and store-redis.sh after lib.sh.

APICRED_BIN=$top_builddir/tools/apicred
FORK=$top_builddir/tests/drivers/store_fork

# gen_conf STORE [SECRET]: a fresh $CONF whose service "gen" takes OAuth 2.0
# tokens from the sandbox's generic endpoint, sharing them through STORE.
gen_conf() {
	confdir_new "$1"
	secret_file gen.id sb-client
	secret_file gen.secret "${2:-s3cr:t+/%&=é}"
	service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2
}

# tok_service: service "cdn" (primary and backup TOK: tokens) in $CONF.
tok_service() {
	secret_file tok.primary 11111111-2222-3333-4444-555555555555
	secret_file tok.backup 99999999-8888-7777-6666-555555555555
	service_file cdn <<EOF2
url = "$SB/";
stack = ( { provider = "tok"; token = "file:secrets/tok.primary";
            backup_token = "file:secrets/tok.backup"; } );
EOF2
}

# apicred_bg OUTFILE ARGS...: the tool in the background with $CONF; sets BG_PID.
apicred_bg() {
	_o=$1
	shift
	"$APICRED_BIN" -c "$CONF" -m "$APICRED_TEST_MODULEDIR" "$@" >"$_o" 2>"$_o.err" &
	BG_PID=$!
}

# parallel N ARGS...: N runs of the tool at once with $CONF; PAR_FAILED
# counts the ones that failed.
parallel() {
	_n=$1
	shift
	_pids=
	_i=0
	while [ "$_i" -lt "$_n" ]; do
		apicred_bg "$T/par.$_i" "$@"
		_pids="$_pids $BG_PID"
		_i=$((_i + 1))
	done
	PAR_FAILED=0
	for _p in $_pids; do
		wait "$_p" || PAR_FAILED=$((PAR_FAILED + 1))
	done
}

# wait_for WHAT CMD...: polls CMD (at most 20 s); bails out if it never holds.
wait_for() {
	_what=$1
	shift
	_i=0
	until "$@"; do
		_i=$((_i + 1))
		[ "$_i" -lt 200 ] || bail "$_what: never happened"
		sleep 0.1
	done
}

# count_is ENDPOINT N: whether the sandbox counted N requests to ENDPOINT
# (a command for wait_for, which runs it anew each time).
count_is() {
	[ "$(count "$1")" = "$2" ]
}

# looked_twice FILE: whether a process logging debug traces to FILE looked at
# the store at least twice (it traces every miss), i.e. found the lock held
# and waits.
looked_twice() {
	[ "$(grep -c 'no entry in the shared store' "$1" 2>/dev/null)" -ge 2 ]
}
