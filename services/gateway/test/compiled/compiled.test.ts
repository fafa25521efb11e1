import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connectSse, postJson, untilReady } from '@herald/testkit';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

it('dist - the compiled gateway runs on plain node, without TypeScript sources, and serves streams, publishes and the demo page', async (t) => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: run make build`);
  // No --conditions=herald-source: packages resolve to their compiled dist/, as in the image.
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env['PATH'] ?? '',
      HERALD_HOST: '127.0.0.1',
      HERALD_PORT: '0',
      HERALD_METRICS_PORT: '0',
      HERALD_AUTH: 'none',
      HERALD_DEMO: '1',
      HERALD_DRAIN_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stderr.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"msg":"listening","port":(\d+)/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the compiled gateway exited (${code}):\n${out}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  await untilReady(url);
  const c = await connectSse(`${url}/v1/stream?topic=dist`);
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  assert.equal((await postJson(`${url}/v1/publish`, { topic: 'dist', data: 'compiled' })).status, 200);
  await c.waitFor((s) => s.events.some((e) => e.data === 'compiled'), 'the event');
  const demo = await fetch(`${url}/`);
  assert.equal(demo.status, 200);
  assert.match(await demo.text(), /Herald demo/);
  c.close();
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, out);
});
