#!/bin/sh
# The ABI guard: libapicred.so.1 against the committed baseline
# (abi/libapicred.abi, made by abidw from the 1.0 library). Appended
# functions, appended fields of apicred_options and apicred_request, and
# appended error codes pass (abi/libapicred.suppr); anything else (a removed
# or changed function, a field moved or retyped) fails.
#
# A compatible addition needs nothing. A new soname needs a new baseline:
#   abidw --no-corpus-path --headers-dir include/apicred --drop-private-types \
#         --out-file abi/libapicred.abi _build/.libs/libapicred.so.1
. "$top_srcdir/tests/integration/lib.sh"

command -v abidiff >/dev/null 2>&1 || skip_all "abidiff not found (install abigail-tools)"

LIB="$top_builddir/.libs/libapicred.so.1"
BASE="$top_srcdir/abi/libapicred.abi"
SUPPR="$top_srcdir/abi/libapicred.suppr"
HDRS="$top_srcdir/include/apicred"

[ -e "$LIB" ] || bail "$LIB not built"
# abidiff compares types through DWARF: without it there is nothing to check.
readelf -S "$LIB" | grep -q '\.debug_info' ||
	skip_all "libapicred.so.1 has no debug information (build with -g, the default)"

RC=0
abidiff --suppressions "$SUPPR" --headers-dir2 "$HDRS" "$BASE" "$LIB" >"$T/abidiff" 2>&1 || RC=$?
# abidiff's exit status is a bit field: 1 error, 2 usage, 4 ABI change,
# 8 incompatible change.
is "abidiff ran" "$((RC & 3))" 0
is "no incompatible change against abi/libapicred.abi" "$((RC & 8))" 0
is "no change but appended functions, fields and codes" "$((RC & 4))" 0
diag "$(cat "$T/abidiff")"
# What the suppressions allowed, for the log.
abidiff --headers-dir2 "$HDRS" "$BASE" "$LIB" >"$T/all" 2>&1 || :
diag "without suppressions:" "$(cat "$T/all")"
done_testing
