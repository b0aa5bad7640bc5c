#!/bin/sh
# Allocation-failure torture of services that fetch from the sandbox: an
# oauth2 token (a TLS request through libcurl and OpenSSL, a JSON reply
# through jansson) under an API key layer, by tests/unit/test_allocfail.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new
# No retries: a failed fetch is reported at once (no back-off sleeps). No
# shared store: every run fetches its own token.
{
	printf 'http = { ca_file = "%s"; retries = 0; };\n' "$SB_CA"
	echo 'log = { level = "error"; };'
	echo 'cache = { store = "none"; };'
} >"$CONF/apicred.conf"
secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
secret_file key sb-apikey-0123456789
service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "apikey"; key = "file:secrets/key"; },
          { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2

out=$("$top_builddir/tests/unit/test_allocfail" "$CONF" gen "$SB/x" 2>&1)
rc=$?
# Its TAP lines, renumbered as ours.
printf '%s\n' "$out" | while IFS= read -r line; do
	case $line in
	"ok "*|"not ok "*) ;;
	*) printf '# %s\n' "$line" ;;
	esac
done
printf '%s\n' "$out" | grep -q '^ok [0-9]* - gen: the reference run' &&
	ref=0 || ref=1
is "the reference run of gen succeeds" "$ref" 0
is "every failed allocation around open/get/report/close of gen is handled" "$rc" 0

# The same with a shared store: the runs read (and some write) the entry of
# the token the first one fetched.
sed 's/store = "none"/store = "file:'"$(printf '%s' "$T/store" | sed 's/[\/&]/\\&/g')"'"/' \
	"$CONF/apicred.conf" >"$CONF/apicred.conf.new"
mv "$CONF/apicred.conf.new" "$CONF/apicred.conf"
chmod 600 "$CONF/apicred.conf"
out=$("$top_builddir/tests/unit/test_allocfail" "$CONF" gen "$SB/x" 2>&1)
rc=$?
printf '%s\n' "$out" | while IFS= read -r line; do
	case $line in
	"ok "*|"not ok "*) ;;
	*) printf '# %s\n' "$line" ;;
	esac
done
ok "shared store: an entry was written" [ -n "$(ls "$T/store" 2>/dev/null)" ]
is "every failed allocation around open/get/report/close of gen, with a shared store, is handled" "$rc" 0
done_testing
