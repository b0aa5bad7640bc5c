#!/bin/sh
# libapicred as a plug-in host's dependency: loaded with dlopen, used by a
# thread, unloaded with dlclose while that thread still runs, then the
# thread exits and the process forks (tests/drivers/unload). The library's
# thread-exit destructors and fork handlers stay registered with libc, so
# dlclose must leave its code in place (it is linked -z nodelete).
# Then the same load in a process with no static TLS to spare.
. "$top_srcdir/tests/integration/lib.sh"

LIB="$top_builddir/.libs/libapicred.so.1"
[ -e "$LIB" ] || bail "$LIB not built"

confdir_new
secret_file k "unload-key-0123456789"
service_file key <<CONF
url = "https://127.0.0.1:9/";
stack = ( { provider = "apikey"; key = "file:secrets/k"; } );
CONF

RC=0
OUT=$("$top_builddir/tests/drivers/unload" "$LIB" "$CONF" "$APICRED_TEST_MODULEDIR" key \
	2>"$T/err") || RC=$?
diag "$OUT" "$(cat "$T/err")"
is "the process survives the unload, the thread's exit and a fork" "$RC" 0
like "the thread failed a get (its error message is thread-local)" "$OUT" \
	"*get no-such-service: rc 4*"
like "the thread got the credential before the unload" "$OUT" "*get key: rc 0, 1 header(s)*"
like "dlclose succeeded" "$OUT" "*dlclose: 0*"
like "the thread exited after the unload" "$OUT" "*thread exited*"
like "a fork after the unload went through" "$OUT" "*fork: child status 0*"
unlike "no secret in the output" "$OUT$(cat "$T/err")" "*unload-key-0123456789*"

# The static TLS glibc keeps for libraries loaded later is a few hundred
# bytes shared by all of them: a process whose other libraries took it
# still loads this one (its TLS block is small; its error messages live on
# the heap).
RC=0
OUT=$(GLIBC_TUNABLES=glibc.rtld.optional_static_tls=0 \
	"$top_builddir/tests/drivers/unload" "$LIB" "$CONF" "$APICRED_TEST_MODULEDIR" key \
	2>"$T/err") || RC=$?
diag "$OUT" "$(cat "$T/err")"
is "loaded with no static TLS kept for dlopen" "$RC" 0
like "and used" "$OUT" "*get key: rc 0, 1 header(s)*"
done_testing
