import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { type NatsServer, startNats, untilReady } from '@herald/testkit';

/**
 * A subscription whose patterns overlap (`a.x` and `a.>`), resuming from further back than the
 * gateway's ring: the replay reads JetStream's log, whose consumers refuse overlapping filter
 * subjects. The client must get exactly the missed events, once each and in order, or a reset —
 * never a stream that closes and reconnects for ever.
 */

/** NATS matching, written out here rather than borrowed from the gateway. */
function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

const TOPICS = ['a.x', 'a.y', 'a.b.c', 'a.b.d', 'a.w.c', 'b.z', 'a'];
const EVENTS = 140;

describe('jetstream replay with overlapping patterns', () => {
  let nats: NatsServer;
  let gw: TestGateway;
  const published: { id: string; topic: string; data: string }[] = [];
  async function publish(topic: string, data: string): Promise<string> {
    const r = await gw.publish({ topic, data });
    assert.equal(r.status, 200);
    published.push({ id: r.body.id, topic, data });
    return r.body.id;
  }

  before(async () => {
    nats = await startNats();
    // A ring of 16 events: a cursor 100 events back is served from the stream's log.
    gw = await startGateway({ broker: 'jetstream', natsUrl: nats.url, streamName: 'OVERLAP', ringSize: 16 });
    await untilReady(gw.url);
    for (let i = 0; i < EVENTS; i++) {
      const topic = TOPICS[(i * 5) % TOPICS.length]!;
      await publish(topic, `${topic}#${i}`);
    }
  });
  after(async () => {
    await gw?.close();
    await nats?.stop();
  });

  const sets = [
    ['a.x', 'a.>'],
    ['a.*', 'a.>'],
    ['a.x', 'a.*'],
    ['a.*.c', 'a.b.*'],
    ['a.x', 'a.*', 'a.>', '*.z'],
  ];
  for (const topics of sets) {
    it(`resume - ${topics.join(' + ')} from 100 events back gets exactly the missed events, once each, in order`, async () => {
      const from = 40;
      const expected = published.slice(from).filter((e) => topics.some((p) => matches(p, e.topic)));
      const c = await gw.stream({ topic: topics }, { headers: { 'Last-Event-ID': published[from - 1]!.id } });
      await c.waitFor((s) => s.events.length >= expected.length, `${expected.length} events`);
      assert.deepEqual(
        c.events.map((e) => [e.id, e.data]),
        expected.map((e) => [e.id, e.data]),
        'no reset, nothing lost, repeated or out of order',
      );
      // Still open: later events arrive live on the same stream, exactly the matching ones.
      for (const topic of ['a.b.c', 'b.z', 'a.x']) await publish(topic, 'live');
      const more = published.slice(-3).filter((e) => topics.some((p) => matches(p, e.topic)));
      await c.waitFor((s) => s.events.length >= expected.length + more.length, 'the live events');
      assert.deepEqual(
        c.events.slice(expected.length).map((e) => e.id),
        more.map((e) => e.id),
      );
      c.close();
    });
  }
});
