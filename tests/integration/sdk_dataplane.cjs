// A long-lived user of one sandbox's own agent API through the official
// JS SDK: every INTERVAL seconds for SECONDS seconds, getHealth, a
// command, a file write and read, and a WebSocket code stream. Prints one
// JSON line per round ({round, t, calls: {name: ok | error}}) and a last
// line {done, ok, failed}.
//   node sdk_dataplane.cjs BASE KEY SECONDS INTERVAL [ID]
const { Sandbox } = require('@hopx-ai/sdk');

const [base, key, secs, every, givenId] = process.argv.slice(2);

function why(e) {
  return { error: e.constructor.name,
           status: e.statusCode ?? e.status ?? null };
}

async function call(fn) {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, ...why(e) };
  }
}

async function round(sb, n) {
  const path = `/workspace/round-${n}.txt`;
  const text = `round ${n}\n`;
  const calls = {};
  calls.health = await call(async () => (await sb.getHealth()).status);
  calls.command = await call(async () => {
    const r = await sb.commands.run(`echo round ${n}`);
    if (r.stdout !== `round ${n}\n`) throw new Error(`stdout ${r.stdout}`);
    return r.exit_code;
  });
  calls.write = await call(() => sb.files.write(path, text));
  calls.read = await call(async () => {
    const got = await sb.files.read(path);
    if (got !== text) throw new Error(`read back ${JSON.stringify(got)}`);
    return got.length;
  });
  calls.stream = await call(async () => {
    const lines = [];
    for await (const m of sb.runCodeStream(`print("ws ${n}")`)) {
      if (m.type === 'stdout') lines.push(m.data);
    }
    if (lines.join() !== `ws ${n}`) throw new Error(`got ${lines}`);
    return lines.length;
  });
  return calls;
}

async function main() {
  const sb = givenId
    ? await Sandbox.connect(givenId, key, base)
    : await Sandbox.create({ template: 'code-interpreter', apiKey: key,
                             baseURL: base });
  const t0 = Date.now();
  let ok = 0, failed = 0;
  for (let n = 0; Date.now() - t0 < secs * 1000; n++) {
    const start = Date.now();
    const calls = await round(sb, n);
    for (const c of Object.values(calls)) c.ok ? ok++ : failed++;
    for (const c of Object.values(calls)) delete c.value;
    console.log(JSON.stringify({ round: n, t: (start - t0) / 1000,
                                 id: sb.sandboxId, calls }));
    const wait = every * 1000 - (Date.now() - start);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  console.log(JSON.stringify({ done: true, ok, failed }));
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(1);
});
