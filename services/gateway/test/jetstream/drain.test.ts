import assert from 'node:assert/strict';
import { it } from 'node:test';
import { spawnGateway } from '@herald/gateway/testing';
import { connectSse, type SseClient, startNats, untilReady } from '@herald/testkit';

it('drain - SIGTERM on a gateway process: readiness fails at once, new streams are turned away, open ones close spread over the window with a retry, the process exits 0, and every client resumes on another gateway without loss or repeat', async (t) => {
  const nats = await startNats();
  t.after(() => nats.stop());
  const env = {
    HERALD_BROKER: 'jetstream',
    HERALD_NATS_URL: nats.url,
    HERALD_STREAM_NAME: 'DRAIN',
    HERALD_DRAIN_MS: '1500',
    HERALD_RETRY_MS: '1000',
  };
  const a = await spawnGateway(env);
  const b = await spawnGateway(env);
  t.after(() => {
    a.kill('SIGKILL');
    b.kill('SIGKILL');
  });
  await untilReady(a.url);
  await untilReady(b.url);
  const clients: SseClient[] = [];
  for (let i = 0; i < 8; i++) clients.push(await connectSse(`${a.url}/v1/stream?topic=d.${i % 2}&topic=all`));
  await Promise.all(clients.map((c) => c.waitFor((s) => s.ids.length === 1, 'the opening')));
  const topicOf = (n: number) => (n % 3 === 0 ? 'all' : `d.${n % 2}`);
  const total = 1500;
  let published = 0;
  const publisher = (async () => {
    for (let i = 0; i < total; i += 25) {
      const messages = Array.from({ length: 25 }, (_, k) => ({ topic: topicOf(i + k), data: String(i + k) }));
      const r = await fetch(`${b.url}/v1/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages }),
      });
      assert.equal(r.status, 200);
      published += 25;
    }
  })();
  await clients[0]!.waitFor((s) => s.events.length > 50, 'traffic to flow');

  a.kill('SIGTERM');
  await untilReady(a.url, 503);
  const late = await connectSse(`${a.url}/v1/stream?topic=all`);
  assert.equal(late.status, 200, 'turned away with 200, so EventSource retries');
  await late.ended;
  assert.ok(late.comments.some((c) => c.includes('draining')));
  assert.equal(late.events.length, 0);

  // Each client is closed at its own time within the window, with a jittered retry: and its place.
  const closedAt: number[] = [];
  const resumed = await Promise.all(
    clients.map(async (c) => {
      await c.ended;
      closedAt.push(performance.now());
      assert.equal(c.retries.length, 2, 'the opening retry:, then a jittered one');
      const [opening, jittered] = c.retries as [number, number];
      assert.ok(jittered >= opening * 0.5 && jittered <= opening * 1.5, `retry ${jittered} within ±50 %`);
      return connectSse(`${b.url}/v1/stream?topic=d.${clients.indexOf(c) % 2}&topic=all`, {
        headers: { 'Last-Event-ID': c.lastEventId() },
      });
    }),
  );
  assert.equal(await a.exited, 0, 'the drained process exits 0');
  closedAt.sort((x, y) => x - y);
  assert.ok(closedAt.at(-1)! - closedAt[0]! > 100, 'the closes were spread over the window, not at once');

  await publisher;
  assert.equal(published, total);
  for (const [i, c] of clients.entries()) {
    const expected = Array.from({ length: total }, (_, n) => n).filter((n) => {
      const topic = topicOf(n);
      return topic === 'all' || topic === `d.${i % 2}`;
    });
    const again = resumed[i]!;
    await again.waitFor(
      (s) => c.events.length + s.events.length >= expected.length,
      `client ${i} to catch up`,
      20_000,
    );
    const got = [...c.events, ...again.events];
    assert.ok(!got.some((e) => e.event === 'herald.reset'), `client ${i} was not reset`);
    assert.deepEqual(
      got.map((e) => Number(e.data)),
      expected,
      `client ${i}: every event once, in order, across the move`,
    );
  }
  for (const c of [...clients, ...resumed]) c.close();
});
