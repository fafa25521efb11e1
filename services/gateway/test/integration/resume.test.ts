import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBroker, type ReplayRequest, type ReplayResult } from '@herald/gateway';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { FakeClock, type SseClient } from '@herald/testkit';

const seqOf = (id: string | undefined) => Number(id!.split('-')[1]);
const epochOf = (id: string) => id.split('-')[0]!;

async function publishMany(gw: TestGateway, topic: string, from: number, to: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = from; i <= to; i++) ids.push((await gw.publish({ topic, data: String(i) })).body.id);
  return ids;
}

async function firstEvent(c: SseClient) {
  await c.waitFor((s) => s.events.length > 0, 'the first event');
  return c.events[0]!;
}

describe('resume', () => {
  it('resume - Last-Event-ID inside the ring replays exactly the missed events of the topics, then live', async (t) => {
    const gw = await startGateway();
    t.after(() => gw.close());
    const first = await gw.stream({ topic: ['r.a', 'r.b'] });
    await publishMany(gw, 'r.a', 1, 3);
    await first.waitFor((s) => s.events.length === 3, 'three events');
    const cursor = first.lastEventId();
    first.close();
    await gw.publish({
      messages: [
        { topic: 'r.a', data: '4' },
        { topic: 'r.x', data: 'other' },
        { topic: 'r.b', data: '5' },
      ],
    });
    const again = await gw.stream({ topic: ['r.a', 'r.b'] }, { headers: { 'Last-Event-ID': cursor } });
    await again.waitFor((s) => s.events.length === 2, 'the two missed events');
    await gw.publish({ topic: 'r.b', data: '6' });
    await again.waitFor((s) => s.events.length === 3, 'the live event');
    assert.deepEqual(
      again.events.map((e) => e.data),
      ['4', '5', '6'],
    );
    assert.ok(!again.raw().includes(cursor), 'the cursor is never echoed back');
  });

  it('resume - older than the ring, the missed events come from the broker log', async (t) => {
    const gw = await startGateway({ ringSize: 16, historyMaxEvents: 1000 });
    t.after(() => gw.close());
    const ids = await publishMany(gw, 'log.a', 1, 60);
    const c = await gw.stream({ topic: 'log.a' }, { headers: { 'Last-Event-ID': ids[9]! } });
    await c.waitFor((s) => s.events.length === 50, '50 replayed events');
    assert.deepEqual(
      c.events.map((e) => e.data),
      Array.from({ length: 50 }, (_, i) => String(i + 11)),
    );
    await gw.publish({ topic: 'log.a', data: 'live' });
    await c.waitFor((s) => s.events.at(-1)?.data === 'live', 'the live event');
    assert.equal(c.events.length, 51);
  });

  it('resume - after a log replay the cursor moves to the head even when the newest events were on other topics', async (t) => {
    const gw = await startGateway({ ringSize: 16 });
    t.after(() => gw.close());
    const mine = await publishMany(gw, 'mine', 1, 30);
    const others = await publishMany(gw, 'others', 31, 40);
    const c = await gw.stream({ topic: 'mine' }, { headers: { 'Last-Event-ID': mine[4]! } });
    await c.waitFor((s) => s.lastEventId() === others.at(-1), 'the id-only frame at the head');
    assert.deepEqual(
      c.events.map((e) => e.data),
      Array.from({ length: 25 }, (_, i) => String(i + 6)),
    );
  });

  it('resume - a replay outrun by live traffic catches up through the log with bounded waiting events', async (t) => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    class SlowFirstReplayBroker extends MemoryBroker {
      override async replay(req: ReplayRequest): Promise<ReplayResult> {
        await gate;
        return super.replay(req);
      }
    }
    const clock = new FakeClock();
    const broker = new SlowFirstReplayBroker({
      clock,
      maxEvents: 10_000,
      maxAgeMs: 3_600_000,
      dedupeWindowMs: 0,
    });
    const gw = await startGateway({ ringSize: 16 }, { broker, clock });
    t.after(() => gw.close());
    const ids = await publishMany(gw, 'o.a', 1, 40);
    const c = await gw.stream({ topic: 'o.a' }, { headers: { 'Last-Event-ID': ids[1]! } });
    // 100 live events while the replay waits: more than the 16 that may wait in memory.
    await gw.publish({
      messages: Array.from({ length: 100 }, (_, i) => ({ topic: 'o.a', data: String(41 + i) })),
    });
    release();
    await c.waitFor((s) => s.events.length === 138, 'events 3..140');
    assert.deepEqual(
      c.events.map((e) => Number(e.data)),
      Array.from({ length: 138 }, (_, i) => i + 3),
    );
  });

  it('resume - lastEventId query works for the first connect after a reload; the header wins over it', async (t) => {
    const gw = await startGateway();
    t.after(() => gw.close());
    const ids = await publishMany(gw, 'q.a', 1, 5);
    const byQuery = await gw.stream({ topic: 'q.a', lastEventId: ids[2]! });
    await byQuery.waitFor((s) => s.events.length === 2, 'events 4 and 5');
    assert.deepEqual(
      byQuery.events.map((e) => e.data),
      ['4', '5'],
    );
    const both = await gw.stream(
      { topic: 'q.a', lastEventId: ids[0]! },
      { headers: { 'Last-Event-ID': ids[3]! } },
    );
    await both.waitFor((s) => s.events.length === 1, 'event 5 only');
    assert.equal(both.events[0]!.data, '5');
  });

  it('resume - no gap and no duplicate at the seam between a slow log replay and live traffic', async (t) => {
    // The embedded broker with a replay that takes its snapshot, then waits for the test: every
    // event published meanwhile exists only in the live feed, which is exactly the seam.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    class SlowReplayBroker extends MemoryBroker {
      override async replay(req: ReplayRequest): Promise<ReplayResult> {
        const snapshot = await super.replay(req);
        await gate;
        return snapshot;
      }
    }
    const clock = new FakeClock();
    const broker = new SlowReplayBroker({ clock, maxEvents: 10_000, maxAgeMs: 3_600_000, dedupeWindowMs: 0 });
    const gw = await startGateway({ ringSize: 16 }, { broker, clock });
    t.after(() => gw.close());
    const ids = await publishMany(gw, 'seam.a', 1, 40);
    const c = await gw.stream({ topic: ['seam.a', 'seam.b'] }, { headers: { 'Last-Event-ID': ids[4]! } });
    assert.equal(gw.gateway.hub.replaying, 1, 'the replay is in flight');
    // Publish concurrently while the replay is held: some on other topics, some batched.
    await Promise.all([
      publishMany(gw, 'seam.a', 41, 60),
      publishMany(gw, 'seam.b', 61, 80),
      gw.publish({
        messages: Array.from({ length: 20 }, (_, i) => ({
          topic: i % 2 ? 'seam.a' : 'seam.x',
          data: `b${i}`,
        })),
      }),
    ]);
    assert.equal(c.events.length, 0, 'nothing goes out before the replay');
    release();
    await gw.publish({ topic: 'seam.b', data: 'end' });
    await c.waitFor((s) => s.events.at(-1)?.data === 'end', 'the end marker');
    const seqs = c.events.map((e) => seqOf(e.id));
    assert.deepEqual(
      seqs,
      [...new Set(seqs)].sort((a, b) => a - b),
      'strictly increasing: no duplicate, no reorder',
    );
    const got = c.events.map((e) => e.data);
    assert.equal(
      got.slice(0, 35).join(),
      Array.from({ length: 35 }, (_, i) => String(i + 6)).join(),
      'the replayed part',
    );
    const liveA = got.filter((d) => /^\d+$/.test(d) && Number(d) > 40 && Number(d) <= 60).map(Number);
    const liveB = got.filter((d) => /^\d+$/.test(d) && Number(d) > 60).map(Number);
    assert.deepEqual(
      liveA,
      Array.from({ length: 20 }, (_, i) => i + 41),
    );
    assert.deepEqual(
      liveB,
      Array.from({ length: 20 }, (_, i) => i + 61),
    );
    assert.deepEqual(
      got.filter((d) => d.startsWith('b')),
      Array.from({ length: 10 }, (_, i) => `b${2 * i + 1}`),
    );
    assert.equal(got.length, 35 + 20 + 20 + 10 + 1);
  });

  it('resume - repeated reconnects under concurrent publishing see every event of their topics exactly once', async (t) => {
    const gw = await startGateway({ ringSize: 32, historyMaxEvents: 100_000 });
    t.after(() => gw.close());
    const topics = ['mix.a', 'mix.b', 'mix.c'];
    const total = 600;
    let publishing = true;
    const publisher = (async () => {
      for (let i = 1; i <= total; i += 3) {
        await gw.publish({
          messages: [0, 1, 2].map((k) => ({ topic: topics[(i + k) % 3]!, data: String(i + k) })),
        });
      }
      publishing = false;
    })();
    const received: number[] = [];
    let cursor = '';
    let reconnects = 0;
    // Reconnect every few events, alternating ring and log resumes as the ring (32) is outrun.
    while (publishing || received.length < (total * 2) / 3) {
      const c = await gw.stream(
        { topic: ['mix.a', 'mix.b'] },
        cursor ? { headers: { 'Last-Event-ID': cursor } } : {},
      );
      const want = received.length + 1 + (reconnects % 7) * 10;
      await c.waitFor(
        (s) => received.length + s.events.length >= Math.min(want, (total * 2) / 3),
        'more events',
        10_000,
      );
      c.close();
      for (const e of c.events) received.push(Number(e.data));
      assert.equal(c.events.filter((e) => e.event === 'herald.reset').length, 0);
      cursor = c.lastEventId();
      reconnects++;
    }
    await publisher;
    const expected = Array.from({ length: total }, (_, i) => i + 1).filter((n) => topics[n % 3] !== 'mix.c');
    assert.deepEqual(received, expected);
    assert.ok(reconnects > 5, `reconnected ${reconnects} times`);
  });

  it('resume - a replay the broker fails closes only that stream, with a retry, so the client tries again', async (t) => {
    class FailingReplayBroker extends MemoryBroker {
      override async replay(): Promise<ReplayResult> {
        throw new Error('replay failed');
      }
    }
    const clock = new FakeClock();
    const broker = new FailingReplayBroker({
      clock,
      maxEvents: 1000,
      maxAgeMs: 3_600_000,
      dedupeWindowMs: 0,
    });
    const gw = await startGateway({ ringSize: 16 }, { broker, clock });
    t.after(() => gw.close());
    const ids = await publishMany(gw, 'f.a', 1, 40);
    const live = await gw.stream({ topic: 'f.a' });
    const failing = await gw.stream({ topic: 'f.a' }, { headers: { 'Last-Event-ID': ids[2]! } });
    await failing.ended;
    assert.equal(failing.events.length, 0, 'nothing half-replayed');
    assert.equal(failing.retries.length, 2, 'the opening retry, then the jittered one');
    await gw.publish({ topic: 'f.a', data: 'still live' });
    await live.waitFor(
      (s) => s.events.some((e) => e.data === 'still live'),
      'the other stream to keep flowing',
    );
  });

  describe('reset', () => {
    async function resetFor(gw: TestGateway, lastEventId: string) {
      const c = await gw.stream({ topic: 'z.a' }, { headers: { 'Last-Event-ID': lastEventId } });
      const e = await firstEvent(c);
      assert.equal(e.event, 'herald.reset');
      await gw.publish({ topic: 'z.a', data: 'after-reset' });
      await c.waitFor((s) => s.events.at(-1)?.data === 'after-reset', 'live events after the reset');
      return { c, e, data: JSON.parse(e.data) };
    }

    it('reset - a malformed cursor gets herald.reset (from null), then live; the reset id moves the client on', async (t) => {
      const gw = await startGateway();
      t.after(() => gw.close());
      const ids = await publishMany(gw, 'z.a', 1, 3);
      // (Header values are trimmed by HTTP itself, so padding is not among these.)
      for (const bad of [
        'garbage',
        `${epochOf(ids[0]!)}-01`,
        'a-b-c',
        `${epochOf(ids[0]!)}--1`,
        `${epochOf(ids[0]!)}-1e3`,
      ]) {
        const { c, e, data } = await resetFor(gw, bad);
        assert.deepEqual(data, { reason: 'malformed', from: null, oldest: ids[0] });
        assert.ok(seqOf(e.id) >= 3, 'the reset carries the head cursor');
        c.close();
      }
      const { c, e } = await resetFor(gw, 'garbage');
      c.close();
      const again = await gw.stream({ topic: 'z.a' }, { headers: { 'Last-Event-ID': e.id! } });
      await gw.publish({ topic: 'z.a', data: 'next' });
      await again.waitFor((s) => s.events.some((x) => x.data === 'next'), 'the next event');
      assert.ok(!again.events.some((x) => x.event === 'herald.reset'), 'resuming from the reset id is exact');
      assert.deepEqual(
        again.events.map((x) => x.data),
        ['after-reset', 'next'],
      );
    });

    it('reset - a cursor from another epoch (a restarted broker) gets reason epoch', async (t) => {
      const old = await startGateway();
      const oldId = (await old.publish({ topic: 'z.a', data: 'x' })).body.id;
      await old.close();
      const gw = await startGateway();
      t.after(() => gw.close());
      const { data } = await resetFor(gw, oldId);
      assert.deepEqual(data, { reason: 'epoch', from: oldId, oldest: null });
    });

    it('reset - a cursor beyond the newest event gets reason ahead', async (t) => {
      const gw = await startGateway();
      t.after(() => gw.close());
      const [id] = await publishMany(gw, 'z.a', 1, 1);
      const ahead = `${epochOf(id!)}-99`;
      const { data } = await resetFor(gw, ahead);
      assert.deepEqual(data, { reason: 'ahead', from: ahead, oldest: id });
    });

    it('reset - a cursor older than the retained count gets reason expired with the oldest retained cursor', async (t) => {
      const gw = await startGateway({ ringSize: 16, historyMaxEvents: 20 });
      t.after(() => gw.close());
      const ids = await publishMany(gw, 'z.a', 1, 50);
      // Just before the oldest retained event (31): still exact.
      const exact = await gw.stream({ topic: 'z.a' }, { headers: { 'Last-Event-ID': ids[29]! } });
      await exact.waitFor((s) => s.events.length === 20, 'the retained events');
      assert.deepEqual(
        exact.events.map((e) => e.data),
        Array.from({ length: 20 }, (_, i) => String(i + 31)),
      );
      const { data } = await resetFor(gw, ids[4]!);
      assert.deepEqual(data, { reason: 'expired', from: ids[4], oldest: ids[30] });
    });

    it('reset - a cursor older than the retained age gets reason expired', async (t) => {
      const clock = new FakeClock();
      const gw = await startGateway({ ringSize: 16, historyMaxAgeMs: 60_000 }, { clock });
      t.after(() => gw.close());
      const old = await publishMany(gw, 'z.a', 1, 3);
      clock.tick(61_000);
      const fresh = await publishMany(gw, 'z.a', 4, 30);
      const { data } = await resetFor(gw, old[0]!);
      assert.deepEqual(data, { reason: 'expired', from: old[0], oldest: fresh[0] });
    });
  });
});
