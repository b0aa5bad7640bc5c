#!/bin/sh
# The quick start's demo (`./run.sh demo`, tools/demo.sh) succeeds in every
# step against the sandbox, so a change that breaks it fails the suite.
. "$top_srcdir/tests/integration/lib.sh"

out=$(APICRED_BUILDDIR="$top_builddir" sh "$top_srcdir/tools/demo.sh" </dev/null 2>&1)
rc=$?
is "demo: exit 0" "$rc" 0
like "demo: every step succeeded" "$out" "*demo: all * steps succeeded*"
[ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
done_testing
