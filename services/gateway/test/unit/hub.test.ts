import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { FakeClock } from '@herald/testkit';
import {
  defaultConfig,
  Hub,
  MemoryBroker,
  type ReplayRequest,
  type ReplayResult,
  type Sink,
} from '../../src/internal.ts';

class RecordingSink implements Sink {
  writes: Buffer[] = [];
  ended = false;
  write(chunk: Buffer): void {
    this.writes.push(chunk);
  }
  end(chunk: Buffer): void {
    this.writes.push(chunk);
    this.ended = true;
  }
}

/** The hub's settings that these tests leave at their defaults. */
const { maxQueuedBytes, ringMaxBytes } = defaultConfig();
const SETTINGS = { maxQueuedBytes, ringMaxBytes };

function setup() {
  const clock = new FakeClock();
  const broker = new MemoryBroker({ clock, maxEvents: 1000, maxAgeMs: 60_000, dedupeWindowMs: 0 });
  const hub = new Hub(broker, {
    clock,
    random: () => 0.5,
    heartbeatMs: 1000,
    retryMs: 1000,
    ringSize: 64,
    releaseVersion: 't',
    ...SETTINGS,
  });
  hub.start();
  return { clock, broker, hub };
}
const msg = (topic: string, data: string) => ({ topic, data, event: undefined, key: undefined });

describe('Hub', () => {
  it('coalesces everything due to one connection in one turn into one write', async () => {
    const { broker, hub } = setup();
    const sink = new RecordingSink();
    hub.open(sink, { topics: ['c'], lastEventId: undefined });
    await turn();
    sink.writes = [];
    await broker.publish([1, 2, 3, 4, 5].map((n) => msg('c', String(n))));
    await turn();
    assert.equal(sink.writes.length, 1);
    assert.equal(sink.writes[0]!.toString().match(/^data: /gm)?.length, 5);
  });

  it('writes the same encoded Buffer to every subscriber of an event', async () => {
    const { broker, hub } = setup();
    const a = new RecordingSink();
    const b = new RecordingSink();
    hub.open(a, { topics: ['s'], lastEventId: undefined });
    hub.open(b, { topics: ['s.>', 's'], lastEventId: undefined });
    await turn();
    a.writes = [];
    b.writes = [];
    await broker.publish([msg('s', 'one')]);
    await turn();
    assert.equal(a.writes.length, 1);
    assert.equal(a.writes[0], b.writes[0], 'one encoding, shared');
  });

  it('forgets closed connections: no writes after remove, and topics index nothing', async () => {
    const { broker, hub } = setup();
    const sink = new RecordingSink();
    const c = hub.open(sink, { topics: ['r', 'r.*'], lastEventId: undefined });
    hub.remove(c);
    await turn();
    await broker.publish([msg('r', 'x'), msg('r.y', 'y')]);
    await turn();
    assert.equal(sink.writes.length, 0);
    assert.equal(hub.size, 0);
  });

  it('identical replays in flight share one broker fetch, and fetches run at most replayConcurrency at once', async () => {
    const clock = new FakeClock();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let fetches = 0;
    class GatedBroker extends MemoryBroker {
      override async replay(req: ReplayRequest): Promise<ReplayResult> {
        fetches++;
        await gate;
        return super.replay(req);
      }
    }
    const broker = new GatedBroker({ clock, maxEvents: 1000, maxAgeMs: 60_000, dedupeWindowMs: 0 });
    const hub = new Hub(broker, {
      clock,
      random: () => 0.5,
      heartbeatMs: 1000,
      retryMs: 1000,
      ringSize: 16,
      releaseVersion: 't',
      ...SETTINGS,
      replayConcurrency: 2,
    });
    hub.start();
    await broker.publish(Array.from({ length: 50 }, (_, i) => msg(`t${(i + 1) % 2}`, String(i + 1))));
    const epoch = broker.state().epoch;
    // Four clients of t1 from one cursor, one of t0 from it, one of t1 from another.
    const opens: Array<[string, number]> = [
      ['t1', 5],
      ['t1', 5],
      ['t1', 5],
      ['t1', 5],
      ['t0', 5],
      ['t1', 7],
    ];
    const sinks = opens.map(() => new RecordingSink());
    for (const [i, [topic, seq]] of opens.entries()) {
      hub.open(sinks[i]!, { topics: [topic], lastEventId: `${epoch}-${seq}` });
    }
    assert.equal(hub.replaying, 2, 'two fetches run, the third waits');
    release();
    const datas = (sink: RecordingSink) =>
      [
        ...Buffer.concat(sink.writes)
          .toString()
          .matchAll(/^data: (\d+)$/gm),
      ].map((m) => Number(m[1]));
    for (let i = 0; i < 20 && sinks.some((s) => datas(s).at(-1) !== 49 && datas(s).at(-1) !== 50); i++)
      await turn();
    assert.equal(fetches, 3, 'one fetch for the four identical resumes, one each for the others');
    for (const [i, sink] of sinks.entries()) {
      const [topic, seq] = opens[i]!;
      const parity = topic === 't1' ? 1 : 0;
      const want = Array.from({ length: 50 }, (_, k) => k + 1).filter((n) => n > seq && n % 2 === parity);
      assert.deepEqual(datas(sink), want, `client ${i}`);
    }
  });

  it('a gateway starting on a stream that already holds events fills its ring from it, so resumes need no replay', async () => {
    const clock = new FakeClock();
    let fetches = 0;
    class CountingBroker extends MemoryBroker {
      override async replay(req: ReplayRequest): Promise<ReplayResult> {
        fetches++;
        return super.replay(req);
      }
    }
    const broker = new CountingBroker({ clock, maxEvents: 1000, maxAgeMs: 60_000, dedupeWindowMs: 0 });
    await broker.publish(Array.from({ length: 30 }, (_, i) => msg(`w${i % 3}`, String(i + 1))));
    const hub = new Hub(broker, {
      clock,
      random: () => 0.5,
      heartbeatMs: 60_000,
      retryMs: 1000,
      ringSize: 20,
      releaseVersion: 't',
      ...SETTINGS,
      replayPage: 8,
    });
    hub.start();
    assert.equal(hub.warming, true, 'not ready while the ring fills');
    for (let i = 0; i < 20 && hub.warming; i++) await turn();
    assert.equal(hub.warming, false);
    const warmFetches = fetches;
    assert.equal(warmFetches, 3, 'the newest 20 events in pages of 8');
    await broker.publish([msg('w0', '31')]);
    const epoch = broker.state().epoch;
    const inRing = new RecordingSink();
    hub.open(inRing, { topics: ['w0', 'w2'], lastEventId: `${epoch}-11` });
    await turn();
    assert.equal(fetches, warmFetches, 'a cursor within the warmed ring is served from memory');
    const sent = [
      ...Buffer.concat(inRing.writes)
        .toString()
        .matchAll(/^data: (\d+)$/gm),
    ].map((m) => Number(m[1]));
    assert.deepEqual(sent, [12, 13, 15, 16, 18, 19, 21, 22, 24, 25, 27, 28, 30, 31]);
    const older = new RecordingSink();
    hub.open(older, { topics: ['w1'], lastEventId: `${epoch}-3` });
    for (let i = 0; i < 20 && !Buffer.concat(older.writes).includes('data: 29\n'); i++) await turn();
    assert.ok(fetches > warmFetches, 'a cursor older than the ring goes to the log');
    const olderSent = [
      ...Buffer.concat(older.writes)
        .toString()
        .matchAll(/^data: (\d+)$/gm),
    ].map((m) => Number(m[1]));
    assert.deepEqual(olderSent, [5, 8, 11, 14, 17, 20, 23, 26, 29]);
    hub.stop();
  });

  it('a cursor ahead of the feed is served once the feed reaches it, or reset as ahead after the grace period', async () => {
    const clock = new FakeClock();
    const broker = new MemoryBroker({ clock, maxEvents: 1000, maxAgeMs: 60_000, dedupeWindowMs: 0 });
    const hub = new Hub(broker, {
      clock,
      random: () => 0.5,
      heartbeatMs: 60_000,
      retryMs: 1000,
      ringSize: 64,
      releaseVersion: 't',
      ...SETTINGS,
      aheadGraceMs: 2000,
    });
    hub.start();
    await broker.publish([msg('a', '1')]);
    const epoch = broker.state().epoch;
    const caughtUp = new RecordingSink();
    const never = new RecordingSink();
    hub.open(caughtUp, { topics: ['a'], lastEventId: `${epoch}-3` });
    hub.open(never, { topics: ['a'], lastEventId: `${epoch}-9` });
    // Another gateway had already delivered 2 and 3; this one's feed gets there a moment later.
    await broker.publish([msg('a', '2'), msg('a', '3'), msg('a', '4')]);
    clock.tick(2000);
    await turn();
    const text = (sink: RecordingSink) => Buffer.concat(sink.writes).toString();
    assert.deepEqual(
      [...text(caughtUp).matchAll(/^data: (.*)$/gm)].map((m) => m[1]),
      ['4'],
    );
    assert.match(text(never), /event: herald\.reset\ndata: \{"reason":"ahead","from":"[a-z0-9]+-9"/);
  });
});
