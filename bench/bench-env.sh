#!/bin/sh
# bench-env.sh [nginx] [many N] - started by bench programs (bench_util.c):
# starts the sandbox and a confdir (tests/integration/lib.sh), prints them as
# KEY=VALUE lines ending with BENCH-ENV-READY, and keeps everything until
# stdin closes.
#
#   always  SB SB_CA CONF: the sandbox and a confdir holding "gen" (oauth2
#           against the sandbox) and "key" (apikey for KEY_URL)
#   nginx   NGINX: Debian's nginx on a free loopback port with the sandbox's
#           server certificate (made at run time by openssl), answering every
#           request with 200 "key=<X-API-Key>"; KEY_URL is it. Empty, with
#           NGINX_WHY, when nginx is absent or does not start: KEY_URL is then
#           the sandbox's /apikey/echo origin. BENCH_NO_NGINX=1 shows that.
#   many N  ONE, MANY: confdirs of 1 and N services (apikey and oauth2 in
#           turn, a file store, no network at open or at svc0's get)
# shellcheck source=tests/integration/lib.sh
. "${top_srcdir:?}/tests/integration/lib.sh"

# At exit: nginx by its PID, then lib.sh's cleanup (sandbox, $T) with the
# exit status it would have seen.
NGINX_PID=
bench_cleanup() {
	_st=$?
	if [ -n "$NGINX_PID" ]; then
		kill "$NGINX_PID" 2>/dev/null || :
		wait "$NGINX_PID" 2>/dev/null || :
	fi
	(exit "$_st")
	_lib_cleanup
}
trap bench_cleanup EXIT

# quiet_conf: $CONF logs at notice, as applications run: a debug trace of
# every hit would be measured instead.
quiet_conf() {
	sed 's/level = "debug"/level = "notice"/' "$CONF/apicred.conf" >"$CONF/apicred.conf.new" &&
		mv "$CONF/apicred.conf.new" "$CONF/apicred.conf"
	chmod 600 "$CONF/apicred.conf"
}

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx_start: sets NGINX (and NGINX_PID) or NGINX_WHY.
nginx_start() {
	NGINX=
	NGINX_WHY=
	_bin=$(command -v nginx || echo /usr/sbin/nginx)
	if [ -n "${BENCH_NO_NGINX:-}" ]; then
		NGINX_WHY="BENCH_NO_NGINX is set"
		return 0
	fi
	if [ ! -x "$_bin" ]; then
		NGINX_WHY="nginx not installed (Debian: apt-get install nginx)"
		return 0
	fi
	_d=$T/nginx
	mkdir -m 700 "$_d" "$_d/tmp"
	_port=$(free_port)
	# One process (no master, no daemon), so that its PID is ours to stop;
	# keep-alive for the whole run, no access log.
	cat >"$_d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $_d/error.log warn;
pid $_d/nginx.pid;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $_d/tmp/body;
	proxy_temp_path $_d/tmp/proxy;
	fastcgi_temp_path $_d/tmp/fastcgi;
	uwsgi_temp_path $_d/tmp/uwsgi;
	scgi_temp_path $_d/tmp/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 300s;
	server {
		listen 127.0.0.1:$_port ssl;
		ssl_certificate $SB_CERTS/server.pem;
		ssl_certificate_key $SB_CERTS/server.key;
		location / {
			default_type text/plain;
			return 200 "key=\$http_x_api_key\n";
		}
	}
}
EOF
	"$_bin" -e "$_d/error.log" -p "$_d" -c "$_d/nginx.conf" </dev/null >"$_d/out" 2>&1 &
	NGINX_PID=$!
	_i=0
	until "$PYTHON3" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$_port" 2>/dev/null; do
		_i=$((_i + 1))
		if ! kill -0 "$NGINX_PID" 2>/dev/null || [ "$_i" -gt 100 ]; then
			NGINX_WHY="nginx did not start: $(cat "$_d/out" "$_d/error.log" 2>/dev/null | tr '\n' ' ')"
			kill "$NGINX_PID" 2>/dev/null || :
			wait "$NGINX_PID" 2>/dev/null || :
			NGINX_PID=
			return 0
		fi
		sleep 0.1
	done
	NGINX=https://127.0.0.1:$_port
}

# many_conf N: a quiet $CONF with N services svc0..svcN-1, apikey and oauth2
# in turn, literal secrets (the files are 0600), and a file store as
# applications have by default (in $T, not the user's). Shell builtins only:
# fast.
many_conf() {
	confdir_new "file:$T/store" >&2
	quiet_conf
	_umask=$(umask)
	umask 077 # 0600 files without a chmod each
	_i=0
	while [ "$_i" -lt "$1" ]; do
		if [ $((_i % 2)) -eq 0 ]; then
			printf '%s\n' "description = \"bench service $_i (apikey)\";" \
				'url = "https://127.0.0.1:9/";' \
				"stack = ( { provider = \"apikey\"; key = \"k-$_i-0123456789abcdef\"; } );"
		else
			printf '%s\n' "description = \"bench service $_i (oauth2)\";" \
				'url = "https://127.0.0.1:9/";' \
				'stack = ( { provider = "oauth2"; token_url = "https://127.0.0.1:9/token";' \
				"  client_id = \"client-$_i\"; client_secret = \"secret-$_i-0123456789\"; } );"
		fi >"$CONF/conf.d/svc$_i.conf"
		_i=$((_i + 1))
	done
	umask "$_umask"
}

want_nginx=
many=
while [ $# -gt 0 ]; do
	case $1 in
	nginx) want_nginx=1 ;;
	many) many=$2; shift ;;
	*) echo "bench-env.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

sandbox_start >&2
NGINX=
NGINX_WHY="not asked for"
[ -z "$want_nginx" ] || nginx_start
KEY_URL=${NGINX:-$SB}

confdir_new none >&2
quiet_conf
secret_file gen.id sb-client
secret_file gen.secret 's3cr:t+/%&=é'
service_file gen <<EOF2
url = "$SB/";
stack = ( { provider = "oauth2"; token_url = "$SB/oauth2/token";
            client_id = "file:secrets/gen.id"; client_secret = "file:secrets/gen.secret"; } );
EOF2
secret_file key sb-apikey-0123456789
service_file key <<EOF2
url = "$KEY_URL/";
stack = ( { provider = "apikey"; key = "file:secrets/key"; } );
EOF2
MAIN=$CONF

if [ -n "$many" ]; then
	many_conf 1
	ONE=$CONF
	many_conf "$many"
	printf 'ONE=%s\nMANY=%s\n' "$ONE" "$CONF"
fi
printf 'SB=%s\nSB_CA=%s\nCONF=%s\nKEY_URL=%s\nNGINX=%s\nNGINX_WHY=%s\nBENCH-ENV-READY\n' \
	"$SB" "$SB_CA" "$MAIN" "$KEY_URL" "$NGINX" "$NGINX_WHY"
read -r _ || true
