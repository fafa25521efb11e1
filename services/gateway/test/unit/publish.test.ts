import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeraldError } from '@herald/protocol';
import { parsePublish } from '../../src/internal.ts';

const limits = { maxMessageBytes: 16, maxBatch: 3 };
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof HeraldError) return err.code;
    throw err;
  }
  return 'none';
};

describe('parsePublish', () => {
  it('takes one message or a batch; non-string data becomes its JSON text', () => {
    assert.deepEqual(parsePublish({ topic: 'a', data: { x: 1 } }, undefined, limits), {
      batch: false,
      messages: [{ topic: 'a', data: '{"x":1}', event: undefined, key: undefined }],
    });
    const b = parsePublish(
      {
        messages: [
          { topic: 'a', data: 'x', event: 'e.v' },
          { topic: 'b', data: 2, key: 'k' },
        ],
      },
      'hk',
      limits,
    );
    assert.deepEqual(b.messages, [
      { topic: 'a', data: 'x', event: 'e.v', key: 'hk:0' },
      { topic: 'b', data: '2', event: undefined, key: 'k' },
    ]);
  });

  it('counts the size in UTF-8 bytes', () => {
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'é'.repeat(8) }, undefined, limits)),
      'none',
    );
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'é'.repeat(9) }, undefined, limits)),
      'HERALD_MESSAGE_TOO_LARGE',
    );
  });

  it('refuses each kind of bad input with its code', () => {
    assert.equal(
      code(() => parsePublish(null, undefined, limits)),
      'HERALD_BODY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ messages: {} }, undefined, limits)),
      'HERALD_BODY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ messages: [], extra: 1 }, undefined, limits)),
      'HERALD_BODY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ messages: [1] }, undefined, limits)),
      'HERALD_BODY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ topic: '>', data: 'x' }, undefined, limits)),
      'HERALD_TOPIC_WILDCARD',
    );
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'x', event: 7 }, undefined, limits)),
      'HERALD_EVENT_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'x', key: 7 }, undefined, limits)),
      'HERALD_IDEMPOTENCY_KEY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'x', key: 'k'.repeat(129) }, undefined, limits)),
      'HERALD_IDEMPOTENCY_KEY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ topic: 'a', data: 'x' }, 'ünïcode', limits)),
      'HERALD_IDEMPOTENCY_KEY_INVALID',
    );
    assert.equal(
      code(() => parsePublish({ messages: [1, 2, 3, 4] }, undefined, limits)),
      'HERALD_BATCH_TOO_LARGE',
    );
  });
});
