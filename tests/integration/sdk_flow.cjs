// Drives the official JS SDK through every call a user makes, against
// the base URL given (hopx-sim directly, or hopxd's HopX-compatible
// endpoint), and prints one JSON line per step: what the SDK returned,
// reduced to what must not differ between the two (ids and times do).
//   node sdk_flow.cjs flow BASE KEY
//   node sdk_flow.cjs connect BASE KEY ID    (one connect + getHealth)
//   node sdk_flow.cjs badkey BASE
const { Sandbox } = require('@hopx-ai/sdk');

function out(step, v) {
  console.log(JSON.stringify({ step, ...v }));
}

function shape(info) {
  return {
    status: info.status,
    templateName: info.templateName,
    templateId: info.templateId,
    region: info.region,
    hasHost: typeof info.publicHost === 'string' && info.publicHost.length > 0,
    resources: info.resources,
    internetAccess: info.internetAccess,
    timeoutSeconds: info.timeoutSeconds,
    hasExpiry: typeof info.expiresAt === 'string',
  };
}

async function step(name, fn) {
  try {
    out(name, { ok: true, value: await fn() });
  } catch (e) {
    out(name, { ok: false, error: e.constructor.name,
                status: e.statusCode ?? e.status ?? null,
                code: e.code ?? null });
  }
}

async function flow(baseURL, apiKey) {
  const opts = { baseURL, apiKey };
  let sb;
  await step('create', async () => {
    sb = await Sandbox.create({ ...opts, template: 'code-interpreter',
                                timeoutSeconds: 600 });
    return { hasId: !!sb.sandboxId };
  });
  const id = sb.sandboxId;
  await step('getInfo', async () => shape(await sb.getInfo()));
  await step('getHealth', async () => (await sb.getHealth()).status ?? 'ok');
  await step('list', async () => {
    const all = await Sandbox.list(opts);
    return { found: all.some((s) => s.sandboxId === id) };
  });
  await step('iter', async () => {
    let found = false;
    for await (const s of Sandbox.iter(opts)) found ||= s.sandboxId === id;
    return { found };
  });
  await step('pause', async () => {
    await sb.pause();
    return (await sb.getInfo()).status;
  });
  await step('connect-paused', async () => {
    const c = await Sandbox.connect(id, apiKey, baseURL);
    return { status: (await c.getInfo()).status,
             health: (await c.getHealth()).status ?? 'ok' };
  });
  await step('connect-running', async () => {
    const c = await Sandbox.connect(id, apiKey, baseURL);
    return { status: (await c.getInfo()).status };
  });
  await step('setTimeout', async () => {
    await sb.setTimeout(900);
    return (await sb.getInfo()).timeoutSeconds;
  });
  await step('refreshToken', async () => {
    await sb.refreshToken();
    return { token: !!(await sb.getToken()),
             health: (await sb.getHealth()).status ?? 'ok' };
  });
  await step('pause-paused', async () => {
    await sb.pause();
    await sb.pause();
    return 'twice';
  });
  await step('resume', async () => {
    await sb.resume();
    return (await sb.getInfo()).status;
  });
  await step('kill', async () => {
    await sb.kill();
    return 'killed';
  });
  await step('getInfo-killed', async () => shape(await sb.getInfo()));
  await step('connect-missing', async () => {
    await Sandbox.connect('nosuchsandbox000', apiKey, baseURL);
    return 'connected';
  });
}

async function main() {
  const [mode, base, key, id] = process.argv.slice(2);
  if (mode === 'flow') return flow(base, key);
  if (mode === 'connect') {
    const c = await Sandbox.connect(id, key, base);
    const h = await c.getHealth();
    out('connect', { ok: true, value: { health: h.status ?? 'ok' } });
    return;
  }
  if (mode === 'badkey') {
    await step('badkey', async () => {
      await Sandbox.list({ baseURL: base, apiKey: 'not-the-key' });
      return 'listed';
    });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
