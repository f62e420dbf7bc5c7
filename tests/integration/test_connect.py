#!/usr/bin/env python3
"""connect() on every path: token, env and run of a paused sandbox resume
it first (one resume, one refresh, however many ask); a pause made behind
the agent's back is seen by run (it asks HopX first), by token
--rejected and by attach; paused with auto-resume off, stopped and gone are refused
with exit 9 and the command that fixes them."""
import subprocess

from hopxtest import (Agent, Sim, Tap, api_calls, cleanup, note_output,
                      setup)

RESUME = "POST /v1/sandboxes/{id}/resume"
REFRESH = "POST /v1/sandboxes/{id}/token/refresh"
GET = "GET /v1/sandboxes/{id}"

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
# env and run always ask HopX first here, as they do once its word is
# older than 30 s.
agent = Agent(hopxd, hopxctl, tmp, sim.url, args=["--confirm-after", "0"])


def calls(seq, route):
    return [c for c in api_calls(sim.log(seq)) if c[1] == route]


def together(n, *args):
    """n hopxctl processes at once; their (exit, stdout, stderr)."""
    cmd = [hopxctl, "--socket", agent.sock, *args]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    outs = [(p.wait(60), *p.communicate()) for p in procs]
    for _, o, e in outs:
        note_output("hopxctl", o, e)
    return outs


def paused_by_hopxctl(sid):
    rc, _, err = agent.ctl("pause", "web")
    t.ok(rc == 0 and sim.sandbox(sid)[1]["status"] == "paused",
         "hopxctl pause web", err)
    seq = sim.last_seq()
    outs = together(20, "token", "web")
    toks = {o.strip() for rc, o, _ in outs if rc == 0}
    t.ok(all(rc == 0 for rc, _, _ in outs) and
         all(sim.token_ok(sid, tok) for tok in toks),
         f"20 concurrent token calls on a paused sandbox: all get a token "
         f"the sandbox accepts ({len(toks)} distinct: the one from before "
         "the pause is valid until it expires)",
         [e for rc, _, e in outs if rc][:3])
    t.ok(len(calls(seq, RESUME)) == 1 and len(calls(seq, REFRESH)) == 1,
         "one resume and one refresh at HopX",
         api_calls(sim.log(seq)))
    ev = agent.rpc("events", {"limit": 10000})["result"]["events"]
    resumed = [e for e in ev if e["type"] == "status" and
               e["sandbox_id"] == sid and e["cause"] == "user" and
               (e["detail"] or {}).get("to") == "running"]
    t.ok(resumed, "the resume is an event with cause user", ev[-5:])


def paused_behind_back(sid):
    sim.behind(sid, "pause")
    seq = sim.last_seq()
    script = ('curl -s -o /dev/null -w "%{http_code}" -H "Authorization: '
              'Bearer $HOPX_SANDBOX_TOKEN" "$HOPX_SANDBOX_URL/health"')
    outs = together(10, "run", "web", "--", "sh", "-c", script)
    t.ok(all(rc == 0 and o == "200" for rc, o, _ in outs),
         "paused behind the agent's back: 10 concurrent run calls reach "
         "the sandbox with their token", outs[:3])
    t.ok(len(calls(seq, RESUME)) == 1,
         f"{len(calls(seq, RESUME))} resume, {len(calls(seq, GET))} GETs "
         "shared by the 10", api_calls(sim.log(seq)))


def rejected(sid):
    old = agent.ctl("token", "web")[1].strip()
    sim.behind(sid, "pause")
    t.ok(not sim.token_ok(sid, old), "a paused sandbox refuses the token")
    seq = sim.last_seq()
    rc, out, err = agent.ctl("token", "--rejected", old, "web")
    new = out.strip()
    t.ok(rc == 0 and sim.token_ok(sid, new),
         "token --rejected: the agent looked, resumed and handed out a "
         "token the sandbox accepts", (rc, err))
    t.ok(len(calls(seq, GET)) == 1 and len(calls(seq, RESUME)) == 1,
         "token --rejected: one GET and one resume",
         api_calls(sim.log(seq)))


def attach_again(sid):
    sim.behind(sid, "pause")
    seq = sim.last_seq()
    rc, out, err = agent.ctl("attach", sid)
    t.ok(rc == 0 and sim.sandbox(sid)[1]["status"] == "running" and
         len(calls(seq, RESUME)) == 1 and len(calls(seq, GET)) >= 1,
         "attach of a tracked sandbox paused behind the agent's back: "
         "asked HopX, resumed it", (rc, err, api_calls(sim.log(seq))))
    sim.behind(sid, "pause")
    seq = sim.last_seq()
    rc, out, err = agent.ctl("attach", sid, "--no-resume")
    t.ok(rc == 0 and not calls(seq, RESUME),
         "attach --no-resume of a tracked sandbox resumes nothing",
         (rc, err))


def refused(sid, how, fix):
    rc, _, err = agent.ctl("token", sid)
    t.ok(rc == 9 and fix in err, f"{how}: exit 9 naming '{fix}'", (rc, err))
    rc, _, err = agent.ctl("env", sid)
    t.ok(rc == 9 and fix in err, f"{how}: env too", (rc, err))


try:
    agent.start()
    sid, off, stopped, gone = sim.bulk(4)
    errs = agent.attach_all([sid, off, stopped, gone])
    agent.ctl("rename", sid, "web")
    t.ok(not errs, "4 sandboxes attached", errs)
    paused_by_hopxctl(sid)
    paused_behind_back(sid)
    rejected(sid)
    attach_again(sid)
    agent.ctl("policy", off, "--auto-resume", "off")
    agent.ctl("pause", off)
    refused(off, "paused, auto-resume off", f"hopxctl resume {off}")
    sim.behind(stopped, "stop")
    agent.rpc("reconcile", timeout=60)
    refused(stopped, "stopped", f"hopxctl start {stopped}")
    sim.behind(gone, "delete")
    agent.rpc("reconcile", timeout=60)
    refused(gone, "gone", f"hopxctl detach {gone}")
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
