// Reconnects sandboxes with the official SDK, as a process would after a
// reboot: Sandbox.connect(id, key, baseURL) for each id, CONC at a time.
// Prints {"ms":..., "ok":..., "failed":..., "failed_ids":[...]}.
const fs = require('fs');
const { Sandbox } = require('@hopx-ai/sdk');

async function main() {
  const [key, base, idsFile, conc] = process.argv.slice(2);
  const ids = JSON.parse(fs.readFileSync(idsFile, 'utf8'));
  let next = 0, ok = 0, failed = 0;
  const failedIds = [];
  async function worker() {
    while (next < ids.length) {
      const id = ids[next++];
      try {
        await Sandbox.connect(id, key, base);
        ok++;
      } catch (e) {
        failed++;
        failedIds.push(id);
      }
    }
  }
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Number(conc) }, worker));
  console.log(JSON.stringify({ ms: performance.now() - t0, ok, failed,
                               failed_ids: failedIds }));
}
main().catch((e) => { console.error(e); process.exit(1); });
