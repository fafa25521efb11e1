import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameArena, Ring, type StoredEvent } from '../../src/internal.ts';

const ev = (seq: number, topic = 't'): StoredEvent => ({
  seq,
  topic,
  event: undefined,
  data: String(seq),
  time: 0,
});
const frameOf = (e: StoredEvent) => `id: ${e.seq}\ndata: ${e.data}\n\n`;
const all = () => true;
const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString();

describe('Ring', () => {
  it('holds the last `capacity` events and raises its floor as it evicts', () => {
    const r = new Ring(4, 1 << 20, 10);
    assert.equal(r.floor, 10);
    for (let s = 11; s <= 16; s++) r.push(ev(s), Buffer.from(frameOf(ev(s))));
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

  it('evicts the oldest events to stay within its byte budget', () => {
    const r = new Ring(100, 30, 0);
    for (let s = 1; s <= 5; s++) r.push(ev(s), Buffer.alloc(10));
    assert.equal(r.bytes, 30);
    assert.equal(r.floor, 2);
    assert.deepEqual(
      [...r.since(0)].map((e) => e.seq),
      [3, 4, 5],
    );
  });

  it('since(after) is every held event past `after`, for any sequence with gaps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 60 }),
        fc.nat(400),
        (cap, gaps, after) => {
          const r = new Ring(cap, 1 << 20, 0);
          const held: number[] = [];
          let seq = 0;
          for (const g of gaps) {
            seq += g;
            held.push(seq);
            r.push(ev(seq), Buffer.from(frameOf(ev(seq))));
          }
          assert.deepEqual(
            [...r.since(after)].map((e) => e.seq),
            held.slice(-cap).filter((s) => s > after),
          );
          assert.equal(r.floor, held.length > cap ? held[held.length - cap - 1] : 0);
        },
      ),
    );
  });

  it('collect returns exactly the wanted frames in order, merging frames adjacent in an arena', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 80 }),
        fc.subarray(['a', 'b', 'c']),
        fc.nat(80),
        fc.integer({ min: 64, max: 4096 }),
        (topics, wanted, after, segment) => {
          const arena = new FrameArena(segment);
          const r = new Ring(64, 1 << 20, 0);
          const events = topics.map((t, i) => ev(i + 1, t));
          for (const e of events) r.push(e, arena.append(frameOf(e)));
          const held = events.slice(-64);
          const expected = held.filter((e) => e.seq > after && wanted.includes(e.topic));
          const { chunks, last } = r.collect(after, (t) => wanted.includes(t));
          assert.equal(text(chunks), expected.map(frameOf).join(''));
          assert.equal(last, expected.at(-1)?.seq);
          assert.ok(chunks.length <= expected.length);
        },
      ),
    );
  });

  it('collect stays exact across many distinct topics, pushed and prepended', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(300), { minLength: 1, maxLength: 400 }),
        fc.array(fc.nat(300), { maxLength: 40 }),
        fc.integer({ min: 2, max: 12 }),
        (topics, older, cap) => {
          const arena = new FrameArena(256);
          const base = older.length;
          const r = new Ring(cap, 1 << 20, base);
          const events = topics.map((t, i) => ev(base + i + 1, `t${t}`));
          const before = older.map((t, i) => ev(i + 1, `t${t}`));
          r.prepend(
            0,
            before,
            before.map((e) => arena.append(frameOf(e))),
          );
          for (const e of events) r.push(e, arena.append(frameOf(e)));
          const held = [...before, ...events].slice(-cap);
          assert.deepEqual(
            [...r.since(0)].map((e) => e.seq),
            held.map((e) => e.seq),
          );
          const wanted = (t: string) => Number(t.slice(1)) % 3 === 0;
          const expected = held.filter((e) => wanted(e.topic));
          assert.equal(text(r.collect(0, wanted).chunks), expected.map(frameOf).join(''));
        },
      ),
    );
  });

  it('collect over consecutive arena frames is a single chunk', () => {
    const arena = new FrameArena();
    const r = new Ring(1000, 1 << 20, 0);
    for (let s = 1; s <= 1000; s++) r.push(ev(s), arena.append(frameOf(ev(s))));
    const { chunks, last } = r.collect(10, all);
    assert.equal(chunks.length, 1);
    assert.equal(last, 1000);
  });

  it('prepend fills the ring below its floor with as many of the newest older events as fit', () => {
    const r = new Ring(5, 1 << 20, 10);
    for (let s = 11; s <= 12; s++) r.push(ev(s), Buffer.from(frameOf(ev(s))));
    const older = [4, 6, 7, 9, 10].map((s) => ev(s));
    const taken = r.prepend(
      3,
      older,
      older.map((e) => Buffer.from(frameOf(e))),
    );
    assert.equal(taken, 3);
    assert.equal(r.floor, 6);
    assert.equal(text(r.collect(0, all).chunks), [7, 9, 10, 11, 12].map((s) => frameOf(ev(s))).join(''));
    // Later pushes evict the prepended events first.
    r.push(ev(13), Buffer.from(frameOf(ev(13))));
    assert.equal(r.floor, 7);
  });

  it('prepend of everything down to `after` lowers the floor to `after`', () => {
    const r = new Ring(10, 1 << 20, 5);
    const older = [2, 5].map((s) => ev(s));
    r.prepend(
      1,
      older,
      older.map((e) => Buffer.from(frameOf(e))),
    );
    assert.equal(r.floor, 1);
    assert.deepEqual(
      [...r.since(0)].map((e) => e.seq),
      [2, 5],
    );
  });

  it('an arena never rewrites bytes it handed out', () => {
    const arena = new FrameArena(64);
    const frames = Array.from({ length: 200 }, (_, i) => arena.append(`frame ${i}\n`));
    frames.forEach((f, i) => {
      assert.equal(f.toString(), `frame ${i}\n`);
    });
    assert.equal(arena.append('x'.repeat(100)).toString(), 'x'.repeat(100));
  });
});
