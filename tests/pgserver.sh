#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for tests, in a directory of its own.
# PostgreSQL refuses to run as root, so as root it runs as nobody.
#
#   tests/pgserver.sh start DIR   initdb (first time) + start; prints the
#                                 connection string on stdout
#   tests/pgserver.sh stop DIR    fast shutdown (what a test ends with)
#   tests/pgserver.sh kill DIR    SIGKILL of the postmaster (a crash)
#   tests/pgserver.sh restart DIR stop + start on the same port
#
# PGSERVER_TLS=1 at the first start makes a server as a production one
# is set up: TCP only over TLS (a certificate for "localhost" from a CA
# of its own, DIR/ca.crt) with a password (scram-sha-256, in
# DIR/password); the connection string then has sslmode=verify-full and
# no password. Unix-socket connections (DIR) stay trusted, for the test's
# own queries.
set -euo pipefail
cmd=${1:?usage: pgserver.sh start|stop|kill|restart DIR}
dir=$(realpath -m "${2:?usage: pgserver.sh start|stop|kill|restart DIR}")
bin=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bin/initdb" ] || bin=/usr/lib/postgresql/15/bin
if [ ! -x "$bin/initdb" ]; then
	echo "pgserver: PostgreSQL 15 is not installed: run scripts/setup" >&2
	exit 2
fi

as_owner() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
	else
		"$@"
	fi
}

start() {
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir"
	chmod 700 "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_owner "$bin/initdb" -D "$dir/data" -U hopxd -A trust \
			-E UTF8 --no-sync >"$dir/initdb.log" 2>&1
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		echo "$port" >"$dir/port"
		[ "${PGSERVER_TLS:-}" = 1 ] && tls_init
	fi
	port=$(cat "$dir/port")
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-k $dir -h 127.0.0.1 -p $port -c fsync=off -c max_connections=200" \
		start >/dev/null
	if [ -f "$dir/password" ]; then
		[ -f "$dir/password.set" ] || {
			as_owner "$bin/psql" -h "$dir" -p "$port" -U hopxd -d postgres \
				-qAtX -c "ALTER ROLE hopxd PASSWORD '$(cat "$dir/password")'" &&
				touch "$dir/password.set"
		}
		echo "host=localhost hostaddr=127.0.0.1 port=$port user=hopxd dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.crt connect_timeout=5"
	else
		echo "host=127.0.0.1 port=$port user=hopxd dbname=postgres connect_timeout=5"
	fi
}

# A CA, a server certificate for localhost signed by it, TLS on, and
# password (scram) for every TCP connection.
tls_init() {
	local d=$dir/data
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hopxd-test-ca \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
		-keyout "$d/server.key" -out "$dir/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost\n' >"$dir/san.ext"
	openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" \
		-CAkey "$dir/ca.key" -CAcreateserial -days 2 \
		-extfile "$dir/san.ext" -out "$d/server.crt" 2>/dev/null
	chmod 644 "$dir/ca.crt"
	chmod 600 "$d/server.key"
	[ "$(id -u)" = 0 ] && chown nobody:nogroup "$d/server.key" "$d/server.crt"
	printf 'ssl = on\npassword_encryption = scram-sha-256\n' >>"$d/postgresql.conf"
	printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' \
		>"$d/pg_hba.conf"
	python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/password"
	chmod 600 "$dir/password"
}

case $cmd in
start) start ;;
stop) as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
kill) kill -9 "$(head -1 "$dir/data/postmaster.pid")" ;;
restart)
	as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	start >/dev/null
	;;
*)
	echo "usage: pgserver.sh start|stop|kill|restart DIR" >&2
	exit 2
	;;
esac
