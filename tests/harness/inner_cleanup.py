#!/usr/bin/env python3
"""The shape of every integration suite, for the harness self-test: a
simulator and an agent started, one request, and the harness's cleanup.
It passes only if the agent ends the way cleanup() expects."""
from hopxtest import Agent, Sim, Tap, cleanup, setup

hopxd, hopxctl, simbin, tmp = setup()
t = Tap()
sim = Sim(simbin, tmp).start()
agent = Agent(hopxd, hopxctl, tmp, sim.url)
try:
    agent.start()
    t.ok("result" in agent.rpc("hello"), "the agent answers")
finally:
    cleanup(tmp, agent, sim, t=t)
t.done()
