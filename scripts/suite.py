#!/usr/bin/env python3
"""Runs meson test on one build directory and judges what it reported.

  suite.py run LABEL BUILD_DIR [MESON_TEST_ARGS...]
      Lists the tests the arguments select, runs them, and counts every
      TAP case (or a test without TAP lines by its result). It fails when
      meson itself fails, when fewer tests ran than were registered, and
      on every skip that tests/skips.txt does not allow. Writes
      BUILD_DIR/meson-logs/summary-LABEL.json and prints one line.
  suite.py sum SUMMARY_JSON...
      Adds the runs up; the last line is "N passed, N failed, N skipped".
      Exits 1 on any failure.

SUITE_SKIPS names another allowed-skips file (the harness self-test uses
one of its own).
"""
import json
import os
import re
import subprocess
import sys

OK = re.compile(r'^ok\b')
NOT_OK = re.compile(r'^not ok\b')
SKIP = re.compile(r'#\s*skip\b', re.IGNORECASE)
GOOD = {'OK', 'EXPECTEDFAIL'}
NOISE = re.compile(r'^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|'
                   r'Timeout): ')
HERE = os.path.dirname(os.path.abspath(__file__))
SKIPS = os.path.join(HERE, '..', 'tests', 'skips.txt')


def allowed_skips(path):
    """(test regex, case regex) pairs from the allowed-skips file: lines
    'TEST | CASE | REASON' (the separator is ' | ', so a regex may hold a
    bare '|'), '#' comments."""
    rules = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            parts = [p.strip() for p in line.split(' | ')]
            if len(parts) != 3 or not parts[2]:
                raise SystemExit(f'{path}: want "TEST | CASE | REASON": '
                                 f'{line}')
            rules.append((re.compile(parts[0]), re.compile(parts[1])))
    return rules


def is_allowed(rules, test, case):
    return any(t.search(test) and c.search(case) for t, c in rules)


def judge_test(t, rules):
    """Counts one test of the log: (passed, failed, skipped, the failure
    or None, the skips not allowed)."""
    name, result = t['name'], t['result']
    lines = (t.get('stdout') or '').splitlines()
    p = f = s = 0
    problems = []
    for line in lines:
        if NOT_OK.match(line):
            f += 1
        elif OK.match(line) and SKIP.search(line):
            s += 1
            if not is_allowed(rules, name, line):
                problems.append(f'{name}: skip not allowed by '
                                f'tests/skips.txt: {line}')
        elif OK.match(line):
            p += 1
    if result == 'SKIP' and p + f + s == 0:
        s = 1
        if not is_allowed(rules, name, '(whole test)'):
            problems.append(f'{name}: whole test skipped, not allowed by '
                            'tests/skips.txt')
    elif result not in GOOD and result != 'SKIP' and f == 0:
        f = 1
    if p + f + s == 0:
        p = 1
    return p, f, s, (f'{name}: {result}' if f else None), problems


def registered(build, args):
    out = subprocess.run(['meson', 'test', '-C', build, '--list',
                          '--no-rebuild', *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return [l.strip() for l in out.stdout.splitlines() if l.strip()], None


def run_meson(build, label, args):
    cmd = ['meson', 'test', '-C', build, '--print-errorlogs',
           '--logbase', 'testlog-' + label, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            errors='replace')
    for line in proc.stdout:
        if not NOISE.match(line):
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.wait()


def log_name(label, args):
    """meson names the log LOGBASE[-SETUP].json."""
    setup = None
    for i, a in enumerate(args):
        if a == '--setup' and i + 1 < len(args):
            setup = args[i + 1]
        elif a.startswith('--setup='):
            setup = a.split('=', 1)[1]
    return f'testlog-{label}' + (f'-{setup}' if setup else '') + '.json'


def read_log(path):
    tests = []
    try:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    tests.append(json.loads(line))
    except (OSError, ValueError) as e:
        return None, str(e)
    return tests, None


def run(label, build, args):
    rules = allowed_skips(os.environ.get('SUITE_SKIPS', SKIPS))
    log = os.path.join(build, 'meson-logs', log_name(label, args))
    if os.path.exists(log):
        os.unlink(log)  # a meson that dies early must not leave the last
    rc = run_meson(build, label, args)
    # Listed after the run: meson test rebuilds first, which may register
    # more tests than the build directory had before.
    want, err = registered(build, args)
    extra = [] if want is not None else [f'meson test --list: {err}']
    tests, err = read_log(log)
    if tests is None:
        tests = []
        extra.append(f'no test log {log}: {err}')
    totals, failures = [0, 0, 0], []
    for t in tests:
        p, f, s, failure, bad_skips = judge_test(t, rules)
        totals = [totals[0] + p, totals[1] + f, totals[2] + s]
        failures += [failure] if failure else []
        extra += bad_skips
    ran = {t['name'] for t in tests}
    missing = [n for n in (want or []) if n not in ran]
    if missing:
        extra.append(f'{len(missing)} of {len(want)} registered tests '
                     f'never ran: {", ".join(missing[:10])}')
    if rc != 0 and not totals[1]:
        extra.append(f'meson test exited {rc} with no failed test')
    # What no case counted (meson died, a test never ran, a forbidden
    # skip) fails the run once each.
    summary = {'label': label, 'passed': totals[0],
               'failed': totals[1] + len(extra), 'skipped': totals[2],
               'problems': failures + extra}
    with open(os.path.join(build, 'meson-logs', f'summary-{label}.json'),
              'w', encoding='utf-8') as f:
        json.dump(summary, f)
    show(summary)
    return 1 if summary['failed'] else 0


def show(s):
    print(f"{s['label']}: {s['passed']} passed, {s['failed']} failed, "
          f"{s['skipped']} skipped")
    for p in s['problems']:
        print(f'  FAILED {p}')


def total(paths):
    sums = [0, 0, 0]
    for path in paths:
        try:
            with open(path, encoding='utf-8') as f:
                s = json.load(f)
        except (OSError, ValueError) as e:
            s = {'label': path, 'passed': 0, 'failed': 1, 'skipped': 0,
                 'problems': [f'no summary: {e}']}
        show(s)
        sums = [sums[0] + s['passed'], sums[1] + s['failed'],
                sums[2] + s['skipped']]
    if not paths:
        sums[1] = 1
        print('  FAILED no run was summed')
    print(f'{sums[0]} passed, {sums[1]} failed, {sums[2]} skipped')
    return 1 if sums[1] else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == 'run':
        return run(argv[1], argv[2], argv[3:])
    if len(argv) >= 1 and argv[0] == 'sum':
        return total(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
