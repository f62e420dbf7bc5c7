#!/usr/bin/env python3
"""Paths no other suite takes: start and a successful stop, timeout,
attach --no-resume, policy --auto-resume off across a restart, exit 7
when HopX keeps answering 429, NO_COLOR on a terminal, --ca-file against
an HTTPS HopX, and --shutdown-timeout cutting short a slow pause."""
import os
import pty
import select
import socket
import ssl
import subprocess
import threading
import time

from hopxtest import (Agent, Sim, Tap, api_calls, cleanup, run, setup,
                      wait_for)

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url, args=["--sync-interval", "300"])
PAUSE = "POST /v1/sandboxes/{id}/pause"


def hopx_status(sid):
    return sim.sandbox(sid)[1]["status"]


def calls_since(seq, route):
    return [c for c in api_calls(sim.log(seq)) if c[1] == route]


def start_and_stop(sid):
    seq = sim.last_seq()
    rc, out, err = agent.ctl("stop", sid)
    t.ok(rc == 0 and hopx_status(sid) == "stopped" and
         agent.records()[sid]["status"] == "stopped",
         "stop: exit 0, stopped at HopX and in the record", (rc, out, err))
    t.ok(len(calls_since(seq, "POST /v1/sandboxes/{id}/stop")) == 1,
         "stop: one request to HopX")
    rc, out, err = agent.ctl("token", sid)
    t.ok(rc == 9 and "stopped" in err,
         "a stopped sandbox's token: exit 9", (rc, err))
    rc, out, err = agent.ctl("start", sid)
    tok = agent.ctl("token", sid)[1].strip()
    t.ok(rc == 0 and hopx_status(sid) == "running" and
         agent.records()[sid]["status"] == "running" and
         sim.token_ok(sid, tok),
         "start: exit 0, running again, its new token accepted",
         (rc, out, err))
    seq = sim.last_seq()
    rc, out, err = agent.ctl("start", sid)
    refused = [e for e in sim.log(seq) if e["status"] >= 400]
    t.ok(rc == 0 and hopx_status(sid) == "running" and refused and
         calls_since(seq, "GET /v1/sandboxes/{id}") and
         calls_since(seq, "POST /v1/sandboxes/{id}/token/refresh"),
         "start of a running sandbox: HopX refuses, the agent looks, finds "
         "it running and answers with a fresh token (exit 0)",
         (rc, err, api_calls(sim.log(seq))))


def timeout(sid):
    rc, out, err = agent.ctl("--json", "timeout", sid, "600")
    exp = sim.sandbox(sid)[1].get("expires_at")
    rec = agent.records()[sid]
    t.ok(rc == 0 and exp is not None and rec.get("expires_at") == exp,
         "timeout: HopX's deadline and the record's agree", (rc, exp, rec,
                                                             err))
    rc, out, err = agent.ctl("timeout", sid, "-5")
    t.ok(rc == 2, "timeout with a negative number: exit 2", (rc, err))


def no_resume():
    sid = sim.bulk(1, {"paused": 1.0})[0]
    seq = sim.last_seq()
    rc, out, err = agent.ctl("attach", sid, "--no-resume")
    t.ok(rc == 0 and hopx_status(sid) == "paused" and
         agent.records()[sid]["status"] == "paused" and
         not calls_since(seq, "POST /v1/sandboxes/{id}/resume"),
         "attach --no-resume: tracked paused, no resume sent", (rc, err))
    other = sim.bulk(1, {"paused": 1.0})[0]
    rc, out, err = agent.ctl("attach", other)
    t.ok(rc == 0 and hopx_status(other) == "running",
         "attach without it resumes", (rc, err))
    return sid, other


def auto_resume_off(kept, resumed):
    rc, out, err = agent.ctl("policy", kept, "--auto-resume", "off")
    t.ok(rc == 0 and "auto_resume=off" in out, "policy --auto-resume off",
         (rc, out, err))
    agent.ctl("policy", resumed, "--auto-resume", "on")
    sim.behind(resumed, "pause")
    before = agent.last_event()
    t.ok(agent.term() == 0, "SIGTERM: exit 0")
    agent.start()
    rep = agent.wait_report("start", before)
    t.ok(rep is not None and hopx_status(kept) == "paused" and
         hopx_status(resumed) == "running",
         "after a restart: auto-resume off stays paused, on is resumed",
         rep)
    j = agent.ctl_json("show", kept)[1]
    t.ok(j.get("policy", {}).get("auto_resume") is False,
         "show says auto_resume false", j)


def rate_limited(sid):
    sim.admin("POST", "/faults/script",
              {"route": PAUSE, "count": 3, "action": "status",
               "status": 429, "retry_after": 1})
    rc, out, err = agent.ctl("pause", sid)
    t.ok(rc == 7 and hopx_status(sid) == "running",
         "HopX answering 429 every time: exit 7, nothing changed",
         (rc, err))


def on_terminal(argv, env):
    """Runs argv with its stdout on a pseudo-terminal; returns the output."""
    main, sub = pty.openpty()
    p = subprocess.Popen(argv, stdout=sub, stderr=subprocess.PIPE, env=env)
    os.close(sub)
    out = b""
    while True:
        r, _, _ = select.select([main], [], [], 10)
        try:
            chunk = os.read(main, 65536) if r else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    os.close(main)
    p.wait(10)
    return out.decode(errors="replace")


def no_color():
    argv = [hopxctl, "--socket", agent.sock, "ls"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    coloured = on_terminal(argv, env)
    plain = on_terminal(argv, dict(env, NO_COLOR="1"))
    t.ok("\x1b[" in coloured and "running" in coloured,
         "ls on a terminal colours statuses", repr(coloured[:300]))
    t.ok("\x1b[" not in plain and "running" in plain,
         "NO_COLOR=1: the same table without colour", repr(plain[:300]))


class TlsRelay:
    """HTTPS in front of hopx-sim: TLS with a self-signed certificate for
    127.0.0.1, each connection relayed to the simulator's port."""

    def __init__(self):
        self.cert = os.path.join(tmp, "cert.pem")
        key = os.path.join(tmp, "key.pem")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", self.cert, "-days", "1", "-subj",
             "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(self.cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        try:
            tls = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            return
        up = socket.create_connection(("127.0.0.1", sim.port))
        threading.Thread(target=self.pump, args=(up, tls),
                         daemon=True).start()
        self.pump(tls, up)

    @staticmethod
    def pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


def ca_file():
    relay = TlsRelay()
    sid = sim.bulk(1)[0]
    other = Agent(hopxd, hopxctl, os.path.join(tmp, "tls"), relay.url,
                  args=["--ca-file", relay.cert])
    os.makedirs(other.tmp)
    other.start()
    r = other.rpc("attach", {"id": sid})
    tok = other.rpc("token", {"ref": sid}).get("result", {}).get("token")
    t.ok("result" in r and tok and sim.token_ok(sid, tok),
         "--ca-file: HopX over HTTPS with a private CA works", r)
    t.ok(other.term() == 0, "--ca-file agent: SIGTERM, exit 0")
    other.args = []
    other.start()
    r = other.rpc("reconcile", timeout=60)
    err = (r.get("error") or {}).get("message", "") + str(r.get("result"))
    t.ok("certificate" in err.lower() or "tls" in err.lower() or
         "ssl" in err.lower(),
         "without it the same server is refused for its certificate",
         r)
    t.ok(other.term() == 0, "second agent: SIGTERM, exit 0")


def shutdown_timeout():
    sid = sim.bulk(1)[0]
    agent.ctl("attach", sid)
    agent.ctl("policy", sid, "--pause-on-shutdown", "on")
    agent.term()
    agent.start(extra=["--shutdown-timeout", "1"])
    sim.faults({"route_latency": {PAUSE: {"latency_ms": 4000}}})
    t0 = time.monotonic()
    rc = agent.term()
    took = time.monotonic() - t0
    sim.faults(None)
    with open(agent.log_path, errors="replace") as f:
        said = "shutdown deadline reached" in f.read()
    t.ok(rc == 0 and took < 3 and said,
         f"--shutdown-timeout 1 with a 4 s pause: exit 0 after "
         f"{took:.1f} s, the log says why", (rc, took))
    agent.start()
    agent.ctl("policy", sid, "--pause-on-shutdown", "off")


try:
    agent.start()
    ids = sim.bulk(3)
    for s in ids:
        agent.ctl("attach", s)
    start_and_stop(ids[0])
    timeout(ids[1])
    kept, resumed = no_resume()
    auto_resume_off(kept, resumed)
    rate_limited(ids[2])
    no_color()
    ca_file()
    shutdown_timeout()
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
