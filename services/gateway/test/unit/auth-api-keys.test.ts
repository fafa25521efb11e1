import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiKeyRing, AuthConfigError, parseApiKeys } from '../../src/auth/index.ts';

const A = 'k-aaaaaaaaaaaaaaaa';
const B = 'k-bbbbbbbbbbbbbbbb';
const C = 'k-cccccccccccccccc';

describe('parseApiKeys', () => {
  it('reads one key per line, patterns defaulting to everything; skips blanks and comments', () => {
    const keys = parseApiKeys(`# backends\n\n${A}\n  ${B}   orders.>,billing.*  \r\n# ${C}\n${C} audit\n`);
    assert.deepEqual(keys, [
      { key: A, publish: ['>'] },
      { key: B, publish: ['orders.>', 'billing.*'] },
      { key: C, publish: ['audit'] },
    ]);
    assert.ok(Object.isFrozen(keys) && Object.isFrozen(keys[0]) && Object.isFrozen(keys[0]!.publish));
  });

  it('an empty file holds no keys', () => {
    assert.deepEqual(parseApiKeys('\n# none yet\n'), []);
  });

  it('a bad line is refused naming its number, never the key', () => {
    const cases: Array<[string, RegExp]> = [
      [`${A}\n${B} orders..x`, /line 2: pattern 1 has an empty token/],
      [`\n\n${A} a,b.>.c`, /line 3: pattern 2 uses '>' before the last token/],
      [`${A} a,`, /line 1: pattern 2 is empty/],
      [`${A} a b`, /line 1: expected <key>/],
      ['tiny-key', /line 1: the key is shorter than 16 characters/],
      [`${A}\n${A} x`, /line 2: the same key as line 1/],
      [`k-ééééééééééééééé`, /line 1: the key has non-ASCII characters/],
    ];
    for (const [text, why] of cases)
      assert.throws(
        () => parseApiKeys(text),
        (err) => {
          assert.ok(err instanceof AuthConfigError && err.option === 'apiKeys', String(err));
          assert.match(err.message, why);
          assert.ok(
            !err.message.includes(A) && !err.message.includes('tiny-key') && !err.message.includes('ééé'),
          );
          return true;
        },
      );
  });
});

describe('ApiKeyRing', () => {
  const ring = new ApiKeyRing(parseApiKeys(`${A} a\n${B} b\n${C} c`));

  it('finds a key and its position', () => {
    assert.deepEqual(ring.lookup(B), { key: { key: B, publish: ['b'] }, index: 1 });
    assert.equal(ring.lookup(C)?.index, 2);
  });

  it('finds nothing for prefixes, extensions, case changes or the empty string', () => {
    for (const presented of ['', A.slice(0, -1), `${A}x`, A.toUpperCase(), ` ${A}`])
      assert.equal(ring.lookup(presented), undefined, JSON.stringify(presented));
  });

  it('an empty ring finds nothing', () => {
    assert.equal(new ApiKeyRing([]).lookup(A), undefined);
  });
});
