import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkPattern,
  checkTopic,
  compilePattern,
  matches,
  minimalPatterns,
  patternCovers,
  subjectToTopic,
  topicToSubject,
} from '../src/index.ts';

describe('topic grammar', () => {
  it('accepts dot-separated tokens up to 128 characters', () => {
    for (const ok of ['a', 'chat.room-1', 'A_b.c-d.9', 'x'.repeat(128)])
      assert.deepEqual(checkTopic(ok), { ok: true }, ok);
  });

  it('refuses empty tokens, foreign characters, wildcards and overlong topics, saying why', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['a..b', /empty token/],
      ['.a', /empty token/],
      ['a.', /empty token/],
      ['a b', /characters outside/],
      ['a/b', /characters outside/],
      ['é', /characters outside/],
      ['a.*', /wildcard/],
      ['a.>', /wildcard/],
      ['x'.repeat(129), /longer than 128/],
    ];
    for (const [topic, why] of cases) {
      const r = checkTopic(topic);
      assert.equal(r.ok, false, topic);
      if (!r.ok) assert.match(r.reason, why, topic);
    }
  });

  it('patterns allow * anywhere and > only last', () => {
    for (const ok of ['*', '>', 'a.*', '*.b', 'a.*.c', 'a.>', '*.>'])
      assert.deepEqual(checkPattern(ok), { ok: true }, ok);
    for (const bad of ['>.a', 'a.>.b', 'a*', 'a.b*', '**', 'a.>>'])
      assert.equal(checkPattern(bad).ok, false, bad);
  });

  it('matches with NATS semantics', () => {
    const m = (p: string, t: string) => matches(compilePattern(p), t);
    assert.ok(m('a.b', 'a.b'));
    assert.ok(!m('a.b', 'a.b.c'));
    assert.ok(m('a.*', 'a.b'));
    assert.ok(!m('a.*', 'a.b.c'));
    assert.ok(!m('a.*', 'a'));
    assert.ok(m('a.>', 'a.b'));
    assert.ok(m('a.>', 'a.b.c'));
    assert.ok(!m('a.>', 'a'));
    assert.ok(m('*.b.>', 'x.b.y.z'));
    assert.ok(m('>', 'anything.at.all'));
    assert.ok(!m('*', 'a.b'));
  });

  it('maps topics to subjects under herald.t.', () => {
    assert.equal(topicToSubject('a.b'), 'herald.t.a.b');
    assert.equal(subjectToTopic('herald.t.a.b'), 'a.b');
    assert.equal(subjectToTopic('herald.ctl.shed'), undefined);
  });
});

// Small alphabets so that random patterns overlap often.
const patternOf = (literals: readonly string[]) =>
  fc
    .tuple(fc.array(fc.constantFrom(...literals, '*'), { minLength: 1, maxLength: 4 }), fc.boolean())
    .map(([tokens, tail]) => (tail ? [...tokens.slice(1), '>'] : tokens).join('.'));
const pattern = patternOf(['a', 'b']);
const matchesTopic = (p: string, t: string) => matches(compilePattern(p), t);

/**
 * Patterns are at most 4 tokens over {a, b}; topics up to 5 tokens over {a, b, c} hold a witness
 * for every non-inclusion (one token longer than any pattern, one letter no pattern uses).
 */
const universe: string[] = [];
const grow = (prefix: string[]) => {
  if (prefix.length > 0) universe.push(prefix.join('.'));
  if (prefix.length < 5) for (const t of ['a', 'b', 'c']) grow([...prefix, t]);
};
grow([]);

describe('patternCovers', () => {
  it('a grant covers a request when it matches every topic the request matches', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a.>', 'a.b.*', true],
      ['a.>', 'a.>', true],
      ['a.>', 'a.b', true],
      ['a.>', 'a', false],
      ['a.*', 'a.>', false],
      ['a.*', 'a.b', true],
      ['a.*', 'a.*', true],
      ['a.*.c', 'a.b.c', true],
      ['a.*.c', 'a.b.d', false],
      ['a.b', 'a.*', false],
      ['a.b', 'a.b', true],
      ['a.b', 'a.b.c', false],
      ['a.b.c', 'a.b', false],
      ['>', 'x', true],
      ['>', '*.>', true],
      ['>', '>', true],
      ['*', '>', false],
      ['*.>', '>', false],
      ['*.>', 'a.>', true],
      ['*.*', 'a.>', false],
    ];
    for (const [grant, requested, expected] of cases)
      assert.equal(patternCovers(grant, requested), expected, `${grant} covers ${requested}`);
  });

  it('every topic an instance of a covered request is matched by the grant', () => {
    // Instantiates a pattern: `*` becomes one random token, `>` one to three; at most 7 fill tokens.
    const instance = (p: string) =>
      fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 7, maxLength: 7 }).chain((fill) =>
        fc.integer({ min: 1, max: 3 }).map((tail) => {
          const out: string[] = [];
          let k = 0;
          for (const token of p.split('.')) {
            if (token === '*') out.push(fill[k++]!);
            else if (token === '>') for (let n = 0; n < tail; n++) out.push(fill[k++]!);
            else out.push(token);
          }
          return out.join('.');
        }),
      );
    fc.assert(
      fc.property(
        pattern,
        pattern.chain((r) => fc.tuple(fc.constant(r), fc.array(instance(r), { minLength: 1, maxLength: 8 }))),
        (g, [r, topics]) => {
          if (!patternCovers(g, r)) return;
          for (const t of topics) assert.ok(matchesTopic(g, t), `${g} covers ${r} but not ${t}`);
        },
      ),
    );
  });

  it('covers(p, p) for every pattern', () => {
    fc.assert(fc.property(patternOf(['a', 'b', 'c-1', 'x_y']), (p) => patternCovers(p, p)));
  });

  it('is exactly set inclusion over a bounded universe of topics', () => {
    fc.assert(
      fc.property(pattern, pattern, (g, r) => {
        const inclusion = universe.every((t) => !matchesTopic(r, t) || matchesTopic(g, t));
        assert.equal(patternCovers(g, r), inclusion, `${g} covers ${r}`);
      }),
    );
  });
});

describe('minimalPatterns', () => {
  it('drops the patterns another one covers, as a JetStream consumer needs', () => {
    const same = (a: string[], b: string[]) => assert.deepEqual([...a].sort(), [...b].sort());
    same(minimalPatterns(['a.x', 'a.>']), ['a.>']);
    same(minimalPatterns(['a.*', 'a.>']), ['a.>']);
    same(minimalPatterns(['a.x', 'a.*']), ['a.*']);
    same(minimalPatterns(['a.x', 'a.x']), ['a.x']);
    same(minimalPatterns(['a.*.c', 'a.b.*']), ['a.*.c', 'a.b.*']);
    same(minimalPatterns(['a.x', 'b.>', 'a.*.c', '>']), ['>']);
  });

  it('matches the same topics with none covering another', () => {
    fc.assert(
      fc.property(fc.array(pattern, { minLength: 1, maxLength: 6 }), (input) => {
        const out = minimalPatterns(input);
        for (const p of out)
          for (const q of out) assert.ok(p === q || !patternCovers(p, q), `${p} covers ${q}`);
        assert.equal(new Set(out).size, out.length, 'each once');
        for (const t of universe)
          assert.equal(
            out.some((p) => matchesTopic(p, t)),
            input.some((p) => matchesTopic(p, t)),
            t,
          );
      }),
    );
  });
});
