import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compilePattern } from '@herald/protocol';
import { FakeClock } from '@herald/testkit';
import { MemoryBroker, type StoredEvent } from '../../src/internal.ts';

const msg = (topic: string, data: string, key?: string) => ({ topic, data, event: undefined, key });

describe('MemoryBroker', () => {
  it('assigns contiguous sequences, feeds followers in order and replays by pattern with a page limit', async () => {
    const clock = new FakeClock();
    const b = new MemoryBroker({ clock, maxEvents: 100, maxAgeMs: 60_000, dedupeWindowMs: 1000 });
    const seen: StoredEvent[] = [];
    b.follow({ event: (e) => seen.push(e), reset: () => assert.fail('no reset') });
    const acks = await b.publish([msg('a.1', 'x'), msg('b.1', 'y'), msg('a.2', 'z')]);
    assert.deepEqual(
      acks.map((a) => a.seq),
      [1, 2, 3],
    );
    assert.deepEqual(
      seen.map((e) => e.seq),
      [1, 2, 3],
    );
    const page = await b.replay({ after: 0, through: 3, patterns: [compilePattern('a.*')], limit: 1 });
    assert.deepEqual(page.kind === 'events' && [page.events.map((e) => e.data), page.reached], [['x'], 1]);
    const rest = await b.replay({ after: 1, through: 3, patterns: [compilePattern('a.*')], limit: 10 });
    assert.deepEqual(rest.kind === 'events' && [rest.events.map((e) => e.data), rest.reached], [['z'], 3]);
  });

  it('retains by count and by age, and says gone for what it dropped', async () => {
    const clock = new FakeClock();
    const b = new MemoryBroker({ clock, maxEvents: 3, maxAgeMs: 60_000, dedupeWindowMs: 0 });
    await b.publish([1, 2, 3, 4, 5].map((n) => msg('t', String(n))));
    assert.deepEqual({ ...b.state(), epoch: '' }, { epoch: '', first: 3, last: 5 });
    assert.equal(
      (await b.replay({ after: 1, through: 5, patterns: [compilePattern('t')], limit: 10 })).kind,
      'gone',
    );
    assert.equal(
      (await b.replay({ after: 2, through: 5, patterns: [compilePattern('t')], limit: 10 })).kind,
      'events',
    );
    clock.tick(60_001);
    assert.deepEqual({ ...b.state(), epoch: '' }, { epoch: '', first: 6, last: 5 }, 'all aged out: empty');
  });

  it('stores a repeated key once within the window', async () => {
    const clock = new FakeClock();
    const b = new MemoryBroker({ clock, maxEvents: 10, maxAgeMs: 60_000, dedupeWindowMs: 1000 });
    const [a] = await b.publish([msg('t', 'x', 'k')]);
    const [again, other] = await b.publish([msg('t', 'x', 'k'), msg('t', 'y', 'k2')]);
    const { epoch } = b.state();
    assert.deepEqual(again, { epoch, seq: a!.seq, duplicate: true });
    assert.deepEqual(other, { epoch, seq: 2, duplicate: false });
    clock.tick(1000);
    assert.deepEqual((await b.publish([msg('t', 'x', 'k')]))[0], { epoch, seq: 3, duplicate: false });
  });
});
