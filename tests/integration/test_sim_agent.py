#!/usr/bin/env python3
"""hopx-sim's sandbox agent (public_host), which the data-plane proxy is
tested against: each sandbox on a host of its own (so a URL without its
path still reaches it, as the SDKs' WebSocket URLs do), the token check on
every call, commands, files written and read back, uploads and downloads
streamed (a 64 MB file never held in the simulator's memory), WebSockets
(/execute/stream as the SDK's runCodeStream reads it, /terminal echoing),
and the official JS SDK calling all of it straight, with 6 s tokens: its
agent calls fail once the first token expires (it keeps sending it), its
WebSocket calls do not."""
import hashlib
import json
import os
import socket
import subprocess
import urllib.parse

from hopxtest import Sim, Tap, WebSocket, cleanup, run, setup

DATAPLANE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "sdk_dataplane.cjs")

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp, args=["--token-lifetime", "6"]).start()


def make():
    st, j = sim.req("POST", "/v1/sandboxes",
                    {"template_name": "code-interpreter"})
    assert st == 201, (st, j)
    return j


def call(sb, method, path, body=None, token=None, raw=None, ctype=None):
    """(status, JSON or bytes) of a call to the sandbox's own host."""
    u = urllib.parse.urlparse(sb["public_host"])
    c = socket.create_connection((u.hostname, u.port), 30)
    data = raw if raw is not None else \
        json.dumps(body).encode() if body is not None else b""
    hdr = [f"{method} {path} HTTP/1.1", f"Host: {u.netloc}",
           f"Content-Length: {len(data)}", "Connection: close"]
    if ctype or body is not None:
        hdr.append(f"Content-Type: {ctype or 'application/json'}")
    if token is not False:
        hdr.append(f"Authorization: Bearer {token or sb['auth_token']}")
    c.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode() + data)
    resp = b""
    while True:
        got = c.recv(1 << 16)
        if not got:
            break
        resp += got
    c.close()
    head, _, payload = resp.partition(b"\r\n\r\n")
    st = int(head.split()[1]) if head else 0
    try:
        return st, json.loads(payload)
    except ValueError:
        return st, payload


def sim_rss_peak_kb():
    with open(f"/proc/{sim.proc.pid}/status") as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    return 0


a, b = make(), make()
ha, hb = a["public_host"], b["public_host"]
t.ok(ha.startswith("http://127.1.") and hb.startswith("http://127.1.") and
     ha != hb and ha.endswith(f":{sim.agent_port}"),
     "each sandbox has a host of its own on the agent port", (ha, hb))
st, j = call(a, "GET", "/health")
t.ok(st == 200 and j == {"status": "healthy"}, "health on its host", (st, j))
st, j = sim.req("GET", f"/sandbox/{a['id']}/health", base=sim.agent_url,
                headers={"Authorization": "Bearer " + a["auth_token"]})
t.ok(st == 200, "the /sandbox/ID form on the shared listener still works",
     (st, j))
st1, j1 = call(a, "GET", "/health", token=False)
st2, j2 = call(a, "GET", "/health", token=b["auth_token"])
t.ok(st1 == 401 and st2 == 401 and j1["code"] == "INVALID_TOKEN",
     "no token, or another sandbox's token: HopX's 401", (st1, j1, st2))
st, j = call(a, "GET", "/nothing")
t.ok(st == 404, "an unknown agent route is 404", (st, j))

# -- commands and code -------------------------------------------------
st, j = call(a, "POST", "/commands/run",
             {"command": "bash", "args": ["-c", "echo one; echo 'two  x'"]})
t.ok(st == 200 and j["stdout"] == "one\ntwo  x\n" and j["exit_code"] == 0,
     "commands/run: bash -c as the SDK sends it", j)
st, j = call(a, "POST", "/commands/run",
             {"command": "bash", "args": ["-c", "rm -rf /"]})
t.ok(st == 200 and j["exit_code"] == 127 and "not found" in j["stderr"],
     "anything it does not simulate is 'command not found' (127): nothing "
     "runs on this machine", j)
st, j = call(a, "POST", "/execute", {"code": 'print("hi")',
                                     "language": "python"})
t.ok(st == 200 and j["stdout"] == "hi\n", "execute: python's print", j)

# -- files ---------------------------------------------------------------
st, j = call(a, "POST", "/files/write", {"path": "/workspace/a.txt",
                                         "content": "hello\n"})
st2, j2 = call(a, "GET", "/files/read?path=/workspace/a.txt")
t.ok(st == 200 and st2 == 200 and j2["content"] == "hello\n",
     "files/write then files/read", (j, j2))
st, j = call(b, "GET", "/files/read?path=/workspace/a.txt")
t.ok(st == 404 and j["code"] == "FILE_NOT_FOUND",
     "another sandbox does not see the file", (st, j))
st, j = call(a, "POST", "/files/write", {"path": "/workspace/b.bin",
                                         "content": "AAEC/w==",
                                         "encoding": "base64"})
st2, got = call(a, "GET", "/files/download?path=/workspace/b.bin")
t.ok(st == 200 and got == b"\x00\x01\x02\xff",
     "a base64 write downloads as its bytes", (st, got))

big = os.path.join(tmp, "big.bin")
with open(big, "wb") as f:
    for _ in range(64):
        f.write(os.urandom(1 << 20))
with open(big, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
peak0 = sim_rss_peak_kb()
up = run(["curl", "-sS", "-H", f"Authorization: Bearer {a['auth_token']}",
          "-F", f"file=@{big}", "-F", "path=/workspace/big.bin",
          f"{ha}/files/upload"], timeout=120)
raw = run(["curl", "-sS", "-H", f"Authorization: Bearer {a['auth_token']}",
           "-H", "Content-Type: application/octet-stream", "--data-binary",
           f"@{big}", f"{ha}/files/upload?path=/workspace/raw.bin"],
          timeout=120)
down = os.path.join(tmp, "down.bin")
dl = run(["curl", "-sS", "-f", "-o", down, "-H",
          f"Authorization: Bearer {a['auth_token']}",
          f"{ha}/files/download?path=/workspace/raw.bin"], timeout=120)
with open(down, "rb") as f:
    got = hashlib.sha256(f.read()).hexdigest()
st, j = call(a, "POST", "/commands/run",
             {"command": "bash",
              "args": ["-c", "sha256sum /workspace/big.bin"]})
grew = (sim_rss_peak_kb() - peak0) // 1024
t.ok(up.returncode == 0 and json.loads(up.stdout)["size"] == 64 << 20 and
     raw.returncode == 0 and dl.returncode == 0 and got == digest and
     j["stdout"].split()[0] == digest,
     "64 MB uploaded (multipart and raw) and downloaded, identical",
     (up.stdout, raw.stdout, dl.stderr, j))
t.ok(grew <= 16, f"the simulator's peak memory grew {grew} MB for it "
     "(streamed, not held)", grew)

# -- WebSockets ----------------------------------------------------------
ws = WebSocket(ha, "/execute/stream",
               {"Authorization": "Bearer " + a["auth_token"]})
ws.send(json.dumps({"type": "execute", "code": 'print("x")\nprint("y")',
                    "language": "python"}))
msgs = [json.loads(ws.recv()[1]) for _ in range(3)]
ws.close()
t.ok(ws.accepted and [m["type"] for m in msgs] ==
     ["stdout", "stdout", "complete"] and msgs[1]["data"] == "y",
     "/execute/stream: a stdout message per line, then complete", msgs)
ws = WebSocket(ha, "/terminal", {"Authorization": "Bearer " +
                                 a["auth_token"]})
blob = os.urandom(200000)
ws.send(blob)
ws.send("text")
ok = ws.recv() == (2, blob) and ws.recv() == (1, b"text")
ws.send(b"", op=9)
pong = ws.recv()
ws.send(b"x", mask=False)
closed = ws.recv()
ws.sock.close()
t.ok(ws.accepted and ok and pong[0] == 10 and closed == (8, b"\x03\xea"),
     "/terminal echoes binary and text, answers ping; an unmasked client "
     "frame is closed with 1002", (ok, pong, closed))
ws = WebSocket(ha, "/terminal", {"Authorization": "Bearer nope"})
ws.sock.close()
ws2 = WebSocket(ha, "/terminal", {"Authorization": "Bearer " +
                                  a["auth_token"], "Upgrade": "h2c"})
ws2.sock.close()
t.ok(ws.status == 401 and not ws.accepted and ws2.status == 400,
     "an upgrade without a valid token is 401; a bad upgrade is 400",
     (ws.status, ws2.status))

# -- status --------------------------------------------------------------
sim.req("POST", f"/v1/sandboxes/{b['id']}/pause")
st, j = call(b, "GET", "/health")
t.ok(st == 503, "a paused sandbox's agent is unavailable (503)", (st, j))
sim.req("DELETE", f"/v1/sandboxes/{b['id']}")
try:
    call(b, "GET", "/health")
    gone = False
except ConnectionRefusedError:
    gone = True
t.ok(gone, "a deleted sandbox's host refuses connections")
sim.stop()
sim.start()
st, j = sim.req("GET", f"/v1/sandboxes/{a['id']}")
st2, j2 = call(a, "GET", "/health", token=sim.req(
    "POST", f"/v1/sandboxes/{a['id']}/token/refresh")[1]["auth_token"])
t.ok(j["public_host"] == ha and st2 == 200,
     "after a restart (state file) the sandbox keeps its host", (j, st2))

# -- the official JS SDK straight to hopx-sim -----------------------------
p = run(["node", DATAPLANE, sim.url, sim.key, "16", "3"], timeout=120)
rounds = [json.loads(ln) for ln in p.stdout.splitlines()
          if ln.startswith('{"round"')]
first = rounds[0]["calls"] if rounds else {}
late = rounds[-1]["calls"] if rounds else {}
t.ok(p.returncode == 0 and all(c["ok"] for c in first.values()) and
     set(first) == {"health", "command", "write", "read", "stream"},
     "the JS SDK: health, a command, a file write and read and a "
     "WebSocket stream all work while its first token lives", p.stderr[-800:])
t.ok(late and not late["health"]["ok"] and
     late["health"]["status"] == 401 and not late["read"]["ok"] and
     late["stream"]["ok"],
     "after the first token's life its agent calls fail with 401 (it "
     "keeps sending that token; hopx-api.md §4), its WebSocket calls "
     "still work; if this fails, the SDK may have been fixed", late)
log = sim.log()
t.ok(any(e["route"] == "VM GET /health" and e["status"] == 401
         for e in log) and
     any(e["route"] == "VM WS /execute/stream" and e["status"] == 101
         for e in log),
     "the simulator's log shows the agent calls, their 401s and the "
     "upgrades")
cleanup(tmp, sim, t=t)
