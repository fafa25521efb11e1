import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { JetStreamBroker, type ReplayRequest, type ReplayResult, systemClock } from '@herald/gateway';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { connectSse, type NatsServer, startNats, untilReady } from '@herald/testkit';

/** The real JetStream broker, counting the replay fetches it serves at once. */
class CountingBroker extends JetStreamBroker {
  inFlight = 0;
  maxInFlight = 0;
  override async replay(req: ReplayRequest): Promise<ReplayResult> {
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      return await super.replay(req);
    } finally {
      this.inFlight--;
    }
  }
}

describe('resume storm', () => {
  let nats: NatsServer;
  let gw: TestGateway;
  let broker: CountingBroker;
  before(async () => {
    nats = await startNats();
    broker = new CountingBroker({
      clock: systemClock,
      servers: [nats.url],
      log: () => {},
      stream: {
        name: 'STORM',
        manage: true,
        replicas: 1,
        maxEvents: 100_000,
        maxAgeMs: 3_600_000,
        maxBytes: 1 << 30,
        dedupeWindowMs: 60_000,
      },
    });
    gw = await startGateway({ ringSize: 1000 }, { broker });
    await untilReady(gw.url);
  });
  after(async () => {
    await gw.close();
    await nats.stop();
  });

  it('resume storm - 2,000 clients reconnecting at once with cursors over the last 10,000 events are all served exactly, with bounded JetStream fetches', async () => {
    const topics = 100;
    const total = 12_000;
    let epoch = '';
    for (let i = 0; i < total; i += 100) {
      const r = await gw.publish({
        messages: Array.from({ length: 100 }, (_, k) => ({
          topic: `s.${(i + k) % topics}`,
          data: String(i + k + 1),
        })),
      });
      assert.equal(r.status, 200);
      epoch = r.body.results[0].id.split('-')[0];
    }
    // Event n (data n) has sequence n. A fixed LCG spreads cursors over the last 10,000 events;
    // a fifth of the clients share a cursor (and, in groups, a topic), as clients of one page do.
    let x = 42;
    const rand = () => {
      x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
      return x / 2 ** 31;
    };
    const plans = Array.from({ length: 2000 }, (_, i) => {
      const topic = i % topics;
      const cursor = i % 5 === 4 ? total - 5000 : total - Math.floor(rand() * 10_000);
      const expected: number[] = [];
      for (let n = cursor + 1; n <= total; n++) if ((n - 1) % topics === topic) expected.push(n);
      return { topic, cursor, expected };
    });
    const clients = await Promise.all(
      plans.map((p) =>
        connectSse(`${gw.url}/v1/stream?topic=s.${p.topic}`, {
          headers: { 'Last-Event-ID': `${epoch}-${p.cursor}` },
        }),
      ),
    );
    await Promise.all(
      clients.map((c, i) =>
        c.waitFor((s) => s.events.length >= plans[i]!.expected.length, `client ${i}`, 60_000),
      ),
    );
    for (let i = 0; i < clients.length; i++) {
      assert.deepEqual(
        clients[i]!.events.map((e) => Number(e.data)),
        plans[i]!.expected,
        `client ${i}`,
      );
      clients[i]!.close();
    }
    assert.ok(broker.maxInFlight <= 4, `at most 4 JetStream fetches at once, saw ${broker.maxInFlight}`);
  });
});
