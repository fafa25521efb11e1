import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { spawnGateway, startGateway, type TestGateway } from '@herald/gateway/testing';
import {
  connectSse,
  FakeClock,
  type NatsServer,
  type SseClient,
  startNats,
  untilReady,
} from '@herald/testkit';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';

const seqOf = (id: string | undefined) => Number(id!.split('-')[1]);

describe('jetstream fleet', () => {
  // A server per test: one stream owns `herald.t.>` on a server, and tests must not share it.
  let nats: NatsServer;
  beforeEach(async () => {
    nats = await startNats();
  });
  afterEach(() => nats.stop());

  /** A gateway on the shared stream `stream`, ready. */
  async function gateway(stream: string, extra: Record<string, unknown> = {}): Promise<TestGateway> {
    const gw = await startGateway({ broker: 'jetstream', natsUrl: nats.url, streamName: stream, ...extra });
    await untilReady(gw.url);
    return gw;
  }

  it('jetstream - subscribe on gateway A, publish through gateway B: delivered, with ids from the shared stream', async (t) => {
    const a = await gateway('FLEET1');
    const b = await gateway('FLEET1');
    t.after(async () => {
      await a.close();
      await b.close();
    });
    const c = await a.stream({ topic: 'orders.*' });
    await c.waitFor((s) => s.ids.length === 1, 'the opening');
    const r = await b.publish({
      messages: [
        { topic: 'orders.1', data: 'one', event: 'created' },
        { topic: 'other', data: 'x' },
        { topic: 'orders.2', data: 'two' },
      ],
    });
    assert.equal(r.status, 200);
    await c.waitFor((s) => s.events.length === 2, 'two events');
    assert.deepEqual(
      c.events.map((e) => [e.id, e.event, e.data]),
      [
        [r.body.results[0].id, 'created', 'one'],
        [r.body.results[2].id, undefined, 'two'],
      ],
    );
  });

  it('jetstream - an idempotency key is stored once by the stream, whichever gateway the retry reaches', async (t) => {
    const a = await gateway('FLEET2');
    const b = await gateway('FLEET2');
    t.after(async () => {
      await a.close();
      await b.close();
    });
    const first = await a.publish({ topic: 'pay', data: 'x' }, { 'Idempotency-Key': 'payment-7' });
    const retry = await b.publish({ topic: 'pay', data: 'x' }, { 'Idempotency-Key': 'payment-7' });
    assert.deepEqual(retry.body, { id: first.body.id, duplicate: true });
  });

  it('jetstream - events published straight onto herald.t.<topic> over NATS are delivered, with the Herald-Event type', async (t) => {
    const gw = await gateway('FLEET3');
    t.after(() => gw.close());
    const c = await gw.stream({ topic: 'direct.>' });
    await c.waitFor((s) => s.ids.length === 1, 'the opening');
    const nc = await connect({ servers: nats.url });
    t.after(() => nc.close());
    const js = (await jetstreamManager(nc)).jetstream();
    const h = headers();
    h.set('Herald-Event', 'native');
    await js.publish('herald.t.direct.a', new TextEncoder().encode('from nats'), { headers: h });
    const bad = headers();
    bad.set('Herald-Event', 'herald.reset');
    await js.publish('herald.t.direct.b', new TextEncoder().encode('spoofed type'), { headers: bad });
    await c.waitFor((s) => s.events.length === 2, 'two events');
    assert.deepEqual(
      c.events.map((e) => [e.event, e.data]),
      [
        ['native', 'from nats'],
        [undefined, 'spoofed type'],
      ],
    );
  });

  it('jetstream - resume older than the ring replays from the stream; older than the stream resets as expired', async (t) => {
    const gw = await gateway('FLEET4', { ringSize: 16, historyMaxEvents: 100 });
    t.after(() => gw.close());
    const ids: string[] = [];
    for (let i = 1; i <= 150; i++)
      ids.push((await gw.publish({ topic: i % 2 ? 'odd' : 'even', data: String(i) })).body.id);
    // Retained: 51..150. From 60: the odd ones after it, from the stream (the ring holds 16).
    const c = await gw.stream({ topic: 'odd' }, { headers: { 'Last-Event-ID': ids[59]! } });
    await c.waitFor((s) => s.events.length === 45, '45 odd events');
    assert.deepEqual(
      c.events.map((e) => Number(e.data)),
      Array.from({ length: 45 }, (_, i) => 61 + 2 * i),
    );
    const old = await gw.stream({ topic: 'odd' }, { headers: { 'Last-Event-ID': ids[10]! } });
    await old.waitFor((s) => s.events.length === 1, 'the reset');
    assert.equal(old.events[0]!.event, 'herald.reset');
    assert.deepEqual(JSON.parse(old.events[0]!.data), { reason: 'expired', from: ids[10], oldest: ids[50] });
  });

  it('jetstream - a recreated stream resets connected clients and old cursors with reason epoch', async (t) => {
    const gw = await gateway('FLEET5');
    t.after(() => gw.close());
    const before = (await gw.publish({ topic: 're', data: 'old' })).body.id;
    const c = await gw.stream({ topic: 're' });
    await c.waitFor((s) => s.ids.length === 1, 'the opening');
    const nc = await connect({ servers: nats.url });
    t.after(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete('FLEET5');
    await c.waitFor((s) => s.events.some((e) => e.event === 'herald.reset'), 'a reset', 15_000);
    assert.equal(JSON.parse(c.events.at(-1)!.data).reason, 'epoch');
    await untilReady(gw.url);
    const after = await gw.publish({ topic: 're', data: 'new' });
    assert.equal(after.status, 200);
    assert.notEqual(after.body.id.split('-')[0], before.split('-')[0], 'a new epoch');
    await c.waitFor((s) => s.events.at(-1)?.data === 'new', 'live events from the new stream');
    const stale = await gw.stream({ topic: 're' }, { headers: { 'Last-Event-ID': before } });
    await stale.waitFor((s) => s.events.length === 1, 'the reset');
    assert.equal(JSON.parse(stale.events[0]!.data).reason, 'epoch');
  });

  it('jetstream - a publish acknowledged after the stream was recreated names the new epoch or fails, never the old one', async (t) => {
    // On a fake clock the gateway's periodic look at the stream never comes, so nothing but the
    // publish itself can tell it the stream it follows is gone and another has its name.
    const gw = await startGateway(
      { broker: 'jetstream', natsUrl: nats.url, streamName: 'FLEET7' },
      { clock: new FakeClock() },
    );
    t.after(() => gw.close());
    await untilReady(gw.url);
    const old = (await gw.publish({ topic: 're', data: 'old' })).body.id.split('-')[0];
    const c = await gw.stream({ topic: 're' });
    await c.waitFor((s) => s.ids.length === 1, 'the opening');
    const nc = await connect({ servers: nats.url });
    t.after(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const { config } = await jsm.streams.info('FLEET7');
    await jsm.streams.delete('FLEET7');
    await jsm.streams.add(config);
    const epoch = (id: string) => id.split('-')[0];

    const key = { 'Idempotency-Key': 'after-recreate' };
    const first = await gw.publish({ topic: 're', data: 'new' }, key);
    if (first.status === 200) assert.notEqual(epoch(first.body.id), old, 'not a cursor of the old stream');
    else assert.equal(first.body.code, 'HERALD_BROKER_UNAVAILABLE');
    // The publisher retries with its key: stored once, under the cursor clients receive it with.
    const retry = await gw.publish({ topic: 're', data: 'new' }, key);
    assert.equal(retry.status, 200);
    assert.notEqual(epoch(retry.body.id), old);
    // Clients are told the stream was replaced; the reset's cursor covers what the new stream
    // already held, and later events follow under the same epoch as their acknowledgements.
    await c.waitFor((s) => s.events.length === 1, 'the reset');
    const reset = c.events[0]!;
    assert.equal(reset.event, 'herald.reset');
    assert.equal(epoch(reset.id!), epoch(retry.body.id));
    assert.ok(seqOf(reset.id) >= seqOf(retry.body.id), 'the reset covers the event');
    const next = await gw.publish({ topic: 're', data: 'next' });
    await c.waitFor((s) => s.events.length === 2, 'the next event');
    assert.equal(c.events[1]!.id, next.body.id);
    if (first.status === 200) assert.equal(first.body.id, retry.body.id);
  });

  it('jetstream - kill -9 of the gateway a client is on: it resumes on another with exactly the missed events', async () => {
    const env = {
      HERALD_BROKER: 'jetstream',
      HERALD_NATS_URL: nats.url,
      HERALD_STREAM_NAME: 'FLEET6',
      HERALD_DRAIN_MS: '0',
    };
    const a = await spawnGateway(env);
    const b = await spawnGateway(env);
    await untilReady(a.url);
    await untilReady(b.url);
    const topicSets = [['k.a'], ['k.b', 'k.c'], ['k.*'], ['k.a', 'k.>']];
    const total = 3000;
    const want = (topics: string[], topic: string) =>
      topics.some((p) => (p.endsWith('*') || p.endsWith('>') ? topic.startsWith('k.') : p === topic));
    const clients: SseClient[] = [];
    for (const topics of topicSets)
      clients.push(await connectSse(`${a.url}/v1/stream?${topics.map((x) => `topic=${x}`).join('&')}`));
    await Promise.all(clients.map((c) => c.waitFor((s) => s.ids.length === 1, 'the opening')));
    const topicOf = (i: number) => ['k.a', 'k.b', 'k.c'][i % 3]!;
    let published = 0;
    const publisher = (async () => {
      for (let i = 0; i < total; i += 50) {
        const messages = Array.from({ length: 50 }, (_, k) => ({
          topic: topicOf(i + k),
          data: String(i + k),
        }));
        const r = await fetch(`${b.url}/v1/publish`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ messages }),
        });
        assert.equal(r.status, 200);
        published += 50;
      }
    })();
    await clients[0]!.waitFor((s) => s.events.length > 200, 'traffic to flow');
    a.kill('SIGKILL');
    await Promise.all(clients.map((c) => c.ended));
    const resumed = await Promise.all(
      clients.map((c, i) =>
        connectSse(`${b.url}/v1/stream?${topicSets[i]!.map((x) => `topic=${x}`).join('&')}`, {
          headers: { 'Last-Event-ID': c.lastEventId() },
        }),
      ),
    );
    await publisher;
    assert.equal(published, total);
    for (let i = 0; i < clients.length; i++) {
      const expected = Array.from({ length: total }, (_, n) => n).filter((n) =>
        want(topicSets[i]!, topicOf(n)),
      );
      await resumed[i]!.waitFor(
        (s) => clients[i]!.events.length + s.events.length >= expected.length,
        `client ${i} to catch up`,
        20_000,
      );
      const got = [...clients[i]!.events, ...resumed[i]!.events];
      assert.ok(!got.some((e) => e.event === 'herald.reset'), `client ${i} was not reset`);
      assert.deepEqual(
        got.map((e) => Number(e.data)),
        expected,
        `client ${i}: no loss, no duplicate, no reorder`,
      );
      const seqs = got.map((e) => seqOf(e.id));
      assert.ok(
        seqs.every((s, k) => k === 0 || s > seqs[k - 1]!),
        `client ${i}: ids strictly increasing`,
      );
      resumed[i]!.close();
    }
    b.kill('SIGTERM');
    assert.equal(await b.exited, 0);
  });
});
