#!/bin/sh
# Fails when a C file differs from .clang-format (TAP, one case per file).
cd "$1" || exit 1
n=0
fails=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*'); do
	n=$((n + 1))
	if clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "ok $n - $f"
	else
		echo "not ok $n - $f (run: clang-format -i $f)"
		fails=$((fails + 1))
	fi
done
echo "1..$n"
[ $fails = 0 ]
