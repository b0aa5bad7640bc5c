#!/bin/sh
# What `make install` puts where: the service directory, modules without
# libtool's .la files, one manual page per exported function, the bash
# completion where bash-completion looks.
. "$top_srcdir/tests/integration/lib.sh"

DEST="$T/inst"
(cd "$top_builddir" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -s install DESTDIR="$DEST") >"$T/install.log" 2>&1
ok "make install DESTDIR=\$T/inst" test $? -eq 0 || sed 's/^/# /' "$T/install.log"

# Where things went, from the build's own configuration.
mkvar() { sed -n "s/^$1 = //p" "$top_builddir/Makefile" | head -n 1; }
expand() { # expands ${prefix}-style references of the Makefile's variables
	_v=$1
	while case $_v in *'${'*) true ;; *) false ;; esac; do
		_name=$(printf '%s' "$_v" | sed 's/.*\${\([a-z_]*\)}.*/\1/')
		_v=$(printf '%s' "$_v" | sed "s|\${$_name}|$(mkvar "$_name")|")
	done
	printf '%s' "$_v"
}
PREFIX=$(mkvar prefix)
LIBDIR=$DEST$(expand "$(mkvar libdir)")
CONFDIR=$DEST$(expand "$(mkvar sysconfdir)")/apicred
MAN3=$DEST$(expand "$(mkvar mandir)")/man3
COMPDIR=$DEST$(expand "$(mkvar BASH_COMPLETION_DIR)")
MODULEDIR=$LIBDIR/apicred

ok "conf.d created under sysconfdir" test -d "$CONFDIR/conf.d"
ok "modules installed" test -f "$MODULEDIR/apikey.so"
is "no .la file in the module directory" "$(cd "$MODULEDIR" && ls ./*.la 2>/dev/null)" ""
ok "libapicred.so installed" test -e "$LIBDIR/libapicred.so"

# Every function the library exports has its page, and every page names
# an exported function (nm lists the versioned dynamic symbols).
nm -D --defined-only "$LIBDIR/libapicred.so" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' |
	sort -u >"$T/symbols"
(cd "$MAN3" && ls apicred_*.3 2>/dev/null) | sed 's/\.3$//' | sort -u >"$T/pages"
ok "nm found exported functions" test -s "$T/symbols"
is "a page per exported function, no other" "$(diff "$T/symbols" "$T/pages")" ""
bad=
for p in $(cat "$T/pages"); do
	[ "$(cat "$MAN3/$p.3")" = ".so man3/apicred.3" ] || bad="$bad $p"
done
is "each page is a .so link to apicred(3)" "$bad" ""
ok "apicred(3) itself installed" test -f "$MAN3/apicred.3"
# The pages the manuals refer to exist (apicred(1) cites apicred_report(3)...).
missing=
for ref in $(cat "$top_srcdir"/man/*.[1-8] "$top_srcdir/README.md" |
	grep -o 'apicred_[a-z_]*\\\{0,1\}\?\(\\f[RP]\)\{0,1\}\?(3)' |
	sed 's/[\\(].*//' | sort -u); do
	[ -f "$MAN3/$ref.3" ] || missing="$missing $ref"
done
is "every apicred_*(3) cited is installed" "$missing" ""

ok "bash completion installed" test -f "$COMPDIR/apicred"
if pkg-config --exists bash-completion 2>/dev/null; then
	is "completion where bash-completion's pkg-config says" "$(expand "$(mkvar BASH_COMPLETION_DIR)")" \
		"$(pkg-config --define-variable=prefix="$PREFIX" --variable=completionsdir bash-completion)"
else
	is "completion in \$datadir/bash-completion/completions" \
		"$(expand "$(mkvar BASH_COMPLETION_DIR)")" "$(expand "$(mkvar datadir)")/bash-completion/completions"
fi

# Uninstall leaves no module behind (libtool's own uninstall needs the .la).
(cd "$top_builddir" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -s uninstall DESTDIR="$DEST") >"$T/uninstall.log" 2>&1
ok "make uninstall" test $? -eq 0 || sed 's/^/# /' "$T/uninstall.log"
is "uninstall leaves no file" "$(find "$DEST" -type f | sed "s|^$DEST||")" ""

done_testing
