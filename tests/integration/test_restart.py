#!/usr/bin/env python3
"""Restart: 20 tracked sandboxes, SIGKILL, 5 paused / 3 stopped / 2 deleted
behind the agent's back; after the restart every record matches HopX, every
token handed out works, and the request log holds only what the design
calls for: one list page, a GET per record the list did not mention, and
resume + refresh per paused sandbox."""
import collections

from hopxtest import Agent, Sim, Tap, api_calls, cleanup, setup

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url)
try:
    agent.start()
    ids = sim.bulk(20)
    for i, sid in enumerate(ids):
        rc, out, err = agent.ctl("attach", sid, "--name", f"box{i}",
                                 "--label", "suite=restart")
        if rc != 0:
            break
    t.ok(rc == 0, "20 sandboxes attached", err)
    recs = agent.records()
    t.ok(len(recs) == 20 and all(r["status"] == "running"
                                 for r in recs.values()),
         "all 20 tracked as running", recs)

    ev = agent.last_event()
    agent.kill9()
    paused, stopped, deleted = ids[0:5], ids[5:8], ids[8:10]
    for sid in paused:
        sim.behind(sid, "pause")
    for sid in stopped:
        sim.behind(sid, "stop")
    for sid in deleted:
        sim.behind(sid, "delete")
    seq = sim.last_seq()

    agent.start()
    rep = agent.wait_report("start", ev)
    t.ok(rep is not None and "error" not in rep,
         "the start reconcile finished without error", rep)
    recs = agent.records()
    want = {sid: "running" for sid in ids}
    want.update({sid: "running" for sid in paused})
    want.update({sid: "stopped" for sid in stopped})
    want.update({sid: "gone" for sid in deleted})
    got = {sid: r["status"] for sid, r in recs.items()}
    t.ok(got == want, "paused resumed, stopped marked, deleted gone",
         {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v})
    t.ok(not any(r["stale"] for r in recs.values()), "no record is stale")
    calls = api_calls(sim.log(seq))
    count = collections.Counter((m, r) for m, r, _ in calls)
    expected = collections.Counter({
        ("GET", "GET /v1/sandboxes"): 1,
        ("GET", "GET /v1/sandboxes/{id}"): 2,
        ("POST", "POST /v1/sandboxes/{id}/resume"): 5,
        ("POST", "POST /v1/sandboxes/{id}/token/refresh"): 5})
    t.ok(count == expected, "only the requests the design calls for",
         "\n".join(f"{k}: {v}" for k, v in count.items()))
    gets = {s for m, r, s in calls if r == "GET /v1/sandboxes/{id}"}
    t.ok(gets == set(deleted), "GETs only for what the list missed", gets)
    t.ok(rep["requests"] == sum(expected.values()),
         "the report counts the requests", rep.get("requests"))
    lines = {e["id"]: e for e in rep.get("sandboxes", [])}
    t.ok(all(lines.get(s, {}).get("action") == "resume" for s in paused)
         and all(lines.get(s, {}).get("after") == "gone" for s in deleted)
         and all(lines.get(s, {}).get("after") == "stopped"
                 for s in stopped),
         "the report says what happened to each", lines)

    for sid in paused:
        st, j = sim.sandbox(sid)
        if j.get("status") != "running":
            break
    t.ok(j.get("status") == "running", "HopX says the paused ones run")

    seq = sim.last_seq()
    bad = []
    for sid in ids:
        rc, out, err = agent.ctl("token", sid)
        if sid in stopped or sid in deleted:
            if rc == 0:
                bad.append((sid, "token for a non-running sandbox"))
            continue
        if rc != 0 or not sim.token_ok(sid, out.strip()):
            bad.append((sid, rc, err))
    t.ok(not bad, "every token handed out is accepted by the sandbox",
         bad)
    extra = api_calls(sim.log(seq))
    t.ok(not extra, "stored tokens were handed out without refreshing",
         extra)
    rc, out, err = agent.ctl("token", ids[5])
    t.ok(rc == 9 and "stopped" in err,
         "a stopped sandbox's token is refused with exit 9", (rc, err))
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
