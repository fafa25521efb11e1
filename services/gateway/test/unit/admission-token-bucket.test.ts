import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '@herald/testkit';
import fc from 'fast-check';
import { TokenBucket } from '../../src/admission/index.ts';

describe('TokenBucket', () => {
  it('lets a burst of up to `burst` through at once and tells the rest when the next token is due', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 2, burst: 3, clock });
    assert.equal(bucket.available, 3);
    for (let i = 0; i < 3; i++) assert.deepEqual(bucket.take(), { ok: true });
    assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 500 });
    assert.equal(bucket.available, 0);
  });

  it('a refused take consumes nothing, and the announced wait is exactly enough', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 4, burst: 1, clock });
    assert.ok(bucket.take().ok);
    clock.tick(100);
    assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 150 });
    assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 150 }, 'asking again does not push it back');
    clock.tick(149);
    assert.equal(bucket.take().ok, false);
    clock.tick(1);
    assert.ok(bucket.take().ok);
  });

  it('refills at the rate but never holds more than `burst`', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 5, clock });
    for (let i = 0; i < 5; i++) bucket.take();
    clock.tick(300);
    assert.equal(bucket.available, 3);
    clock.tick(3_600_000);
    assert.equal(bucket.available, 5);
    for (let i = 0; i < 5; i++) assert.ok(bucket.take().ok);
    assert.equal(bucket.take().ok, false);
  });

  it('supports fractional rates (one token every few seconds)', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ ratePerSecond: 0.25, burst: 1, clock });
    assert.ok(bucket.take().ok);
    assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 4000 });
    clock.tick(4000);
    assert.ok(bucket.take().ok);
  });

  it('a wall clock stepping backwards does not lock the bucket', () => {
    let now = 1_000_000;
    const bucket = new TokenBucket({ ratePerSecond: 1, burst: 1, clock: { now: () => now } });
    assert.ok(bucket.take().ok);
    now -= 3_600_000;
    assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 1000 }, 'a step back refills nothing');
    now += 1000;
    assert.ok(bucket.take().ok, 'time runs on from the stepped-back reading');
  });

  it('refuses a rate that is not > 0 and a burst that is not a whole number >= 1', () => {
    for (const ratePerSecond of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new TokenBucket({ ratePerSecond, burst: 1 }), /^RangeError: ratePerSecond/);
    }
    for (const burst of [0, 1.5, -2]) {
      assert.throws(() => new TokenBucket({ ratePerSecond: 1, burst }), /^RangeError: burst/);
    }
  });

  it('never passes more than burst + rate·elapsed, and waiting retryAfterMs always yields a token', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.oneof(fc.constant('take' as const), fc.integer({ min: 0, max: 2000 })), {
          maxLength: 200,
        }),
        (rate, burst, ops) => {
          const clock = new FakeClock();
          const start = clock.now();
          const bucket = new TokenBucket({ ratePerSecond: rate, burst, clock });
          let passed = 0;
          for (const op of ops) {
            if (op !== 'take') {
              clock.tick(op);
              continue;
            }
            const r = bucket.take();
            if (r.ok) passed++;
            else {
              assert.ok(r.retryAfterMs >= 1 && r.retryAfterMs <= Math.ceil(1000 / rate));
              clock.tick(r.retryAfterMs);
              assert.ok(bucket.take().ok, 'the announced wait suffices');
              passed++;
            }
            assert.ok(passed <= burst + ((clock.now() - start) * rate) / 1000 + 1e-9);
          }
        },
      ),
    );
  });
});
