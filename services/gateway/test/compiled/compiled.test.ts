import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { spawnGateway } from '@herald/gateway/testing';
import { connectSse, postJson, untilReady } from '@herald/testkit';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

it('dist - the compiled gateway runs on plain node, without TypeScript sources, and serves streams, publishes and the demo page', async (t) => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: run make build`);
  // No --conditions=herald-source: packages resolve to their compiled dist/, as in the image.
  const gw = await spawnGateway({ HERALD_DEMO: '1', HERALD_DRAIN_MS: '0' }, { main: MAIN, conditions: [] });
  t.after(() => gw.kill('SIGKILL'));
  const url = gw.url;
  await untilReady(url);
  const c = await connectSse(`${url}/v1/stream?topic=dist`);
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  assert.equal((await postJson(`${url}/v1/publish`, { topic: 'dist', data: 'compiled' })).status, 200);
  await c.waitFor((s) => s.events.some((e) => e.data === 'compiled'), 'the event');
  const demo = await fetch(`${url}/`);
  assert.equal(demo.status, 200);
  assert.match(await demo.text(), /Herald demo/);
  c.close();
  gw.kill('SIGTERM');
  assert.equal(await gw.exited, 0, gw.lines.join('\n'));
});
