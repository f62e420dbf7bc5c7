#!/usr/bin/env python3
"""IPC abuse: 5,000 connections at once, of which some send half a frame
and stall, some subscribe and never read while events flood in, some ask
for a large answer and hang up before reading it, and one floods
subscribe requests. Meanwhile a well-behaved client keeps being served
quickly, the agent's memory stays bounded, and once the abusers leave
its connections and memory come back down (the heap is trimmed once
most connections are gone)."""
import os
import resource
import signal
import socket
import threading
import time

from hopxtest import (Agent, Sim, Tap, cleanup, rss_unmeasurable, setup,
                      wait_for)

CONNS = int(os.environ.get("HOPXD_ABUSE_CONNS", "5000"))
QUEUE_MAX = 256 << 10  # --max-queue: a subscriber is dropped above it

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--max-connections", str(CONNS + 1000), "--max-queue",
                    str(QUEUE_MAX), "--log-level", "info"])


def rss_kib():
    with open(f"/proc/{agent.proc.pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f
                    if ln.startswith("VmRSS"))


def conn_count():
    return agent.rpc("status")["result"]["connections"]


def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(agent.sock)
    return s


def open_abusers(n):
    """n connections in four kinds; returns them and the counts."""
    socks, kinds = [], {"half": 0, "subscriber": 0, "hangup": 0, "idle": 0}
    for i in range(n):
        s = connect()
        kind = ("half", "subscriber", "hangup", "idle")[i % 4]
        if kind == "half":
            s.sendall(b'{"id":1,"method":"sta')
        elif kind == "subscriber":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b'{"id":1,"method":"subscribe"}\n')
        elif kind == "hangup":
            s.sendall(b'{"id":1,"method":"list","params":{"limit":10000}}'
                      b'\n{"id":2,"method":"events","params":'
                      b'{"limit":10000}}\n')
            s.close()
            kinds[kind] += 1
            continue
        kinds[kind] += 1
        socks.append(s)
    return socks, kinds


def flood_events(ids, stop):
    n = 0
    while not stop.is_set():
        n += 1
        agent.rpc("label", {"ref": ids[n % len(ids)],
                            "set": {"flood": "x" * 200 + str(n)}})


def burst(n):
    """n non-blocking connects at once, as a fleet of clients starting
    together makes them: how many the listen backlog refused (EAGAIN)."""
    socks, refused = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(agent.sock)
            socks.append(s)
        except BlockingIOError:
            refused += 1
            s.close()
    for s in socks:
        s.close()
    return refused


def subscribe_flood(count):
    """One connection sends count subscribe requests without reading its
    answers. Returns how the agent bounded it: "backpressure" (it stopped
    reading, so the sender blocked) or "closed"; "unbounded" when it read
    them all while the answers piled up unread."""
    s = connect()
    s.settimeout(10)
    try:
        s.sendall(b'{"id":1,"method":"subscribe"}\n' * count)
        return "unbounded"
    except socket.timeout:
        return "backpressure"
    except OSError:
        return "closed"
    finally:
        s.close()


try:
    agent.start()
    ids = sim.bulk(50)
    for s in ids:
        agent.rpc("attach", {"id": s, "labels": {"pad": "y" * 200}})
    # Stopped, the agent accepts nothing: the listen backlog alone must
    # hold the burst (it held 511).
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        refused = burst(900)
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    t.ok(refused == 0, f"900 connects at once to a busy agent: {refused} "
         "refused by the listen backlog")
    wait_for(lambda: conn_count() <= 1, 30)
    rss0 = rss_kib()
    t0 = time.monotonic()
    socks, kinds = open_abusers(CONNS)
    t.ok(wait_for(lambda: conn_count() >= len(socks), 30),
         f"{CONNS} connections opened in {time.monotonic() - t0:.1f} s "
         f"({kinds})", conn_count())
    stop = threading.Event()
    flooder = threading.Thread(target=flood_events, args=(ids, stop))
    flooder.start()
    flood = subscribe_flood(20000)
    lat, peak = [], rss0
    end = time.monotonic() + 15
    while time.monotonic() < end:
        a = time.monotonic()
        r = agent.rpc("show", {"ref": ids[0]}, timeout=10)
        lat.append(time.monotonic() - a)
        assert "result" in r, r
        peak = max(peak, rss_kib())
        time.sleep(0.05)
    stop.set()
    flooder.join(30)
    lat.sort()
    p99 = lat[int(len(lat) * 0.99)]
    t.ok(p99 < 0.5, f"a well-behaved client kept being served: "
         f"{len(lat)} requests, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
         f"p99 {p99 * 1000:.1f} ms")
    t.ok(flood in ("backpressure", "closed"),
         f"20,000 subscribes on one unread connection: bounded ({flood})")
    st = agent.rpc("status")["result"]
    t.ok(st["subscribers"] == 0,
         f"subscribers that never read were dropped "
         f"({st['subscribers']} of {kinds['subscriber']} left after "
         f"{st['last_event']} events)")
    # Subscribers share 64 MiB of queue (each at most QUEUE_MAX), plus
    # the connections' read buffers and allocator overhead.
    why = rss_unmeasurable()
    t.ok(why or peak - rss0 < 160 * 1024,
         f"memory bounded: RSS {rss0} -> peak {peak} KiB" +
         (f" (not judged {why})" if why else ""))
    for s in socks:
        s.close()
    t.ok(wait_for(lambda: conn_count() <= 2, 30),
         "once the abusers left, their connections were closed",
         conn_count())
    # The abusers' buffers and queues go back to the system: RSS falls
    # to within a quarter of the climb above where it started.
    limit = rss0 + (peak - rss0) / 4
    wait_for(lambda: rss_kib() <= limit, 10)
    after = rss_kib()
    t.ok(agent.answers() and (why or after <= limit),
         f"the agent lives and its memory came back down: RSS {rss0} -> "
         f"peak {peak} -> {after} KiB" + (f" (not judged {why})" if why
                                          else ""))
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
