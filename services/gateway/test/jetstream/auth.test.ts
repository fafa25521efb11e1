import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startGateway, startNats, untilReady } from '@herald/testkit';

it('jetstream - a NATS server that requires a token: with HERALD_NATS_TOKEN_FILE the gateway connects, without it it stays unready', async (t) => {
  const token = `t-${process.pid}-${Date.now()}`;
  const nats = await startNats({ config: { authorization: { token } } });
  const dir = mkdtempSync(join(tmpdir(), 'herald-token-'));
  t.after(async () => {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = join(dir, 'token');
  writeFileSync(file, `${token}\n`);
  const authed = await startGateway({ broker: 'jetstream', natsUrl: nats.url, natsTokenFile: file });
  t.after(() => authed.close());
  await untilReady(authed.url);
  assert.equal((await authed.publish({ topic: 'auth', data: 'x' })).status, 200);
  const anonymous = await startGateway({ broker: 'jetstream', natsUrl: nats.url });
  t.after(() => anonymous.close());
  const ready = await fetch(`${anonymous.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(
    (await anonymous.publish({ topic: 'auth', data: 'x' })).body.code,
    'HERALD_BROKER_UNAVAILABLE',
  );
});
