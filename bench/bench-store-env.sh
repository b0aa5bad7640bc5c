#!/bin/sh
# bench-store-env.sh - started by bench_store: the sandbox, a redis-server on
# a free loopback port and three confdirs sharing the oauth2 service "gen"
# through no store, a directory and Redis; prints them and keeps them until
# stdin closes.
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/store-lib.sh"

REDIS_PID=
trap '_rc=$?; [ -z "$REDIS_PID" ] || { kill "$REDIS_PID"; wait "$REDIS_PID"; }; (exit $_rc); _lib_cleanup' EXIT
mkdir -m 700 "$T/redis"
RPORT=$("$PYTHON3" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${REDIS_SERVER:-redis-server}" --port "$RPORT" --bind 127.0.0.1 --dir "$T/redis" --save '' \
	--appendonly no --daemonize no >"$T/redis/log" 2>&1 &
REDIS_PID=$!
wait_for "redis-server answers" "$PYTHON3" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)' "$RPORT" >&2

sandbox_start >&2
gen_conf none >&2
C_NONE=$CONF
gen_conf "file:$T/store" >&2
C_FILE=$CONF
gen_conf "redis://127.0.0.1:$RPORT" >&2
C_REDIS=$CONF
# Not debug: a debug trace of every cache hit would be measured instead.
for c in "$C_NONE" "$C_FILE" "$C_REDIS"; do
	sed 's/level = "debug"/level = "notice"/' "$c/apicred.conf" >"$c/apicred.conf.new"
	mv "$c/apicred.conf.new" "$c/apicred.conf"
	chmod 600 "$c/apicred.conf"
done
printf 'SB=%s\nSB_CA=%s\nNONE=%s\nFILE=%s\nREDIS=%s\nBENCH-ENV-READY\n' \
	"$SB" "$SB_CA" "$C_NONE" "$C_FILE" "$C_REDIS"
read -r _ || true
