import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatCursor, parseCursor } from '../src/index.ts';

describe('cursor', () => {
  it('round-trips every valid cursor', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9]{1,32}$/), fc.maxSafeNat(), (epoch, seq) => {
        assert.deepEqual(parseCursor(formatCursor({ epoch, seq })), { epoch, seq });
      }),
    );
  });

  it('parses strictly: anything but the canonical form is refused', () => {
    for (const bad of [
      '',
      '-',
      'e1',
      'e1-',
      '-5',
      'e1-05',
      'e1- 5',
      ' e1-5',
      'e1-5 ',
      'e1--5',
      'e1-+5',
      'e1-5.0',
      'e1-1e3',
      'e_1-5',
      'e1-99999999999999999',
      `${'a'.repeat(33)}-1`,
      'e1-5\n',
      'e1-5\0',
    ]) {
      assert.equal(parseCursor(bad), undefined, JSON.stringify(bad));
    }
    assert.deepEqual(parseCursor('e1-0'), { epoch: 'e1', seq: 0 });
    assert.deepEqual(parseCursor('Ab9-9007199254740991'), { epoch: 'Ab9', seq: Number.MAX_SAFE_INTEGER });
    assert.equal(parseCursor('Ab9-9007199254740992'), undefined);
  });

  it('refuses to format an invalid cursor', () => {
    assert.throws(() => formatCursor({ epoch: 'a-b', seq: 1 }), /invalid epoch/);
    assert.throws(() => formatCursor({ epoch: 'ab', seq: -1 }), /invalid sequence/);
  });
});
