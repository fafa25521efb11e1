import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { FakeClock } from '@herald/testkit';
import { Hub, MemoryBroker, type Sink } from '../../src/index.ts';

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
});
