#!/usr/bin/env python3
"""One owner per job: three agents share a registry on PostgreSQL and
hopx-sim's tokens live 60 s. Each sandbox's lease is held by one agent,
which alone renews its token: across the fleet each token is renewed
once per life (the simulator's log), not three times. After kill -9 of
the agent holding the most leases, the others take its leases over
within the lease time and renew those tokens in time: the tokens the
surviving agents hand out meanwhile never expire. Leases are shared
fairly; one agent (the leader) runs the periodic reconcile; the budget
is split between the agents alive."""
import json
import os
import time

from hopxtest import Agent, PgServer, Sim, Tap, api_calls, cleanup, \
    jwt_exp, setup, wait_for

LIFE = 60
hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
pg = PgServer().start()
sim = Sim(simbin, tmp, args=["--token-lifetime", str(LIFE)]).start()
hosts = {}
for h in "abc":
    os.makedirs(f"{tmp}/{h}")
    hosts[h] = Agent(hopxd, hopxctl, f"{tmp}/{h}", sim.url,
                     args=["--store", pg.conninfo, "--lease", "3",
                           "--sync-interval", "20", "--budget", "90"]
                     ).start()


def store(agent):
    rc, out, _ = agent.ctl("--json", "status")
    try:
        return json.loads(out)
    except ValueError:
        return {}


def refreshes(seq):
    out = {}
    for c in api_calls(sim.log(seq)):
        if c[1] == "POST /v1/sandboxes/{id}/token/refresh":
            out[c[2]] = out.get(c[2], 0) + 1
    return out


t.ok(wait_for(lambda: all(store(x).get("store", {}).get("state") == "up"
                          for x in hosts.values()), 30),
     "three agents reach the registry")
seq0 = sim.last_seq()
ids = []
for i in range(6):
    rc, r = hosts["a"].ctl_json("create", "--template", "base")
    t.ok(rc == 0, f"create {i}", str(r))
    ids.append(r["id"])
born = time.time()

# -- leases: each sandbox held by one agent, a fair share each -------------
def owners():
    return dict((r[0], r[1]) for r in
                pg.sql("SELECT id, owner FROM sandboxes WHERE owner_until "
                       "> (extract(epoch FROM clock_timestamp()) * 1000)"))


host_of = {store(x)["store"]["host_id"]: k for k, x in hosts.items()}
t.ok(wait_for(lambda: set(owners()) == set(ids) and
              sorted(list(owners().values()).count(h) for h in host_of)
              == [2, 2, 2], 15),
     "every sandbox has one owner, two each", str(owners()))
st = {k: store(x) for k, x in hosts.items()}
t.ok(sorted(s["store"]["leases"] for s in st.values()) == [2, 2, 2] and
     [s["store"]["leader"] for s in st.values()].count(True) == 1,
     "status: two leases each, one leader",
     str([s["store"] for s in st.values()]))
t.ok(all(s["api"]["budget_per_min"] == 30 for s in st.values()),
     "the budget is split: 30 requests/min each of 90",
     str([s["api"]["budget_per_min"] for s in st.values()]))

# -- each token renewed once per life, by its owner ------------------------
served = []  # (agent, id, exp, at)


def ask_tokens(names):
    for n in names:
        for sid in ids:
            rc, tok, _ = hosts[n].ctl("token", sid)
            if rc == 0:
                served.append((n, sid, jwt_exp(tok.strip()), time.time()))
            else:
                served.append((n, sid, 0, time.time()))


while time.time() < born + LIFE + 4:
    ask_tokens("abc")
    time.sleep(2)
got = refreshes(seq0)
t.ok(all(got.get(s) == 1 for s in ids),
     "first life: each token renewed once across the fleet", str(got))


def renewals(agent):
    rc, out, _ = agent.ctl("metrics")
    for ln in out.splitlines():
        if ln.startswith("hopxd_token_renewals_total "):
            return int(float(ln.split()[1]))
    return None


mine = {k: renewals(x) for k, x in hosts.items()}
t.ok(all(mine[k] == st[k]["store"]["leases"] for k in hosts),
     f"each agent renewed exactly the tokens of its leases ({mine})",
     f"renewals {mine}, leases "
     f"{ {k: st[k]['store']['leases'] for k in hosts} }")

rc, out, _ = hosts["a"].ctl("--json", "events")
recs = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
runs = [e.get("host") for e in recs if e["type"] == "reconciled"]
t.ok(len(runs) >= 2 and len(set(runs)) == 1,
     f"periodic reconciles ({len(runs)}) came from one agent, the leader",
     str(runs))

# -- kill -9 of the agent holding the most: the others take over ----------
# (3 s leases: a loaded machine's stall of a second or two can let some
# lapse for a moment, and the holders take them back at their next beat)
t.ok(wait_for(lambda: set(owners()) == set(ids), 10),
     "every sandbox has a live lease before the kill", str(owners()))
counts = {}
for o in owners().values():
    counts[o] = counts.get(o, 0) + 1
victim = host_of[max(counts, key=counts.get)]
theirs = [s for s, o in owners().items() if host_of[o] == victim]
t.ok(hosts[victim].kill9(), f"kill -9 of {victim} (held {len(theirs)})")
left = [k for k in hosts if k != victim]
killed = time.time()
t.ok(wait_for(lambda: set(owners()) == set(ids) and
              all(host_of[o] in left for o in owners().values()), 10),
     "its leases are taken by the others within the lease time",
     str(owners()))
while time.time() < born + 2 * LIFE + 4:
    ask_tokens(left)
    time.sleep(2)
got = refreshes(seq0)
t.ok(all(got.get(s) == 2 for s in ids),
     "second life: each token renewed once more, those of the killed "
     "agent's leases too", str(got))
expired = [(n, s, e, at) for n, s, e, at in served if e <= at]
t.ok(not expired and len(served) > 100,
     f"{len(served)} tokens served throughout, none expired", str(expired))
# issued after the kill (by the agents that took them over), however long
# this test took to get here
fresh = {s: jwt_exp(hosts[left[0]].ctl("token", s)[1].strip()) - killed
         for s in theirs}
t.ok(all(v > LIFE for v in fresh.values()),
     "the killed agent's sandboxes have tokens issued since the kill",
     str(fresh))

cleanup(tmp, sim, *[hosts[k] for k in left], pg, t=t)
pg.remove()
t.done()
