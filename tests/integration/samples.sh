#!/bin/sh
# The shipped apikey and tok samples (conf.d/apikey-example.conf,
# conf.d/edgecast.conf) with the real `apicred` tool: `get` prints exactly
# the right headers, and `request` gets through to the sandbox, through the
# backup token when the primary is revoked.
. "$top_srcdir/tests/integration/lib.sh"

PRIMARY=11111111-2222-3333-4444-555555555555
BACKUP=99999999-8888-7777-6666-555555555555
APIKEY=sb-apikey-0123456789

sandbox_start
confdir_new
# The samples as shipped, pointed at the sandbox (their url is the origin).
for _s in edgecast apikey-example; do
	sed "s|^url = \"https://[^\"]*\"|url = \"$SB/\"|" "$top_srcdir/conf.d/$_s.conf" \
		>"$CONF/conf.d/$_s.conf"
done
chmod 0644 "$CONF/conf.d/edgecast.conf" "$CONF/conf.d/apikey-example.conf"
secret_file edgecast.token "$PRIMARY"
secret_file edgecast.backup "$BACKUP"
secret_file example.apikey "$APIKEY"

nl='
'
# Everything apicred printed, to check that no secret is in it but where
# asked for (get's standard output).
SEEN=
r() {
	run "$@"
	case "$2" in get) SEEN="$SEEN$ERR" ;; *) SEEN="$SEEN$OUT$ERR" ;; esac
}
no_secret() {
	case "$SEEN" in
	*"$PRIMARY"*|*"$BACKUP"*|*"$APIKEY"*) return 1 ;;
	esac
	return 0
}

# ---- get: exact output ---------------------------------------------------
r apicred get edgecast
is "get edgecast: exit 0" "$RC" 0
is "get edgecast: exactly the TOK header" "$OUT" "Authorization: TOK:$PRIMARY"
is "get edgecast: nothing on stderr" "$ERR" ""

r apicred get apikey-example
is "get apikey-example: exit 0" "$RC" 0
is "get apikey-example: static header, then the key" "$OUT" \
	"Accept: application/json${nl}X-API-Key: $APIKEY"

r apicred check edgecast apikey-example
is "check of both samples: exit 0" "$RC" 0

# ---- request: through the sandbox ----------------------------------------
ctl reset
r apicred request edgecast "$SB/tok/v2/mcc/customers/me"
is "request edgecast with the primary: exit 0" "$RC" 0
is "request edgecast: one request" "$(count tok)" 1
like "request edgecast: the sandbox saw the primary" "$OUT" '*"token"*"primary"*'

r apicred request apikey-example "$SB/apikey/echo"
is "request apikey-example: exit 0" "$RC" 0
like "request apikey-example: the sandbox accepted the key" "$OUT" '*"ok"*true*'

# The admin revokes the primary: the first try gets 403, apicred reports it,
# fails over and retries once with the backup.
ctl set '{"tok_primary": null}'
r apicred request edgecast "$SB/tok/v2/mcc/customers/me"
is "request edgecast, primary revoked: exit 0 via the backup" "$RC" 0
is "request edgecast, primary revoked: two requests" "$(count tok)" 3
like "request edgecast, primary revoked: the sandbox saw the backup" "$OUT" \
	'*"token"*"backup"*'
like "request edgecast, primary revoked: the failover is logged" "$ERR" \
	'*edgecast*tok*refused (403)*failing over to backup_token*'
is "the retry carried exactly the backup token" "$(last tok headers.authorization)" \
	"TOK:$BACKUP"

# Both revoked: a clear failure, still no secret anywhere.
ctl set '{"tok_primary": null, "tok_backup": null}'
r apicred request edgecast "$SB/tok/v2/mcc/customers/me"
ok "request edgecast, both revoked: exit non-zero" test "$RC" -ne 0
is "request edgecast, both revoked: tried twice, no more" "$(count tok)" 5
like "request edgecast, both revoked: error names the service" "$ERR" "*edgecast*"
like "request edgecast, both revoked: error gives the status" "$ERR" "*403*"
ok "no secret in any output" no_secret

# ---- get: the backup after a 403 is per process; get starts on the primary
r apicred get edgecast
is "get edgecast in a new process: the primary again" "$OUT" "Authorization: TOK:$PRIMARY"

done_testing
