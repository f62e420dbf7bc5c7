#!/usr/bin/env python3
"""Leases and idle pause: a sandbox nobody uses for its idle period is
paused by the agent (event cause agent, why idle) and the next token wakes
it with one resume; `hopxctl run` holds a lease for its child's life (the
sandbox stays running across periods, HopX's deadline is re-armed, show
lists the holder) and once it ends the sandbox is paused within a period;
run passes the child's exit code, 128+N for a signal, and forwards
SIGTERM; on_expiry pause pauses before HopX's deadline and keeps it off
(whether HopX's clock runs while paused or not), extend re-arms it; run
--token-file keeps a 0600 file with the current token,
rewritten at every renewal, removed at the end."""
import os
import json
import signal
import subprocess
import time

from hopxtest import (Agent, Sim, Tap, api_calls, cleanup, note_output, run,
                      setup, wait_for)

RESUME = "POST /v1/sandboxes/{id}/resume"
IDLE = 2  # seconds

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url)
others = ()


def hopx_status(sid):
    return sim.sandbox(sid)[1]["status"]


def idle_then_wake(sid):
    t0 = time.monotonic()
    paused = wait_for(lambda: hopx_status(sid) == "paused", IDLE + 5)
    took = time.monotonic() - t0
    ev = agent.rpc("events", {"limit": 10000})["result"]["events"]
    idle = [e for e in ev if e["sandbox_id"] == sid and e["cause"] ==
            "agent" and (e["detail"] or {}).get("why") == "idle"]
    t.ok(paused and idle and took <= IDLE + 2,
         f"unused for {IDLE} s: paused by the agent after {took:.1f} s, "
         "event cause agent, why idle", ev[-3:])
    out = agent.ctl("show", sid)[1]
    t.ok("paused (wakes on use)" in out and f"idle_pause={IDLE}s" in out,
         "show says it is paused and wakes on use, and the idle policy",
         out)
    seq = sim.last_seq()
    cmd = [hopxctl, "--socket", agent.sock, "token", sid]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(5)]
    outs = [(p.wait(60), *p.communicate()) for p in procs]
    for _, o, e in outs:
        note_output("hopxctl", o, e)
    resumes = [c for c in api_calls(sim.log(seq)) if c[1] == RESUME]
    t.ok(all(rc == 0 and sim.token_ok(sid, o.strip()) for rc, o, _ in outs)
         and len(resumes) == 1,
         f"the next token calls woke it: 5 tokens accepted, "
         f"{len(resumes)} resume", outs[:2])


def leased(sid):
    first = agent.ctl_json("show", sid)[1]["expires_at"]
    run = subprocess.Popen([hopxctl, "--socket", agent.sock, "run", sid,
                            "--", "sleep", str(3 * IDLE + 2)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    time.sleep(1)
    rc, show = agent.ctl_json("show", sid)
    holders = show.get("leases", []) if rc == 0 else []
    t.ok(len(holders) == 1 and holders[0]["command"] == "hopxctl" and
         holders[0]["pid"] == run.pid,
         "show lists run's lease: its pid and command", show)
    time.sleep(3 * IDLE)
    moved = agent.ctl_json("show", sid)[1]["expires_at"]
    t.ok(hopx_status(sid) == "running" and moved > first,
         f"held across {3 * IDLE} s ({IDLE} s idle period): still running, "
         f"HopX's deadline re-armed ({first} -> {moved})")
    out, err = run.communicate(timeout=30)
    note_output("hopxctl", out, err)
    t.ok(run.returncode == 0, "run exits with its child's 0", err)
    t0 = time.monotonic()
    paused = wait_for(lambda: hopx_status(sid) == "paused", IDLE + 5)
    t.ok(paused and time.monotonic() - t0 <= IDLE + 2,
         f"paused {time.monotonic() - t0:.1f} s after the child ended")


def exit_codes(sid):
    rc, _, err = agent.ctl("run", sid, "--", "sh", "-c", "exit 7")
    t.ok(rc == 7, "run passes the child's exit code (7)", (rc, err))
    rc, _, err = agent.ctl("run", sid, "--", "sh", "-c", "kill -TERM $$")
    t.ok(rc == 128 + signal.SIGTERM, "a child killed by SIGTERM: 143",
         (rc, err))
    run = subprocess.Popen([hopxctl, "--socket", agent.sock, "run", sid,
                            "--", "sleep", "30"], stderr=subprocess.PIPE,
                           text=True)
    time.sleep(1.5)
    t0 = time.monotonic()
    run.send_signal(signal.SIGTERM)
    rc = run.wait(10)
    note_output("hopxctl", run.stderr.read())
    t.ok(rc == 128 + signal.SIGTERM and time.monotonic() - t0 < 3,
         "SIGTERM to run reaches the child: it ends, run exits 143", rc)
    rc, _, err = agent.ctl("run", sid, "--", "/nonexistent/cmd")
    t.ok(rc == 127 and "cannot run" in err, "a missing command: 127",
         (rc, err))


def token_file():
    """6 s tokens, a child that calls the sandbox with the file's token
    every second for 20 s."""
    d = os.path.join(tmp, "tf")
    os.makedirs(os.path.join(d, "xdg"), mode=0o700)
    short = Sim(simbin, d, ["--token-lifetime", "6"]).start()
    ag = Agent(hopxd, hopxctl, d, short.url).start()
    sid = short.bulk(1)[0]
    ag.rpc("attach", {"id": sid})
    script = ('f=$HOPX_SANDBOX_TOKEN_FILE; echo "$f"; '
              'echo "$(stat -c %a "$f") $(stat -c %a "$(dirname "$f")")"; '
              'for i in $(seq 20); do t=$(cat "$f"); '
              'c=$(curl -s -o /dev/null -w "%{http_code}" '
              '-H "Authorization: Bearer $t" "$HOPX_SANDBOX_URL/health"); '
              'echo "$c $(echo "$t" | md5sum | cut -c1-8)"; sleep 1; done')
    p = run([hopxctl, "--socket", ag.sock, "run", sid, "--token-file", "--",
             "sh", "-c", script], timeout=60,
            env=dict(os.environ, XDG_RUNTIME_DIR=os.path.join(d, "xdg")))
    lines = p.stdout.splitlines()
    path, modes, calls = (lines[0], lines[1], [ln.split() for ln in
                                               lines[2:]]) \
        if len(lines) > 2 else ("", "", [])
    seen = {h for _, h in calls}
    t.ok(p.returncode == 0 and modes == "600 700" and len(calls) == 20 and
         all(code == "200" for code, _ in calls) and len(seen) >= 3,
         f"run --token-file: {len(seen)} tokens over 20 s of 6 s tokens, "
         "every call accepted, file 0600 in a 0700 directory",
         (p.returncode, modes, calls, p.stderr))
    t.ok(path and not os.path.exists(path) and
         not os.path.exists(os.path.dirname(path)),
         "the file and its directory are gone when the child ends", path)
    return [ag, short]


def expiry_cases():
    """on_expiry pause against both ways HopX may treat paused time, and
    extend; 6 s timeouts watched for 15 s."""
    made = []
    for name, extra in (("runs", []), ("stops", ["--clock-stops-paused"])):
        d = os.path.join(tmp, "exp-" + name)
        os.makedirs(d)
        sm = Sim(simbin, d, extra).start()
        ag = Agent(hopxd, hopxctl, d, sm.url).start()
        made.append((name, sm, ag))
    ids = {}
    for name, sm, ag in made:
        for pol in ("pause", "extend"):
            rc, out, err = ag.ctl("--json", "create", "--template", "base",
                                  "--timeout", "6", "--on-expiry", pol)
            ids[(name, pol)] = json.loads(out)["id"] if rc == 0 else err
    first = {k: made[0][1].sandbox(v)[1].get("expires_at")
             for k, v in ids.items() if k[0] == "runs"}
    time.sleep(15)
    for name, sm, ag in made:
        sid = ids[(name, "pause")]
        ev = ag.rpc("events", {"limit": 10000})["result"]["events"]
        why = [e for e in ev if e["sandbox_id"] == sid and
               (e["detail"] or {}).get("why") == "deadline"]
        t.ok(sm.sandbox(sid)[1].get("status") == "paused" and why,
             f"on_expiry pause (HopX's clock {name} while paused): paused "
             "before the deadline and never killed after 2.5 timeouts",
             sm.sandbox(sid))
        sid = ids[(name, "extend")]
        st = sm.sandbox(sid)[1]
        t.ok(st.get("status") == "running" and (
            name != "runs" or st.get("expires_at") >
            first[("runs", "extend")]),
             f"on_expiry extend ({name}): still running, the deadline "
             "moved", st)
    return [x for _, sm, ag in made for x in (ag, sm)]


try:
    agent.start()
    a = sim.bulk(1)[0]
    rc, _, err = agent.ctl("attach", a, "--idle-pause", f"{IDLE}s")
    pol = agent.ctl_json("show", a)[1].get("policy", {})
    t.ok(rc == 0 and pol.get("idle_pause_s") == IDLE,
         "attach --idle-pause sets the policy", (rc, err, pol))
    idle_then_wake(a)
    exit_codes(a)
    rc, out, err = agent.ctl("--json", "create", "--template", "base",
                             "--name", "leased", "--timeout", "9",
                             "--idle-pause", f"{IDLE}s")
    b = json.loads(out)["id"] if rc == 0 else None
    t.ok(b is not None, "create --idle-pause --timeout 9", err)
    if b:
        leased(b)
    rc, _, err = agent.ctl("policy", a, "--idle-pause", "1s")
    t.ok(rc == 2, "an idle period under 2 s is refused (exit 2)", err)
    rc, out, _ = agent.ctl("policy", a, "--idle-pause", "off")
    t.ok(rc == 0 and "idle_pause=off" in out, "policy --idle-pause off", out)
    others = token_file()
    others += expiry_cases()
finally:
    cleanup(tmp, agent, sim, *others, t=t)
t.done()
