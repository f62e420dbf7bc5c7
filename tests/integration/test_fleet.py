#!/usr/bin/env python3
"""The fleet: three agents (three hosts: separate sockets and local
copies) share one registry on a real PostgreSQL 15 and one hopx-sim.
A change on one shows on the others within a second; a change is
answered only once PostgreSQL holds it; names are unique across the
fleet; events carry the fleet's sequence and the host that caused them;
with PostgreSQL down each agent serves the tokens it has, says the store
is unavailable and refuses changes; a restart and a 30 s outage lose no
acknowledged change and mark nothing gone; an agent that was away reads
what it missed."""
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time

from hopxtest import Agent, PgServer, Sim, Tap, api_calls, cleanup, \
    run, setup, wait_for

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()

# -- refused at once, saying what to do --------------------------------------
for store, want in (("postgresql://u:secret@127.0.0.1/db", "~/.pgpass"),
                    ("host=127.0.0.1 password=secret", "~/.pgpass"),
                    ("postgresql://[bad", "not a PostgreSQL connection")):
    p = run([hopxd, "--store", store, "--db", f"{tmp}/refused.db"])
    t.ok(p.returncode == 2 and want in p.stderr and
         "secret" not in p.stderr and p.stderr.count("\n") == 1,
         f"--store {store.split(':')[0]}...: refused (exit 2), one line "
         "that names the fix and not the password", p.stderr)
pg = PgServer().start()
sim = Sim(simbin, tmp).start()
hosts = {}
for h in "abc":
    os.makedirs(f"{tmp}/{h}")
    hosts[h] = Agent(hopxd, hopxctl, f"{tmp}/{h}", sim.url,
                     args=["--store", pg.conninfo]).start()
A, B, C = hosts["a"], hosts["b"], hosts["c"]


def store(agent):
    """status's store (it exits 6 while the store is down: still read)."""
    rc, out, _ = agent.ctl("--json", "status")
    try:
        return json.loads(out).get("store", {})
    except ValueError:
        return {}


def records(agent):
    rc, out = agent.ctl_json("ls")
    return {r["id"]: r for r in out} if rc == 0 else {}


def ok(agent, *args):
    rc, out, err = agent.ctl(*args)
    t.ok(rc == 0, f"hopxctl {' '.join(args)} on {agent_name(agent)}", err)
    return out


def agent_name(agent):
    return next(k for k, v in hosts.items() if v is agent)


def seen_within(agent, cond, limit=1.0):
    """Seconds until cond(records) holds on agent (None: not in limit)."""
    t0 = time.monotonic()
    if wait_for(lambda: cond(records(agent)), limit, step=0.01):
        return time.monotonic() - t0
    return None


t.ok(wait_for(lambda: all(store(x).get("state") == "up"
                          for x in hosts.values()), 30),
     "three agents reach the registry",
     str([store(x) for x in hosts.values()]))
t.ok(wait_for(lambda: len(store(A).get("members", [])) == 3, 10),
     "status lists the fleet's three members", str(store(A)))
host_id = {k: store(v)["host_id"] for k, v in hosts.items()}
rc, out, _ = A.ctl("status")
t.ok(rc == 0 and "store     PostgreSQL, up" in out and
     out.count("fleet     ") == 3 and "(this agent)" in out,
     "hopxctl status shows the store and the members", out)
rc, out, _ = A.ctl("doctor")
t.ok("PostgreSQL, up; 3 in the fleet" in out, "doctor reports the store",
     out)

# -- a create on A shows on B and C within a second ------------------------
rc, made = A.ctl_json("create", "--template", "base", "--name", "web",
                      "--label", "team=ml")
t.ok(rc == 0, "create on A", str(made))
web = made["id"]
for h in (B, C):
    took = seen_within(h, lambda r: web in r)
    t.ok(took is not None, f"the create shows on {agent_name(h)} within "
         f"1 s ({took if took is None else round(took * 1000)} ms)")
row = pg.sql(f"SELECT name, status FROM sandboxes WHERE id = '{web}'")
t.ok(row == [["web", "running"]], "PostgreSQL holds the record", str(row))

# -- acknowledged only once stored; changes from every host meet -----------
ok(B, "label", "web", "env=dev")
row = pg.sql(f"SELECT key, value FROM labels WHERE sandbox_id = '{web}' "
             "ORDER BY key")
t.ok(row == [["env", "dev"], ["team", "ml"]],
     "a label is in PostgreSQL when hopxctl returns", str(row))
ok(C, "policy", "web", "--idle-pause", "10m")
ok(A, "rename", "web", "api")
for h in hosts.values():
    took = seen_within(h, lambda r: r.get(web, {}).get("name") == "api" and
                       r[web]["labels"] == {"env": "dev", "team": "ml"} and
                       r[web]["policy"]["idle_pause_s"] == 600)
    t.ok(took is not None, f"{agent_name(h)} has every host's changes "
         "within 1 s", str(records(h).get(web)))

# -- names are unique across the fleet --------------------------------------
rc, y = B.ctl_json("create", "--template", "base", "--name", "y")
t.ok(rc == 0, "create y on B", str(y))
# A name another agent took whose news has not arrived: PostgreSQL is
# the judge (a row written straight there, without its event).
other = sim.bulk(1)[0]
pg.sql("INSERT INTO sandboxes (id, name, status, tracked_at, updated_at) "
       f"VALUES ('{other}', 'taken', 'running', 0, 0)")
rc, out, err = B.ctl("rename", "y", "taken")
t.ok(rc != 0 and "another sandbox of the fleet" in err,
     "a name the registry gives another sandbox is refused", err + out)
row = pg.sql(f"SELECT name FROM sandboxes WHERE id = '{y['id']}'")
t.ok(row == [["y"]], "and PostgreSQL is unchanged", str(row))
t.ok(wait_for(lambda: records(B).get(y["id"], {}).get("name") == "y", 5),
     "and B's copy is put back", str(records(B).get(y["id"])))
pg.sql(f"DELETE FROM sandboxes WHERE id = '{other}'")

# -- events: the fleet's sequence, the host that caused each ---------------
rc, out, _ = C.ctl("--json", "events")
evs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
by = {(e["type"], e.get("host")) for e in evs if e["sandbox_id"] == web}
t.ok(("tracked", host_id["a"]) in by and ("label", host_id["b"]) in by and
     ("policy", host_id["c"]) in by and ("renamed", host_id["a"]) in by,
     "C's events have every host's changes, each with its host", str(by))
seqs = [e["seq"] for e in evs]
pg_seqs = [int(r[0]) for r in pg.sql("SELECT seq FROM events ORDER BY seq")]
t.ok(seqs == sorted(seqs) and set(seqs) <= set(pg_seqs),
     "their numbers are the registry's", f"{seqs} vs {pg_seqs}")

sub = socket.socket(socket.AF_UNIX)
sub.connect(B.sock)
sub.settimeout(10)
sub.sendall(b'{"id":1,"method":"subscribe","params":{"snapshot":false}}\n')
lines = sub.makefile()
first = json.loads(lines.readline())
ok(A, "label", "api", "seen=live")
line = lines.readline()
sub.close()
t.ok("snapshot" not in first["result"] and first["result"]["last_seq"] > 0
     and '"seen"' in line and host_id["a"] in line,
     "subscribe on B without a snapshot: a change on A arrives as an event",
     f"{first} {line}")

# -- detach on one host forgets it everywhere -------------------------------
ok(B, "detach", "y")
for h in hosts.values():
    t.ok(seen_within(h, lambda r: y["id"] not in r) is not None,
         f"detach shows on {agent_name(h)}")

# -- idleness is the fleet's: use on any host keeps a sandbox awake --------
idle = sim.bulk(1)[0]
ok(A, "attach", idle, "--idle-pause", "8s")
t.ok(wait_for(lambda: pg.sql(f"SELECT count(*) FROM sandboxes WHERE id = "
                             f"'{idle}' AND owner IS NOT NULL") == [["1"]],
              10), "the idle-paused sandbox has a lease holder")
holder = pg.sql(f"SELECT owner FROM sandboxes WHERE id = '{idle}'")[0][0]
user = next(h for k, h in hosts.items() if host_id[k] != holder)
seq = sim.last_seq()
for _ in range(16):  # used only on another host, for twice the idle period
    user.ctl("token", idle)
    time.sleep(1)
pauses = [c for c in api_calls(sim.log(seq))
          if c[1] == "POST /v1/sandboxes/{id}/pause" and c[2] == idle]
t.ok(not pauses and sim.sandbox(idle)[1]["status"] == "running",
     f"used every second on {agent_name(user)} only, the holder never "
     "pauses it for idleness", str(pauses))
t.ok(wait_for(lambda: sim.sandbox(idle)[1]["status"] == "paused", 20),
     "left unused, the holder pauses it once the idle period passes")
ok(A, "detach", idle)

# -- create --name on three hosts at once makes one sandbox ----------------
def race(name):
    seq = sim.last_seq()
    procs = [subprocess.Popen([hopxctl, "--socket", h.sock, "--json",
                               "create", "--template", "base", "--name",
                               name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for h in hosts.values()]
    outs = [p.communicate(timeout=120) for p in procs]
    creates = [c for c in api_calls(sim.log(seq))
               if c[1] == "POST /v1/sandboxes"]
    ids = {json.loads(o)["id"] for o, _ in outs if o.strip()}
    return [p.returncode for p in procs], outs, creates, ids


for n in range(3):
    rcs, outs, creates, ids = race(f"same{n}")
    t.ok(rcs == [0, 0, 0] and len(creates) == 1 and len(ids) == 1,
         f"racing create --name same{n} on three hosts: one sandbox, every "
         f"host answers with it ({len(creates)} creates, ids {ids})",
         str(outs))
    row = pg.sql(f"SELECT count(*) FROM sandboxes WHERE name = 'same{n}'")
    t.ok(row == [["1"]], "one record of it in the registry", str(row))
row = pg.sql("SELECT count(*) FROM intents WHERE state = 'open'")
t.ok(row == [["0"]], "no claim of a name is left open", str(row))

# -- an agent away reads what it missed -------------------------------------
t.ok(C.kill9(), "kill -9 of C")
ok(A, "label", "api", "missed=yes")
C.start()
t.ok(wait_for(lambda: records(C).get(web, {}).get("labels", {})
              .get("missed") == "yes", 10),
     "C, back, has the change made while it was away")

# -- PostgreSQL down --------------------------------------------------------
# As if A's claim of "orphan" had committed as the connection broke, its
# answer lost: A holds it in the registry but runs no create of it. As if
# A had taken over "orphan2" from a run before it, settled that create
# and lost the closing with the connection. A live agent's claim never
# lapses: A closes both when it reconnects.
for kind, name in (("create", "orphan"), ("adopt", "orphan2")):
    pg.sql("INSERT INTO intents (kind, request, name, host, created_at) "
           f"VALUES ('{kind}', '{{}}', '{name}', '{host_id['a']}', 0)")
pg.stop()
t.ok(wait_for(lambda: all(store(x).get("state") == "unavailable"
                          for x in hosts.values()), 15),
     "every agent reports the store unavailable",
     str([store(x) for x in hosts.values()]))
rc, out, err = B.ctl("label", "api", "during=outage")
t.ok(rc == 6 and "unavailable" in err and "nothing was changed" in err,
     "a change is refused, saying why (exit 6)", f"{rc} {err}")
rc, tok, err = C.ctl("token", "api")
t.ok(rc == 0 and tok.startswith("ey"), "a token is still served", err)
rc, out, _ = A.ctl("status")
t.ok(rc == 6 and "PostgreSQL, unavailable" in out,
     "status says so and exits 6", f"{rc} {out}")
time.sleep(30)  # a 30 s outage
pg.start()
t.ok(wait_for(lambda: all(store(x).get("state") == "up"
                          for x in hosts.values()), 30),
     "every agent is back on the registry after the outage",
     str([store(x) for x in hosts.values()]))
ok(B, "label", "api", "after=outage")
for h in hosts.values():
    r = None
    ok_ = wait_for(lambda: records(h).get(web, {}).get("labels", {})
                   .get("after") == "outage", 5)
    r = records(h).get(web, {})
    t.ok(ok_ and "during" not in r.get("labels", {}) and
         r.get("status") == "running" and r.get("name") == "api" and
         r["labels"].get("missed") == "yes",
         f"{agent_name(h)}: nothing acknowledged was lost, the refused "
         "change is nowhere, nothing marked gone", str(r))
row = pg.sql("SELECT count(*) FROM sandboxes WHERE status = 'gone'")
t.ok(row == [["0"]], "PostgreSQL has nothing gone", str(row))
for name, what in (("orphan", "a claim whose answer was lost with the "
                   "connection"),
                   ("orphan2", "a claim taken over whose closing was lost")):
    seq = sim.last_seq()
    try:
        rc, out, err = B.ctl("create", "--template", "base", "--name", name,
                             timeout=30)
    except subprocess.TimeoutExpired:
        rc, err = None, "hopxctl waited 30 s"
    creates = [c for c in api_calls(sim.log(seq))
               if c[1] == "POST /v1/sandboxes"]
    row = pg.sql(f"SELECT state FROM intents WHERE name = '{name}' "
                 "ORDER BY id")
    t.ok(rc == 0 and len(creates) == 1 and row == [["failed"], ["done"]],
         f"{what} is closed when its agent reconnects: a create of the "
         "name elsewhere goes ahead",
         f"{rc} {err} creates {len(creates)} intents {row}")

# -- a change in the outbox of a killed agent ------------------------------
# A label written on A whose push was cut off by the kill was never
# acknowledged; by the time A is back another agent has changed it. A's
# restart must not send its old label over the newer one.
A.kill9()
db = sqlite3.connect(A.db)
db.execute("INSERT OR REPLACE INTO labels VALUES (?, 'race', 'old')", (web,))
db.execute("INSERT OR REPLACE INTO outbox VALUES (?, 16)", (web,))
db.commit()
db.close()
ok(B, "label", "api", "race=new")
A.start()
t.ok(wait_for(lambda: store(A).get("state") == "up", 30), "A is back")
time.sleep(1)  # what A would push at its start has been pushed by now
reg = pg.sql(f"SELECT value FROM labels WHERE sandbox_id = '{web}' AND "
             "key = 'race'")
t.ok(reg == [["new"]] and wait_for(lambda: records(A).get(web, {}).get(
     "labels", {}).get("race") == "new", 5),
     "a killed agent's unacknowledged change does not undo a newer one "
     "made elsewhere; its copy reads the newer one", f"registry {reg}")

# -- a create whose answer was lost ---------------------------------------
# HopX made the sandbox but A's answer was cut off half way: A cannot tell
# whether it was made, so the name stays claimed until A's reconcile
# settles it; B's create of the name then gets that sandbox, not a second.
seq = sim.last_seq()
sim.admin("POST", "/faults/script", {"route": "POST /v1/sandboxes",
                                     "count": 1, "action": "truncated"})
rc, _, err = A.ctl("create", "--template", "base", "--name", "lostans")
t.ok(rc == 6 and "may or may not" in err,
     "A's create whose answer was cut off has an unknown outcome (exit 6: "
     "the agent said so, not a lost connection to it)", f"{rc} {err}")
rc, out = B.ctl_json("create", "--template", "base", "--name", "lostans")
out = out if rc == 0 else {"error": out}
made = [e["sandbox_id"] for e in sim.log(seq)
        if e["route"] == "POST /v1/sandboxes" and e["sandbox_id"]]
creates = [c for c in api_calls(sim.log(seq)) if c[1] == "POST /v1/sandboxes"]
t.ok(rc == 0 and len(creates) == 1 and out.get("id") in made,
     "B's create of the name waits for A to settle it and gets the "
     "sandbox A's create made: one sandbox",
     f"rc {rc} {out} creates {creates} made {made}")

# -- a create cut off by a kill, settled while changes stream in -----------
# A restarted agent adopts the sandbox its lost create made once its copy
# has read the registry up to a moment when no other agent was creating:
# a fleet that never stops changing labels must not keep it waiting.
def stream(stop, agent, ref):
    n = 0
    while not stop.is_set():
        n += 1
        agent.rpc("label", {"ref": ref, "set": {"stream": str(n)}})


sim.faults({"route_latency": {"POST /v1/sandboxes": {"latency_ms": 3000}}})
seq = sim.last_seq()
lost = subprocess.Popen([hopxctl, "--socket", A.sock, "create", "--template",
                         "base", "--name", "cutoff"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
made = wait_for(lambda: any(e["route"] == "POST /v1/sandboxes"
                            for e in sim.log(seq)), 10, step=0.05)
t.ok(made and A.kill9(), "A is killed while HopX makes its sandbox")
lost.wait(10)
sim.faults(None)
stop = threading.Event()
load = [threading.Thread(target=stream, args=(stop, x, "api"), daemon=True)
        for x in (B, C, B, C)]
for th in load:
    th.start()
ev0 = int(pg.sql("SELECT coalesce(max(seq), 0) FROM events")[0][0])
A.start()
took = seen_within(B, lambda r: any(x.get("name") == "cutoff"
                                    for x in r.values()), 8)
stop.set()
for th in load:
    th.join(10)
streamed = int(pg.sql("SELECT max(seq) FROM events")[0][0]) - ev0
creates = [c for c in api_calls(sim.log(seq)) if c[1] == "POST /v1/sandboxes"]
closed = wait_for(lambda: pg.sql("SELECT state FROM intents WHERE name = "
                                 "'cutoff'") == [["done"]], 5)
t.ok(took is not None and len(creates) == 1 and closed,
     "the restarted agent adopts its cut-off create within 8 s while "
     "changes stream in; HopX made it once, its claim is closed",
     f"adopted after {took} s, {streamed} changes, creates {len(creates)}")

cleanup(tmp, sim, A, B, C, pg, t=t)
pg.remove()
t.done()
