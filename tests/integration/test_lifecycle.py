#!/usr/bin/env python3
"""Lifecycle: shutdown pauses by policy and the next start resumes; the
socket answers at once with HopX down and the agent converges when it comes
back; a wrong key changes nothing and says so (exit 3); two processes
asking for a fresh token cause one refresh; create is idempotent by name;
stop explains a removed route; keep-alive re-arms; wait, env, run, kill."""
import subprocess
import time

from hopxtest import (Agent, Sim, Tap, api_calls, cleanup, note_output,
                      setup, wait_for)

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url, args=["--sync-interval", "5"])


def status_of(sid):
    return agent.records()[sid]["status"]


def shutdown_and_outage():
    ids = sim.bulk(3)
    for sid in ids:
        agent.ctl("attach", sid)
    rc, out, err = agent.ctl("policy", ids[0], "--pause-on-shutdown", "on")
    t.ok(rc == 0 and "pause_on_shutdown=on" in out, "policy set", err)
    t.ok(agent.term() == 0, "SIGTERM: hopxd exits 0")
    t.ok(sim.sandbox(ids[0])[1]["status"] == "paused",
         "the pause-on-shutdown sandbox was paused at shutdown")
    t.ok(sim.sandbox(ids[1])[1]["status"] == "running",
         "the others were left running")

    sim.stop()
    t0 = time.monotonic()
    agent.start()
    rc, out, err = agent.ctl("status")
    took = time.monotonic() - t0
    t.ok(took < 5 and "sandboxes 3" in out,
         f"with HopX down the socket answered in {took:.2f} s", err)
    t.ok(wait_for(lambda: agent.ctl("status")[0] == 6, 30),
         "status exits 6 while HopX is unreachable")
    wait_for(lambda: all(r["stale"] for r in agent.records().values()), 30)
    recs = agent.records()
    t.ok(all(r["status"] != "gone" for r in recs.values()) and
         all(r["stale"] and "unreachable" in r["last_error"]
             for r in recs.values()),
         "an outage marks records stale with the error, never gone", recs)
    sim.start()
    t.ok(wait_for(lambda: all(not r["stale"] and r["status"] == "running"
                              for r in agent.records().values()), 60),
         "converged once HopX came back; the paused one was resumed",
         agent.records())
    return ids


def wrong_key(ids):
    agent.ctl("policy", ids[0], "--pause-on-shutdown", "off")
    before = agent.records()
    agent.term()
    agent.key = "hopx_wrong.key"
    seq = sim.last_seq()
    agent.start()
    t.ok(wait_for(lambda: agent.ctl("status")[0] == 3, 30),
         "with a wrong key, status exits 3")
    rc, out, err = agent.ctl("status")
    t.ok("auth_error" in out and "key" in out,
         "status says the key was refused", out)
    rc, out, err = agent.ctl("reconcile")
    t.ok(rc == 3 and "key" in err, "reconcile exits 3 and says why",
         (rc, err))
    after = agent.records()
    t.ok(after == before, "nothing changed in the records",
         [(before[k], after.get(k)) for k in before if before[k] !=
          after.get(k)][:2])
    calls = api_calls(sim.log(seq))
    t.ok(calls and all(m == "GET" for m, r, _ in calls),
         "only reads were tried with the wrong key", calls[:5])
    agent.term()
    agent.key = sim.key
    agent.start()
    agent.wait_report("start", agent.last_event())


def one_refresh(sid):
    sim.faults({"route_latency": {
        "POST /v1/sandboxes/{id}/token/refresh": {"latency_ms": 400}}})
    time.sleep(1.2)  # the stored token is no longer brand new
    seq = sim.last_seq()
    cmd = [hopxctl, "--socket", agent.sock, "token", sid, "--min-ttl",
           "3599"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    note_output("hopxctl", *outs)
    sim.faults(None)
    refreshes = [c for c in api_calls(sim.log(seq))
                 if c[1] == "POST /v1/sandboxes/{id}/token/refresh"]
    t.ok(all(p.returncode == 0 for p in procs) and outs[0] == outs[1],
         "both processes got the same token")
    t.ok(len(refreshes) == 1, f"{len(refreshes)} refresh for two asks")
    # A refresh that fails every attempt answers with the error (it once
    # freed an unset record: found by the fault soak).
    sim.admin("POST", "/faults/script",
              {"route": "POST /v1/sandboxes/{id}/token/refresh",
               "sandbox_id": sid, "count": 3, "action": "status",
               "status": 503, "retry_after": 2})
    time.sleep(1.1)
    seq = sim.last_seq()
    rc, out, err = agent.ctl("token", sid, "--min-ttl", "3599")
    t.ok(rc == 6 and agent.answers(),
         "a refresh failing every attempt is an error, the agent lives",
         (rc, err))
    # A new call waits out the Retry-After the last answer asked for.
    agent.ctl("token", sid, "--min-ttl", "3599")
    calls = [e for e in sim.log(seq)
             if e["route"] == "POST /v1/sandboxes/{id}/token/refresh"]
    t.ok(len(calls) == 4 and
         calls[3]["at_ms"] - calls[2]["at_ms"] >= 2000,
         "the next call came after the Retry-After", [
             (e["at_ms"], e["status"]) for e in calls])


def create_twice():
    seq = sim.last_seq()
    rc1, out1, err1 = agent.ctl("--json", "create", "--template",
                                "code-interpreter", "--name", "web",
                                "--label", "role=web", "--env", "A=1")
    rc2, out2, err2 = agent.ctl("--json", "create", "--template",
                                "code-interpreter", "--name", "web")
    creates = [c for c in api_calls(sim.log(seq))
               if c[0] == "POST" and c[1] == "POST /v1/sandboxes"]
    t.ok(rc1 == 0 and rc2 == 0 and '"existing":true' in
         out2.replace(" ", "") and len(creates) == 1,
         "create with an existing name returns it (one POST)",
         (err1, err2, creates))


def stop_removed(sid):
    sim.admin("POST", "/faults/script",
              {"route": "POST /v1/sandboxes/{id}/stop", "count": 1,
               "action": "status", "status": 404})
    rc, out, err = agent.ctl("stop", sid)
    t.ok(rc != 0 and "no longer offers" in err and
         status_of(sid) == "running",
         "stop on a removed route says so and marks nothing", err)


def keepalive(sid):
    seq = sim.last_seq()
    rc, out, err = agent.ctl("keepalive", sid, "10")
    t.ok(rc == 0 and "keepalive=10s" in out, "keepalive set", err)

    def puts():
        return [c for c in api_calls(sim.log(seq))
                if c[1] == "PUT /v1/sandboxes/{id}/timeout"]
    t.ok(wait_for(lambda: len(puts()) >= 2, 15),
         "the timeout was re-armed before it ran out", puts())
    agent.ctl("keepalive", sid, "off")


def wait_env_run_kill(sid):
    w = subprocess.Popen([hopxctl, "--socket", agent.sock, "wait", sid,
                          "--for", "paused", "--timeout", "20"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    agent.ctl("pause", sid)
    w.communicate(timeout=30)
    t.ok(w.returncode == 0, "wait --for paused returned once paused")
    rc, out, err = agent.ctl("wait", sid, "--for", "stopped", "--timeout",
                             "1")
    t.ok(rc == 5, "wait times out with exit 5", (rc, err))
    rc, out, err = agent.ctl("resume", sid)
    rc, out, err = agent.ctl("env", sid)
    t.ok(rc == 0 and f"export HOPX_SANDBOX_ID='{sid}'" in out and
         "HOPX_SANDBOX_TOKEN='ey" in out, "env prints shell exports", out)
    rc, out, err = agent.ctl("run", sid, "--", "sh", "-c",
                             'test -n "$HOPX_SANDBOX_TOKEN" && exit 7')
    t.ok(rc == 7, "run passes the command's exit code through", rc)
    rc, out, err = agent.ctl("kill", sid)
    t.ok(rc == 0 and status_of(sid) == "gone" and
         sim.sandbox(sid)[0] == 404, "kill deletes it and marks it gone")


try:
    agent.start()
    ids = shutdown_and_outage()
    wrong_key(ids)
    one_refresh(ids[1])
    create_twice()
    stop_removed(ids[2])
    keepalive(ids[2])
    wait_env_run_kill(ids[1])
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
