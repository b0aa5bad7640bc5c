#!/bin/sh
# The shared session store in Redis (cache.store = "redis://..."): confdirs
# on "three hosts" share one token, the lock across processes, 401
# invalidation, and a Redis that is down or never answers. Starts its own
# redis-server on a free loopback port, in $T, stopped at exit.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/store-lib.sh"

REDIS_SERVER=${REDIS_SERVER:-redis-server}
command -v "$REDIS_SERVER" >/dev/null 2>&1 || bail "redis-server not found (install redis-server)"

REDIS_PID=
HANG_PID=
_store_cleanup() {
	for _p in $REDIS_PID $HANG_PID; do
		kill -CONT "$_p" 2>/dev/null || :
		kill -TERM "$_p" 2>/dev/null || :
		wait "$_p" 2>/dev/null || :
	done
	REDIS_PID=
	HANG_PID=
}
trap '_rc=$?; _store_cleanup; (exit $_rc); _lib_cleanup' EXIT

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A Redis server that only we use.
mkdir -m 700 "$T/redis"
RPORT=$(free_port)
"$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --dir "$T/redis" --save '' \
	--appendonly no --daemonize no >"$T/redis/log" 2>&1 &
REDIS_PID=$!
redis_up() {
	"$PYTHON3" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)' "$RPORT" 2>/dev/null
}
wait_for "redis-server answers" redis_up
REDIS=redis://127.0.0.1:$RPORT

sandbox_start

# ---- three hosts, one token ------------------------------------------------
ctl reset
for host in 1 2 3; do
	gen_conf "$REDIS/0"
	run get gen
	is "host $host: the get succeeds" "$RC" 0
done
is "three confdirs sharing one Redis: one token request" "$(count token)" 1
run cache list
like "cache list names the Redis store (no password)" "$OUT" "gen	1	oauth2	$REDIS/0	valid	*"

gen_conf "$REDIS/1"
ctl reset
out=$("$FORK" "$CONF" "$APICRED_TEST_MODULEDIR" gen 16 list 2>"$T/fork.err" | tail -n 1) || :
is "16 forked processes (the parent connected first): all succeed" "$out" "ok 16"
is "16 forked processes: one token request" "$(count token)" 1

# ---- 401 on a shared token ----------------------------------------------------
ctl reset
ctl expire
parallel 8 request gen "$SB/api/x"
is "401 on a shared token: every process succeeds after its retry" "$PAR_FAILED" 0
is "401 on a shared token: exactly one new token request" "$(count token)" 1

# ---- a failed fetch leases the lock for a second -----------------------------------
# Through an outage the processes waiting for a session then try once a
# second between them all: after a failure the lock stays taken 1 s.
redis_q() { # DB WHAT: "pttl": the PTTL in ms of the entry lock in database DB
	# (-3: none); "pexpire": the PEXPIRE calls the server has run
	"$PYTHON3" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
f = s.makefile("rb")
def cmd(*a):
    s.sendall(("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a)).encode())
    l = f.readline()
    if l[:1] == b"*":
        return [f.readline() and f.readline().strip().decode() for _ in range(int(l[1:]))]
    return l[1:].strip().decode()
def stat(name):
    s.sendall(b"INFO commandstats\r\n")
    body = f.read(int(f.readline()[1:]) + 2).decode()
    return sum(int(l.split("calls=")[1].split(",")[0]) for l in body.splitlines()
               if l.startswith("cmdstat_" + name + ":"))
cmd("SELECT", sys.argv[2])
if sys.argv[3] == "pexpire":
    print(stat("pexpire"))
else:
    keys = cmd("KEYS", "apicred:*:lock")
    print(cmd("PTTL", keys[0]) if keys else -3)' "$RPORT" "$1" "$2"
}
gen_conf "$REDIS/3"
cat >"$CONF/apicred.conf" <<EOF2
http = { ca_file = "$SB_CA"; retries = 0; };
cache = { store = "$REDIS/3"; };
EOF2
ctl reset
ctl fault token 503 1
pexpire=$(redis_q 3 pexpire)
start=$(date +%s%N)
run get gen
pttl=$(redis_q 3 pttl)
ms=$((($(date +%s%N) - start) / 1000000))
ok "failed fetch: the get fails" test "$RC" -ne 0
is "failed fetch: the lock's expiry is cut (PEXPIRE), not the lock deleted" \
	"$(redis_q 3 pexpire)" $((pexpire + 1))
if [ "$ms" -lt 800 ]; then
	ok "failed fetch: the lock stays taken for a second (PTTL $pttl ms)" \
		test "$pttl" -gt 0 -a "$pttl" -le 1000
else
	skip "the machine stalled past the lease ($ms ms)"
fi
run get gen
is "after the lease: the next get fetches and succeeds" "$RC" 0

# ---- a lock holder killed mid-fetch ----------------------------------------------
# The lock expires after the fetch's longest time: http.deadline + 1 s, long
# enough for the second process to start and look twice on a loaded machine.
gen_conf "$REDIS/2"
cat >"$CONF/apicred.conf" <<EOF2
http = { ca_file = "$SB_CA"; connect_timeout = 1; timeout = 15; deadline = 15; retries = 0; };
log = { level = "debug"; };
cache = { store = "$REDIS/2"; };
EOF2
ctl reset
ctl fault token slow 1 60
apicred_bg "$T/a.out" get gen
a_pid=$BG_PID
wait_for "the first process reaches the slow token endpoint" count_is token 1
apicred_bg "$T/b.out" -v get gen
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
is "lock holder killed: one more token request, after the lock expired" "$(count token)" 2

# ---- Redis that never answers, and Redis gone ------------------------------------------
HPORT=$(free_port)
"$PYTHON3" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
open(sys.argv[2], "w").close()
held = []
while True:
    c, _ = s.accept(); held.append(c)   # accepts, never answers
' "$HPORT" "$T/hang.ready" &
HANG_PID=$!
wait_for "the silent server listens" [ -f "$T/hang.ready" ]
gen_conf "redis://127.0.0.1:$HPORT"
ctl reset
run -v get gen
is "Redis that never answers: the get succeeds" "$RC" 0
like "Redis that never answers: a warning naming it" "$ERR" "*redis://127.0.0.1:$HPORT/0*"
is "Redis that never answers: the process fetched for itself" "$(count token)" 1

gen_conf "$REDIS/3"
kill -STOP "$REDIS_PID"
ctl reset
run -v get gen
is "Redis stopped (SIGSTOP): the get succeeds" "$RC" 0
like "Redis stopped (SIGSTOP): a warning naming it" "$ERR" "*$REDIS/3*"
kill -CONT "$REDIS_PID"

kill -TERM "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || :
REDIS_PID=
ctl reset
run -v get gen
is "Redis gone: the get succeeds" "$RC" 0
like "Redis gone: a warning naming it" "$ERR" "*$REDIS/3*cannot connect*"
run get gen
is "Redis gone: each process fetches for itself" "$(count token)" 2

done_testing
