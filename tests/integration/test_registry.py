#!/usr/bin/env python3
"""Export and import: `hopxctl export` writes every record (names,
labels, policies; tokens only with --with-tokens, and then only to a
0600 file or a pipe); `hopxctl import` into a fresh agent on another
database attaches each one (HopX asked, nothing created, paused ones
left paused) and gives the same records; a second import changes
nothing; a name taken there is reported and the sandbox attached
without it; a sandbox gone at HopX fails alone; bad files are refused
saying why."""
import json
import os
import stat
import subprocess

from hopxtest import Agent, Sim, Tap, api_calls, cleanup, run, setup

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
a = Agent(hopxd, hopxctl, tmp, sim.url).start()


def ctl(agent, *args):
    rc, out, err = agent.ctl(*args)
    t.ok(rc == 0, f"hopxctl {' '.join(args)}", err)
    return out


def records(agent):
    rc, out = agent.ctl_json("ls")
    keep = ("id", "name", "labels", "policy", "status")
    return {r["id"]: {k: r[k] for k in keep} for r in out} if rc == 0 \
        else out


def new_agent(name):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    return Agent(hopxd, hopxctl, d, sim.url).start()


ctl(a, "create", "--template", "base", "--name", "web", "--label",
    "team=ml", "--label", "env=dev", "--idle-pause", "15m", "--on-expiry",
    "pause")
ctl(a, "create", "--template", "base", "--name", "db")
ctl(a, "policy", "db", "--auto-resume", "off", "--pause-on-shutdown", "on")
ctl(a, "keepalive", "db", "600")
ctl(a, "pause", "db")
other = sim.bulk(1)[0]
ctl(a, "attach", other)
doomed = sim.bulk(1)[0]
ctl(a, "attach", doomed, "--name", "doomed")
want = records(a)

# -- export ---------------------------------------------------------------
plain = os.path.join(tmp, "export.json")
with open(plain, "w") as f:
    rc = subprocess.run([hopxctl, "--socket", a.sock, "export"],
                        stdout=f, stderr=subprocess.PIPE, text=True)
with open(plain) as f:
    doc = json.load(f)
t.ok(rc.returncode == 0 and doc["format"] == "hopxd-export" and
     len(doc["sandboxes"]) == 4 and
     not any("token" in s for s in doc["sandboxes"]),
     "export: every record, no token", doc)

leaky = os.path.join(tmp, "leaky.json")
with open(leaky, "w") as f:
    os.chmod(leaky, 0o644)
    p = subprocess.run([hopxctl, "--socket", a.sock, "export",
                        "--with-tokens"], stdout=f, stderr=subprocess.PIPE,
                       text=True)
t.ok(p.returncode == 2 and "0600" in p.stderr and
     os.path.getsize(leaky) == 0,
     "tokens are not written to a file others can read", p.stderr)
secret = os.path.join(tmp, "secret.json")
p = run([hopxctl, "--socket", a.sock, "export", "--with-tokens", "-o",
         secret])
with open(secret) as f:
    sdoc = json.load(f)
tok = {s["id"]: s.get("token") for s in sdoc["sandboxes"]}
t.ok(p.returncode == 0 and
     stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and
     all(tok.values()) and sim.token_ok(other, tok[other]),
     "--with-tokens -o FILE: a 0600 file with tokens the sandboxes take",
     (p.stderr, tok))
p = subprocess.run(f"'{hopxctl}' --socket '{a.sock}' export --with-tokens "
                   "| cat", shell=True, capture_output=True, text=True)
t.ok(p.returncode == 0 and json.loads(p.stdout)["with_tokens"],
     "--with-tokens into a pipe", p.stderr)

# -- import into a fresh agent on another database -------------------------
sim.req("DELETE", f"/v1/sandboxes/{doomed}")
b = new_agent("b")
seq = sim.last_seq()
p = run([hopxctl, "--socket", b.sock, "import", plain])
calls = api_calls(sim.log(seq))
got = records(b)
want_b = {k: v for k, v in want.items() if k != doomed}
t.ok(p.returncode == 1 and "3 attached" in p.stdout and
     f"failed    {doomed}" in p.stdout,
     "import: three attached, the one gone at HopX fails alone (exit 1)",
     p.stdout + p.stderr)
t.ok(got == want_b,
     "the imported records are the same: ids, names, labels, policies, "
     "status (paused stays paused)",
     {"want": want_b, "got": got})
t.ok(not [c for c in calls if c[1] in ("POST /v1/sandboxes",
                                       "POST /v1/sandboxes/{id}/resume")],
     "nothing created or resumed at HopX by the import", calls)
seq = sim.last_seq()
p = run([hopxctl, "--socket", b.sock, "import", plain])
t.ok("3 tracked already" in p.stdout and records(b) == got and
     not [c for c in api_calls(sim.log(seq)) if c[0] != "GET"],
     "a second import changes nothing", p.stdout)

# -- a name taken there ----------------------------------------------------
c = new_agent("c")
ctl(c, "create", "--template", "base", "--name", "web")
mine = c.ctl_json("show", "web")[1]["id"]
p = run([hopxctl, "--socket", c.sock, "import", plain])
web = [k for k, v in want.items() if v["name"] == "web"][0]
rc, shown = c.ctl_json("show", web)
t.ok("renamed" in p.stdout and "'web'" in p.stdout and rc == 0 and
     shown["name"] is None and shown["labels"] == want[web]["labels"] and
     c.ctl_json("show", "web")[1]["id"] == mine,
     "a name taken here: reported, the sandbox attached without it, the "
     "local one untouched", p.stdout)

# -- bad files ---------------------------------------------------------------
bad = os.path.join(tmp, "bad.json")
with open(bad, "w") as f:
    f.write("{not json")
p = run([hopxctl, "--socket", b.sock, "import", bad])
t.ok(p.returncode == 2 and "not JSON" in p.stderr,
     "a file that is not JSON is refused", p.stderr)
with open(bad, "w") as f:
    json.dump({**doc, "version": 99}, f)
p = run([hopxctl, "--socket", b.sock, "import", bad])
t.ok(p.returncode == 2 and "newer hopxd" in p.stderr,
     "an export of a newer format says to upgrade", p.stderr)
p = run([hopxctl, "--socket", b.sock, "import",
         os.path.join(tmp, "missing.json")])
t.ok(p.returncode == 1 and "cannot read" in p.stderr,
     "a missing file is said", p.stderr)
cleanup(tmp, t=t)
t.done()
