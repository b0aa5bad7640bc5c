#!/bin/sh
# The core's shape, enforced (issue 12): the graph of which core file uses
# which (from the built objects: every symbol a file leaves undefined and
# another core file defines) has no cycle, and no function in core/ is
# longer than 80 lines. Calls into providers go through the vtable, a
# pointer: they are no edge, as they should not be.
#
# By hand, to see the graph:  sh tests/integration/core-layers.sh
# (with top_builddir set to a built tree; `make check` sets it).
. "$top_srcdir/tests/integration/lib.sh"

MAXLEN=80
# file SYMBOL lines: what each file defines (D) and uses (U), from the
# objects of today's sources (a build tree may keep a removed file's).
for src in "$top_srcdir"/core/*.c; do
	f=${src##*/}
	f=${f%.c}
	o="$top_builddir/core/.libs/libapicred_la-$f.o"
	[ -f "$o" ] || bail "$o: not built (build first)"
	nm --defined-only -g "$o" | awk -v f="$f" 'NF == 3 { print "D", f, $3 }'
	nm -u "$o" | awk -v f="$f" '{ print "U", f, $NF }'
done >"$T/syms"

# Edges "from to" (from uses a symbol that to defines), each once.
awk '$1 == "D" { def[$3] = $2; next }
     { use[NR] = $2 " " $3 }
     END { for (i in use) { split(use[i], a, " ");
                            if ((a[2] in def) && def[a[2]] != a[1]) print a[1], def[a[2]] } }' \
	"$T/syms" "$T/syms" | sort -u >"$T/edges"
ok "the core's objects have edges between files" test -s "$T/edges"

# Kahn's algorithm: peel files that use no file left; whatever remains is
# on a cycle. Each file is printed with its rank (0 = uses no core file).
awk '{ n[$1]; n[$2]; out[$1] = out[$1] " " $2; deg[$1]++ }
     END {
       for (r = 0; ; r++) {
         k = 0
         for (f in n) if (!(f in done) && deg[f] == 0) peel[k++] = f
         if (!k) break
         for (i = 0; i < k; i++) {
           done[peel[i]] = r
           for (g in n) if (!(g in done) && index(out[g] " ", " " peel[i] " ")) deg[g]--
         }
       }
       for (f in n) if (f in done) print "rank", done[f], f, out[f]; else print "cycle", f, out[f]
     }' "$T/edges" | sort -k2,2n -k3 >"$T/ranks"
diag "core file -> core files it uses (rank: the longest way down to a file using none):"
diag "$(awk '$1 == "rank" { printf "%2d %-12s ->", $2, $3; for (i = 4; i <= NF; i++) printf " %s", $i; print "" }' "$T/ranks")"
grep '^cycle' "$T/ranks" >"$T/cycles" || :
ok "no cycle between core files" test ! -s "$T/cycles"
[ -s "$T/cycles" ] && diag "on or above a cycle:" "$(cat "$T/cycles")"

# Function lengths: core/ is written with a function's '{' and '}' alone
# in column 0; its first line is the last one before '{' that starts in
# column 0 (the return type or the name).
awk -v max="$MAXLEN" '
	FNR == 1 { start = 0; head = 0 }
	/^[A-Za-z_]/ && !/^#/ { head = FNR; name = $0 }
	/^\{/ { start = head; fname = name }
	/^\}/ && start { len = FNR - start + 1
	                 if (len > max) printf "%s:%d: %d lines: %s\n", FILENAME, start, len, fname
	                 start = 0 }' "$top_srcdir"/core/*.c >"$T/long"
ok "no function in core/ is longer than $MAXLEN lines" test ! -s "$T/long"
[ -s "$T/long" ] && diag "$(sed "s|$top_srcdir/||" "$T/long")"
done_testing
