#!/usr/bin/env python3
"""Crash chaos: hopxd under load (renewals of 4 s tokens, labels, renames,
creates, pauses, resumes from four clients) is killed with SIGKILL at
random moments, HOPXD_CHAOS_KILLS times (default 20; the long form is
200). After every kill, before the restart: the database passes
integrity_check, every change the agent acknowledged is in it, and no
token went backwards; an agent that ended by itself before a kill fails
the run with its last log lines. At the end: no sandbox was created twice, HopX
holds nothing the database does not track, no create intent is left open,
and the records agree with HopX."""
import os
import random
import sqlite3
import threading
import time

from hopxtest import Agent, Sim, Tap, cleanup, jwt_exp, setup, wait_for

KILLS = int(os.environ.get("HOPXD_CHAOS_KILLS", "20"))
WORKERS, PER_WORKER = 4, 3

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp, ["--token-lifetime", "4",
                        "--faults", '{"latency_ms": 3, "jitter_ms": 3}']
          ).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--budget", "100000", "--sync-interval", "5",
                    "--http-timeout", "5"])
rng = random.Random(int(os.environ.get("HOPXD_CHAOS_SEED", time.time())))


class Ledger:
    """What the agent acknowledged, per worker (each owns its sandboxes,
    so the order of its own requests is the order they were applied)."""

    def __init__(self):
        self.labels = {}     # (sid, key) -> value, acknowledged
        self.names = {}      # sid -> [(name, acked)], in order sent
        self.creates = {}    # name -> id once acknowledged, else None
        self.token_exp = {}  # sid -> latest exp handed out
        self.lock = threading.Lock()


led = Ledger()
stop = threading.Event()
crashed = threading.Event()  # the agent ended by itself: nothing to wait for
counts = {"ok": 0, "lost": 0}


def call(method, params):
    """One request; None when the agent died before answering."""
    try:
        r = agent.rpc(method, params, timeout=30)
    except (OSError, ValueError):
        counts["lost"] += 1
        return None
    counts["ok"] += 1
    return r


def op_label(sid, n):
    r = call("label", {"ref": sid, "set": {f"k{n}": str(n)}})
    if r and "result" in r:
        with led.lock:
            led.labels[(sid, f"k{n}")] = str(n)


def op_rename(sid, n):
    with led.lock:
        led.names.setdefault(sid, []).append([f"r{n}", False])
        entry = led.names[sid][-1]
    r = call("rename", {"ref": sid, "name": f"r{n}"})
    if r and "result" in r:
        entry[1] = True


def op_create(wid, n):
    name = f"c{wid}-{n}"
    with led.lock:
        led.creates[name] = None
    settle_create(name)


def settle_create(name):
    """Asks until the agent answers with the sandbox (retrying a create
    is safe: it is idempotent by name)."""
    while not crashed.is_set() and (not stop.is_set() or
                                    led.creates[name] is None):
        r = call("create", {"template": "base", "name": name})
        if r and "result" in r:
            with led.lock:
                led.creates[name] = r["result"]["id"]
            return
        time.sleep(0.2)  # dead agent, or the outcome not settled yet


def op_token(sid):
    r = call("token", {"ref": sid})
    if r and "result" in r:
        exp = jwt_exp(r["result"]["token"])
        with led.lock:
            led.token_exp[sid] = max(led.token_exp.get(sid, 0), exp)


def worker(wid, sids):
    n = 0
    while not stop.is_set():
        n += 1
        sid = rng.choice(sids)
        what = rng.random()
        if what < 0.3:
            op_label(sid, n)
        elif what < 0.45:
            op_rename(sid, f"{wid}x{n}")
        elif what < 0.5:
            op_create(wid, n)
        elif what < 0.6:
            call(rng.choice(["pause", "resume"]), {"ref": sid})
        else:
            op_token(sid)
        time.sleep(rng.uniform(0, 0.01))


def check_db(kill):
    """Invariants on the dead agent's database; returns a list of faults."""
    db = sqlite3.connect(f"file:{agent.db}?mode=ro", uri=True)
    bad = []
    try:
        ok = db.execute("PRAGMA integrity_check").fetchall()
        if ok != [("ok",)]:
            bad.append(f"integrity_check: {ok[:3]}")
        labels = dict(((s, k), v) for s, k, v in db.execute(
            "SELECT sandbox_id, key, value FROM labels"))
        names = dict(db.execute("SELECT id, name FROM sandboxes"))
        byname = {v: k for k, v in names.items() if v}
        exps = dict(db.execute("SELECT sandbox_id, expires_at FROM tokens"))
    finally:
        db.close()
    with led.lock:
        for k, v in led.labels.items():
            if labels.get(k) != v:
                bad.append(f"acknowledged label {k}={v} missing")
        for sid, sent in led.names.items():
            acked = [i for i, (_, a) in enumerate(sent) if a]
            if acked and names.get(sid) not in \
                    [nm for nm, _ in sent[acked[-1]:]]:
                bad.append(f"{sid}: name {names.get(sid)}, acknowledged "
                           f"{sent[acked[-1]][0]}")
        for name, sid in led.creates.items():
            if sid and byname.get(name) != sid:
                bad.append(f"acknowledged create {name} -> {sid} missing")
        for sid, exp in led.token_exp.items():
            if exps.get(sid, 0) < exp * 1000:
                bad.append(f"{sid}: token went back ({exps.get(sid)} < "
                           f"{exp * 1000})")
    return [f"kill {kill}: {b}" for b in bad]


try:
    agent.start()
    ids = sim.bulk(WORKERS * PER_WORKER)
    errs = agent.attach_all(ids)
    t.ok(not errs, f"{len(ids)} sandboxes attached", errs[:3])
    threads = [threading.Thread(target=worker, args=(
        w, ids[w * PER_WORKER:(w + 1) * PER_WORKER]), daemon=True)
        for w in range(WORKERS)]
    for th in threads:
        th.start()
    faults, restarts_ok, started = [], 0, time.monotonic()
    for k in range(KILLS):
        time.sleep(rng.uniform(0.05, 1.2))
        if not agent.kill9():  # it ended on its own: a crash, not a kill
            faults.append(f"kill {k + 1}: hopxd was no longer running")
            crashed.set()
            break
        faults += check_db(k + 1)
        try:
            agent.start()
            restarts_ok += 1
        except RuntimeError as e:
            faults.append(f"kill {k + 1}: restart: {e}")
            break
    took = time.monotonic() - started
    t.ok(restarts_ok == KILLS,
         f"{KILLS} SIGKILLs survived in {took:.0f} s "
         f"({counts['ok']} requests answered, {counts['lost']} cut off)")
    t.ok(not faults, "after every kill: integrity_check ok, every "
         "acknowledged change stored, no token went backwards", faults[:20])
    if crashed.is_set():
        raise RuntimeError("hopxd ended by itself: the checks after the "
                           "kills need a running agent")
    stop.set()
    for th in threads:
        th.join(120)
    t.ok(not any(th.is_alive() for th in threads),
         "every cut-off create was answered after a restart")
    t.ok(counts["lost"] > 0 and len(led.creates) > 0,
         f"load was real: {len(led.creates)} creates, "
         f"{len(led.labels)} labels, {counts['lost']} requests cut off")

    r = agent.rpc("reconcile", timeout=120)
    t.ok("result" in r and r["result"]["summary"]["errors"] == 0,
         "a final reconcile ran clean", r)
    truth = sim.statuses()
    recs = agent.records()
    want = len(ids) + len(led.creates)
    t.ok(len(truth) == want, f"HopX holds {len(truth)} sandboxes, "
         f"{want} asked for: none created twice")
    untracked = [s for s in truth if s not in recs]
    t.ok(not untracked, "HopX holds nothing the database does not track",
         untracked)
    created = {n: s for n, s in led.creates.items()}
    byname = {r["name"]: i for i, r in recs.items() if r.get("name")}
    t.ok(all(byname.get(n) == s for n, s in created.items()),
         "every create is tracked under its name",
         [(n, s, byname.get(n)) for n, s in created.items()
          if byname.get(n) != s][:5])
    db = sqlite3.connect(f"file:{agent.db}?mode=ro", uri=True)
    open_intents = db.execute(
        "SELECT id, name FROM intents WHERE state = 'open'").fetchall()
    adopted = db.execute("SELECT count(*) FROM events WHERE type = "
                         "'tracked' AND cause = 'agent'").fetchone()[0]
    db.close()
    t.ok(not open_intents, f"no create intent left open ({adopted} "
         "sandboxes adopted from lost answers)", open_intents)
    wrong = {s: (recs[s]["status"], truth.get(s, "gone")) for s in recs
             if recs[s]["status"] != truth.get(s, "gone")}
    t.ok(not wrong, "every record agrees with HopX", wrong)
    t.ok(wait_for(lambda: all(
        sim.token_ok(s, agent.rpc("token", {"ref": s})["result"]["token"])
        for s in recs if truth.get(s) == "running"), 30),
        "every running sandbox has a token its agent accepts")
finally:
    stop.set()
    cleanup(tmp, agent, sim, t=t)
t.done()
