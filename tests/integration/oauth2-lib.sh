# oauth2-lib.sh - helpers shared by the oauth2*.sh tests (sourced after lib.sh).

# sbreq METHOD PATH [BODY]: a request to the sandbox; prints the body.
sbreq() {
	"$PYTHON3" - "$@" <<'PY'
import os, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["SB_CA"])
body = sys.argv[3].encode() if len(sys.argv) > 3 else (b"" if sys.argv[1] == "POST" else None)
req = urllib.request.Request(os.environ["SB"] + sys.argv[2], data=body, method=sys.argv[1],
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, context=ctx) as r:
    sys.stdout.write(r.read().decode())
PY
}

# last ENDPOINT FIELD: a field of the sandbox's record of the last request
# to ENDPOINT: method, path, query, body, or header.NAME (lowercase).
last() {
	sbreq GET "/_ctl/last?endpoint=$1" | "$PYTHON3" -c '
import json, sys
j = json.load(sys.stdin); f = sys.argv[1]
v = (j.get("headers") or {}).get(f[7:]) if f.startswith("header.") else j.get(f)
sys.stdout.write("" if v is None else str(v))' "$2"
}

# form_field BODY NAME: the raw (still form-encoded) value of NAME in BODY.
form_field() {
	printf '%s' "$1" | tr '&' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# ctl_set JSON: overrides sandbox defaults (POST /_ctl/set).
ctl_set() {
	sbreq POST /_ctl/set "$1" >/dev/null
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
