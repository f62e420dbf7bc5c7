#!/usr/bin/env python3
"""Sums test results over meson test logs.

Usage: tap-summary.py LABEL=TESTLOG_JSON...
Every TAP case ("ok N" / "not ok N") counts once; a test that printed no
TAP lines counts once by its result; a test that failed without a "not ok"
line (a crash, a timeout, a sanitizer report) counts as one failure.
Prints one line per build and ends with "N passed, N failed".
"""
import json
import re
import sys

OK = re.compile(r'^ok\b')
NOT_OK = re.compile(r'^not ok\b')
GOOD = {'OK', 'EXPECTEDFAIL', 'SKIP'}


def count(log_path):
    passed = failed = 0
    failures = []
    try:
        lines = open(log_path, encoding='utf-8').read().splitlines()
    except OSError as e:
        return 0, 1, [f'no test log: {e}']
    for line in lines:
        t = json.loads(line)
        out = (t.get('stdout') or '').splitlines()
        p = sum(1 for l in out if OK.match(l))
        f = sum(1 for l in out if NOT_OK.match(l))
        if t['result'] not in GOOD and f == 0:
            f = 1
        if p == 0 and f == 0:
            p = 1
        passed += p
        failed += f
        if f:
            failures.append(f"{t['name']}: {t['result']}")
    return passed, failed, failures


def main():
    total_p = total_f = 0
    for arg in sys.argv[1:]:
        label, _, log = arg.partition('=')
        p, f, fails = count(log)
        print(f'{label}: {p} passed, {f} failed')
        for name in fails:
            print(f'  FAILED {name}')
        total_p += p
        total_f += f
    print(f'{total_p} passed, {total_f} failed')
    return 1 if total_f else 0


if __name__ == '__main__':
    sys.exit(main())
