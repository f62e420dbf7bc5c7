#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for tests, in a directory of its own.
# PostgreSQL refuses to run as root, so as root it runs as nobody.
#
#   tests/pgserver.sh start DIR   initdb (first time) + start; prints the
#                                 connection string on stdout
#   tests/pgserver.sh stop DIR    fast shutdown (what a test ends with)
#   tests/pgserver.sh kill DIR    SIGKILL of the postmaster (a crash)
#   tests/pgserver.sh restart DIR stop + start on the same port
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
	fi
	port=$(cat "$dir/port")
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-k $dir -h 127.0.0.1 -p $port -c fsync=off -c max_connections=200" \
		start >/dev/null
	echo "host=127.0.0.1 port=$port user=hopxd dbname=postgres connect_timeout=5"
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
