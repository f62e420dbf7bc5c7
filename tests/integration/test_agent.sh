#!/bin/sh
# hopxd and hopxctl as a user meets them: exit codes (8 without an agent),
# socket and directory modes, one agent per database, a stale socket
# replaced and a live one never, SIGTERM leaving a clean database, another
# uid refused, an unsafe directory refused, systemd socket activation.
# Runs each binary under $HOPXD_TEST_WRAPPER when set (valgrind). TAP.
set -u
HOPXD_BIN=$1
HOPXCTL_BIN=$2
T=$(mktemp -d)
# The default API key file lives here: never the user's own.
export XDG_CONFIG_HOME="$T/config"
unset HOPX_API_KEY
n=0
fails=0
hopxd() { ${HOPXD_TEST_WRAPPER:-} "$HOPXD_BIN" "$@"; }
hopxctl() { ${HOPXD_TEST_WRAPPER:-} "$HOPXCTL_BIN" --socket "$T/run/s.sock" "$@"; }
cleanup() {
	[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; fails=$((fails + 1)); }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
# The first line of an ASan, LeakSanitizer or UBSan report.
SANITIZER='==[0-9]+==[[:space:]]*ERROR: [A-Za-z]+Sanitizer|^SUMMARY: [A-Za-z]+Sanitizer|: runtime error: '
# keep_reports FILE: what a command printed that a sanitizer wrote
keep_reports() {
	[ -f "$1" ] && grep -E -A 40 "$SANITIZER" "$1" >>"$T/reports"
	return 0
}
check() { # check DESCRIPTION EXPECTED ACTUAL [PATTERN FILE]
	keep_reports "$T/out"
	if [ "$2" = "$3" ] && { [ $# -lt 5 ] || grep -q -- "$4" "$5"; }; then
		ok "$1"
	else
		notok "$1 (want $2, got $3)"
		[ $# -ge 5 ] && sed 's/^/# /' "$5"
	fi
}
# stop_agent DESCRIPTION: SIGTERM to the agent started last; exit 0 wanted
stop_agent() {
	kill -TERM "$pid"
	wait "$pid"
	check "$1" 0 $?
	pid=
}

# start_agent DB SOCKET [ARGS]: starts hopxd in the background, sets pid
start_agent() {
	db=$1 sock=$2
	shift 2
	(exec ${HOPXD_TEST_WRAPPER:-} "$HOPXD_BIN" --db "$db" --socket "$sock" \
		"$@" 2>>"$T/agent.log") &
	pid=$!
	i=0
	while [ $i -lt 100 ] && ! hopxctl_at "$sock" status >/dev/null 2>&1; do
		sleep 0.05
		i=$((i + 1))
	done
}
hopxctl_at() { s=$1; shift; ${HOPXD_TEST_WRAPPER:-} "$HOPXCTL_BIN" --socket "$s" "$@"; }

hopxctl status >"$T/out" 2>&1
check "no agent: exit 8 and how to start one" 8 $? "hopxd is not running" "$T/out"

mkdir -p "$T/state"
sqlite3 "$T/seed.sql" "" 2>/dev/null
start_agent "$T/state/h.db" "$T/run/s.sock"
stop_agent "a new database: SIGTERM, exit 0"
sqlite3 "$T/state/h.db" "INSERT INTO sandboxes (id, name, status, tracked_at,
 updated_at) VALUES ('sbxA', 'web', 'running', 1, 1), ('sbxB', NULL,
 'paused', 1, 1)"
start_agent "$T/state/h.db" "$T/run/s.sock"

hopxctl status >"$T/out" 2>&1
check "status" 0 $? "sandboxes 2: running 1 paused 1" "$T/out"
hopxctl --json status >"$T/out" 2>&1
check "status --json" 0 $? '"sandboxes":2' "$T/out"
hopxctl ls >"$T/out" 2>&1
check "ls prints plain columns when piped" 0 $? "^sbxA	web	running" "$T/out"
hopxctl ls -q --status paused >"$T/out" 2>&1
check "ls -q --status" 0 $? "^sbxB$" "$T/out"
hopxctl label web team=core tier=1 >"$T/out" 2>&1
check "label set" 0 $? "team=core,tier=1" "$T/out"
hopxctl label web --rm tier >"$T/out" 2>&1
check "label --rm" 0 $? "labels  *team=core$" "$T/out"
hopxctl ls --label team=core -q >"$T/out" 2>&1
check "ls --label" 0 $? "^sbxA$" "$T/out"
hopxctl rename sbxB db >"$T/out" 2>&1
check "rename" 0 $? "name  *db" "$T/out"
hopxctl rename db web >"$T/out" 2>&1
check "rename to a taken name: exit 1" 1 $? "belongs to another" "$T/out"
hopxctl show nosuch >"$T/out" 2>&1
check "show unknown: exit 4" 4 $? "no tracked sandbox" "$T/out"
hopxctl label web "bad key=1" >"$T/out" 2>&1
check "bad label: exit 2" 2 $? "bad label" "$T/out"
hopxctl ls --bogus >"$T/out" 2>&1
check "bad flag: exit 2" 2 $? "unexpected argument" "$T/out"
hopxctl show --help >"$T/out" 2>&1
check "per-command --help" 0 $? "Usage: hopxctl show REF" "$T/out"
hopxctl detach db >"$T/out" 2>&1
check "detach" 0 $? "untouched" "$T/out"
hopxctl events >"$T/out" 2>&1
check "events lists changes with their cause" 0 $? "user.*sbxB.*forgotten" "$T/out"
hopxctl --json events --since 3 >"$T/out" 2>&1
check "events --since --json" 0 $? '"seq":4' "$T/out"

( ${HOPXD_TEST_WRAPPER:-} "$HOPXCTL_BIN" --socket "$T/run/s.sock" events -f \
	>"$T/follow" 2>&1 ) &
fpid=$!
sleep 0.5
hopxctl label web followed=yes >/dev/null 2>&1
i=0
while [ $i -lt 50 ] && ! grep -q followed "$T/follow"; do sleep 0.1; i=$((i + 1)); done
kill $fpid 2>/dev/null; wait $fpid 2>/dev/null
check "events -f streams new events" 0 0 "followed" "$T/follow"

mode=$(stat -c %a "$T/run/s.sock")
check "socket is 0600" 600 "$mode"
mode=$(stat -c %a "$T/run")
check "socket directory hopxd made is 0700" 700 "$mode"
mode=$(stat -c %a "$T/state/h.db")
check "database is 0600" 600 "$mode"

hopxd --db "$T/state/h.db" --socket "$T/run/other.sock" >"$T/out" 2>&1
check "a second agent on the same database is refused" 1 $? "already running with database" "$T/out"
hopxd --db "$T/state/other.db" --socket "$T/run/s.sock" >"$T/out" 2>&1
check "a live agent's socket is never replaced" 1 $? "already listening" "$T/out"

if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 711 "$T" "$T/run"
	chmod 666 "$T/run/s.sock"
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$HOPXCTL_BIN" --socket "$T/run/s.sock" status >"$T/out" 2>&1
	check "another uid is refused (SO_PEERCRED)" 1 $? "permission denied" "$T/out"
	grep -q "refused a connection from uid" "$T/agent.log"
	check "the agent logs the refused uid" 0 $?
	chmod 700 "$T/run"
	chmod 600 "$T/run/s.sock"
else
	skip "another uid is refused" "needs root and setpriv"
	skip "the agent logs the refused uid" "needs root and setpriv"
fi

stop_agent "SIGTERM: exit 0"
[ ! -e "$T/run/s.sock" ]
check "SIGTERM removes the socket" 0 $?
res=$(sqlite3 "$T/state/h.db" "PRAGMA integrity_check" 2>&1)
check "the database is sound after SIGTERM" ok "$res"
[ ! -e "$T/state/h.db-wal" ] || [ ! -s "$T/state/h.db-wal" ]
check "the WAL was checkpointed on close" 0 $?

start_agent "$T/state/h.db" "$T/run/s.sock"
kill -KILL "$pid"; wait "$pid" 2>/dev/null; pid=
[ -S "$T/run/s.sock" ]
check "a killed agent leaves a stale socket" 0 $?
start_agent "$T/state/h.db" "$T/run/s.sock"
hopxctl status >"$T/out" 2>&1
check "the next agent replaces the stale socket" 0 $? "sandboxes 1" "$T/out"
stop_agent "after a stale socket: SIGTERM, exit 0"

mkdir -m 755 "$T/open"
hopxd --db "$T/state/h.db" --socket "$T/open/s.sock" >"$T/out" 2>&1
check "an unsafe socket directory is refused" 1 $? "unsafe socket directory" "$T/out"

# The default key file (what a systemd user unit reads): refused when
# others can read it, used when it is the user's alone.
mkdir -p -m 700 "$T/config/hopxd"
printf 'hopx_test_key\n' >"$T/config/hopxd/api-key"
chmod 644 "$T/config/hopxd/api-key"
hopxd --db "$T/state/h.db" --socket "$T/run/s.sock" >"$T/out" 2>&1
check "a readable default key file is refused" 2 $? "chmod 600" "$T/out"
chmod 600 "$T/config/hopxd/api-key"
start_agent "$T/state/h.db" "$T/run/s.sock" --api-base http://127.0.0.1:9
hopxctl --json status >"$T/out" 2>&1
grep -q '"base_url":"http://127.0.0.1:9"' "$T/out" && ! grep -q '"state":"off"' "$T/out"
check "the default key file gives the agent its key" 0 $?
stop_agent "with the default key file: SIGTERM, exit 0"
rm -r "$T/config/hopxd"

if command -v systemd-socket-activate >/dev/null; then
	(exec systemd-socket-activate -l "$T/run/act.sock" \
		${HOPXD_TEST_WRAPPER:-} "$HOPXD_BIN" --db "$T/state/h.db" \
		2>>"$T/agent.log") &
	pid=$!
	i=0
	while [ $i -lt 100 ] && [ ! -S "$T/run/act.sock" ]; do sleep 0.05; i=$((i + 1)); done
	hopxctl_at "$T/run/act.sock" status >"$T/out" 2>&1
	check "socket activation (LISTEN_FDS)" 0 $? "sandboxes 1" "$T/out"
	grep -q "socket systemd passed" "$T/agent.log"
	check "the agent used the passed socket" 0 $?
	stop_agent "socket-activated: SIGTERM, exit 0"
else
	skip "socket activation (LISTEN_FDS)" "no systemd-socket-activate"
	skip "the agent used the passed socket" "no systemd-socket-activate"
fi

keep_reports "$T/follow"
keep_reports "$T/agent.log"
if [ -s "$T/reports" ]; then
	notok "no sanitizer report from hopxd or hopxctl"
	sed 's/^/# /' "$T/reports"
else
	ok "no sanitizer report from hopxd or hopxctl"
fi

echo "1..$n"
[ $fails = 0 ]
