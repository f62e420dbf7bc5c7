"""Test harness for hopxd against hopx-sim: processes, admin API, TAP.

Each test script builds a Sim and an Agent in a private temporary
directory and reports TAP lines. Binaries come from argv (meson passes
them); HOPXD_TEST_WRAPPER (e.g. valgrind) wraps hopxd and hopxctl.
"""
import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KEY = "hopx_test_agent.key"


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what, detail=None):
        self.n += 1
        if not cond:
            self.failed += 1
        print(("ok" if cond else "not ok") + f" {self.n} - {what}")
        if not cond and detail is not None:
            for line in str(detail).splitlines()[:40]:
                print("# " + line)
        sys.stdout.flush()
        return cond

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, step=0.05):
    """Polls cond() until it is truthy or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


class Sim:
    def __init__(self, binary, tmp, args=(), key=KEY):
        self.binary, self.tmp, self.args, self.key = binary, tmp, args, key
        self.port, self.agent_port = free_port(), free_port()
        self.proc = None
        self.state = os.path.join(tmp, "sim-state.json")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_url(self):
        return f"http://127.0.0.1:{self.agent_port}"

    def start(self):
        ready = os.path.join(self.tmp, "sim-ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [self.binary, "--listen", f"127.0.0.1:{self.port}",
               "--agent-listen", f"127.0.0.1:{self.agent_port}",
               "--api-key", self.key, "--ready-file", ready,
               "--state-file", self.state, "-q", *self.args]
        self.proc = subprocess.Popen(cmd, stderr=open(
            os.path.join(self.tmp, "sim.log"), "a"))
        if not wait_for(lambda: os.path.exists(ready), 10):
            raise RuntimeError("hopx-sim did not start")
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def req(self, method, path, body=None, base=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request((base or self.url) + path, data=data,
                                   method=method)
        r.add_header("X-API-Key", self.key)
        r.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            r.add_header(k, v)
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def admin(self, method, path, body=None):
        st, j = self.req(method, "/_sim" + path, body)
        if st >= 300:
            raise RuntimeError(f"admin {method} {path}: {st} {j}")
        return j

    def bulk(self, n, mix=None):
        return self.admin("POST", "/sandboxes/bulk",
                          {"count": n, "mix": mix or {"running": 1.0}})["ids"]

    def behind(self, sid, what):
        """Changes a sandbox behind the agent's back."""
        self.admin("POST", f"/sandboxes/{sid}/{what}")

    def log(self, since=0):
        out = []
        while True:
            j = self.admin("GET", f"/log?since={since}&limit=10000")
            out += j["entries"]
            if not j["entries"]:
                return out
            since = j["entries"][-1]["seq"]

    def last_seq(self):
        return self.admin("GET", "/log?limit=1").get("last_seq", 0)

    def faults(self, conf):
        if conf is None:
            self.admin("DELETE", "/faults")
        else:
            self.admin("PUT", "/faults", conf)

    def sandbox(self, sid):
        return self.req("GET", f"/v1/sandboxes/{sid}")

    def token_ok(self, sid, token):
        """Whether the sandbox agent accepts token (200 on /health)."""
        st, _ = self.req("GET", f"/sandbox/{sid}/health",
                         base=self.agent_url,
                         headers={"Authorization": "Bearer " + token})
        return st == 200


def api_calls(entries):
    """(method, route, sandbox_id) of every control-plane request."""
    return [(e["method"], e["route"], e["sandbox_id"]) for e in entries
            if e["path"].startswith("/v1/")]


def early_retries(log, wait_ms=1000):
    """Requests sent sooner than wait_ms after the same request (method
    and path) drew a 429 or 503, i.e. before its Retry-After."""
    early, last = [], {}
    for e in log:
        key = (e["method"], e["path"])
        prev = last.get(key)
        if prev and prev["status"] in (429, 503) and \
                e["at_ms"] < prev["at_ms"] + wait_ms:
            early.append((key, prev["at_ms"], e["at_ms"]))
        last[key] = e
    return early


def rss_unmeasurable():
    """Why RSS says nothing about leaks here, or None: ASan keeps freed
    memory in quarantine and pads every block (LeakSanitizer checks
    leaks instead); valgrind replaces the allocator."""
    if "ASAN_OPTIONS" in os.environ:
        return "under ASan (quarantine)"
    if os.environ.get("HOPXD_TEST_WRAPPER"):
        return "under valgrind"
    return None


def worst_window(times, width_ms):
    """The most of the sorted times that fall into any width_ms window."""
    worst, j = 0, 0
    for i, at in enumerate(times):
        while times[j] <= at - width_ms:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


def jwt_exp(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["exp"]


class Agent:
    def __init__(self, hopxd, hopxctl, tmp, base_url, key=KEY, args=()):
        self.hopxd, self.hopxctl, self.tmp = hopxd, hopxctl, tmp
        self.base_url, self.key, self.args = base_url, key, list(args)
        self.db = os.path.join(tmp, "state", "hopxd.db")
        self.sock = os.path.join(tmp, "run", "hopxd.sock")
        self.proc = None
        self.wrap = shlex.split(os.environ.get("HOPXD_TEST_WRAPPER", ""))

    def start(self, wait=True, extra=()):
        env = dict(os.environ, HOPX_BASE_URL=self.base_url,
                   XDG_CONFIG_HOME=os.path.join(self.tmp, "config"))
        env.pop("HOPX_API_KEY", None)
        if self.key:
            env["HOPX_API_KEY"] = self.key
        cmd = [*self.wrap, self.hopxd, "--db", self.db, "--socket",
               self.sock, "--log-level", "debug", *self.args, *extra]
        self.proc = subprocess.Popen(cmd, env=env, stderr=open(
            os.path.join(self.tmp, "hopxd.log"), "a"))
        if wait and not wait_for(self.answers, 20):
            raise RuntimeError("hopxd did not answer")
        return self

    def answers(self):
        try:
            self.rpc("hello")
            return True
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def ctl(self, *args, timeout=120):
        p = subprocess.run([*self.wrap, self.hopxctl, "--socket", self.sock,
                            *args], capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def ctl_json(self, *args):
        rc, out, err = self.ctl("--json", *args)
        return rc, (json.loads(out) if rc == 0 and out.strip() else err)

    def rpc(self, method, params=None, timeout=60):
        """One request over the socket, without hopxctl."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            s.sendall((json.dumps({"id": 1, "method": method,
                                   "params": params or {}}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("connection closed")
                buf += chunk
        return json.loads(buf)

    def attach_all(self, ids):
        """Attaches every id; returns the error answers."""
        return [r for r in (self.rpc("attach", {"id": s}) for s in ids)
                if "error" in r]

    def records(self):
        return {r["id"]: r for r in self.rpc("list", {"limit": 10000})
                ["result"]["sandboxes"]}

    def last_report(self):
        r = self.rpc("reconcile", {"last": True})
        return r.get("result")

    def wait_report(self, trigger, after_id=0, timeout=60):
        """Waits for a finished reconcile of this trigger; returns it."""
        seen = [after_id]

        def done():
            while True:
                ev = self.rpc("events", {"since": seen[0], "limit": 10000})
                events = ev["result"]["events"]
                for e in events:
                    seen[0] = e["seq"]
                    if e["type"] == "reconciled" and \
                            e["detail"]["trigger"] == trigger:
                        return self.last_report()
                if len(events) < 10000:
                    return None
        return wait_for(done, timeout, 0.02)

    def last_event(self):
        return self.rpc("events", {"limit": 1})["result"]["last_seq"]


def setup():
    """Parses argv (hopxd hopxctl hopx-sim) and makes a temp dir."""
    if len(sys.argv) != 4:
        sys.exit("usage: test.py HOPXD HOPXCTL HOPX_SIM")
    tmp = tempfile.mkdtemp(prefix="hopxd-test-")
    return sys.argv[1], sys.argv[2], sys.argv[3], tmp


def memcheck_errors(tmp):
    """Lines valgrind wrote into the agents' log (it is --quiet: any line
    is an error or a leak)."""
    try:
        with open(os.path.join(tmp, "hopxd.log"), errors="replace") as f:
            return [ln.rstrip() for ln in f if re.match(r"==\d+== ", ln)]
    except OSError:
        return []


def cleanup(tmp, *procs, t=None):
    """Stops what still runs; under a wrapper (valgrind) t also reports
    whether memcheck found anything in hopxd."""
    for p in procs:
        try:
            if p.proc and p.proc.poll() is None:
                if t is not None and isinstance(p, Agent) and p.wrap:
                    p.term(120)  # let memcheck report leaks
                else:
                    p.proc.kill()
                    p.proc.wait(10)
        except Exception:
            pass
    if t is not None and os.environ.get("HOPXD_TEST_WRAPPER"):
        errs = memcheck_errors(tmp)
        t.ok(not errs, "memcheck: no errors or definite leaks in hopxd",
             "\n".join(errs[:40]))
    if os.environ.get("HOPXD_KEEP_TMP"):
        print(f"# kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
