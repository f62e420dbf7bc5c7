#!/usr/bin/env python3
"""Restart benchmark (issue #5): hopxd restarting with N tracked sandboxes
(60% running, 30% paused, 5% stopped, 5% deleted behind its back) against
hopx-sim with 20 ms latency per request, beside the official JS SDK
(@hopx-ai/sdk, Sandbox.connect(id, key, baseURL)) reconnecting the same ids
sequentially and 16 at a time. Prints wall time and requests for each.

usage: restart_bench.py HOPXD HOPXCTL HOPX_SIM [--sizes 1000,10000]
                        [--seq-max 1000]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from hopxtest import Agent, Sim, cleanup, wait_for  # noqa: E402

LATENCY = {"latency_ms": 20}


def attach_all(agent, ids, window=256):
    """Attaches ids over one connection, window requests in flight."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(agent.sock)
        f = s.makefile("rwb")
        sent = got = 0
        while got < len(ids):
            while sent < len(ids) and sent - got < window:
                f.write((json.dumps({"id": sent, "method": "attach",
                                     "params": {"id": ids[sent]}})
                         + "\n").encode())
                sent += 1
            f.flush()
            r = json.loads(f.readline())
            if "error" in r:
                raise RuntimeError(f"attach failed: {r}")
            got += 1


def behind_back(sim, ids):
    n = len(ids)
    paused = ids[: n * 3 // 10]
    stopped = ids[n * 3 // 10: n * 35 // 100]
    deleted = ids[n * 35 // 100: n * 4 // 10]
    for sid in paused:
        sim.behind(sid, "pause")
    return paused, stopped, deleted


def requests_since(sim, seq):
    return sum(1 for e in sim.log(seq) if e["path"].startswith("/v1/"))


def sdk(sim, ids, conc, tmp):
    path = os.path.join(tmp, "ids.json")
    with open(path, "w") as f:
        json.dump(ids, f)
    seq = sim.last_seq()
    out = subprocess.run(["node", os.path.join(HERE, "sdk", "connect.cjs"),
                          sim.key, sim.url, path, str(conc)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ,
                                  NODE_PATH=os.path.join(HERE, "sdk",
                                                         "node_modules")))
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["requests"] = requests_since(sim, seq)
    return res


def hopx_truth(sim):
    """Every sandbox's status as HopX lists it."""
    out, cursor = {}, None
    while True:
        q = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        _, j = sim.req("GET", "/v1/sandboxes" + q)
        out.update((s["id"], s["status"]) for s in j["data"])
        cursor = j.get("next_cursor")
        if not j.get("has_more"):
            return out


def mismatches(recs, truth):
    """Records whose status is not HopX's (gone: HopX no longer has it)."""
    return {s: (r["status"], truth.get(s, "gone")) for s, r in recs.items()
            if r["status"] != truth.get(s, "gone")}


def sdk_ok(r, what, ids, dead):
    """The peer's run counts only if every connect succeeded but those of
    stopped and deleted sandboxes (which connect refuses, as it should)."""
    want = [s for s in ids if s in dead]
    if sorted(r["failed_ids"]) != sorted(want):
        wrong = set(r["failed_ids"]) ^ set(want)
        raise RuntimeError(f"{what}: {r['failed']} SDK connects failed, "
                           f"{len(want)} expected; unlike expected: "
                           f"{sorted(wrong)[:5]}")
    return r


def hopxd_restart(agent, sim):
    ev = agent.last_event()
    agent.kill9()
    return ev


def run_size(args, n, tmp):
    sim = Sim(args.sim, tmp).start()
    agent = Agent(args.hopxd, args.hopxctl, tmp, sim.url,
                  args=["--budget", "1000000", "--max-inflight", "16",
                        "--sync-interval", "86400", "--log-level", "warn"])
    try:
        agent.start()
        ids = sim.bulk(n)
        attach_all(agent, ids)
        # A sandbox the user paused: after the restart, a `token` for it
        # must not wait behind the reconcile's thousands of calls.
        web = ids[-1]
        rc, _, err = agent.ctl("pause", web)
        if rc != 0:
            raise RuntimeError(f"pause before the restart failed: {err}")
        ev = agent.last_event()
        agent.kill9()
        paused, stopped, deleted = behind_back(sim, ids[:-1])
        for sid in stopped:
            sim.behind(sid, "stop")
        for sid in deleted:
            sim.behind(sid, "delete")
        sim.faults(LATENCY)
        seq = sim.last_seq()
        t0 = time.monotonic()
        agent.start(wait=False)
        wait_for(agent.answers, 60, 0.01)
        t1 = time.monotonic()
        rc, out, err = agent.ctl("token", web)
        ttft = (time.monotonic() - t1) * 1000
        if rc != 0 or not sim.token_ok(web, out.strip()):
            raise RuntimeError(f"token during the restart failed: {err}")
        rep = agent.wait_report("start", ev, timeout=600)
        wall = time.monotonic() - t0
        if rep is None:
            raise RuntimeError("the start reconcile did not finish")
        reqs = requests_since(sim, seq)
        recs = agent.records()
        running = sum(1 for r in recs.values() if r["status"] == "running")
        wrong = mismatches(recs, hopx_truth(sim))
        ok = not wrong and len(recs) == n
        agent.term()
        rows = [("hopxd restart (agent start to report)", wall, reqs,
                 (f"{running} running, every record as HopX says" if ok
                  else f"{len(wrong)} records unlike HopX (WRONG)") +
                 f"; run {rep['duration_ms']} ms")]

        # The SDK reconnects the same ids after the same changes; one by
        # one it gets a sample (every k-th id: the same mix of statuses).
        sub = ids[::max(1, n // args.seq_max)][:args.seq_max]
        for sid in paused:
            sim.behind(sid, "pause")
        dead = set(stopped) | set(deleted)
        r = sdk_ok(sdk(sim, sub, 1, tmp), "sequential", sub, dead)
        scale = n / len(sub)
        rows.append((f"SDK connect, sequential" +
                     (f" (est. from {len(sub)})" if scale > 1 else ""),
                     r["ms"] / 1000 * scale, int(r["requests"] * scale),
                     f"{r['ok']} ok, {r['failed']} refused (stopped or "
                     "deleted)"))
        for sid in paused:
            sim.behind(sid, "pause")
        r = sdk_ok(sdk(sim, ids, 16, tmp), "16 at a time", ids, dead)
        rows.append(("SDK connect, 16 at a time", r["ms"] / 1000,
                     r["requests"], f"{r['ok']} ok, {r['failed']} refused "
                     "(stopped or deleted)"))
        # The floor: the list pages, one resume per paused sandbox and the
        # refresh a resume needs (DESIGN: a resume renews the token);
        # running ones hold valid tokens.
        pages = (n + 99) // 100
        floor = pages + 2 * (len(paused) + 1)
        # Its time: list pages one after another, the rest 16 at a time.
        floor_s = (pages + 2 * (len(paused) + 1) / 16) * 0.020
        rows.append(("floor (list pages + resumes + refreshes)", floor_s,
                     floor, "pages in a row, the rest 16 at a time"))
        print(f"\n{n} sandboxes: {n - len(paused) - len(stopped) - len(deleted)}"
              f" running, {len(paused)} paused, {len(stopped)} stopped, "
              f"{len(deleted)} deleted; 20 ms per request")
        print(f"{'':44} {'wall s':>8} {'requests':>9} {'wall x':>7}")
        for name, w, q, note in rows:
            print(f"{name:44} {w:8.2f} {q:9d} {w / rows[0][1]:7.1f}  "
                  f"{note}")
        if not ok:
            raise RuntimeError("restart: the records do not match HopX: "
                               f"{list(wrong.items())[:5]}")
        print(f"a user's `token` for a sandbox paused before the restart: "
              f"{ttft:.0f} ms (4 round trips: 80 ms)")
        return {"wall": wall, "reqs": reqs, "seq_wall": rows[1][1],
                "seq_n": len(sub), "x16_wall": rows[2][1], "floor": floor,
                "floor_s": floor_s, "ttft_ms": ttft}
    finally:
        cleanup(tmp, agent, sim)


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("hopxd")
    ap.add_argument("hopxctl")
    ap.add_argument("sim")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--seq-max", type=int, default=1000)
    args = ap.parse_args()
    import tempfile
    for n in (int(x) for x in args.sizes.split(",")):
        run_size(args, n, tempfile.mkdtemp(prefix="hopxd-bench-"))


if __name__ == "__main__":
    main()
