#!/usr/bin/env python3
"""The official JS SDK (@hopx-ai/sdk 0.5.1, as scripts/setup installs it)
through hopxd's HopX-compatible endpoint: every call a user makes behaves
as against hopx-sim directly; what the agent tracks is answered from its
records and token cache (20 processes connecting at once cost HopX at
most one refresh); a wrong key gets HopX's 401 envelope; what the agent
does not track is forwarded; a spent budget is a 429 with Retry-After;
the Unix-socket form, and refusals of a readable key file and a bad
address."""
import http.client
import json
import os
import socket
import stat
import subprocess
import urllib.error
import urllib.request

from hopxtest import (Agent, Sim, Tap, api_calls, cleanup, note_output,
                      run, setup)

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "sdk_flow.cjs")

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
if not os.path.isdir(os.path.join(os.environ.get("NODE_PATH", ""),
                                  "@hopx-ai", "sdk")):
    t.ok(False, "the JS SDK is installed: run scripts/setup (npm install "
         "--prefix bench/sdk)")
    t.done()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--api-listen", "127.0.0.1:0"]).start()
base = agent.rpc("status")["result"]["endpoint"]
key_file = os.path.join(tmp, "config", "hopxd", "local-key")
with open(key_file) as f:
    local_key = f.read().strip()


def sdk(*args, timeout=120):
    p = run(["node", FLOW, *args], timeout=timeout)
    if p.returncode != 0:
        return None, p.stderr[-2000:]
    return [json.loads(ln) for ln in p.stdout.splitlines()], p.stderr


def req(method, path, body=None, key=None, headers=None, url=None):
    r = urllib.request.Request((url or base) + path, method=method,
                               data=json.dumps(body).encode()
                               if body is not None else None)
    r.add_header("X-API-Key", key or local_key)
    r.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        r.add_header(k, v)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


t.ok(base and base.startswith("http://127.0.0.1:") and
     stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and
     local_key.startswith("hopxd_local_"),
     "the endpoint's URL is in status; a 0600 local key was made", base)

# -- the whole flow, straight to hopx-sim and through the agent --------
direct, err_d = sdk("flow", sim.url, sim.key)
seq = sim.last_seq()
through, err_a = sdk("flow", base, local_key)
t.ok(direct is not None and through is not None,
     "the SDK flow runs against both", (err_d, err_a))
direct, through = direct or [], through or []
MUST_PASS = {"create", "getInfo", "getHealth", "list", "iter", "pause",
             "connect-paused", "connect-running", "setTimeout",
             "refreshToken", "resume", "kill"}
MUST_FAIL = {"pause-paused", "getInfo-killed", "connect-missing"}
for d, a in zip(direct, through):
    want = d["step"] in MUST_PASS and d["ok"] or \
        d["step"] in MUST_FAIL and not d["ok"]
    t.ok(want and d == a,
         f"SDK {d['step']}: the same through the agent as against HopX",
         {"direct": d, "agent": a})
t.ok(len(direct) == len(through) == len(MUST_PASS | MUST_FAIL),
     "every step ran both ways", (len(direct), len(through)))
calls = api_calls(sim.log(seq))
gets = [c for c in calls if c[1] == "GET /v1/sandboxes/{id}"]
t.ok(len(gets) <= 2,
     "through the agent, the SDK's GETs are answered from its records "
     "(HopX saw at most the two about sandboxes it does not track)",
     calls)

# -- what the endpoint makes is tracked, with a name and labels ---------
seq = sim.last_seq()
st, _, sb = req("POST", "/v1/sandboxes", {"template_name": "base"},
                headers={"X-Hopxd-Name": "web",
                         "X-Hopxd-Labels": "team=ml,env=dev"})
rc, shown = agent.ctl_json("show", "web")
t.ok(st == 201 and rc == 0 and shown["id"] == sb["id"] and
     shown["labels"] == {"team": "ml", "env": "dev"} and
     sb["hopxd"]["name"] == "web" and sb.get("auth_token"),
     "a create through the endpoint is a tracked record with its name "
     "and labels, and answers with its token", (st, sb, shown))
sid = sb["id"]
st, _, again = req("POST", "/v1/sandboxes", {"template_name": "base"},
                   headers={"X-Hopxd-Name": "web"})
creates = [c for c in api_calls(sim.log(seq))
           if c[1] == "POST /v1/sandboxes"]
t.ok(st == 200 and again["id"] == sid and len(creates) == 1,
     "creating a name that exists answers with its sandbox: none made "
     "twice", (st, again))

# -- 20 SDK processes connect at once ----------------------------------
seq = sim.last_seq()
procs = [subprocess.Popen(["node", FLOW, "connect", base, local_key, sid],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) for _ in range(20)]
outs = [(p.wait(120), *p.communicate()) for p in procs]
for _, o, e in outs:
    note_output("node", o, e)
calls = api_calls(sim.log(seq))
refreshes = [c for c in calls if c[1] == "POST /v1/sandboxes/{id}/token/refresh"]
t.ok(all(rc == 0 and '"health":"healthy"' in o for rc, o, _ in outs),
     "20 SDK processes connect at once; each one's token works on the "
     "sandbox (getHealth)", [e[-300:] for rc, _, e in outs if rc][:2])
t.ok(len(refreshes) <= 1 and not [c for c in calls if c[0] == "GET"],
     f"HopX saw {len(refreshes)} refresh and no GET for the 20 connects",
     calls)

# -- a wrong key --------------------------------------------------------
bad, _ = sdk("badkey", base)
st, hdr, body = req("GET", "/v1/sandboxes", key="wrong")
t.ok(bad and bad[0]["error"] == "AuthenticationError" and st == 401 and
     set(body) == {"error", "code", "request_id"} and
     body["code"] == "AUTHENTICATION_REQUIRED" and
     hdr.get("X-Request-ID") == body["request_id"],
     "a wrong key: the SDK's AuthenticationError, HopX's 401 envelope",
     (bad, st, body))
st, _, body = req("GET", "/v1/sandboxes", key=sim.key)
t.ok(st == 200, "the HopX API key is accepted too", body)

# -- what the agent does not track is HopX's to answer ------------------
_, other = sim.req("POST", "/v1/sandboxes", {"template_name": "base"})
seq = sim.last_seq()
st, _, got = req("GET", f"/v1/sandboxes/{other['id']}")
st2, _, tpl = req("GET", "/v1/templates?limit=5")
fwd = api_calls(sim.log(seq))
t.ok(st == 200 and got["id"] == other["id"] and st2 == 200 and
     tpl["object"] == "list" and len(fwd) == 2,
     "an untracked sandbox and the templates are forwarded to HopX", fwd)
st, _, body = req("GET", "/v1/sandboxes/nosuchsandbox000")
t.ok(st == 404 and body["code"] == "RESOURCE_NOT_FOUND",
     "HopX's 404 comes back as HopX sent it", body)
st, _, body = req("PUT", f"/v1/sandboxes/{sid}/timeout",
                  {"timeout_seconds": -5})
t.ok(st == 400 and set(body) >= {"error", "code", "request_id"},
     "a bad timeout: 400 in HopX's envelope", body)
st, _, body = req("POST", "/v1/sandboxes", {"region": "x"})
t.ok(st == 400 and "template" in body["error"],
     "a create without a template: 400 saying what is missing", body)

# -- a spent budget: 429 with Retry-After -------------------------------
tight = Agent(hopxd, hopxctl, os.path.join(tmp, "b"), sim.url,
              args=["--api-listen", "127.0.0.1:0", "--budget", "1"])
os.makedirs(tight.tmp, exist_ok=True)
tight.start()
tbase = tight.rpc("status")["result"]["endpoint"]
with open(os.path.join(tight.tmp, "config", "hopxd", "local-key")) as f:
    tkey = f.read().strip()
answers = [req("GET", "/v1/templates", key=tkey, url=tbase)
           for _ in range(3)]
limited = [a for a in answers if a[0] == 429]
t.ok(limited and int(limited[0][1].get("Retry-After", 0)) >= 1 and
     limited[0][2]["code"] == "RATE_LIMIT_EXCEEDED" and
     limited[0][2]["retry_after"] >= 1,
     "with the budget spent: 429, Retry-After and HopX's envelope",
     [(a[0], a[2]) for a in answers])
tight.term()

# -- the Unix-socket form ------------------------------------------------
path = os.path.join(tmp, "run", "api.sock")
usock = Agent(hopxd, hopxctl, os.path.join(tmp, "u"), sim.url,
              args=["--api-listen", f"unix:{path}"])
os.makedirs(usock.tmp, exist_ok=True)
usock.start()


class UnixConn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)


with open(os.path.join(usock.tmp, "config", "hopxd", "local-key")) as f:
    ukey = f.read().strip()
c = UnixConn("localhost")
c.request("GET", "/v1/sandboxes", headers={"X-API-Key": ukey})
r = c.getresponse()
ubody = json.loads(r.read())
t.ok(r.status == 200 and ubody["object"] == "list" and
     stat.S_IMODE(os.stat(path).st_mode) == 0o600 and
     usock.rpc("status")["result"]["endpoint"] == f"unix:{path}",
     "the endpoint on a 0600 Unix socket", (r.status, ubody))
usock.term()
t.ok(not os.path.exists(path), "its socket is removed at exit")

# -- bounds: body, headers, connections, idle time -------------------------
lim = Agent(hopxd, hopxctl, os.path.join(tmp, "l"), sim.url,
            args=["--api-listen", "127.0.0.1:0", "--max-connections", "4",
                  "--idle-timeout", "2"])
os.makedirs(lim.tmp, exist_ok=True)
lim.start()
lurl = lim.rpc("status")["result"]["endpoint"]
with open(os.path.join(lim.tmp, "config", "hopxd", "local-key")) as f:
    lkey = f.read().strip()
lport = int(lurl.rsplit(":", 1)[1])
st, _, body = req("POST", "/v1/sandboxes", {"pad": "x" * (2 << 20)},
                  key=lkey, url=lurl)
t.ok(st == 413 and body["code"] == "PAYLOAD_TOO_LARGE",
     "a body over 1 MiB: 413", (st, body))


def raw(data, wait=5.0):
    """Sends data on a new connection; what comes back until the
    server closes it (or wait runs out: None)."""
    with socket.create_connection(("127.0.0.1", lport), timeout=wait) as s:
        s.sendall(data)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk
        except socket.timeout:
            return None


big = raw(b"GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nX-Pad: " +
          b"a" * 65536 + b"\r\n\r\n")
t.ok(big is not None and (big == b"" or big.split(b" ")[1] in
                          (b"413", b"414", b"431")),
     "64 KiB of headers: refused and closed", big[:80] if big else big)
idle = [socket.create_connection(("127.0.0.1", lport)) for _ in range(4)]
# Beyond --max-connections a connection waits (in the kernel's backlog)
# until one closes: never more are served at once.
extra = socket.create_connection(("127.0.0.1", lport))
extra.sendall(f"GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nX-API-Key: "
              f"{lkey}\r\nConnection: close\r\n\r\n".encode())
extra.settimeout(1)
try:
    early = extra.recv(100)
except socket.timeout:
    early = None
closed = []
for s in idle:
    s.settimeout(6)
    try:
        closed.append(s.recv(1) == b"")
    except socket.timeout:
        closed.append(False)
    s.close()
extra.settimeout(6)
try:
    late = extra.recv(100)
except socket.timeout:
    late = None
extra.close()
t.ok(early is None and late and late.startswith(b"HTTP/1.1 200"),
     "a connection beyond --max-connections is served only once one of "
     "the others closed", (early, late))
t.ok(all(closed), "idle connections are closed after --idle-timeout",
     closed)
st, _, body = req("GET", "/v1/sandboxes", key=lkey, url=lurl)
t.ok(st == 200, "the endpoint answers after all that", body)
lim.term()

# -- refusals at start ----------------------------------------------------
os.chmod(key_file, 0o644)
agent.term()
rc = agent.start(wait=False).wait_exit(30)
with open(agent.log_path) as f:
    log = f.read()
t.ok(rc not in (0, None) and f"chmod 600 {key_file}" in log,
     "a local key others can read is refused, saying the fix", rc)
os.chmod(key_file, 0o600)
bad = Agent(hopxd, hopxctl, os.path.join(tmp, "a"), sim.url,
            args=["--api-listen", "nowhere"])
os.makedirs(bad.tmp, exist_ok=True)
rc = bad.start(wait=False).wait_exit(30)
with open(bad.log_path) as f:
    log = f.read()
t.ok(rc not in (0, None) and "HOST:PORT" in log,
     "a bad --api-listen is refused, saying the form", rc)
cleanup(tmp, t=t)
t.done()
