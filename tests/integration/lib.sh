# shellcheck shell=sh disable=SC2034 # OUT ERR RC SB_* are for the sourcing test
# lib.sh - sourced by every tests/integration/*.sh (see tests/sandbox/SPEC.md).
#
#   . "$top_srcdir/tests/integration/lib.sh"
#
# POSIX sh (works under dash and bash) and safe under `set -eu`. Makes $T, a
# private temporary directory removed at exit together with the sandbox.
# Every helper that reaches the sandbox uses python3 (never the code under
# test). Output is TAP: `ok N - what` per case, the plan at done_testing.

# ---- environment (make check exports these; defaults for running by hand) --
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${APICRED_TEST_MODULEDIR:=$top_builddir/providers/.libs}"
: "${PYTHON3:=python3}"
: "${OPENSSL:=openssl}"
export top_srcdir top_builddir APICRED_TEST_MODULEDIR PYTHON3 OPENSSL
# The user's environment must not point the tool elsewhere.
unset APICRED_CONFDIR APICRED_MODULEDIR || :

SB_SRC="$top_srcdir/tests/sandbox"
SB_PID=
CONF=
OUT=''
ERR=''
RC=0
SB_STATUS=''
SB_BODY=''
SB_ERR=''
SB_EXIT=''
_tap_n=0
_tap_failed=0
_tap_planned=
_conf_n=0

T=$(mktemp -d "${TMPDIR:-/tmp}/apicred-test.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}
export T
# The shared session store's default directory is $XDG_RUNTIME_DIR/apicred:
# never the real one. confdir_new gives each confdir its own store anyway.
XDG_RUNTIME_DIR=$T/xdg
(umask 077 && mkdir "$XDG_RUNTIME_DIR")
export XDG_RUNTIME_DIR

# ---- cleanup --------------------------------------------------------------
_lib_cleanup() {
	_rc=$?
	if [ -n "$SB_PID" ] && kill -0 "$SB_PID" 2>/dev/null; then
		kill -TERM "$SB_PID" 2>/dev/null || :
		_i=0
		while kill -0 "$SB_PID" 2>/dev/null && [ "$_i" -lt 50 ]; do
			sleep 0.1
			_i=$((_i + 1))
		done
		kill -KILL "$SB_PID" 2>/dev/null || :
		wait "$SB_PID" 2>/dev/null || :
	fi
	SB_PID=
	if [ -n "${APICRED_TEST_KEEP:-}" ]; then
		echo "# kept $T" >&2
	else
		rm -rf "$T"
	fi
	return "$_rc"
}
trap _lib_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- TAP ----------------------------------------------------------------------
diag() { # diag TEXT...: each argument (and each line in it) as a "# " line
	for _l in "$@"; do
		printf '%s\n' "$_l"
	done | sed 's/^/# /'
}

_tap_result() { # _tap_result 0|1 WHAT
	_tap_n=$((_tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $_tap_n - $2"
	else
		echo "not ok $_tap_n - $2"
		_tap_failed=$((_tap_failed + 1))
	fi
}

# ok WHAT [!] COMMAND...   e.g. ok "exit 0" test "$RC" -eq 0
# COMMAND is run as is (test, [, grep -q ..., a function); a leading ! negates
# it; when the first word is no command at all it is taken as a test(1)
# expression: ok "empty" -z "$OUT".
ok() {
	_what=$1
	shift
	_neg=0
	if [ "${1:-}" = "!" ]; then
		_neg=1
		shift
	fi
	if [ $# -gt 0 ] && command -v -- "$1" >/dev/null 2>&1; then
		if "$@"; then _r=0; else _r=1; fi
	else
		if test "$@"; then _r=0; else _r=1; fi
	fi
	[ "$_neg" -eq 0 ] || _r=$((1 - _r))
	_tap_result "$_r" "$_what"
	return 0
}

# is WHAT GOT EXPECTED
is() {
	if [ "$2" = "$3" ]; then
		_tap_result 0 "$1"
	else
		_tap_result 1 "$1"
		diag "     got: '$2'" "expected: '$3'"
	fi
	return 0
}

# like WHAT GOT PATTERN / unlike WHAT GOT PATTERN  (shell glob, whole string)
# shellcheck disable=SC2254
like() {
	case $2 in
	$3) _tap_result 0 "$1" ;;
	*)
		_tap_result 1 "$1"
		diag "     got: '$2'" " pattern: '$3'"
		;;
	esac
	return 0
}
# shellcheck disable=SC2254
unlike() {
	case $2 in
	$3)
		_tap_result 1 "$1"
		diag "     got: '$2'" "excluded: '$3'"
		;;
	*) _tap_result 0 "$1" ;;
	esac
	return 0
}

# skip WHY [N]: N skipped cases (default 1)
skip() {
	_k=${2:-1}
	while [ "$_k" -gt 0 ]; do
		_tap_n=$((_tap_n + 1))
		echo "ok $_tap_n # SKIP $1"
		_k=$((_k - 1))
	done
	return 0
}

# skip_all WHY: the whole script is skipped (call before any case)
skip_all() {
	echo "1..0 # SKIP $1"
	_tap_planned=yes
	exit 0
}

# bail WHY: stop everything, loudly
bail() {
	echo "Bail out! $*"
	_tap_planned=yes
	exit 1
}

# ok_lines: one case per input line "PASS what" or "FAIL what [detail]",
# for checks computed by a helper program (python3 in the self-test).
ok_lines() {
	_seen=0
	while IFS= read -r _line; do
		case $_line in
		"PASS "*) _tap_result 0 "${_line#PASS }"; _seen=1 ;;
		"FAIL "*) _tap_result 1 "${_line#FAIL }"; _seen=1 ;;
		"") ;;
		*) diag "$_line" ;;
		esac
	done
	[ "$_seen" -eq 1 ] || _tap_result 1 "helper produced no results"
	return 0
}

# done_testing: print the plan; exit non-zero if a case failed or none ran
done_testing() {
	_tap_planned=yes
	echo "1..$_tap_n"
	if [ "$_tap_n" -eq 0 ]; then
		diag "no test case ran"
		exit 1
	fi
	if [ "$_tap_failed" -gt 0 ]; then
		diag "$_tap_failed of $_tap_n failed"
		exit 1
	fi
	exit 0
}

# ---- sandbox -----------------------------------------------------------------
# sandbox_start: certificates + server; exports SB SB_PORT SB_MTLS SB_TLS13
# SB_TLS12 SB_BADHOST SB_UNKNOWNCA SB_HTTP SB_CA SB_CERTS SB_DIR SB_LOG SB_PID.
sandbox_start() {
	SB_DIR=$T/sandbox
	SB_CERTS=$SB_DIR/certs
	SB_LOG=$SB_DIR/sandbox.log
	SB_CA=$SB_CERTS/ca.pem
	export SB_DIR SB_CERTS SB_LOG SB_CA
	mkdir -p "$SB_DIR" || bail "cannot make $SB_DIR"
	if ! sh "$SB_SRC/mkcerts.sh" "$SB_CERTS" >"$SB_DIR/mkcerts.log" 2>&1; then
		sed 's/^/# /' "$SB_DIR/mkcerts.log"
		bail "mkcerts.sh failed (is openssl installed?)"
	fi
	"$PYTHON3" "$SB_SRC/sandbox.py" --certs "$SB_CERTS" --dir "$SB_DIR" \
		</dev/null >>"$SB_DIR/sandbox.out" 2>&1 &
	SB_PID=$!
	_i=0
	while [ ! -f "$SB_DIR/ports.env" ]; do
		if ! kill -0 "$SB_PID" 2>/dev/null; then
			sed 's/^/# /' "$SB_DIR/sandbox.out" 2>/dev/null
			SB_PID=
			bail "sandbox exited at start (see above)"
		fi
		_i=$((_i + 1))
		if [ "$_i" -gt 200 ]; then
			sed 's/^/# /' "$SB_DIR/sandbox.out" 2>/dev/null
			bail "sandbox not ready after 10 s"
		fi
		sleep 0.05
	done
	# shellcheck source=/dev/null
	. "$SB_DIR/ports.env"
	[ "$SB_PID" = "$(sed -n 's/^SB_PID=//p' "$SB_DIR/ports.env")" ] ||
		bail "ports.env is not from this sandbox"
	export SB SB_PORT SB_MTLS SB_TLS13 SB_TLS12 SB_BADHOST SB_UNKNOWNCA SB_HTTP \
		SB_PID
}

# sandbox_stop: SIGTERM it now and wait; SB_EXIT = its exit status
# (the exit trap stops it anyway)
sandbox_stop() {
	SB_EXIT=
	if [ -n "$SB_PID" ]; then
		kill -TERM "$SB_PID" 2>/dev/null || :
		SB_EXIT=0
		wait "$SB_PID" 2>/dev/null || SB_EXIT=$?
		SB_PID=
	fi
	return 0
}

_sbclient() {
	"$PYTHON3" "$SB_SRC/sbclient.py" --ca "$SB_CA" "$@"
}

# ctl OP [ARGS]: drive the sandbox; fails (non-zero, with a diag) if it refused
#   ctl reset | ctl expire
#   ctl fault ENDPOINT KIND [TIMES [ARG]]      (TIMES default 1, 0 clears)
#   ctl set '{"json": "object"}'
ctl() {
	[ -n "${SB:-}" ] || bail "ctl: sandbox_start first"
	_op=${1:?ctl: operation missing}
	shift
	case $_op in
	reset | expire)
		_out=$(_sbclient -X POST "$SB/_ctl/$_op" 2>&1) ;;
	fault)
		_q="endpoint=${1:?ctl fault ENDPOINT KIND}&kind=${2:?ctl fault ENDPOINT KIND}&times=${3:-1}"
		[ $# -ge 4 ] && _q="$_q&arg=$4"
		_out=$(_sbclient -X POST "$SB/_ctl/fault?$_q" 2>&1) ;;
	set)
		_out=$(_sbclient -X POST -H 'Content-Type: application/json' \
			-d "${1:?ctl set JSON}" "$SB/_ctl/set" 2>&1) ;;
	*)
		diag "ctl: unknown operation $_op"
		return 1 ;;
	esac || {
		diag "ctl $_op failed: $_out"
		return 1
	}
	return 0
}

# count ENDPOINT: prints how many requests the endpoint served
count() {
	_sbclient --field count "$SB/_ctl/count?endpoint=${1:?count ENDPOINT}" ||
		echo "error"
}

# last ENDPOINT [FIELD]: the last request to ENDPOINT as JSON, or one field
# of it (dotted path: headers.authorization, client_cert_subject, body)
last() {
	if [ $# -ge 2 ]; then
		_sbclient --field "$2" "$SB/_ctl/last?endpoint=$1"
	else
		_sbclient "$SB/_ctl/last?endpoint=${1:?last ENDPOINT}"
	fi
}

# sb_request [sbclient.py options] URL: a request made by python3, not by
# apicred; sets SB_STATUS (HTTP status, or "" if none), SB_BODY, SB_ERR
sb_request() {
	_rc=0
	_sbclient -i "$@" >"$T/sb.out" 2>"$T/sb.err" || _rc=$?
	SB_STATUS=$(sed -n '1s/^HTTP //p' "$T/sb.out")
	SB_BODY=$(sed '1d' "$T/sb.out")
	SB_ERR=$(cat "$T/sb.err")
	[ "$_rc" -ne 2 ] || SB_STATUS=
	return 0
}

# ---- configuration for the tool ----------------------------------------------
# confdir_new [STORE]: a fresh $CONF with apicred.conf (trusting $SB_CA when
# the sandbox runs, debug logging, cache.store = STORE), conf.d/ and
# secrets/, all 0700/0600. STORE defaults to "none": most tests count the
# requests of one process; the shared store's tests pass "file:DIR" or a
# redis:// URL.
confdir_new() {
	_conf_n=$((_conf_n + 1))
	CONF=$T/conf$_conf_n
	export CONF
	(umask 077 && mkdir -p "$CONF/conf.d" "$CONF/secrets") ||
		bail "cannot make $CONF"
	{
		if [ -n "${SB_CA:-}" ]; then
			printf 'http = { ca_file = "%s"; };\n' \
				"$(printf '%s' "$SB_CA" | sed 's/[\\"]/\\&/g')"
		fi
		echo 'log = { level = "debug"; };'
		printf 'cache = { store = "%s"; };\n' "${1:-none}"
	} >"$CONF/apicred.conf"
	chmod 600 "$CONF/apicred.conf"
}

# service_file NAME [MODE] <<EOF ... EOF: writes $CONF/conf.d/NAME.conf
service_file() {
	[ -n "$CONF" ] || confdir_new
	cat >"$CONF/conf.d/${1:?service_file NAME}.conf"
	chmod "${2:-600}" "$CONF/conf.d/$1.conf"
}

# secret_file NAME VALUE [MODE]: $CONF/secrets/NAME, no trailing newline
secret_file() {
	[ -n "$CONF" ] || confdir_new
	_f=$CONF/secrets/${1:?secret_file NAME VALUE}
	(umask 077 && mkdir -p "$(dirname "$_f")")
	(umask 077 && printf '%s' "${2?secret_file NAME VALUE}" >"$_f")
	chmod "${3:-600}" "$_f"
}

# run [apicred] ARGS...: tools/apicred -c $CONF -m $APICRED_TEST_MODULEDIR ARGS; sets
# OUT, ERR (trailing newlines stripped) and RC; never fails the script.
# APICRED_TEST_WRAPPER (e.g. "valgrind -q --error-exitcode=99") is put in front;
# APICRED_TEST_TIMEOUT (default 60 s) bounds it (RC 124 on time-out).
run() {
	[ -n "$CONF" ] || confdir_new
	# `run apicred get svc` (as SPEC.md's example reads) = `run get svc`
	[ "${1:-}" != apicred ] || shift
	_to=
	if command -v timeout >/dev/null 2>&1; then
		_to="timeout -k 5 ${APICRED_TEST_TIMEOUT:-60}"
	fi
	RC=0
	# shellcheck disable=SC2086 # both are word lists on purpose
	$_to ${APICRED_TEST_WRAPPER:-} "$top_builddir/tools/apicred" \
		-c "$CONF" -m "$APICRED_TEST_MODULEDIR" "$@" \
		>"$T/run.out" 2>"$T/run.err" || RC=$?
	OUT=$(cat "$T/run.out")
	ERR=$(cat "$T/run.err")
	return 0
}
