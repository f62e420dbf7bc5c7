#!/usr/bin/env python3
"""The Python and Node clients (clients/) against a running agent:
token (a token the sandbox takes), show, ls (all pages, a status
filter), subscribe (an event as it happens), and typed errors from the
protocol's codes (not_found, invalid, wrong_state, no agent)."""
import json
import os
import sys
import threading

from hopxtest import Agent, Sim, Tap, cleanup, run, setup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import hopxd_client as hc  # noqa: E402

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url).start()
rc, _, err = agent.ctl("create", "--template", "base", "--name", "web")
ids = sim.bulk(3)
for sid in ids:
    agent.ctl("attach", sid)
agent.ctl("pause", ids[0])
agent.ctl("policy", ids[1], "--auto-resume", "off")
agent.ctl("pause", ids[1])
web = agent.ctl_json("show", "web")[1]["id"]

# -- Python --------------------------------------------------------------
with hc.Client(agent.sock) as h:
    tok = h.token("web", min_ttl=600)
    t.ok(tok["id"] == web and sim.token_ok(web, tok["token"]),
         "python: token() gives a token the sandbox takes", tok)
    t.ok(h.show("web")["id"] == web, "python: show()")
    every = [s["id"] for s in h.ls()]
    t.ok(sorted(every) == sorted(ids + [web]) and
         len(h.ls(status="paused")) == 2,
         "python: ls() and ls(status=)", every)
    errs = {}
    for name, fn in [("not_found", lambda: h.show("no-such")),
                     ("invalid", lambda: h.token("web", -5)),
                     ("wrong_state", lambda: h.token(ids[1]))]:
        try:
            fn()
            errs[name] = None
        except hc.HopxdError as e:
            errs[name] = (type(e).__name__, e.code)
    t.ok(errs == {"not_found": ("NotFound", "not_found"),
                  "invalid": ("InvalidRequest", "invalid"),
                  "wrong_state": ("WrongState", "wrong_state")},
         "python: typed errors from the protocol's codes", errs)
    try:
        hc.Client(agent.sock + ".none")
        noagent = None
    except hc.NoAgent as e:
        noagent = str(e)
    t.ok(noagent and "systemctl --user start hopxd" in noagent,
         "python: NoAgent says how to start the agent", noagent)

    got = []
    sub = hc.Client(agent.sock)
    it = sub.subscribe()
    reader = threading.Thread(target=lambda: got.append(next(it)))
    reader.start()
    # The subscription is in place once the agent counts it.
    for _ in range(100):
        if h.status()["subscribers"] == 1:
            break
    h.call("label", ref="web", set={"from": "python"})
    reader.join(30)
    sub.close()
    t.ok(got and got[0]["type"] == "label" and got[0]["sandbox_id"] == web,
         "python: subscribe() yields the event as it happens", got)

# -- Node ----------------------------------------------------------------
env = dict(os.environ, HOPXD_NODE_CLIENT=os.path.join(
    ROOT, "clients", "node", "hopxd-client.js"))
p = run(["node", os.path.join(ROOT, "tests", "integration",
                              "clients_node.cjs"), agent.sock, "web"],
        env=env, timeout=60)
res = {}
for ln in p.stdout.splitlines():
    j = json.loads(ln)
    res[j["step"]] = j
t.ok(p.returncode == 0 and res.get("token", {}).get("value", {}).get("id")
     == web and sim.token_ok(web, res["token"]["value"]["token"]),
     "node: token() gives a token the sandbox takes", (p.stderr, res))
t.ok(res.get("show", {}).get("value", {}).get("id") == web and
     sorted(res.get("ls", {}).get("value", [])) == sorted(ids + [web]) and
     res.get("ls-status", {}).get("value") == 2,
     "node: show(), ls() and ls({status})", res)
t.ok(res.get("notfound", {}).get("error") == "NotFound" and
     res.get("invalid", {}).get("error") == "InvalidRequest" and
     res.get("noagent", {}).get("error") == "NoAgent" and
     all(res.get(k, {}).get("hopxd") for k in
         ("notfound", "invalid", "noagent")),
     "node: typed errors (NotFound, InvalidRequest, NoAgent)", res)
ev = res.get("subscribe", {}).get("value") or {}
t.ok(ev.get("type") == "label" and ev.get("sandbox_id") == web,
     "node: subscribe() yields the event as it happens", ev)
cleanup(tmp, t=t)
t.done()
