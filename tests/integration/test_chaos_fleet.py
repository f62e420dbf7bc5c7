#!/usr/bin/env python3
"""Fleet chaos: three agents on one PostgreSQL under load (labels,
renames, creates by name and tokens of 6 s from six clients spread over
the agents) while a random agent is killed with SIGKILL and restarted,
and every third time PostgreSQL itself is killed and restarted,
HOPXD_FLEET_CHAOS_KILLS times (default 12; the long form 100). After
every kill: every change an agent acknowledged is in the registry, and
the killed agent's own copy handed out no token later than it holds. At
the end: no sandbox was created twice (HopX holds exactly what was asked
for), every create is in the registry under its name once, every agent's
copy agrees with the registry, and every running sandbox's token works."""
import json
import os
import random
import sqlite3
import threading
import time

from hopxtest import Agent, PgServer, Sim, Tap, cleanup, jwt_exp, setup, \
    wait_for

KILLS = int(os.environ.get("HOPXD_FLEET_CHAOS_KILLS", "12"))
WORKERS, PER_WORKER = 6, 2

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
pg = PgServer().start()
sim = Sim(simbin, tmp, ["--token-lifetime", "6",
                        "--faults", '{"latency_ms": 3, "jitter_ms": 3}']
          ).start()
agents = []
for h in "abc":
    os.makedirs(f"{tmp}/{h}")
    agents.append(Agent(hopxd, hopxctl, f"{tmp}/{h}", sim.url,
                        args=["--store", pg.conninfo, "--lease", "3",
                              "--budget", "100000", "--http-timeout", "5"]))
rng = random.Random(int(os.environ.get("HOPXD_CHAOS_SEED", time.time())))
lock = threading.Lock()
labels, names, creates, token_exp = {}, {}, {}, {}
stop = threading.Event()
counts = {"ok": 0, "lost": 0, "refused": 0}


last_error = {}


def call(agent, method, params):
    """One request; None when cut off or refused (store down), the reason
    kept by method and reference for the report."""
    key = (method, params.get("name") or params.get("ref"))
    try:
        r = agent.rpc(method, params, timeout=30)
    except (OSError, ValueError) as e:
        counts["lost"] += 1
        last_error[key] = f"{agent.tmp}: {e}"
        return None
    if "error" in r:
        counts["refused"] += 1
        last_error[key] = f"{agent.tmp}: {r['error']}"
        return None
    counts["ok"] += 1
    return r["result"]


def worker(wid, sids):
    n = 0
    while not stop.is_set():
        n += 1
        a = rng.choice(agents)
        sid = rng.choice(sids)
        what = rng.random()
        if what < 0.35:
            if call(a, "label", {"ref": sid, "set": {"k": str(n)}}):
                with lock:
                    labels[sid] = max(labels.get(sid, 0), n)
        elif what < 0.5:
            with lock:
                names.setdefault(sid, []).append([f"w{wid}n{n}", False])
                entry = names[sid][-1]
            if call(a, "rename", {"ref": sid, "name": entry[0]}):
                entry[1] = True
        elif what < 0.6:
            name = f"c{wid}-{n}"
            with lock:
                creates[name] = None
            while not stop.is_set() or creates[name] is None:
                r = call(rng.choice(agents), "create",
                         {"template": "base", "name": name})
                if r:
                    with lock:
                        creates[name] = r["id"]
                    break
                time.sleep(0.2)
        else:
            r = call(a, "token", {"ref": sid})
            if r:
                with lock:
                    key = (agents.index(a), sid)
                    token_exp[key] = max(token_exp.get(key, 0),
                                         jwt_exp(r["token"]))
        time.sleep(rng.uniform(0, 0.01))


def registry():
    rows = pg.sql("SELECT s.id, coalesce(s.name, ''), coalesce((SELECT "
                  "value FROM labels l WHERE l.sandbox_id = s.id AND key = "
                  "'k'), '') FROM sandboxes s")
    return {r[0]: (r[1], r[2]) for r in rows}


def check(kill, killed):
    """Acknowledged changes in the registry; the killed agent's copy. The
    ledger is read before the registry: what was acknowledged by then
    must be there."""
    bad = []
    with lock:
        acked_labels = dict(labels)
        acked_names = {k: [list(e) for e in v] for k, v in names.items()}
        acked_creates = dict(creates)
    reg = registry()
    byname = {v[0]: k for k, v in reg.items() if v[0]}
    # one worker labels a sandbox, in order: a later label that was cut
    # off may have landed, an earlier one may not show
    for sid, n in acked_labels.items():
        got = reg.get(sid, ("", ""))[1]
        if not got or int(got) < n:
            bad.append(f"{sid}: label k={n} acknowledged, has {got}")
    with lock:  # names sent since the snapshot may have landed too
        now_sent = {k: [e[0] for e in v] for k, v in names.items()}
    for sid, sent in acked_names.items():
        acked = [i for i, (_, a) in enumerate(sent) if a]
        if acked and reg.get(sid, ("",))[0] not in \
                now_sent[sid][acked[-1]:]:
            bad.append(f"{sid}: name {reg.get(sid)}, acknowledged "
                       f"{sent[acked[-1]][0]}")
    for name, sid in acked_creates.items():
        if sid and byname.get(name) != sid:
            bad.append(f"create {name} -> {sid} acknowledged, missing")
    if killed is not None:
        db = sqlite3.connect(f"file:{agents[killed].db}?mode=ro", uri=True)
        exps = dict(db.execute("SELECT sandbox_id, expires_at FROM tokens"))
        db.close()
        with lock:
            for (ai, sid), exp in token_exp.items():
                if ai == killed and exps.get(sid, 0) < exp * 1000:
                    bad.append(f"{sid}: the killed agent's token went "
                               "back")
    return [f"kill {kill}: {b}" for b in bad]


try:
    for a in agents:
        a.start()
    t.ok(wait_for(lambda: all(a.rpc("status")["result"]["store"]["state"]
                              == "up" for a in agents), 30),
         "three agents on the registry")
    ids = sim.bulk(WORKERS * PER_WORKER)
    errs = agents[0].attach_all(ids)
    t.ok(not errs, f"{len(ids)} sandboxes attached", errs[:3])
    threads = [threading.Thread(target=worker, args=(
        w, ids[w * PER_WORKER:(w + 1) * PER_WORKER]), daemon=True)
        for w in range(WORKERS)]
    for th in threads:
        th.start()
    faults, started, pg_kills = [], time.monotonic(), 0
    for k in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        if k % 3 == 2:
            run_ok = pg.kill_restart()
            pg_kills += 1
            if not run_ok:
                faults.append(f"kill {k + 1}: PostgreSQL did not restart")
            faults += check(k + 1, None)
            continue
        i = rng.randrange(3)
        if not agents[i].kill9():
            faults.append(f"kill {k + 1}: agent {i} was no longer running")
            break
        faults += check(k + 1, i)
        agents[i].start()
    took = time.monotonic() - started
    t.ok(not faults, f"{KILLS} kills ({pg_kills} of PostgreSQL) in "
         f"{took:.0f} s: every acknowledged change in the registry, no "
         "token went backwards", faults[:20])
    stop.set()
    for th in threads:
        th.join(120)
    t.ok(not any(th.is_alive() for th in threads),
         "every cut-off create was answered after a restart",
         [(n, last_error.get(("create", n))) for n, s in creates.items()
          if s is None][:5])
    t.ok(counts["lost"] + counts["refused"] > 0 and len(creates) > 0,
         f"load was real: {counts['ok']} answered, {counts['lost']} cut "
         f"off, {counts['refused']} refused, {len(creates)} creates")

    want = len(ids) + len(creates)
    # a create cut off by a kill is adopted by its agent once no other
    # agent's create could have made the sandbox: give it a few runs
    wait_for(lambda: set(registry()) == set(sim.statuses()), 20, step=0.5)
    truth = set(sim.statuses())
    t.ok(len(truth) == want, f"HopX holds {len(truth)} sandboxes, {want} "
         "asked for: none created twice")
    reg = registry()
    byname = {v[0]: k for k, v in reg.items() if v[0]}
    t.ok(all(byname.get(n) == s for n, s in creates.items()) and
         set(truth) == set(reg),
         "every create is in the registry under its name, nothing else",
         [(n, s, byname.get(n), reg.get(s), s in truth)
          for n, s in creates.items() if byname.get(n) != s][:5])

    def copies_agree():
        for a in agents:
            recs = a.records()
            mine = {i: (r.get("name") or "",
                        r.get("labels", {}).get("k", ""))
                    for i, r in recs.items()}
            if mine != reg:
                return False
        return True
    t.ok(wait_for(copies_agree, 15), "every agent's copy agrees with the "
         "registry")
    t.ok(wait_for(lambda: all(
        sim.token_ok(s, a.rpc("token", {"ref": s})["result"]["token"])
        for a in agents for s in ids), 30),
        "every sandbox's token works, from every agent")
finally:
    stop.set()
    cleanup(tmp, *agents, sim, pg, t=t)
    if not os.environ.get("HOPXD_KEEP_TMP"):
        pg.remove()
t.done()
