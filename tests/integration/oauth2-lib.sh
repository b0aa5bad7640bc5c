# oauth2-lib.sh - helpers shared by the oauth2*.sh tests (sourced after lib.sh).

# form_field BODY NAME: the raw (still form-encoded) value of NAME in BODY.
form_field() {
	printf '%s' "$1" | tr '&' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# no_secret WHAT TEXT SECRET...: ok when none of the secrets appears in TEXT.
no_secret() {
	_what=$1 _text=$2
	shift 2
	for _s in "$@"; do
		case $_text in
		*"$_s"*) ok "$_what" false; return ;;
		esac
	done
	ok "$_what" true
}
