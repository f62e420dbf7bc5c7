#!/usr/bin/env python3
"""The data-plane proxy: the official JS SDK through the endpoint keeps
working past its first token's life (and, straight to hopx-sim, does not);
a request without proof of access is refused with the sandbox agent's own
401 and never reaches HopX; traffic wakes an idle-paused sandbox with one
resume (events cause traffic); an open WebSocket holds it in use; 256 MB
stream up and down unchanged with the agent's memory flat; malformed
requests get clear errors; metrics count it all."""
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse

import proxytest
from proxytest import bearer, call
from hopxtest import (Agent, Sim, Tap, WebSocket, api_calls, cleanup,
                      note_output, rss_unmeasurable, run, setup,
                      wait_for)

RESUME = "POST /v1/sandboxes/{id}/resume"
IDLE = 2  # seconds

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp, args=["--token-lifetime", "6"]).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--api-listen", "127.0.0.1:0"]).start()
base, local_key = proxytest.endpoint_of(agent, tmp)


def endpoint_get(sid):
    return proxytest.endpoint_get(base, local_key, sid)


def token(sid):
    return proxytest.token(agent, sid)


def new_sandbox():
    st, j = sim.req("POST", "/v1/sandboxes", {"template_name": "base"})
    assert st == 201, (st, j)
    rc, _, err = agent.ctl("attach", j["id"])
    assert rc == 0, err
    return j["id"], j["public_host"]


# -- the SDK through the endpoint, and straight to hopx-sim -------------
SECONDS = 60
t_rounds, t_last, d_rounds, rc = proxytest.dataplane_pair(
    (base, local_key), (sim.url, sim.key), SECONDS)
t.ok(rc == 0 and t_last.get("failed") == 0 and
     len(t_rounds) >= 10 and t_rounds[-1]["t"] >= SECONDS - 10 and
     t_last.get("ok", 0) == 5 * len(t_rounds),
     f"the JS SDK through the endpoint with 6 s tokens: getHealth, a "
     f"command, a file write and read and a WebSocket stream every 3 s for "
     f"{SECONDS} s: all {t_last.get('ok')} calls succeed", t_last)
first_bad = proxytest.first_failure(d_rounds)
t.ok(first_bad is not None and first_bad["t"] >= 5 and
     first_bad["calls"]["health"].get("status") == 401,
     "the same program straight to hopx-sim fails once its first token "
     "expires (the SDK keeps sending it: if this fails, the SDK was fixed)",
     first_bad)
sid_sdk = t_rounds[0]["id"] if t_rounds else None
vm = [e for e in sim.log() if e["route"].startswith("VM ") and
      e["sandbox_id"] == sid_sdk]
t.ok(vm and all(e["status"] in (101, 200) for e in vm),
     f"its {len(vm)} calls reached the sandbox with a valid token each "
     "(the simulator's log: no 401)", [e for e in vm if e["status"] >= 300])
st, j = endpoint_get(sid_sdk)
t.ok(st == 200 and j["public_host"].startswith("http://127.2.") and
     j["direct_url"] == j["public_host"],
     "the endpoint's sandbox has the proxy's address as public_host",
     (st, j))
ph = j["public_host"]

# -- proof of access ----------------------------------------------------
sid_b, _ = new_sandbox()
_, jb = endpoint_get(sid_b)
tok_b = token(sid_b)
seq = sim.last_seq()
refusals = [call(ph, "GET", "/health"),
            call(ph, "GET", "/health", headers=bearer("nope")),
            call(ph, "GET", "/health", headers=bearer(tok_b)),
            call(ph, "GET", "/health", headers={"X-API-Key": "nope"})]
t.ok(all(st == 401 and json.loads(b)["code"] == "INVALID_TOKEN"
         for st, _, b in refusals) and sim.log(seq) == [],
     "no token, a wrong one, another sandbox's token, a wrong key: 401 "
     "INVALID_TOKEN, and none reached the simulator", refusals)
old = jb.get("auth_token") or tok_b
time.sleep(7)
st, _, b = call(jb["public_host"], "GET", "/health", headers=bearer(old))
st2, _, b2 = call(jb["public_host"], "GET", "/health",
                  headers={"X-API-Key": local_key})
log = [e for e in sim.log(seq) if e["route"] == "VM GET /health"]
t.ok(st == 200 and st2 == 200 and len(log) == 2 and
     all(e["status"] == 200 for e in log),
     "an expired token the agent gave for it, and the local key, are "
     "proof: carried with the current token", (st, b, st2, b2, log))

# -- a token the sandbox refuses: one refresh, the requests again --------
ok, codes, refused, refreshes = proxytest.refused_burst(sim, ph, sid_sdk,
                                                        token(sid_sdk))
t.ok(ok and refused and len(refreshes) == 1,
     f"the sandbox refused the agent's token ({refused} requests got "
     "401): one refresh at HopX, and all 10 requests sent again and "
     "answered", (codes, refused, refreshes))

# -- hopxctl proxy: a fixed address for tools that carry no token ------
def start_proxy(*args):
    p = subprocess.Popen([hopxctl, "--socket", agent.sock, "proxy", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    url = line.split(" on ", 1)[1].split()[0] if " on " in line else None
    return p, url, line


def end_proxy(p):
    p.terminate()
    rc = p.wait(30)
    o, e = p.communicate()
    note_output("hopxctl", o, e)
    return rc


def curl(url, path, *extra, unix=None):
    cmd = ["curl", "-sS", "-m", "60", "-w", "\n%{http_code}"]
    if unix:
        cmd += ["--unix-socket", unix]
    return run(cmd + list(extra) + [url + path], timeout=90)


def code_of(p):
    return int(p.stdout.rsplit("\n", 1)[-1] or 0) if p.stdout else 0


# -- traffic wakes an idle-paused sandbox, once ----------------------------
rc, _, err = agent.ctl("policy", sid_b, "--idle-pause", f"{IDLE}s")
fixed, furl, line = start_proxy(sid_b, "--listen", "127.0.0.1:0")
t.ok(furl and furl.startswith("http://127.0.0.1:"),
     "hopxctl proxy REF --listen 127.0.0.1:0 prints where it serves", line)
paused = wait_for(lambda: sim.sandbox(sid_b)[1]["status"] == "paused",
                  IDLE + 8)
seq = sim.last_seq()
procs = [subprocess.Popen(["curl", "-sS", "-m", "60", "-X", "POST", "-H",
                           "Content-Type: application/json", "-d",
                           json.dumps({"command": f"echo {i}"}),
                           f"{furl}/commands/run"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) for i in range(20)]
results = [(p.wait(90), *p.communicate()) for p in procs]
resumes = [c for c in api_calls(sim.log(seq)) if c[1] == RESUME]


def echoed(i, r):
    try:
        return r[0] == 0 and json.loads(r[1])["stdout"] == f"{i}\n"
    except (ValueError, KeyError):
        return False


t.ok(rc == 0 and paused and
     all(echoed(i, r) for i, r in enumerate(results)) and
     len(resumes) == 1,
     "20 concurrent curl (no token) through hopxctl proxy to an "
     "idle-paused sandbox: all answered, one resume at HopX",
     (paused, results[:3], resumes))
ev = agent.rpc("events", {"limit": 10000})["result"]["events"]
woke = [e for e in ev if e["sandbox_id"] == sid_b and e["type"] == "status"
        and e["cause"] == "traffic"]
t.ok(woke and woke[-1]["detail"]["to"] == "running",
     "the wake's event says cause traffic", ev[-3:])

# -- an open WebSocket holds it in use -------------------------------------
ws = WebSocket(jb["public_host"], "/terminal", bearer(tok_b))
ws.send("hello")
echo = ws.recv()
time.sleep(3 * IDLE)
held = sim.sandbox(sid_b)[1]["status"]
shown = agent.ctl("show", sid_b)[1]
ws.send("still")
echo2 = ws.recv()
ws.close()
t0 = time.monotonic()
let_go = wait_for(lambda: sim.sandbox(sid_b)[1]["status"] == "paused",
                  IDLE + 8)
took = time.monotonic() - t0
t.ok(ws.accepted and echo == (1, b"hello") and echo2 == (1, b"still") and
     held == "running" and "proxy: a WebSocket" in shown,
     f"a WebSocket open through the proxy for {3 * IDLE} s ({IDLE} s idle "
     "period) keeps the sandbox running; show names it as a holder",
     (ws.status, echo, held, shown))
t.ok(let_go and took <= IDLE + 3,
     f"closed, the sandbox is paused for idleness {took:.1f} s later", took)
rc, _, _ = agent.ctl("policy", sid_b, "--idle-pause", "off")

# -- who may use a fixed address ------------------------------------------
other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
sock = os.path.join(tmp, "sbx.sock")
ufix, uurl, line = start_proxy(sid_b, "--unix", sock)
mode = oct(os.stat(sock).st_mode & 0o777) if os.path.exists(sock) else None
own = curl("http://sandbox", "/health", unix=sock)
t.ok(uurl == "unix:" + sock and mode == "0o600" and code_of(own) == 200,
     "hopxctl proxy --unix: a 0600 socket its own user reaches without a "
     "token", (line, mode, own.stdout, own.stderr))
if os.geteuid() == 0:
    os.chmod(sock, 0o666)  # only the uid check is left to refuse
    os.chmod(tmp, 0o755)
    seq = sim.last_seq()
    theirs = run(other + ["curl", "-sS", "-w", "\n%{http_code}",
                          "--unix-socket", sock, "http://sandbox/health"],
                 timeout=60)
    tcp_theirs = run(other + ["curl", "-sS", "-w", "\n%{http_code}",
                              furl + "/health"], timeout=60)
    tcp_proof = run(other + ["curl", "-sS", "-w", "\n%{http_code}", "-H",
                             f"Authorization: Bearer {tok_b}",
                             furl + "/health"], timeout=60)
    reached = [e for e in sim.log(seq) if e["route"] == "VM GET /health"]
    t.ok(code_of(theirs) == 403 and code_of(tcp_theirs) == 401 and
         code_of(tcp_proof) == 200 and len(reached) == 1,
         "another uid: refused on the Unix socket (403), on the TCP port "
         "without proof (401), carried with a token it was given",
         (theirs.stdout, tcp_theirs.stdout, tcp_proof.stdout, reached))
    os.chmod(tmp, 0o700)
else:
    t.skip("another uid cannot use the fixed addresses",
           "needs root to run curl as another user")
rc_w, _, err_w = agent.ctl("proxy", sid_b, "--listen", "0.0.0.0:0")
rc_u, _, err_u = agent.ctl("proxy", sid_b, "--listen")
t.ok(rc_w not in (0, None) and "loopback" in err_w and rc_u == 2,
     "hopxctl proxy refuses an address off loopback (saying why) and a "
     "missing one (usage, exit 2)", (rc_w, err_w, rc_u, err_u))
rc1, rc2 = end_proxy(ufix), end_proxy(fixed)
gone = curl(furl, "/health")
t.ok(rc1 == 0 and rc2 == 0 and not os.path.exists(sock) and
     code_of(gone) == 0,
     "hopxctl proxy ends on SIGTERM (exit 0): its port is closed and its "
     "socket file removed", (rc1, rc2, gone.stderr))

# -- 256 MB each way -----------------------------------------------------
def rss_kb():
    with open(f"/proc/{agent.proc.pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


class Peak(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = rss_kb(), False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_kb())
            time.sleep(0.05)


big = os.path.join(tmp, "big.bin")
h = hashlib.sha256()
with open(big, "wb") as f:
    for i in range(256):
        chunk = hashlib.sha256(str(i).encode()).digest() * 32768
        h.update(chunk)
        f.write(chunk)
digest = h.hexdigest()
tok_s = token(sid_sdk)
st, _, _ = call(ph, "GET", "/health", headers=bearer(tok_s))
before = rss_kb()
peak = Peak()
peak.start()
up = run(["curl", "-sS", "-H", f"Authorization: Bearer {tok_s}", "-H",
          "Content-Type: application/octet-stream", "--data-binary",
          f"@{big}", f"{ph}/files/upload?path=/workspace/big.bin"],
         timeout=300)
down = os.path.join(tmp, "down.bin")
dl = run(["curl", "-sS", "-f", "-o", down, "-H",
          f"Authorization: Bearer {tok_s}",
          f"{ph}/files/download?path=/workspace/big.bin"], timeout=300)
peak.stop = True
peak.join()
os.unlink(big)
with open(down, "rb") as f:
    h2 = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h2.update(chunk)
os.unlink(down)
grew = (peak.peak - before) / 1024
t.ok(up.returncode == 0 and json.loads(up.stdout or "{}").get("size") ==
     256 << 20 and dl.returncode == 0 and h2.hexdigest() == digest,
     "256 MB up and 256 MB down through the proxy, identical",
     (up.stdout, up.stderr, dl.stderr))
why = rss_unmeasurable()
t.ok(why or grew <= 16, f"the agent's memory grew {grew:.1f} MB at most "
     "during them (streamed, not held; limit 16)" +
     (f" (not judged {why})" if why else ""), grew)

# -- malformed and refused ------------------------------------------------
def raw(url, data, read_all=True):
    u = urllib.parse.urlparse(url)
    s = socket.create_connection((u.hostname, u.port), 30)
    s.sendall(data)
    out = b""
    while True:
        got = s.recv(65536)
        if not got:
            break
        out += got
    s.close()
    return out


def status_of(resp):
    first = resp.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 else 0


auth = f"Authorization: Bearer {tok_s}\r\n".encode()
cases = [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400,
     "a field without a colon"),
    (b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431,
     "a 20 KB head"),
    (b"POST /commands/run HTTP/1.1\r\n" + auth +
     b"Transfer-Encoding: gzip\r\n\r\n", 501, "a transfer coding not chunked"),
    (b"POST /commands/run HTTP/1.1\r\n" + auth + b"Content-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400,
     "Content-Length with Transfer-Encoding"),
    (b"GET /health HTTP/2.0\r\n\r\n", 505, "HTTP/2"),
]
got = [(status_of(raw(ph, data)), want, what) for data, want, what in cases]
t.ok(all(g == w for g, w, _ in got),
     "malformed requests: 400, 431, 501, 505 as each deserves", got)
resp = raw(ph, b"GET /health HTTP/1.1\r\n" + auth + b"Connection: Upgrade"
           b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"
           b"\r\nConnection: close\r\n\r\n")
t.ok(status_of(resp) == 200 and b"healthy" in resp,
     "an h2c upgrade is carried as plain HTTP/1.1", resp[:200])
unknown = "http://127.2.255.250:" + ph.rsplit(":", 1)[1]
resp = raw(unknown, b"GET /health HTTP/1.1\r\n\r\n")
t.ok(status_of(resp) == 404 and b"hopxctl ls" in resp,
     "an address no sandbox has: 404 naming 'hopxctl ls'", resp[:300])
pipelined = raw(ph, (b"GET /health HTTP/1.1\r\n" + auth + b"\r\n") * 3 +
                b"GET /health HTTP/1.1\r\n" + auth +
                b"Connection: close\r\n\r\n")
t.ok(pipelined.count(b"HTTP/1.1 200") == 4,
     "four pipelined requests on one connection: four answers in order",
     pipelined[:400])

# -- metrics ------------------------------------------------------------------
text = agent.ctl("metrics")[1]
mfile = os.path.join(tmp, "metrics.txt")
with open(mfile, "w") as f:
    f.write(text)
chk = run(["promtool", "check", "metrics"], input=text, timeout=60)


def value(name, label=""):
    for ln in text.splitlines():
        if ln.startswith(name + ("{" + label + "}" if label else " ")):
            return float(ln.rsplit(" ", 1)[1])
    return None


t.ok(chk.returncode == 0 and value("hopxd_proxy_requests_total",
                                   'result="carried"') > 50 and
     value("hopxd_proxy_requests_total", 'result="refused"') >= 4 and
     value("hopxd_proxy_wakes_total") >= 1 and
     value("hopxd_proxy_websockets_total") >= 2 and
     value("hopxd_proxy_bytes_total", 'direction="up"') > 256 << 20 and
     value("hopxd_proxy_bytes_total", 'direction="down"') > 256 << 20 and
     value("hopxd_proxy_request_duration_seconds_count") > 50,
     "hopxd_proxy_* metrics count requests, refusals, wakes, WebSockets "
     "and bytes; promtool accepts them", (chk.stdout, chk.stderr,
                                          [ln for ln in text.splitlines()
                                           if "proxy" in ln][:40]))

# -- a sandbox behind a shared host: public_host with a path ------------
tmp2 = os.path.join(tmp, "shared")
os.makedirs(tmp2, mode=0o700)
sim2 = Sim(simbin, tmp2, args=["--vm-hosts", "0"]).start()
agent2 = Agent(hopxd, hopxctl, tmp2, sim2.url,
               args=["--api-listen", "127.0.0.1:0"]).start()
st, sb2 = sim2.req("POST", "/v1/sandboxes", {"template_name": "base"})
agent2.ctl("attach", sb2["id"])
base2, key2 = proxytest.endpoint_of(agent2, tmp2)
st, j2 = proxytest.endpoint_get(base2, key2, sb2["id"])
seq = sim2.last_seq()
h2 = call(j2["public_host"], "GET", "/health", headers={"X-API-Key": key2})
ws2 = WebSocket(j2["public_host"], "/terminal", {"X-API-Key": key2})
ws2.send("shared")
echo2 = ws2.recv()
ws2.close()
routes = [e["route"] for e in sim2.log(seq)]
t.ok(sb2["public_host"].endswith(f"/sandbox/{sb2['id']}") and
     j2["public_host"].startswith("http://127.2.") and h2[0] == 200 and
     echo2 == (1, b"shared") and "VM GET /health" in routes,
     "a sandbox whose public_host has a path (a host shared by sandboxes): "
     "the proxy puts the path before each request's, WebSockets included",
     (sb2["public_host"], h2[:1], echo2, routes))
cleanup(tmp2, agent2, sim2)

cleanup(tmp, agent, sim, t=t)
t.done()
