import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkPattern,
  checkTopic,
  compilePattern,
  matches,
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
