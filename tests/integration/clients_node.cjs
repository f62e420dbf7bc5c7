// The Node client against a running agent: prints one JSON line per
// check for test_clients.py to judge.  node clients_node.cjs SOCKET REF
const c = require(process.env.HOPXD_NODE_CLIENT);

function out(step, v) { console.log(JSON.stringify({ step, ...v })); }

async function expectError(step, fn) {
  try {
    await fn();
    out(step, { ok: false });
  } catch (e) {
    out(step, { ok: true, error: e.name, code: e.code,
                hopxd: e instanceof c.HopxdError });
  }
}

async function main() {
  const [sock, ref] = process.argv.slice(2);
  const h = await c.Client.connect(sock);
  const tok = await h.token(ref, 600);
  out('token', { ok: true, value: tok });
  out('show', { ok: true, value: await h.show(ref) });
  out('ls', { ok: true, value: (await h.ls()).map((s) => s.id) });
  out('ls-status', { ok: true,
                     value: (await h.ls({ status: 'paused' })).length });
  await expectError('notfound', () => h.show('no-such-sandbox'));
  await expectError('invalid', () => h.token(ref, -5));
  await expectError('noagent', () => c.Client.connect(sock + '.none'));
  const sub = await c.Client.connect(sock);
  const it = sub.subscribe();
  const first = it.next();
  // The subscription is in place once the agent counts it.
  for (let i = 0; i < 200 && (await h.status()).subscribers < 1; i++)
    await new Promise((r) => setTimeout(r, 10));
  await h.call('label', { ref, set: { from: 'node' } });
  const ev = await first;
  out('subscribe', { ok: true, value: ev.value });
  await it.return();
  h.close();
}
main().catch((e) => { console.error(e); process.exit(1); });
