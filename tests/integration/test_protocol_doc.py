#!/usr/bin/env python3
"""The client snippets of doc/protocol.md run as printed, against a real
agent with a sandbox named "web": Python (standard library), Node.js and
the shell one (socat) when those are installed."""
import os
import re
import shutil
import subprocess

from hopxtest import Agent, Sim, Tap, cleanup, setup

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "doc",
                        "protocol.md")).read()
blocks = dict((lang, code) for lang, code in
              re.findall(r"```(python|js|sh)\n(.*?)```", doc, re.S)
              if lang != "sh" or "socat" in code)
t.ok(set(blocks) == {"python", "js", "sh"},
     "protocol.md has Python, Node and shell clients", list(blocks))

sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url)
agent.start()
agent.ctl("create", "--template", "code-interpreter", "--name", "web")
sid = agent.ctl("ls", "-q")[1].strip()
env = dict(os.environ, HOPXD_SOCKET=agent.sock)


def run(argv, code, timeout=20):
    try:
        return subprocess.run(argv, input=code, env=env, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # subscribers wait for events
        return subprocess.CompletedProcess(argv, -1, e.stdout or "",
                                           e.stderr or "")


r = run(["python3", "-"], blocks["python"])
t.ok(r.returncode == 0 and f"{sid} web" in r.stdout,
     "the Python client lists the running sandbox", r.stdout + r.stderr)

if shutil.which("node"):
    r = run(["node", "-"], blocks["js"], timeout=5)
    out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode()
    labels = agent.ctl_json("show", "web")[1].get("labels", {})
    t.ok("hopxd" in out and labels.get("team") == "core",
         "the Node client says hello and labels web team=core", out)
else:
    t.skip("the Node client", "node not installed")

if shutil.which("socat") and shutil.which("curl"):
    shell = blocks["sh"].split("# follow events")[0]
    r = run(["sh", "-e"], shell)
    t.ok(r.returncode == 0 and '"healthy"' in r.stdout,
         "the shell client gets a token the sandbox accepts",
         r.stdout + r.stderr)
else:
    t.skip("the shell client", "socat or curl not installed")

cleanup(tmp, sim, agent, t=t)
t.done()
