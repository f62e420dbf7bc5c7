"""Test harness for hopxd against hopx-sim: processes, admin API, TAP.

Each test script builds a Sim and an Agent in a private temporary
directory and reports TAP lines. Binaries come from argv (meson passes
them); HOPXD_TEST_WRAPPER (e.g. valgrind) wraps hopxd and hopxctl.

Every process the harness starts is accounted for: an agent ends with
SIGTERM and exit 0 (SIGKILL only through kill9(), and only while it
still runs), hopx-sim likewise, and cleanup() fails the test on any other
end and on any sanitizer report in hopxd's, hopx-sim's or hopxctl's
output (run() and Agent.ctl() scan what they capture).
"""
import atexit
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

KEY = "hopx_test_agent.key"

# The first line of a report by ASan, LeakSanitizer or UBSan.
SANITIZER = re.compile(r"(==\d+==\s*ERROR: \w+Sanitizer|"
                       r"^SUMMARY: \w+Sanitizer|: runtime error: )")
# Sanitizer reports and unexpected ends seen so far, for cleanup().
PROBLEMS = []
# Every Sim and Agent made, so that none outlives its test (atexit).
STARTED = []


def sanitizer_report(text, limit=60):
    """The report in text (from its first line on), or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if SANITIZER.search(line):
            return "\n".join(lines[i:i + limit])
    return None


def note_output(who, *texts):
    """Remembers a sanitizer report found in a process's output."""
    for text in texts:
        rep = sanitizer_report(text or "")
        if rep:
            PROBLEMS.append(f"sanitizer report from {who}:\n{rep}")
            return


def run(argv, **kw):
    """subprocess.run with captured text output, scanned for sanitizer
    reports (argv[0] names the process in the report)."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(argv, **kw)
    note_output(os.path.basename(str(argv[0])), p.stdout, p.stderr)
    return p


def log_tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


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
            for line in str(detail).splitlines()[:120]:
                print("# " + line)
        sys.stdout.flush()
        return cond

    def skip(self, what, why):
        """A case not run; tests/skips.txt decides whether that may be."""
        self.n += 1
        print(f"ok {self.n} - {what} # SKIP {why}")
        sys.stdout.flush()

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
        self.files = os.path.join(tmp, "sim-files")
        os.makedirs(self.files, exist_ok=True)
        STARTED.append(self)

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
               "--state-file", self.state, "--files-dir", self.files,
               "-q", *self.args]
        self.proc = subprocess.Popen(cmd, stderr=open(
            os.path.join(self.tmp, "sim.log"), "a"))
        if not wait_for(lambda: os.path.exists(ready), 10):
            raise RuntimeError("hopx-sim did not start")
        return self

    def stop(self):
        """SIGTERM; an exit other than 0 (or an earlier end of its own) is
        recorded for cleanup()."""
        if not self.proc:
            return
        rc = self.proc.poll()
        if rc is not None:
            PROBLEMS.append(f"hopx-sim exited {rc} on its own")
        else:
            self.proc.terminate()
            rc = self.proc.wait(30)
            if rc != 0:
                PROBLEMS.append(f"hopx-sim exited {rc} after SIGTERM")
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

    def statuses(self):
        """Every sandbox HopX holds, id -> status (all pages)."""
        out, cursor = {}, None
        while True:
            q = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            st, j = self.req("GET", "/v1/sandboxes" + q)
            out.update((s["id"], s["status"]) for s in j["data"])
            cursor = j.get("next_cursor")
            if not j.get("has_more"):
                return out

    def sandbox(self, sid):
        return self.req("GET", f"/v1/sandboxes/{sid}")

    def token_ok(self, sid, token):
        """Whether the sandbox agent accepts token (200 on /health)."""
        st, _ = self.req("GET", f"/sandbox/{sid}/health",
                         base=self.agent_url,
                         headers={"Authorization": "Bearer " + token})
        return st == 200


class WebSocket:
    """A minimal RFC 6455 client over a plain socket, for tests that must
    see exactly what is on the wire (frames, close codes, refusals)."""

    def __init__(self, url, path, headers=None, timeout=10, cafile=None):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=cafile)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=u.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        hdr = {"Host": u.netloc, "Upgrade": "websocket",
               "Connection": "Upgrade", "Sec-WebSocket-Key": key,
               "Sec-WebSocket-Version": "13", **(headers or {})}
        lines = [f"GET {path} HTTP/1.1"] + \
            [f"{k}: {v}" for k, v in hdr.items() if v is not None]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                break
            self.buf += got
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        first = head.split(b"\r\n")[0].decode(errors="replace")
        self.status = int(first.split()[1]) if len(first.split()) > 1 else 0
        self.head = head.decode(errors="replace")
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
            .digest()).decode()
        self.accepted = self.status == 101 and want in self.head

    def send(self, data, op=None, mask=True, fin=True):
        if isinstance(data, str):
            data, op = data.encode(), op or 1
        op = op or 2
        n = len(data)
        h = bytes([(0x80 if fin else 0) | op])
        m = 0x80 if mask else 0
        if n < 126:
            h += bytes([m | n])
        elif n < 65536:
            h += bytes([m | 126]) + struct.pack(">H", n)
        else:
            h += bytes([m | 127]) + struct.pack(">Q", n)
        if mask:
            k = os.urandom(4)
            data = bytes(b ^ k[i % 4] for i, b in enumerate(data)) \
                if n < 4096 else _xor_mask(data, k)
            h += k
        self.sock.sendall(h + data)

    def _read(self, n):
        while len(self.buf) < n:
            got = self.sock.recv(1 << 20)
            if not got:
                raise ConnectionError("closed")
            self.buf += got
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """(opcode, payload) of the next frame."""
        b0, b1 = self._read(2)
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0f, self._read(n)

    def close(self):
        try:
            self.send(b"\x03\xe8", op=8)
        except OSError:
            pass
        self.sock.close()


def _xor_mask(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")) \
        .to_bytes(n, "big")


class PgServer:
    """A PostgreSQL 15 server of its own (tests/pgserver.sh), in a
    directory under /tmp that the unprivileged user it runs as can
    reach; conninfo is what --store takes."""
    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                          "pgserver.sh")

    def __init__(self, tls=False):
        """tls: set up as in production (TLS with a CA of its own,
        sslmode=verify-full, a password in password_file); the test's own
        queries go over the Unix socket."""
        self.dir = tempfile.mkdtemp(prefix="hopxd-pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.conninfo, self.running, self.tls = None, False, tls
        self.password_file = os.path.join(self.dir, "pg", "password")
        STARTED.append(self)

    def _run(self, cmd):
        env = dict(os.environ, PGSERVER_TLS="1" if self.tls else "")
        p = run([self.SCRIPT, cmd, os.path.join(self.dir, "pg")],
                timeout=120, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"pgserver.sh {cmd}: {p.stderr}")
        return p.stdout.strip()

    def start(self):
        self.conninfo = self._run("start")
        self.running = True
        return self

    def stop(self):
        """A fast shutdown (also what ends the test)."""
        if self.running:
            self._run("stop")
        self.running = False

    def kill_restart(self):
        """SIGKILL of the postmaster (a crash), then a start on the same
        port once its backends have gone; True when it runs again."""
        self._run("kill")
        for _ in range(50):
            time.sleep(0.2)
            try:
                self._run("start")
                return True
            except RuntimeError:
                continue
        self.running = False
        return False

    def sql(self, query):
        """Runs query with psql; its rows as lists of text."""
        conninfo = self.conninfo
        if self.tls:
            with open(os.path.join(self.dir, "pg", "port")) as f:
                conninfo = (f"host={self.dir}/pg port={f.read().strip()} "
                            "user=hopxd dbname=postgres")
        p = run(["psql", conninfo, "-AtX", "-F", "\t", "-v",
                 "ON_ERROR_STOP=1", "-c", query], timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"psql: {p.stderr}")
        return [ln.split("\t") for ln in p.stdout.splitlines() if ln]

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


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


def tls_certs(tmp, ips):
    """A CA of the test's own and a server certificate it signed for the
    IP addresses ips: {"ca", "cert", "key"} (PEM paths), with openssl."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d, exist_ok=True)
    out = {k: os.path.join(d, k + ".pem") for k in ("ca", "cert", "key")}
    ca_key, csr = os.path.join(d, "ca.key"), os.path.join(d, "csr.pem")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join("IP:" + ip for ip in ips) +
                "\n")
    for cmd in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                 "2", "-subj", "/CN=hopxd-test-ca", "-keyout", ca_key,
                 "-out", out["ca"]],
                ["req", "-newkey", "rsa:2048", "-nodes", "-subj",
                 "/CN=hopx-sim", "-keyout", out["key"], "-out", csr],
                ["x509", "-req", "-in", csr, "-CA", out["ca"], "-CAkey",
                 ca_key, "-CAcreateserial", "-days", "2", "-extfile", ext,
                 "-out", out["cert"]]):
        subprocess.run(["openssl"] + cmd, check=True, capture_output=True)
    return out


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


def faketime_lib():
    """Debian's libfaketime, or None when the package is missing."""
    import glob
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    return found[0] if found else None


class Agent:
    def __init__(self, hopxd, hopxctl, tmp, base_url, key=KEY, args=(),
                 clock=None):
        """clock: the agent's wall clock moved from the real one, as
        libfaketime takes it ("+2h", "-10m"); it can be moved while the
        agent runs (set_clock). HOPXD_CLOCK_SKEW gives every agent of a
        suite one (the skewed forms of soak and chaos)."""
        self.hopxd, self.hopxctl, self.tmp = hopxd, hopxctl, tmp
        self.base_url, self.key, self.args = base_url, key, list(args)
        self.clock = clock or os.environ.get("HOPXD_CLOCK_SKEW")
        self.clock_file = os.path.join(tmp, "faketime")
        self.db = os.path.join(tmp, "state", "hopxd.db")
        self.sock = os.path.join(tmp, "run", "hopxd.sock")
        self.proc = None
        self.wrap = shlex.split(os.environ.get("HOPXD_TEST_WRAPPER", ""))
        STARTED.append(self)

    def start(self, wait=True, extra=()):
        self.reap()
        env = dict(os.environ, HOPX_BASE_URL=self.base_url,
                   XDG_CONFIG_HOME=os.path.join(self.tmp, "config"))
        env.pop("HOPX_API_KEY", None)
        if self.key:
            env["HOPX_API_KEY"] = self.key
        if self.clock:
            self.faketime_env(env)
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

    def faketime_env(self, env):
        """The agent's wall clock from libfaketime, re-read every second
        from a file so that it can move; its monotonic clock stays real,
        as a suspend or a clock set leaves it."""
        lib = faketime_lib()
        if lib is None:
            raise RuntimeError("libfaketime is missing: scripts/setup "
                               "installs the faketime package")
        if not os.path.exists(self.clock_file):
            self.set_clock(self.clock)
        env.update(LD_PRELOAD=lib, FAKETIME_TIMESTAMP_FILE=self.clock_file,
                   FAKETIME_CACHE_DURATION="1", DONT_FAKE_MONOTONIC="1")
        # ASan wants to be first in the link order; the preload is not.
        if "ASAN_OPTIONS" in env:
            env["ASAN_OPTIONS"] += ":verify_asan_link_order=0"

    def set_clock(self, offset):
        """Moves the agent's wall clock to real time + offset ("+2h")."""
        os.makedirs(os.path.dirname(self.clock_file), exist_ok=True)
        with open(self.clock_file + ".new", "w") as f:
            f.write(offset + "\n")
        os.replace(self.clock_file + ".new", self.clock_file)
        self.clock = offset

    @property
    def log_path(self):
        return os.path.join(self.tmp, "hopxd.log")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def reap(self):
        """Accounts for a previous process that ended without being told
        to (a crash, an abort): a problem for cleanup()."""
        if self.proc is not None and self.proc.poll() is not None:
            self.died(f"exited {self.proc.returncode} on its own")
        self.proc = None

    def died(self, how):
        PROBLEMS.append(f"hopxd (pid {self.proc.pid}) {how}; its log "
                        f"ends:\n{log_tail(self.log_path)}")

    def kill9(self):
        """SIGKILL, for tests about SIGKILL. An agent that had already
        ended is a problem, not a kill survived."""
        if not self.running():
            self.reap()
            return False
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        if rc != -signal.SIGKILL:
            self.died(f"ended {rc} around a SIGKILL")
        self.proc = None
        return rc == -signal.SIGKILL

    def term(self, timeout=30):
        """SIGTERM, then its exit status (wanted: 0; anything else is also
        recorded for cleanup())."""
        if not self.running():
            rc = self.proc.returncode if self.proc else None
            self.reap()
            return rc
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        if rc != 0:
            self.died(f"exited {rc} after SIGTERM")
        self.proc = None
        return rc

    def wait_exit(self, timeout=30):
        """Waits for an agent expected to exit by itself (a refused start);
        returns its status for the test to judge."""
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def ctl(self, *args, timeout=120):
        p = run([*self.wrap, self.hopxctl, "--socket", self.sock, *args],
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
        """Every record, page by page (a reply line stays under 1 MiB)."""
        out, after = {}, None
        while True:
            p = {"limit": 1000, **({"after": after} if after else {})}
            page = self.rpc("list", p)["result"]
            out.update((r["id"], r) for r in page["sandboxes"])
            if not (after := page.get("next_after")):
                return out

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
    """Parses argv (hopxd hopxctl hopx-sim) and makes a temp dir. Whatever
    the test does, nothing it started outlives it."""
    if len(sys.argv) != 4:
        sys.exit("usage: test.py HOPXD HOPXCTL HOPX_SIM")
    tmp = tempfile.mkdtemp(prefix="hopxd-test-")
    atexit.register(lambda: stop_all(*STARTED))
    return sys.argv[1], sys.argv[2], sys.argv[3], tmp


def memcheck_errors(tmp):
    """Lines valgrind wrote into the agents' log (it is --quiet: any line
    is an error or a leak)."""
    try:
        with open(os.path.join(tmp, "hopxd.log"), errors="replace") as f:
            return [ln.rstrip() for ln in f if re.match(r"==\d+== ", ln)]
    except OSError:
        return []


def stop_all(*procs):
    """SIGTERM to every agent and simulator still running (long enough
    for LeakSanitizer or memcheck to report), SIGKILL to any that will
    not end, which is recorded."""
    for p in procs:
        try:
            if isinstance(p, Agent):
                p.term(120 if p.wrap else 60)
            else:
                p.stop()
        except subprocess.TimeoutExpired:
            PROBLEMS.append(f"{type(p).__name__} did not end at SIGTERM")
            p.proc.kill()
            p.proc.wait(10)
            p.proc = None


def cleanup(tmp, *procs, t=None):
    """Stops what still runs and, given t, reports how every process
    ended: no unexpected exit, no sanitizer report in the agents' or the
    simulator's log or in any output run() captured, and under valgrind
    no memcheck error."""
    stop_all(*procs)
    for d, _, files in os.walk(tmp):
        for name in {"hopxd.log", "sim.log"} & set(files):
            with open(os.path.join(d, name), errors="replace") as f:
                note_output(name, f.read())
    if t is not None:
        t.ok(not PROBLEMS, "every process ended as the test expects, with "
             "no sanitizer report", "\n\n".join(PROBLEMS))
    if t is not None and os.environ.get("HOPXD_TEST_WRAPPER"):
        errs = memcheck_errors(tmp)
        t.ok(not errs, "memcheck: no errors or definite leaks in hopxd",
             "\n".join(errs[:40]))
    if os.environ.get("HOPXD_KEEP_TMP"):
        print(f"# kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
