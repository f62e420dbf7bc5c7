#!/bin/sh
# The walking skeleton: hopxd and hopxctl answer --version and --help,
# refuse bad flags with exit 2, refuse bad databases with a clear message,
# and hopxd stops cleanly on SIGTERM leaving a sound database. TAP output.
set -u
# HOPXD_TEST_WRAPPER (set by the valgrind setup) runs each binary under it.
HOPXD_BIN=$1
HOPXCTL_BIN=$2
SIM_BIN=$3
hopxd() { ${HOPXD_TEST_WRAPPER:-} "$HOPXD_BIN" "$@"; }
hopxctl() { ${HOPXD_TEST_WRAPPER:-} "$HOPXCTL_BIN" "$@"; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fails=0

check() { # check DESCRIPTION EXPECTED_RC ACTUAL_RC [GREP_PATTERN FILE]
	n=$((n + 1))
	ok=1
	[ "$2" = "$3" ] || ok=0
	if [ $# -ge 5 ] && ! grep -q -- "$4" "$5"; then ok=0; fi
	if [ $ok = 1 ]; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1 (want rc $2, got $3)"
		[ $# -ge 5 ] && sed 's/^/# /' "$5"
		fails=$((fails + 1))
	fi
}

hopxd --version >"$T/out" 2>&1
check "hopxd --version" 0 $? "^hopxd [0-9]" "$T/out"
hopxd --help >"$T/out" 2>&1
check "hopxd --help" 0 $? "Usage: hopxd" "$T/out"
hopxd --bogus >"$T/out" 2>&1
check "hopxd bad flag exits 2" 2 $? "Try 'hopxd --help'" "$T/out"
hopxd --log-level loud >"$T/out" 2>&1
check "hopxd bad log level exits 2" 2 $? "unknown log level" "$T/out"
hopxctl --version >"$T/out" 2>&1
check "hopxctl --version" 0 $? "^hopxctl [0-9]" "$T/out"
hopxctl --help >"$T/out" 2>&1
check "hopxctl --help" 0 $? "Usage: hopxctl" "$T/out"
hopxctl frobnicate >"$T/out" 2>&1
check "hopxctl unknown command exits 2" 2 $? "unknown command" "$T/out"
hopxctl --nope >"$T/out" 2>&1
check "hopxctl unknown option exits 2" 2 $? "unknown option" "$T/out"
hopxctl version extra >"$T/out" 2>&1
check "hopxctl wrong argument count exits 2" 2 $? "Usage: hopxctl version" "$T/out"

"$SIM_BIN" --help >"$T/out" 2>&1
check "hopx-sim --help" 0 $? "Usage: hopx-sim" "$T/out"
"$SIM_BIN" --token-lifetime 0 >"$T/out" 2>&1
check "hopx-sim refuses a bad lifetime" 2 $? "token-lifetime must be" "$T/out"
"$SIM_BIN" --listen nowhere --quiet >"$T/out" 2>&1
check "hopx-sim refuses a bad listen address" 1 $? "bad listen address" "$T/out"
"$SIM_BIN" --faults '{"rate_5xx":3}' >"$T/out" 2>&1
check "hopx-sim refuses bad faults" 2 $? "rates must be between" "$T/out"

head -c 8192 /dev/urandom >"$T/garbage.db"
hopxd --db "$T/garbage.db" --socket "$T/s" >"$T/out" 2>&1
check "hopxd refuses a corrupt database" 1 $? "corrupt or not an SQLite" "$T/out"

sqlite3 "$T/newer.db" "PRAGMA user_version = 42" 2>/dev/null ||
	python3 -c "import sqlite3; c=sqlite3.connect('$T/newer.db'); c.execute('PRAGMA user_version=42'); c.commit()"
hopxd --db "$T/newer.db" --socket "$T/s" >"$T/out" 2>&1
check "hopxd refuses a newer database" 1 $? "schema version 42, newer" "$T/out"

(HOPXD_DB="$T/env/state.db" exec ${HOPXD_TEST_WRAPPER:-} "$HOPXD_BIN" \
	--socket "$T/s" >"$T/out" 2>&1) &
pid=$!
i=0
while [ $i -lt 50 ] && ! grep -q "sandboxes tracked" "$T/out"; do
	sleep 0.1
	i=$((i + 1))
done
kill -TERM $pid
wait $pid
check "hopxd stops cleanly on SIGTERM (HOPXD_DB honoured)" 0 $? "shutting down" "$T/out"
mode=$(stat -c %a "$T/env/state.db" 2>/dev/null)
check "database file is 0600" 0600 "0$mode"
mode=$(stat -c %a "$T/env" 2>/dev/null)
check "database directory is 0700" 0700 "0$mode"

echo "1..$n"
[ $fails = 0 ]
