#!/usr/bin/env python3
"""Metrics: `hopxctl metrics` and the --metrics-listen scrape both pass
`promtool check metrics` (Debian's prometheus package), and the counters
move as the agent is driven: tokens served (socket and endpoint),
background renewals, HopX requests by route and status class with the
latency histogram agreeing, sandboxes by status, leases, subscribers,
the endpoint's requests by how they were answered."""
import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

from hopxtest import Agent, Sim, Tap, cleanup, run, setup, wait_for

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
# Tokens of 10 s: the agent renews each within the test.
sim = Sim(simbin, tmp, args=["--token-lifetime", "10"]).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url,
              args=["--metrics-listen", "127.0.0.1:0",
                    "--api-listen", "127.0.0.1:0"]).start()
status = agent.rpc("status")["result"]
scrape_url = f"http://127.0.0.1:{status.get('metrics_port')}/metrics"
base = status["endpoint"]
with open(f"{tmp}/config/hopxd/local-key") as f:
    key = f.read().strip()
promtool = shutil.which("promtool")
t.ok(promtool, "promtool is installed (scripts/setup installs prometheus)")

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    out = {}
    for ln in text.splitlines():
        if ln.startswith("#") or not ln:
            continue
        m = LINE.match(ln)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def promcheck(text, what):
    p = run([promtool or "promtool", "check", "metrics"], input=text)
    t.ok(p.returncode == 0 and not p.stdout.strip() and
         not p.stderr.strip(),
         f"promtool check metrics accepts {what}", (p.stdout, p.stderr))


def ctl_metrics():
    rc, out, err = agent.ctl("metrics")
    return out if rc == 0 else ""


def scrape():
    with urllib.request.urlopen(scrape_url, timeout=10) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def http(path, k=key):
    r = urllib.request.Request(base + path, headers={"X-API-Key": k})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


before = parse(ctl_metrics())
ctype, text = scrape()
promcheck(ctl_metrics(), "hopxctl metrics")
promcheck(text, "the scrape endpoint")
t.ok(ctype.startswith("text/plain; version=0.0.4"),
     "the scrape is Prometheus's text format 0.0.4", ctype)
try:
    urllib.request.urlopen(scrape_url.replace("/metrics", "/other"))
    other = 200
except urllib.error.HTTPError as e:
    other = e.code
t.ok(other == 404, "any other path is a 404", other)

# -- drive the agent ------------------------------------------------------
rc, _, err = agent.ctl("create", "--template", "base", "--name", "m1")
t.ok(rc == 0, "create m1", err)
sid = agent.ctl_json("show", "m1")[1]["id"]
for _ in range(3):
    agent.ctl("token", "m1")
http(f"/v1/sandboxes/{sid}")
sim.admin("POST", "/faults/script",
          {"route": "GET /v1/templates", "count": 1, "action": "status",
           "status": 503})
st_tpl = http("/v1/templates")
st_bad = http("/v1/sandboxes", k="wrong")
holder = subprocess.Popen([hopxctl, "--socket", agent.sock, "run", "m1",
                           "--", "sleep", "8"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
sub = socket.socket(socket.AF_UNIX)
sub.connect(agent.sock)
sub.sendall((json.dumps({"id": 1, "method": "subscribe",
                         "params": {}}) + "\n").encode())
wait_for(lambda: parse(ctl_metrics()).get("hopxd_leases") == 1, 10)
during = parse(ctl_metrics())
renewed = wait_for(lambda: parse(scrape()[1]).get(
    "hopxd_token_renewals_total", 0) >= 1, 30)
holder_rc = holder.wait(30)
holder.stderr.read()
sub.close()
ctype, text = scrape()
after = parse(text)
promcheck(text, "the scrape after the agent was driven")


def delta(name):
    return after.get(name, 0) - before.get(name, 0)


t.ok(delta('hopxd_tokens_served_total{via="socket"}') >= 4,
     "tokens served over the socket moved (3 token, 1 run)",
     delta('hopxd_tokens_served_total{via="socket"}'))
t.ok(renewed and delta("hopxd_token_renewals_total") >= 1 and
     after.get("hopxd_token_renewal_failures_total") == 0,
     "a background renewal is counted, no failure",
     (after.get("hopxd_token_renewals_total"),
      after.get("hopxd_token_renewal_failures_total")))
t.ok(delta('hopxd_hopx_requests_total{route="create",class="2xx"}') == 1,
     "one create at HopX, 2xx", after)
t.ok(st_tpl == 200 and
     delta('hopxd_hopx_requests_total{route="forward",class="5xx"}') == 1
     and delta('hopxd_hopx_requests_total{route="forward",class="2xx"}')
     == 1,
     "the forwarded request's 503 and its retry's 200 are counted by "
     "class", st_tpl)
total = sum(v for k, v in after.items()
            if k.startswith("hopxd_hopx_requests_total"))
buckets = [v for k, v in after.items()
           if k.startswith("hopxd_hopx_request_duration_seconds_bucket")]
t.ok(after.get("hopxd_hopx_request_duration_seconds_count") == total and
     buckets == sorted(buckets) and buckets[-1] == total,
     "the latency histogram counts every request, buckets cumulative",
     (total, buckets))
t.ok(after.get('hopxd_sandboxes{status="running"}') == 1,
     "sandboxes by status: one running", after)
t.ok(during.get("hopxd_leases") == 1 and
     during.get("hopxd_subscribers") == 1 and
     after.get("hopxd_leases") == 0 and holder_rc == 0,
     "a lease (hopxctl run) and a subscriber are counted while held",
     (during.get("hopxd_leases"), during.get("hopxd_subscribers")))
t.ok(delta('hopxd_endpoint_requests_total{how="local"}') >= 1 and
     delta('hopxd_endpoint_requests_total{how="forwarded"}') >= 1 and
     delta('hopxd_endpoint_requests_total{how="refused"}') >= 1 and
     st_bad == 401,
     "the endpoint's requests: answered locally, forwarded, refused",
     {k: v for k, v in after.items() if "endpoint" in k})
t.ok(after.get("hopxd_hopx_budget_per_minute") == 100 and
     0 < after.get("hopxd_hopx_budget_used", 0) <= 100,
     "the budget and what the last minute used",
     (after.get("hopxd_hopx_budget_per_minute"),
      after.get("hopxd_hopx_budget_used")))
cleanup(tmp, t=t)
t.done()
