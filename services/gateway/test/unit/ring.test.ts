import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Ring, type StoredEvent } from '../../src/index.ts';

const ev = (seq: number): StoredEvent => ({ seq, topic: 't', event: undefined, data: String(seq), time: 0 });

describe('Ring', () => {
  it('holds the last `capacity` events and raises its floor as it evicts', () => {
    const r = new Ring(4, 10);
    assert.equal(r.floor, 10);
    for (let s = 11; s <= 16; s++) r.push(ev(s));
    assert.equal(r.floor, 12);
    assert.deepEqual(
      [...r.since(12)].map((e) => e.seq),
      [13, 14, 15, 16],
    );
    assert.deepEqual(
      [...r.since(14)].map((e) => e.seq),
      [15, 16],
    );
    assert.deepEqual([...r.since(16)], []);
  });

  it('since(after) is every held event past `after`, for any sequence with gaps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 60 }),
        fc.nat(400),
        (cap, gaps, after) => {
          const r = new Ring(cap, 0);
          const all: number[] = [];
          let seq = 0;
          for (const g of gaps) {
            seq += g;
            all.push(seq);
            r.push(ev(seq));
          }
          const held = all.slice(-cap);
          assert.deepEqual(
            [...r.since(after)].map((e) => e.seq),
            held.filter((s) => s > after),
          );
          assert.equal(r.floor, all.length > cap ? all[all.length - cap - 1] : 0);
        },
      ),
    );
  });
});
