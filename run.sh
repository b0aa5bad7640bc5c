#!/bin/sh
# Build apicred and run its demo or its test suite (Debian 12; as root it
# installs the Debian packages it needs first).
#
#   ./run.sh demo              build, then tools/demo.sh against the local sandbox
#   ./run.sh test              build, then `make check` (exit status = the suite's)
#   ./run.sh test-sanitizers   the same with ASan + UBSan, built in _build-san
#   ./run.sh test-tsan         the threaded unit tests (reload/fork hammer, cache,
#                              get) under ThreadSanitizer, built in _build-tsan
#   ./run.sh bench             build, then `make bench`
#   ./run.sh fuzz [SECONDS]    libFuzzer targets (clang), built in _build-fuzz,
#                              each run SECONDS (default 60)
#   ./run.sh build             build only
#
# Builds go to _build (or to the source tree if it was configured in-tree).
set -eu

cd "$(dirname "$0")"
SRCDIR=$(pwd)
JOBS=$(nproc 2>/dev/null || echo 2)
PACKAGES="autoconf automake libtool pkg-config make gcc libcurl4-openssl-dev
libssl-dev libconfig-dev libjansson-dev libcmocka-dev libhiredis-dev python3 python3-botocore openssl curl
abigail-tools nodejs npm redis-server"

say() { printf 'run.sh: %s\n' "$*" >&2; }

deps() {
	command -v dpkg-query >/dev/null 2>&1 || { say "not Debian: install the equivalents of: $(echo $PACKAGES)"; return 0; }
	missing=
	for p in $PACKAGES; do
		# Node from elsewhere (e.g. NodeSource, whose nodejs bundles npm and
		# conflicts with Debian's npm) serves as well.
		case $p in
		nodejs) command -v node >/dev/null 2>&1 && continue ;;
		npm) command -v npm >/dev/null 2>&1 && continue ;;
		esac
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		say "missing Debian packages:$missing"
		say "install them (sudo apt-get install$missing) or run as root"
		exit 1
	fi
	say "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || say "apt-get update failed; trying the install anyway"
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
}

# oidc_peer DIR: oidc-provider, the OAuth 2.0 peer of the oauth2-oidc test,
# installed from the npm registry with `npm ci` at the version pinned in
# tests/oidc/package-lock.json, into DIR/tests/oidc (once per lock file).
# A failure is loud here, and the test bails out naming the fix.
oidc_peer() {
	peer=$1/tests/oidc
	if [ -f "$peer/node_modules/oidc-provider/package.json" ] &&
		cmp -s "$SRCDIR/tests/oidc/package-lock.json" "$peer/package-lock.json"; then
		return 0
	fi
	say "npm ci (oidc-provider, pinned) in $peer"
	mkdir -p "$peer"
	cp "$SRCDIR/tests/oidc/package.json" "$SRCDIR/tests/oidc/package-lock.json" "$peer/"
	(cd "$peer" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund) ||
		say "npm ci failed in $peer: tests/integration/oauth2-oidc.sh will fail"
}

# build DIR [configure options]: autogen, configure (VPATH unless DIR is .), make.
build() {
	dir=$1; shift
	[ -x "$SRCDIR/configure" ] || { say "autogen"; "$SRCDIR/autogen.sh"; }
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		say "configure in $dir $*"
		if [ "$dir" = . ]; then ./configure "$@"; else (cd "$dir" && "$SRCDIR/configure" "$@"); fi
	fi
	oidc_peer "$dir"
	say "make -j$JOBS in $dir"
	make -C "$dir" -j"$JOBS"
}

# The in-tree build, when someone ran ./configure there, else _build
# (an in-tree configure forbids VPATH builds of the same tree).
builddir() {
	if [ -f "$SRCDIR/config.status" ]; then echo .; else echo _build; fi
}

# check DIR [TESTS]: make check (of TESTS only, if given); on failure show
# the failed tests' logs.
check() {
	dir=$1
	rm -f "$dir/test-suite.log"
	rc=0
	if [ -n "${2:-}" ]; then
		make -C "$dir" -j"$JOBS" check TESTS="$2" || rc=$?
	else
		make -C "$dir" -j"$JOBS" check || rc=$?
	fi
	if [ "$rc" != 0 ] && [ -f "$dir/test-suite.log" ]; then
		say "failures (from $dir/test-suite.log):"
		cat "$dir/test-suite.log" >&2
	fi
	return "$rc"
}

cmd=${1:-}
case $cmd in
demo)
	deps
	dir=$(builddir)
	build "$dir"
	exec env APICRED_BUILDDIR="$SRCDIR/$dir" sh "$SRCDIR/tools/demo.sh"
	;;
test)
	deps
	dir=$(builddir)
	build "$dir"
	check "$dir"
	;;
test-sanitizers)
	deps
	if [ -f "$SRCDIR/config.status" ]; then
		say "the source tree is configured in-tree; run 'make distclean' there first"
		exit 1
	fi
	build _build-san --enable-sanitizers
	check _build-san
	;;
test-tsan)
	deps
	if [ -f "$SRCDIR/config.status" ]; then
		say "the source tree is configured in-tree; run 'make distclean' there first"
		exit 1
	fi
	build _build-tsan --enable-sanitizers=thread
	check _build-tsan "tests/unit/test_reclaim tests/unit/test_cache tests/unit/test_get"
	;;
bench)
	deps
	dir=$(builddir)
	build "$dir"
	make -C "$dir" bench
	;;
fuzz)
	deps
	# 77: cannot fuzz here (as automake's skip).
	command -v clang >/dev/null 2>&1 || { say "fuzzing needs clang (Debian: clang)"; exit 77; }
	echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
		clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null ||
		{ say "clang cannot link libFuzzer (Debian: libclang-rt-14-dev)"; exit 77; }
	build _build-fuzz --enable-fuzzing CC=clang
	make -C _build-fuzz fuzz FUZZ_SECONDS="${2:-60}"
	;;
build)
	deps
	build "$(builddir)"
	;;
*)
	sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
