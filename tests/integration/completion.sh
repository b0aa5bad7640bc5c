#!/bin/bash
# Bash completion (tools/completion/apicred), the way bash runs it: the
# words on the line in COMP_WORDS, the function it registered with
# `complete`, its answers (made with compgen) in COMPREPLY.
. "$top_srcdir/tests/integration/lib.sh"

# shellcheck source=/dev/null
. "$top_srcdir/tools/completion/apicred"
is "registered for apicred" "$(complete -p apicred)" "complete -F _apicred apicred"

TOOL="$top_builddir/tools/apicred"
confdir_new
service_file alpha <<'EOF'
stack = ( { provider = "apikey"; key = "env:NOPE"; } );
EOF
service_file beta <<'EOF'
stack = ( { provider = "apikey"; key = "env:NOPE"; } );
EOF
mkdir -p "$T/dirs/conf-a" "$T/dirs/conf-b"

# comp WORD...: completes the last word (may be ""); prints the candidates
# sorted, space-separated.
comp() {
	COMP_WORDS=("$TOOL" "$@")
	COMP_CWORD=$#
	COMP_LINE="${COMP_WORDS[*]}"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_apicred
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

is "commands" "$(comp '')" "cache check get help list providers provision request"
is "commands, after a global option" "$(comp -v pro)" "providers provision"
is "help COMMAND" "$(comp help re)" "request"
is "global options" "$(comp --con)" "--confdir"
is "get's options" "$(comp get svc --j)" "--json"
is "request's options" "$(comp request svc url -w)" "-w"
like "request's long options" "$(comp request --)" "*--fail*--include*--output*--silent*--write-out*"
is "check's options" "$(comp check --)" "--confdir --help --json --moduledir --online --verbose --version"
is "service names from the -c on the line" "$(comp -c "$CONF" get '')" "alpha beta"
is "service names, -c after the command" "$(comp get -c "$CONF" -m "$APICRED_TEST_MODULEDIR" a)" "alpha"
is "service names, --confdir=DIR" "$(comp --confdir="$CONF" provision b)" "beta"
is "check takes several services" "$(comp -c "$CONF" check alpha '')" "alpha beta"
is "get takes one service" "$(comp -c "$CONF" get alpha '')" ""
is "request's URL is free text" "$(comp -c "$CONF" request alpha '')" ""
is "-X: methods" "$(comp -c "$CONF" request alpha url -X P)" "PATCH POST PUT"
is "-c: directories" "$(comp -c "$T/dirs/conf-")" "$T/dirs/conf-a $T/dirs/conf-b"
is "-d: no candidates (data)" "$(comp get alpha -d '')" ""

done_testing
