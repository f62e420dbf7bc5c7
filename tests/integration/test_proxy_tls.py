#!/usr/bin/env python3
"""The data-plane proxy to sandbox agents at https addresses, as HopX's
are: hopx-sim serves each sandbox's host over TLS with a certificate from
a CA of the test's own. The official JS SDK through the endpoint keeps
working past its first token's life (straight to hopx-sim, it does not);
a refused token is refreshed once and the requests sent again over a new
TLS connection; WebSockets and 64 MB each way pass unchanged; an agent
that does not trust the CA, or a certificate for another address, is
refused with a message saying what to do, and nothing reaches the
sandbox."""
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time

import proxytest
from hopxtest import (Agent, Sim, Tap, WebSocket, cleanup, note_output, run,
                      setup, tls_certs)
from proxytest import bearer, call

# Hosts 127.1.1.1-8 have the certificate's addresses; host 9 does not.
OUTSIDER = "127.1.1.9"

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
tls = tls_certs(tmp, [f"127.1.1.{i}" for i in range(1, 9)])
sim = Sim(simbin, tmp, args=["--token-lifetime", "6", "--tls-cert",
                             tls["cert"], "--tls-key", tls["key"]]).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--api-listen", "127.0.0.1:0", "--ca-file",
                    tls["ca"]]).start()
base, local_key = proxytest.endpoint_of(agent, tmp)


def endpoint_get(sid):
    return proxytest.endpoint_get(base, local_key, sid)


def token(sid):
    return proxytest.token(agent, sid)


# -- the SDK through the endpoint, and straight to hopx-sim -------------
SECONDS = 60
# Straight, Node is told to trust the test's CA, as it would a real one.
t_rounds, t_last, d_rounds, rc = proxytest.dataplane_pair(
    (base, local_key), (sim.url, sim.key), SECONDS,
    {"NODE_EXTRA_CA_CERTS": tls["ca"]})
t.ok(rc == 0 and t_last.get("failed") == 0 and
     len(t_rounds) >= 10 and t_rounds[-1]["t"] >= SECONDS - 10 and
     t_last.get("ok", 0) == 5 * len(t_rounds),
     f"the JS SDK through the endpoint, the sandbox's agent at an https "
     f"address, 6 s tokens: getHealth, a command, a file write and read "
     f"and a WebSocket stream every 3 s for {SECONDS} s: all "
     f"{t_last.get('ok')} calls succeed", t_last)
first_bad = proxytest.first_failure(d_rounds)
t.ok(d_rounds and d_rounds[0]["calls"]["health"].get("ok") and
     first_bad is not None and first_bad["t"] >= 5 and
     first_bad["calls"]["health"].get("status") == 401,
     "the same program straight to hopx-sim over TLS works until its first "
     "token expires, then fails (the SDK keeps sending it)",
     (d_rounds[:1], first_bad))
sid = t_rounds[0]["id"] if t_rounds else None
st, sb = sim.req("GET", f"/v1/sandboxes/{sid}")
vm = [e for e in sim.log() if e["route"].startswith("VM ") and
      e["sandbox_id"] == sid]
t.ok(sb.get("public_host", "").startswith("https://") and vm and
     all(e["status"] in (101, 200) for e in vm),
     f"HopX's public_host is https; the {len(vm)} calls carried reached the "
     "sandbox with a valid token each (the simulator's log: no 401)",
     (sb.get("public_host"), [e for e in vm if e["status"] >= 300]))
st, j = endpoint_get(sid)
ph = j.get("public_host", "")
t.ok(st == 200 and ph.startswith("http://127.2.") and
     j["direct_url"] == ph,
     "the endpoint gives the proxy's address as public_host", (st, j))

# -- a refused token: one refresh, the requests again over new TLS -------
ok, codes, refused, refreshes = proxytest.refused_burst(sim, ph, sid,
                                                        token(sid))
t.ok(ok and refused and len(refreshes) == 1,
     f"the sandbox refused the agent's token ({refused} requests got 401 "
     "over TLS): one refresh at HopX, all 10 requests sent again and "
     "answered", (codes, refused, refreshes))

# -- a WebSocket and 64 MB each way --------------------------------------
tok = token(sid)
ws = WebSocket(ph, "/terminal", bearer(tok))
ws.send("hello")
echo = ws.recv()
ws.send(b"\x01" * 300000)
echo2 = ws.recv()
ws.close()
t.ok(ws.accepted and echo == (1, b"hello") and
     echo2 == (2, b"\x01" * 300000),
     "a WebSocket through the proxy to the TLS host: 5 bytes and 300 KB "
     "echoed", (ws.status, echo, len(echo2[1])))
big = os.path.join(tmp, "big.bin")
h = hashlib.sha256()
with open(big, "wb") as f:
    for i in range(64):
        chunk = hashlib.sha256(str(i).encode()).digest() * 32768
        h.update(chunk)
        f.write(chunk)
up = run(["curl", "-sS", "-H", f"Authorization: Bearer {tok}", "-H",
          "Content-Type: application/octet-stream", "--data-binary",
          f"@{big}", f"{ph}/files/upload?path=/workspace/big.bin"],
         timeout=300)
dl = run(["curl", "-sS", "-f", "-o", big, "-H", f"Authorization: Bearer {tok}",
          f"{ph}/files/download?path=/workspace/big.bin"], timeout=300)
with open(big, "rb") as f:
    got = hashlib.sha256(f.read()).hexdigest()
os.unlink(big)
t.ok(up.returncode == 0 and json.loads(up.stdout or "{}").get("size") ==
     64 << 20 and dl.returncode == 0 and got == h.hexdigest(),
     "64 MB up and 64 MB down through the proxy over TLS, identical",
     (up.stdout, up.stderr, dl.stderr))

# -- a connection per request: the sandbox's connection kept between ----
def upstream_connections():
    text = agent.ctl("metrics")[1]
    return {how: float(ln.split()[-1]) for how in ("new", "reused")
            for ln in text.splitlines() if ln.startswith(
                f'hopxd_proxy_upstream_connections_total{{how="{how}"}}')}


before = upstream_connections()
seq = sim.last_seq()
codes = [call(ph, "GET", "/health", headers=bearer(tok))[0]
         for _ in range(20)]
after = upstream_connections()
reached = [e for e in sim.log(seq) if e["route"] == "VM GET /health"]
new = after.get("new", 0) - before.get("new", 0)
reused = after.get("reused", 0) - before.get("reused", 0)
t.ok(codes == [200] * 20 and len(reached) == 20 and new <= 1 and
     reused >= 19,
     f"20 requests, each on a client connection of its own: all answered "
     f"over {new:.0f} new TLS connection(s) to the sandbox, {reused:.0f} "
     f"times one kept from the client before", (codes, new, reused))

# -- a certificate for another address -----------------------------------
outsider = None
for _ in range(12):
    st, sb = sim.req("POST", "/v1/sandboxes", {"template_name": "base"})
    if sb["public_host"].startswith(f"https://{OUTSIDER}:"):
        outsider = sb["id"]
        break
agent.ctl("attach", outsider)
seq = sim.last_seq()
st, j = endpoint_get(outsider)
outsider_ph = j["public_host"]
st, _, body = call(j["public_host"], "GET", "/health",
                   headers={"X-API-Key": local_key})
msg = json.loads(body).get("error", "") if body.startswith(b"{") else ""
t.ok(st == 502 and OUTSIDER in msg and "does not match" in msg and
     [e for e in sim.log(seq) if e["route"].startswith("VM ")] == [],
     "a sandbox whose certificate is not for its address: 502 saying so, "
     "and nothing reached it", (st, body))

# -- a host that never finishes the handshake, one that does not speak TLS
def listener(answer):
    """A loopback port whose connections get answer (None: silence)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            if answer:
                conn.recv(4096)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return srv, held


def via_host(sid, host):
    """The agent's record of sid now says its agent is at host; a request
    through the proxy: (status, error message, seconds)."""
    with sqlite3.connect(agent.db, timeout=10) as db:
        db.execute("UPDATE sandboxes SET public_host = ? WHERE id = ?",
                   (host, sid))
    t0 = time.monotonic()
    st, _, body = call(outsider_ph, "GET", "/health",
                       headers={"X-API-Key": local_key})
    msg = json.loads(body).get("error", "") if body.startswith(b"{") else ""
    return st, msg, time.monotonic() - t0


silent, _ = listener(None)
plain, _ = listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
st1, msg1, took1 = via_host(
    outsider, f"https://127.0.0.1:{silent.getsockname()[1]}")
st2, msg2, took2 = via_host(
    outsider, f"https://127.0.0.1:{plain.getsockname()[1]}")
silent.close()
plain.close()
t.ok(st1 == 504 and "TLS handshake" in msg1 and 10 <= took1 <= 20 and
     st2 == 502 and "TLS with the sandbox's agent" in msg2,
     f"a host that accepts and never answers the handshake: 504 after "
     f"{took1:.0f} s; one that answers in plain HTTP: 502 saying TLS "
     "failed", (st1, msg1, took1, st2, msg2))

# -- an agent that does not trust the CA ---------------------------------
tmp2 = os.path.join(tmp, "untrusting")
os.makedirs(tmp2, mode=0o700)
agent2 = Agent(hopxd, hopxctl, tmp2, sim.url).start()
rc, _, _ = agent2.ctl("attach", sid)
p = subprocess.Popen([hopxctl, "--socket", agent2.sock, "proxy", sid,
                      "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
line = p.stdout.readline()
url2 = line.split(" on ", 1)[1].split()[0] if " on " in line else ""
seq = sim.last_seq()
st, _, body = call(url2, "GET", "/health") if url2 else (0, {}, b"")
p.terminate()
o, e = p.communicate(timeout=30)
note_output("hopxctl", o, e)
msg = json.loads(body).get("error", "") if body.startswith(b"{") else ""
t.ok(rc == 0 and st == 502 and "not trusted" in msg.lower() and
     "--ca-file" in msg and
     [e for e in sim.log(seq) if e["route"].startswith("VM ")] == [],
     "an agent without the CA: 502 naming --ca-file, and nothing reached "
     "the sandbox", (rc, st, body))
t.ok(p.returncode == 0, "its hopxctl proxy ends on SIGTERM (exit 0)",
     p.returncode)
cleanup(tmp2, agent2)

cleanup(tmp, agent, sim, t=t)
t.done()
