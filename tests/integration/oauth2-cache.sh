#!/bin/sh
# The credential cache through the oauth2 provider (single flight, refresh
# ahead, stale-if-error, 401, Retry-After, expires_in, error bodies) and the
# provisioning op: C tests (tests/drivers/oauth2_cache.c) that need the
# library's clock hooks, run here against the sandbox. Their TAP is ours.
. "$top_srcdir/tests/integration/lib.sh"

sandbox_start
confdir_new

secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
secret_file momo.subkey sb-momo-subkey-abcdef
secret_file bad.subkey not-the-subscription-key

service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token"; default_ttl = 600;
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2

# "bar": the same on the plain HTTP listener, whose token endpoint
# ("http-token") is counted apart from gen's.
service_file bar <<EOF2
url = "$SB_HTTP/"; insecure_http = true;
stack = ( { provider = "oauth2"; token_url = "$SB_HTTP/oauth2/token"; insecure_http = true;
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2

for svc in momo-prov:momo.subkey:prov momo-badkey:bad.subkey:badkey; do
	name=${svc%%:*} rest=${svc#*:}
	subkey=${rest%%:*} files=${rest#*:}
	service_file "$name" <<EOF2
url = "$SB/momo/";
headers = ( "X-Target-Environment: sandbox" );
stack = (
  { provider = "apikey"; header = "Ocp-Apim-Subscription-Key"; key = "file:secrets/$subkey"; },
  { provider = "oauth2"; token_url = "$SB/momo/collection/token/";
    client_id = "file:secrets/$files.user"; client_secret = "file:secrets/$files.key";
    provision_url = "$SB/momo/v1_0"; callback_host = "clinic.example"; }
);
EOF2
done

APICRED_TEST_CONFDIR=$CONF

# The same "gen" in a confdir whose contexts share sessions through a store.
confdir_new "file:$T/store"
secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2
APICRED_TEST_STORE_CONFDIR=$CONF
export SB SB_CA APICRED_TEST_CONFDIR APICRED_TEST_STORE_CONFDIR APICRED_TEST_MODULEDIR
CMOCKA_MESSAGE_OUTPUT=TAP
export CMOCKA_MESSAGE_OUTPUT
"$top_builddir/tests/drivers/oauth2_cache"
exit $?
