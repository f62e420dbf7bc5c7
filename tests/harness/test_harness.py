#!/usr/bin/env python3
"""The test harness shown able to fail: each way the suites used to pass
with a broken product is staged here and must turn its run red.

- an agent that leaks (under ASan; a wrong exit status at SIGTERM in the
  plain build) in a suite that ends with the harness's cleanup();
- an agent that ends by itself during the chaos suite's kill loop;
- a meson that dies halfway through a run (scripts/suite.py);
- a skipped case that tests/skips.txt does not allow.
Each has its control: the same run with nothing broken passes.

Usage: test_harness.py FAKE_AGENT HOPXCTL HOPX_SIM SOURCE_ROOT SANITIZE
"""
import os
import shutil
import subprocess
import sys
import tempfile

fake, hopxctl, simbin, src, sanitize = sys.argv[1:6]
integration = os.path.join(src, "tests", "integration")
sys.path.insert(0, integration)
from hopxtest import Tap  # noqa: E402

t = Tap()
tmp = tempfile.mkdtemp(prefix="hopxd-harness-")
ASAN = "address" in sanitize


def suite(script, mode, timeout=180, **env):
    """Runs an integration script with the fake agent as hopxd."""
    e = dict(os.environ, FAKE_AGENT=mode, PYTHONPATH=integration, **env)
    p = subprocess.run([sys.executable, script, fake, hopxctl, simbin],
                       env=e, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


inner = os.path.join(src, "tests", "harness", "inner_cleanup.py")
rc, out = suite(inner, "")
t.ok(rc == 0, "control: a well-behaved agent passes the cleanup checks", out)
if ASAN:
    rc, out = suite(inner, "leak")
    t.ok(rc != 0 and "not ok" in out and "LeakSanitizer" in out,
         "an agent that leaks fails the suite, the report in its output",
         out)
else:
    rc, out = suite(inner, "badexit")
    t.ok(rc != 0 and "not ok" in out and "exited 3 after SIGTERM" in out,
         "an agent that exits 3 at SIGTERM fails the suite", out)

chaos = os.path.join(integration, "test_chaos.py")
rc, out = suite(chaos, "die", HOPXD_CHAOS_KILLS="3", HOPXD_CHAOS_SEED="1")
t.ok(rc != 0 and "hopxd was no longer running" in out and
     "on its own" in out,
     "an agent that aborts by itself during the chaos loop fails chaos, "
     "with its last log lines", out)

TOY = """project('toy', meson_version: '>=1.0')
sh = find_program('sh')
foreach name, prio : {'first': 3, 'second': 2, 'third': 1}
  test(name, sh, args: ['-c', get_option(name)], protocol: 'tap',
       is_parallel: false, priority: prio)
endforeach
"""
PASS = 'echo "ok 1 - {0}"; echo 1..1'


def toy(second):
    """A meson project of three TAP tests run in order, the second one
    given; returns (exit, output) of scripts/suite.py on it."""
    d = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(d, "meson.build"), "w") as f:
        f.write(TOY)
    with open(os.path.join(d, "meson_options.txt"), "w") as f:
        for n in ("first", "second", "third"):
            cmd = second if n == "second" else PASS.format(n)
            f.write(f"option('{n}', type: 'string', value: {cmd!r})\n")
    b = os.path.join(d, "build")
    subprocess.run(["meson", "setup", b, d], check=True,
                   capture_output=True)
    return b


def judge(build, skips=None):
    env = dict(os.environ)
    if skips is not None:
        path = os.path.join(build, "skips.txt")
        with open(path, "w") as f:
            f.write(skips)
        env["SUITE_SKIPS"] = path
    p = subprocess.run([sys.executable, os.path.join(src, "scripts",
                                                     "suite.py"),
                        "run", "toy", build], env=env, capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


rc, out = judge(toy(PASS.format("second")))
t.ok(rc == 0 and "toy: 3 passed, 0 failed, 0 skipped" in out,
     "control: three passing tests count as three passed", out)
rc, out = judge(toy("kill -KILL $PPID; sleep 5"))
t.ok(rc != 0 and "never ran" in out and "0 failed" not in out,
     "a meson killed at its second test fails the run", out)
skipping = toy('echo "ok 1 - second # SKIP no reason"; echo 1..1')
rc, out = judge(skipping, "")
t.ok(rc != 0 and "skip not allowed" in out and "1 skipped" in out,
     "a skip tests/skips.txt does not list fails the run", out)
rc, out = judge(skipping, "^second$ | second | staged by this test\n")
t.ok(rc == 0 and "2 passed, 0 failed, 1 skipped" in out,
     "control: the same skip, listed, is counted as skipped", out)

shutil.rmtree(tmp, ignore_errors=True)
t.done()
