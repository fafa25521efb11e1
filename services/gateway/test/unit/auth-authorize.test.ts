import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALL_ACCESS, authorize, type Principal } from '../../src/auth/index.ts';

const user: Principal = {
  subject: 'u',
  subscribe: ['chat.room1', 'alerts.>', 'users.*.presence'],
  publish: ['chat.room1'],
  via: 'jwt',
};

const forbidden = (topic: string, action: string) => (err: unknown) => {
  const e = err as { code?: string; extra?: Record<string, unknown>; message: string };
  assert.equal(e.code, 'HERALD_FORBIDDEN');
  assert.deepEqual(e.extra, { topic, action });
  assert.match(e.message, new RegExp(action));
  return true;
};

describe('authorize', () => {
  it('allows topics and patterns covered by a grant, wildcards included', () => {
    authorize(user, 'subscribe', ['chat.room1', 'alerts.eu', 'alerts.eu.*', 'alerts.>', 'users.42.presence']);
    authorize(user, 'subscribe', ['users.*.presence']);
    authorize(user, 'publish', ['chat.room1']);
    authorize(user, 'subscribe', []);
  });

  it('refuses a pattern wider than every grant, naming the first uncovered one', () => {
    assert.throws(
      () => authorize(user, 'subscribe', ['chat.room1', 'chat.*', 'chat.>']),
      forbidden('chat.*', 'subscribe'),
    );
    assert.throws(() => authorize(user, 'subscribe', ['alerts']), forbidden('alerts', 'subscribe'));
    assert.throws(() => authorize(user, 'subscribe', ['users.>']), forbidden('users.>', 'subscribe'));
    assert.throws(() => authorize(user, 'subscribe', ['>']), forbidden('>', 'subscribe'));
  });

  it('keeps subscribe and publish grants apart', () => {
    assert.throws(() => authorize(user, 'publish', ['alerts.eu']), forbidden('alerts.eu', 'publish'));
    const publisher: Principal = { subscribe: [], publish: ['>'], via: 'apiKey' };
    authorize(publisher, 'publish', ['any.topic']);
    assert.throws(
      () => authorize(publisher, 'subscribe', ['any.topic']),
      forbidden('any.topic', 'subscribe'),
    );
  });

  it('a principal with no grants may do nothing; the all-access principal everything', () => {
    const nobody: Principal = { subscribe: [], publish: [], via: 'jwt' };
    assert.throws(() => authorize(nobody, 'subscribe', ['a']), forbidden('a', 'subscribe'));
    authorize(ALL_ACCESS, 'subscribe', ['>']);
    authorize(ALL_ACCESS, 'publish', ['a.b.c']);
  });
});
