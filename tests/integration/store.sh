#!/bin/sh
# The shared session store in a directory (cache.store = "file:DIR"): one
# token for many processes, sealed entries, the lock across processes, 401
# invalidation, tok failover, a broken store, and `apicred cache`.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/store-lib.sh"

sandbox_start

# ---- one token for many processes -----------------------------------------
gen_conf "file:$T/s1"
ctl reset
out=$("$FORK" "$CONF" "$APICRED_TEST_MODULEDIR" gen 16 2>"$T/fork.err") || :
is "16 forked cold processes: all get credentials" "$out" "ok 16"
is "16 forked cold processes: one token request" "$(count token)" 1
ok "the store directory is 0700" [ "$(stat -c %a "$T/s1")" = 700 ]
entry=$(find "$T/s1" -maxdepth 1 -type f -name '????????????????????????????????????????????????????????????????')
ok "one entry, named by 64 hex digits" [ "$(printf '%s\n' "$entry" | grep -c .)" = 1 ]
ok "the entry is 0600" [ "$(stat -c %a "$entry")" = 600 ]
ok "no secret and no token in the store" ! grep -rqa -e sb-client -e 's3cr' -e Bearer "$T/s1"

gen_conf "file:$T/s2"
ctl reset
first=
same=1
for _ in $(seq 20); do
	run get gen
	[ "$RC" = 0 ] || same=0
	[ -n "$first" ] || first=$OUT
	[ "$OUT" = "$first" ] || same=0
done
is "20 sequential CLI runs: one token request" "$(count token)" 1
ok "20 sequential CLI runs: all succeed with the same token" [ "$same" = 1 ]

run cache list
is "cache list: exit 0" "$RC" 0
like "cache list: service, layer, provider, store, state, expiry" "$OUT" \
	"gen	1	oauth2	file:$T/s2	valid	20??-??-??T??:??:??Z"
unlike "cache list: no token" "$OUT" '*Bearer*'

# ---- sealed entries -------------------------------------------------------
entry=$(find "$T/s2" -maxdepth 1 -type f -name '????????????????????????????????????????????????????????????????')
"$PYTHON3" -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 1
open(p, "wb").write(bytes(b))' "$entry"
run -v get gen
is "tampered entry: the get succeeds" "$RC" 0
is "tampered entry: refused, one new token request" "$(count token)" 2
like "tampered entry: said at debug level" "$ERR" '*ignoring the shared entry*tampered*'
unlike "tampered entry: a new token" "$OUT" "$first"
run get gen
is "tampered entry: replaced (the next process uses the new one)" "$(count token)" 2

# A confdir with another client secret (the server accepts both) finds no
# entry of the first, and cannot open one copied under its own name.
gen_conf "file:$T/s3"
run get gen
a_out=$OUT
a_entry=$(find "$T/s3" -maxdepth 1 -type f -name '????????????????????????????????????????????????????????????????')
ctl set '{"oauth_client_secret": "another-secret"}'
gen_conf "file:$T/s3" another-secret
ctl reset
ctl set '{"oauth_client_secret": "another-secret"}'
run get gen
is "other secrets: own entry, own token request" "$(count token)" 1
b_entry=$(find "$T/s3" -maxdepth 1 -type f -name '????????????????????????????????????????????????????????????????' ! -name "$(basename "$a_entry")")
ok "other secrets: another entry name" [ -n "$b_entry" ] && [ "$b_entry" != "$a_entry" ]
cp "$a_entry" "$b_entry"
run get gen
is "other secrets: the first confdir's entry is not used" "$(count token)" 2
unlike "other secrets: not the first confdir's token" "$OUT" "$a_out"

# ---- a lock holder killed mid-fetch ----------------------------------------
gen_conf "file:$T/s4"
ctl reset
ctl fault token slow 1 60
apicred_bg "$T/a.out" get gen
a_pid=$BG_PID
wait_for "the first process reaches the slow token endpoint" count_is token 1
apicred_bg "$T/b.out" -vv get gen
b_pid=$BG_PID
# A second look at the store means it found the lock held and waits (no
# sleeping to see it not fetch).
wait_for "the second process looks at the store again" looked_twice "$T/b.out.err"
is "lock held: the second process waits instead of fetching" "$(count token)" 1
kill -9 "$a_pid"
wait "$a_pid" 2>/dev/null || :
b_rc=0
wait "$b_pid" || b_rc=$?
is "lock holder killed: the waiting process gets credentials" "$b_rc" 0
is "lock holder killed: it fetched once itself" "$(count token)" 2
like "lock holder killed: a token" "$(cat "$T/b.out")" 'Authorization: Bearer ?*'

# ---- 401 on a shared token --------------------------------------------------
gen_conf "file:$T/s5"
ctl reset
run get gen
ctl expire
parallel 8 request gen "$SB/api/x"
is "401 on a shared token: every process succeeds after its retry" "$PAR_FAILED" 0
is "401 on a shared token: exactly one new token request" "$(count token)" 2
run request gen "$SB/api/x"
is "401 on a shared token: the next process uses the new token" "$RC:$(count token)" 0:2

# ---- tok failover is shared ------------------------------------------------
confdir_new "file:$T/s6"
tok_service
ctl reset
ctl set '{"tok_primary": null}'
run request cdn "$SB/tok/echo"
is "tok: primary refused, the retry with the backup succeeds" "$RC" 0
run get cdn
is "tok: the next process sends the backup" "$OUT" \
	"Authorization: TOK:99999999-8888-7777-6666-555555555555"
run cache clear cdn
is "cache clear SERVICE: one entry deleted" "$RC:$OUT" "0:1 entry deleted"
run get cdn
is "tok: after cache clear, the primary again" "$OUT" \
	"Authorization: TOK:11111111-2222-3333-4444-555555555555"
run cache clear nosuch
ok "cache clear of an unknown service: fails" [ "$RC" = 1 ]
like "cache clear of an unknown service: says so" "$ERR" '*nosuch*'

# ---- cache list/clear: one broken entry among good ones ----------------------
# Three services, three entries (their headers differ, so their entries do);
# walk2's entry and its lock file become symlinks, which the store refuses
# to follow. Both walks (the tool's, service by service, and the library's)
# go on past walk2, name it, and fail at the end.
WALK=$top_builddir/tests/drivers/cache_walk
gen_conf "file:$T/s8"
rm "$CONF/conf.d/gen.conf" # its secrets only
for n in 1 2 3; do
	service_file walk$n <<EOF
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token"; header = "X-Token-$n";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF
done
entries() {
	find "$T/s8" -maxdepth 1 -type f -name '????????????????????????????????????????????????????????????????' | sort
}
walk_fill() { # the three entries, walk2's named by $e2
	run get walk1
	entries >"$T/before"
	run get walk2
	entries >"$T/after"
	e2=$(comm -13 "$T/before" "$T/after")
	run get walk3
}
walk_fill
is "three services, three entries" "$(entries | grep -c .)" 3
ok "walk2's entry found" [ -n "$e2" ] && [ -f "$e2" ] && [ -f "$e2.lock" ]
rm -f "$e2" "$e2.lock"
ln -s "$T/nowhere" "$e2"
ln -s "$T/nowhere" "$e2.lock"
run cache list
is "a broken entry: cache list exits 1" "$RC" 1
like "a broken entry: the services before and after it listed" "$OUT" "walk1	1	oauth2	file:$T/s8	valid	*
walk3	1	oauth2	file:$T/s8	valid	*"
is "a broken entry: one error, naming its service" "$ERR" \
	"apicred: walk2: shared store file:$T/s8: cannot read an entry: Too many levels of symbolic links"
run cache clear
is "a broken entry: cache clear exits 1" "$RC" 1
is "a broken entry: the other two deleted" "$OUT" "2 entries deleted"
like "a broken entry: cache clear names its service" "$ERR" "apicred: walk2: shared store file:$T/s8: *lock file*"
is "a broken entry: cache clear, one error" "$(printf '%s\n' "$ERR" | wc -l)" 1
is "a broken entry: only it is left" "$(entries)" ""
walk_fill
out=$("$WALK" "$CONF" "$APICRED_TEST_MODULEDIR" list) && RC=0 || RC=$?
is "library walk, a broken entry: fails" "$RC" 1
like "library walk, a broken entry: every other entry, then walk2's error" "$out" "walk1 1 1
walk3 1 1
rc * walk2: shared store file:$T/s8: cannot read an entry: *"
out=$("$WALK" "$CONF" "$APICRED_TEST_MODULEDIR" clear) && RC=0 || RC=$?
is "library clear, a broken entry: fails" "$RC" 1
like "library clear, a broken entry: the others deleted, walk2 named" "$out" "cleared 2
rc * walk2: shared store file:$T/s8: *lock file*"
is "library clear, a broken entry: only it is left" "$(entries)" ""

# ---- a broken store never fails a get ----------------------------------------
ctl reset
mkdir "$T/open" && chmod 777 "$T/open"
gen_conf "file:$T/open"
run -v get gen
is "world-open store directory: the get succeeds" "$RC" 0
like "world-open store directory: a warning naming it" "$ERR" "*file:$T/open*open to others*"
run get gen
is "world-open store directory: refused (each process fetches)" "$(count token)" 2
ok "world-open store directory: nothing written there" [ -z "$(ls -A "$T/open")" ]
run cache list
is "world-open store directory: cache list fails" "$RC" 1
like "world-open store directory: cache list names the store" "$ERR" "*file:$T/open*open to others*"

printf x >"$T/afile"
gen_conf "file:$T/afile/store"
ctl reset
run -v get gen
is "store directory that cannot be made: the get succeeds" "$RC" 0
like "store directory that cannot be made: a warning naming it" "$ERR" "*file:$T/afile/store*cannot*"

if [ "$(id -u)" = 0 ]; then
	mkdir -m 700 "$T/foreign"
	chown nobody "$T/foreign"
	gen_conf "file:$T/foreign"
	run -v get gen
	is "foreign-owned store directory: the get succeeds" "$RC" 0
	like "foreign-owned store directory: a warning naming it" "$ERR" "*file:$T/foreign*owned by uid*"
	ok "foreign-owned store directory: nothing written there" [ -z "$(ls -A "$T/foreign")" ]
else
	mkdir -m 500 "$T/ro"
	gen_conf "file:$T/ro"
	run -v get gen
	is "unwritable store directory: the get succeeds" "$RC" 0
	like "unwritable store directory: a warning naming it" "$ERR" "*file:$T/ro*cannot*"
fi

gen_conf none
run cache list
is "cache list with cache.store = none: exit 1" "$RC" 1
like "cache list with cache.store = none: says so" "$ERR" '*none*'

cat >"$CONF/apicred.conf" <<EOF
cache = { store = "memcached://127.0.0.1"; };
EOF
run get gen
is "unknown cache.store: exit 1" "$RC" 1
like "unknown cache.store: file:line and the choices" "$ERR" "*apicred.conf:1:*redis://*"

done_testing
