#!/usr/bin/env python3
"""Storage faults, while tokens of 3 s are renewed in the background: the
database on a small tmpfs that fills up (root; else the VFS shim says
"full"), the database made read-only while the agent runs (the VFS shim
of hopxd-faultfs: a file system with files open for writing cannot be
remounted read-only), and a database replaced by garbage before start.
Each time: a clear error on the socket and in the log, no crash, nothing
acknowledged that was not stored, recovery once the fault clears."""
import os
import sqlite3
import subprocess
import time

from hopxtest import Agent, Sim, Tap, cleanup, setup, wait_for

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
mnt = os.path.join(tmp, "state")
os.makedirs(mnt)
control = os.path.join(tmp, "faultfs")
os.environ["HOPXD_FAULTFS"] = control
faultfs = os.environ.get("HOPXD_FAULTFS_BIN", os.path.join(
    os.path.dirname(os.path.dirname(hopxd)), "tests", "hopxd-faultfs"))


def set_fault(mode):
    with open(control, "w") as f:
        f.write(mode)


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True).returncode


def fill(path):
    """Writes until the file system is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        with open(path, "ab") as f:  # the last few bytes too
            while True:
                f.write(b"\0")
                f.flush()
    except OSError:
        pass


def label_burst(agent, sids, tag, n):
    """Sets n labels; returns (acknowledged, refused answers)."""
    acked, refused = [], []
    for i in range(n):
        sid = sids[i % len(sids)]
        r = agent.rpc("label", {"ref": sid, "set": {f"{tag}{i}": "x" * 200}})
        if "result" in r:
            acked.append((sid, f"{tag}{i}"))
        else:
            refused.append(r["error"])
    return acked, refused


def stored_labels(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return set(c.execute("SELECT sandbox_id, key FROM labels"))
    finally:
        c.close()


def log_has(text):
    with open(os.path.join(tmp, "hopxd.log"), errors="replace") as f:
        return text in f.read()


def disk_full(agent, sids, real):
    if real:
        fill(os.path.join(mnt, "filler"))
    else:
        set_fault("full")
    acked, refused = label_burst(agent, sids, "full", 200)
    t.ok(refused and all(e["code"] == "disk_full" and "nothing was changed"
                         in e["message"] for e in refused),
         f"disk full: {len(refused)} writes refused as 'disk_full', "
         f"{len(acked)} fit", refused[:2])
    t.ok(agent.answers() and "result" in agent.rpc("list"),
         "disk full: the agent still answers reads")
    t.ok(log_has("could not be written (disk full)"),
         "disk full: the log says so")
    if real:
        os.unlink(os.path.join(mnt, "filler"))
    set_fault("")
    acked2, refused2 = label_burst(agent, sids, "after", 20)
    t.ok(len(acked2) == 20, "disk full: writes work again once space is "
         "freed", refused2[:2])
    return acked + acked2, refused


def read_only(agent, sids):
    set_fault("readonly")
    acked, refused = label_burst(agent, sids, "ro", 20)
    time.sleep(4)  # renewals meet the fault too
    t.ok(not acked and refused and
         all(e["code"] in ("read_only", "io") and "nothing was changed" in
             e["message"] for e in refused),
         "read-only: every write refused with a clear error",
         (acked[:2], refused[:2]))
    t.ok(agent.answers() and "result" in agent.rpc("show", {"ref": sids[0]}),
         "read-only: reads still answered")
    t.ok(log_has("could not be written (input/output error)") and
         log_has("cannot store what HopX answered"),
         "read-only: the log says why, for requests and renewals")
    set_fault("")
    acked2, refused2 = label_burst(agent, sids, "rw", 20)
    t.ok(len(acked2) == 20, "read-only: writes work again once it is "
         "writable", refused2[:2])
    return acked + acked2


def garbage(agent):
    agent.term()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(agent.db + suffix):
            os.unlink(agent.db + suffix)
    junk = os.urandom(64 * 1024)
    with open(agent.db, "wb") as f:
        f.write(junk)
    agent.start(wait=False)
    rc = agent.wait_exit(30)
    with open(os.path.join(tmp, "hopxd.log"), errors="replace") as f:
        tail = f.read()[-2000:]
    t.ok(rc != 0 and ("not a database" in tail or "corrupt" in tail),
         f"garbage database: hopxd exits {rc} and says why",
         tail[-600:])
    with open(agent.db, "rb") as f:
        t.ok(f.read() == junk, "garbage database: the file is left as it "
             "was, for the user to inspect")


sim = Sim(simbin, tmp, ["--token-lifetime", "3"]).start()
agent = Agent(faultfs, hopxctl, tmp, sim.url, args=["--budget", "10000"])
try:
    real = os.geteuid() == 0 and sh("mount", "-t", "tmpfs", "-o",
                                    "size=3m,mode=0700", "tmpfs", mnt) == 0
    agent.start()
    sids = sim.bulk(3)
    for s in sids:
        agent.rpc("attach", {"id": s})
    acked, refused = disk_full(agent, sids, real)
    acked += read_only(agent, sids)
    def tokens_ok():
        got = [agent.rpc("token", {"ref": s}).get("result") for s in sids]
        return all(g and sim.token_ok(g["id"], g["token"]) for g in got)
    t.ok(wait_for(tokens_ok, 10), "renewals recovered: every token "
         "accepted")
    agent.kill9()
    got = stored_labels(agent.db)
    missing = [a for a in acked if a not in got]
    t.ok(not missing, f"all {len(acked)} acknowledged writes stored after "
         "a kill", missing[:5])
    agent.start()
    t.ok(wait_for(lambda: agent.rpc("status")["result"]["sandboxes"] == 3,
                  10), "the agent restarts on the same database")
    garbage(agent)
finally:
    sh("umount", "-l", mnt)
    cleanup(tmp, agent, sim, t=t)
t.done()
