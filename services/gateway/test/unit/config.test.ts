import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamConfig } from '@nats-io/jetstream';
import { ConfigError, parseConfig, settings, streamProblems } from '../../src/internal.ts';

describe('config', () => {
  it('defaults every setting and freezes the result', () => {
    const c = parseConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.broker, 'memory');
    assert.equal(c.heartbeatMs, 15_000);
    assert.equal(c.demo, false);
    assert.ok(Object.isFrozen(c));
    assert.equal(Object.keys(c).length, Object.keys(settings).length);
  });

  it('parses each type strictly', () => {
    const c = parseConfig({
      HERALD_PORT: '0',
      HERALD_DEMO: 'true',
      HERALD_LOG_LEVEL: 'debug',
      HERALD_RELEASE_VERSION: 'v2.0.1-rc.1',
    });
    assert.equal(c.port, 0);
    assert.equal(c.demo, true);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.releaseVersion, 'v2.0.1-rc.1');
    assert.equal(parseConfig({ HERALD_PORT: '' }).port, 8080, 'empty means unset');
  });

  it('names the variable and what it accepts on bad input', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ HERALD_PORT: '08' }, /^HERALD_PORT: expected a whole number/],
      [{ HERALD_PORT: '-1' }, /^HERALD_PORT: expected a whole number/],
      [{ HERALD_HEARTBEAT_MS: '10' }, /^HERALD_HEARTBEAT_MS: must be between 1000 and 300000, got 10/],
      [{ HERALD_RELEASE_VERSION: 'v1\r\nX-Evil: 1' }, /^HERALD_RELEASE_VERSION: must match/],
      [{ HERALD_LOG_LEVEL: 'loud' }, /^HERALD_LOG_LEVEL: expected one of debug, info, warn, error/],
      [{ HERALD_PROT: '1' }, /^HERALD_PROT: is not a Herald setting/],
      [
        { HERALD_HEADERS_TIMEOUT_MS: '20000', HERALD_REQUEST_TIMEOUT_MS: '15000' },
        /^HERALD_REQUEST_TIMEOUT_MS: must be at least HERALD_HEADERS_TIMEOUT_MS \(20000\), got 15000/,
      ],
    ];
    for (const [env, message] of cases) {
      assert.throws(
        () => parseConfig(env),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    }
    assert.doesNotThrow(
      () => parseConfig({ PATH: '/bin', NODE_OPTIONS: '' }),
      'other variables are not ours',
    );
  });
});

describe('streamProblems', () => {
  const base = { name: 'S', subjects: ['herald.t.>'], retention: 'limits' } as unknown as StreamConfig;
  it('accepts a limits stream holding exactly herald.t.>', () => {
    assert.deepEqual(streamProblems(base), []);
  });
  it('names what does not suit Herald', () => {
    const problems = streamProblems({
      ...base,
      subjects: ['herald.t.>', 'other.>'],
      retention: 'workqueue',
    } as StreamConfig);
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /subjects must be exactly \["herald\.t\.>"\]/);
    assert.match(problems[1]!, /retention must be "limits"/);
  });
});
