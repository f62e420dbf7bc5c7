"""What the proxy's tests share: requests to proxy addresses, the SDK
program run against an endpoint, and a burst of requests after the
sandbox refused the agent's tokens."""
import http.client
import json
import os
import subprocess
import threading
import urllib.parse

from hopxtest import api_calls, note_output

DATAPLANE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "sdk_dataplane.cjs")
REFRESH = "POST /v1/sandboxes/{id}/token/refresh"


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def call(url, method, path, body=b"", headers=None):
    """(status, headers, body) of one request to url (a proxy address)."""
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    c.close()
    return out


def endpoint_of(agent, tmp):
    """The agent's SDK endpoint and its local key."""
    with open(os.path.join(tmp, "config", "hopxd", "local-key")) as f:
        return agent.rpc("status")["result"]["endpoint"], f.read().strip()


def token(agent, sid):
    return agent.rpc("token", {"ref": sid})["result"]["token"]


def endpoint_get(base, key, sid):
    """(status, JSON) of GET /v1/sandboxes/{sid} at the SDK endpoint."""
    c = http.client.HTTPConnection(urllib.parse.urlparse(base).netloc,
                                   timeout=30)
    c.request("GET", f"/v1/sandboxes/{sid}", headers={"X-API-Key": key})
    r = c.getresponse()
    return r.status, json.loads(r.read())


def dataplane_pair(through, direct, seconds, direct_env=None):
    """Runs sdk_dataplane.cjs against through (base, key) and direct
    (base, key) at once, every 3 s for seconds; returns (rounds of
    through, its last line, rounds of direct, through's exit code)."""
    procs = [subprocess.Popen(["node", DATAPLANE, url, key, str(seconds),
                               "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **(env or {})})
             for (url, key), env in ((through, None), (direct, direct_env))]
    outs = []
    for p in procs:
        o, e = p.communicate(timeout=seconds + 120)
        note_output("node", o, e)
        outs.append([json.loads(ln) for ln in o.splitlines()
                     if ln.startswith("{")])
    last = outs[0][-1] if outs[0] else {}
    return outs[0][:-1], last, outs[1][:-1], procs[0].returncode


def first_failure(rounds):
    """The first round in which a call failed, or None."""
    return next((r for r in rounds
                 if not all(c["ok"] for c in r["calls"].values())), None)


def refused_burst(sim, url, sid, tok, n=10):
    """Revokes the sandbox's tokens and sends n commands at once through
    url with tok: (answers, how many the sandbox refused, refreshes)."""
    sim.req("POST", f"/_sim/sandboxes/{sid}/expire-tokens")
    seq = sim.last_seq()
    answers = [None] * n

    def one(i):
        body = json.dumps({"command": f"echo again {i}"}).encode()
        answers[i] = call(url, "POST", "/commands/run", body,
                          {**bearer(tok), "Content-Type": "application/json"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    log = sim.log(seq)
    refused = [e for e in log if e["route"] == "VM POST /commands/run" and
               e["status"] == 401]
    refreshes = [c for c in api_calls(log) if c[1] == REFRESH]
    ok = all(r and r[0] == 200 and
             json.loads(r[2]).get("stdout") == f"again {i}\n"
             for i, r in enumerate(answers))
    return ok, [r and r[0] for r in answers], len(refused), refreshes
