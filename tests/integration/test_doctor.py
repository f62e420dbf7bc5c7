#!/usr/bin/env python3
"""hopxctl doctor on a healthy setup and on broken ones: one line per
check, the failing check named with what to do, exit 1 on any failure
and 0 otherwise. Each break is made, checked and repaired in turn."""
import email.utils
import http.server
import json
import os
import threading
import time

from hopxtest import Agent, Sim, Tap, cleanup, run, setup

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url)
agent.start()
config = os.path.join(tmp, "config")
CHECKS = ["socket dir", "socket", "agent", "api key", "api", "clock",
          "database", "store"]


def doctor(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("HOPX")}
    e.update(HOPXD_SOCKET=agent.sock, HOPXD_DB=agent.db,
             XDG_CONFIG_HOME=config, **(env or {}))
    r = run([hopxctl, "doctor", *args], env=e, timeout=60)
    lines = {}
    for line in r.stdout.splitlines():
        verdict, rest = line[:4].strip(), line[6:]
        name, detail = rest[:10].strip(), rest[12:]
        lines[name] = (verdict, detail)
    return r, lines


def verdicts(lines):
    return {k: v[0] for k, v in lines.items()}


r, lines = doctor()
t.ok(r.returncode == 0 and list(lines) == CHECKS and
     set(verdicts(lines).values()) == {"ok"},
     "healthy: eight checks, one line each, all ok, exit 0", r.stdout)
r, _ = doctor()
out = run([hopxctl, "--socket", agent.sock, "--json", "doctor"],
          env=dict(os.environ, HOPXD_DB=agent.db, XDG_CONFIG_HOME=config))
j = json.loads(out.stdout)
t.ok(out.returncode == 0 and j["passed"] is True and
     [c["check"] for c in j["checks"]] == CHECKS,
     "--json: the same checks, passed true", out.stdout)

# A socket directory others can enter.
run_dir = os.path.dirname(agent.sock)
os.chmod(run_dir, 0o755)
r, lines = doctor()
t.ok(r.returncode == 1 and lines["socket dir"][0] == "FAIL" and
     "0755" in lines["socket dir"][1] and "chmod 700" in lines["socket dir"][1]
     and verdicts(lines)["agent"] == "ok",
     "socket dir 0755: FAIL with the chmod to run, exit 1", r.stdout)
os.chmod(run_dir, 0o700)

# A key file others can read (hopxd would refuse it at its next start).
os.makedirs(os.path.join(config, "hopxd"), mode=0o700)
key = os.path.join(config, "hopxd", "api-key")
with open(key, "w") as f:
    f.write("hopx_key\n")
os.chmod(key, 0o644)
r, lines = doctor()
t.ok(r.returncode == 1 and lines["api key"][0] == "FAIL" and
     "chmod 600" in lines["api key"][1],
     "api-key file 0644: FAIL, chmod 600", r.stdout)
os.unlink(key)

# HopX unreachable: the api check fails; the clock is the agent's measure
# from the answers it had.
t.ok("result" in agent.rpc("attach", {"id": sim.bulk(1)[0]}),
     "the agent has heard from HopX (an attach)")
sim.stop()
r, lines = doctor()
t.ok(r.returncode == 1 and lines["api"][0] == "FAIL" and
     lines["clock"][0] == "ok" and "hopxd measures" in lines["clock"][1] and
     sim.url in lines["api"][1],
     "API down: api FAIL (its URL from the agent), clock as the agent "
     "measured it", r.stdout)
sim.start()

# No agent: said how to start it; the key from the environment.
agent.term()
r, lines = doctor(env={"HOPX_BASE_URL": sim.url, "HOPX_API_KEY": "k"})
t.ok(r.returncode == 1 and lines["agent"][0] == "FAIL" and
     "systemctl --user start hopxd" in lines["agent"][1] and
     lines["api key"][0] == "ok" and lines["api"][0] == "ok" and
     lines["database"][0] == "ok",
     "agent stopped: agent FAIL with how to start it; the rest checked "
     "without it", r.stdout)
r, lines = doctor(env={"HOPX_BASE_URL": sim.url})
t.ok(lines["api key"][0] == "FAIL" and "HOPX_API_KEY" in lines["api key"][1],
     "no key anywhere: api key FAIL", r.stdout)


# A clock ten minutes behind HopX's (a server whose Date is ahead).
class Ahead(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response_only(200)
        self.send_header("Date", email.utils.formatdate(time.time() + 630,
                                                        usegmt=True))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), Ahead)
threading.Thread(target=srv.serve_forever, daemon=True).start()
r, lines = doctor(env={"HOPX_BASE_URL":
                       f"http://127.0.0.1:{srv.server_port}"})
t.ok(lines["api"][0] == "ok" and lines["clock"][0] == "FAIL" and
     "10m behind" in lines["clock"][1],
     "clock 10 minutes behind the API's Date: FAIL", r.stdout)
srv.shutdown()

# A corrupt database.
with open(agent.db, "r+b") as f:
    f.seek(0)
    f.write(b"garbage" * 100)
r, lines = doctor(env={"HOPX_BASE_URL": sim.url})
t.ok(r.returncode == 1 and lines["database"][0] == "FAIL" and
     "corrupt" in lines["database"][1] and "WARN" not in r.stderr,
     "corrupt database: FAIL, said once", r.stdout + r.stderr)

cleanup(tmp, sim, agent, t=t)
t.done()
