#!/usr/bin/env python3
"""Time and races. Agents whose wall clock is 2 h or 10 min ahead of or
behind HopX's (libfaketime; the monotonic clock stays real), with 1 h and
30 s tokens: every token handed out is accepted by the sandbox's agent,
renewals stay at their unskewed rate, status shows the skew and an api
event says it. A suspend (the agent's clock and HopX's jump 2 h together):
every running sandbox has a fresh token within 5 s without anyone asking.
20 concurrent `create --name same`: one create at HopX, all 20 answered
with its sandbox."""
import json
import math
import os
import subprocess
import threading
import time

from hopxtest import Agent, Sim, Tap, cleanup, note_output, setup, wait_for

REFRESH = "POST /v1/sandboxes/{id}/token/refresh"
CREATE = "POST /v1/sandboxes"

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()


def sub(name):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    return d


def refreshes(sim, seq, ids):
    return [e for e in sim.log(seq) if e["route"] == REFRESH and
            e["sandbox_id"] in ids and e["status"] == 200]


def skewed(sim, offset, want_skew_ms, life, seconds, out):
    """One agent off by offset, asking both sandboxes' tokens every
    second; out gets what the checks need."""
    agent = Agent(hopxd, hopxctl, sub(f"a{offset}-{life}"), sim.url,
                  clock=offset)
    out["agent"] = agent
    agent.start()
    ids = sim.bulk(2)
    out["attach"] = agent.attach_all(ids)
    seq = sim.last_seq()
    bad, handed, end = [], 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for sid in ids:
            rc, tok, err = agent.ctl("token", sid)
            handed += 1
            if rc != 0 or not sim.token_ok(sid, tok.strip()):
                bad.append((sid, rc, err.strip()))
        time.sleep(1)
    st = agent.rpc("status")["result"]
    ev = agent.rpc("events", {"limit": 10000})["result"]["events"]
    out.update(bad=bad, handed=handed, ids=ids,
               refreshes=len(refreshes(sim, seq, ids)),
               skew=st["api"].get("clock_skew_ms"),
               human=agent.ctl("status")[1],
               doctor=agent.ctl("doctor")[1],
               told=[e for e in ev if e["type"] == "api" and
                     "clock_skew_ms" in (e["detail"] or {})])


def check_skewed(offset, want_ms, life, seconds, r):
    name = f"clock {offset}, {life} s tokens"
    t.ok(not r.get("attach") and r.get("handed") and not r.get("bad"),
         f"{name}: all {r.get('handed')} tokens handed out were accepted "
         "by the sandbox's agent", r.get("bad", r)[:5])
    lives = seconds / life
    allowed = math.floor(1.3 * 2 * lives) if lives >= 1 else 0
    t.ok(r.get("refreshes", 99) <= allowed,
         f"{name}: {r.get('refreshes')} refreshes for 2 sandboxes over "
         f"{lives:.2f} token lives (at most {allowed}: 1.3 per life)")
    skew = r.get("skew")
    t.ok(skew is not None and abs(skew - want_ms) <= 3000,
         f"{name}: status shows the skew ({skew} ms, want {want_ms})")
    word = "ahead of" if want_ms < 0 else "behind"
    t.ok(word in r.get("human", "") and len(r.get("told", [])) == 1,
         f"{name}: hopxctl status says the clock is {word} HopX's, one "
         "api event told it", (r.get("human"), r.get("told")))
    clock = [ln for ln in r.get("doctor", "").splitlines()
             if ln[6:11] == "clock"]
    t.ok(clock and clock[0].startswith("FAIL") and
         "hopxd measures it" in clock[0] and word in clock[0],
         f"{name}: doctor reports the agent's figure", clock)


def skew_cases():
    sim_long = Sim(simbin, sub("sim-1h"), ["--token-lifetime", "3600"])
    sim_short = Sim(simbin, sub("sim-30s"), ["--token-lifetime", "30"])
    sim_long.start()
    sim_short.start()
    cases = [(sim, off, ms, life, 8 if life > 60 else 45)
             for sim, life in ((sim_long, 3600), (sim_short, 30))
             for off, ms in (("+2h", -7200000), ("-2h", 7200000),
                             ("+10m", -600000), ("-10m", 600000))]
    results = [{} for _ in cases]
    threads = [threading.Thread(target=skewed, args=(c[0], c[1], c[2], c[3],
                                                     c[4], r))
               for c, r in zip(cases, results)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    for c, r in zip(cases, results):
        check_skewed(c[1], c[2], c[3], c[4], r)
        if "agent" in r:
            t.ok(r["agent"].term() == 0, f"clock {c[1]}: SIGTERM, exit 0")
    return [sim_long, sim_short]


def suspend():
    sim = Sim(simbin, sub("sim-suspend"), ["--token-lifetime", "3600"])
    sim.start()
    agent = Agent(hopxd, hopxctl, sub("suspend"), sim.url, clock="+0")
    agent.start()
    ids = sim.bulk(3)
    t.ok(not agent.attach_all(ids), "suspend: 3 sandboxes attached")
    time.sleep(2)  # the clock watch has a reading from before the sleep
    seq = sim.last_seq()
    sim.admin("POST", "/time", {"advance_ms": 2 * 3600 * 1000})
    agent.set_clock("+2h")
    t0 = time.monotonic()
    fresh = wait_for(lambda: {e["sandbox_id"] for e in
                              refreshes(sim, seq, ids)} == set(ids), 10)
    took = time.monotonic() - t0
    t.ok(fresh and took <= 5,
         f"after a 2 h suspend every token was renewed in {took:.1f} s "
         "with nobody asking", refreshes(sim, seq, ids))
    toks = [agent.ctl("token", s)[1].strip() for s in ids]
    t.ok(all(sim.token_ok(s, tok) for s, tok in zip(ids, toks)),
         "suspend: the tokens handed out afterwards are accepted")
    with open(agent.log_path, errors="replace") as f:
        t.ok("wall clock jumped" in f.read(), "suspend: the log says the "
             "clock jumped")
    return agent, sim


def racing_creates():
    sim = Sim(simbin, sub("sim-race"),
              ["--faults", json.dumps({"route_latency": {
                  CREATE: {"latency_ms": 500}}})])
    sim.start()
    agent = Agent(hopxd, hopxctl, sub("race"), sim.url)
    agent.start()
    seq = sim.last_seq()
    cmd = [hopxctl, "--socket", agent.sock, "--json", "create",
           "--template", "base", "--name", "same"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    outs = [p.communicate(timeout=60) for p in procs]
    for o, e in outs:
        note_output("hopxctl", o, e)
    ids = {json.loads(o)["id"] for (o, _), p in zip(outs, procs)
           if p.returncode == 0}
    creates = [e for e in sim.log(seq) if e["route"] == CREATE]
    t.ok(all(p.returncode == 0 for p in procs) and len(ids) == 1,
         f"20 concurrent create --name same: all exit 0 with one id "
         f"({len(ids)} ids)", [(p.returncode, e) for p, (_, e) in
                               zip(procs, outs) if p.returncode][:5])
    t.ok(len(creates) == 1, f"{len(creates)} create at HopX")
    return agent, sim


started = []
try:
    started += skew_cases()
    started += suspend()
    started += racing_creates()
finally:
    cleanup(tmp, *started, t=t)
t.done()
