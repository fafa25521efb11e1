import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamConfig } from '@nats-io/jetstream';
import { connectBurstOf, retryAfterSecondsOf } from '../../src/config.ts';
import { ConfigError, defaultConfig, parseConfig, settings, streamProblems } from '../../src/internal.ts';

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
      // Auth and admission take these as given: their bounds are only here.
      [
        { HERALD_JWKS_REFRESH_MS: '999' },
        /^HERALD_JWKS_REFRESH_MS: must be between 1000 and 86400000, got 999/,
      ],
      [
        { HERALD_JWKS_MAX_STALE_MS: '604800001' },
        /^HERALD_JWKS_MAX_STALE_MS: must be between 1000 and 604800000/,
      ],
      [
        { HERALD_JWKS_REFRESH_MS: '60000', HERALD_JWKS_MAX_STALE_MS: '1000' },
        /^HERALD_JWKS_MAX_STALE_MS: must be at least HERALD_JWKS_REFRESH_MS \(60000\), got 1000/,
      ],
      [
        { HERALD_JWKS_REFRESH_MS: '7200000' },
        /^HERALD_JWKS_MAX_STALE_MS: must be at least HERALD_JWKS_REFRESH_MS \(7200000\), got 3600000/,
      ],
      [{ HERALD_JWT_LEEWAY_MS: '-1' }, /^HERALD_JWT_LEEWAY_MS: expected a whole number/],
      [{ HERALD_JWT_LEEWAY_MS: '300001' }, /^HERALD_JWT_LEEWAY_MS: must be between 0 and 300000/],
      [{ HERALD_JWT_REQUIRE_EXP: 'no' }, /^HERALD_JWT_REQUIRE_EXP: expected 1, 0, true or false/],
      [{ HERALD_AUTH_QUERY_TOKEN: 'yes' }, /^HERALD_AUTH_QUERY_TOKEN: expected 1, 0, true or false/],
      [{ HERALD_AUTH: 'off' }, /^HERALD_AUTH: expected one of jwt, none/],
      [{ HERALD_MAX_CONNECTIONS: '-1' }, /^HERALD_MAX_CONNECTIONS: expected a whole number/],
      [{ HERALD_MAX_CONNECTIONS_PER_IP: '1.5' }, /^HERALD_MAX_CONNECTIONS_PER_IP: expected a whole number/],
      [
        { HERALD_MAX_CONNECTIONS_PER_SUBJECT: 'NaN' },
        /^HERALD_MAX_CONNECTIONS_PER_SUBJECT: expected a whole/,
      ],
      [{ HERALD_CONNECT_RATE: '1000001' }, /^HERALD_CONNECT_RATE: must be between 0 and 1000000/],
      [{ HERALD_CONNECT_BURST: '-5' }, /^HERALD_CONNECT_BURST: expected a whole number/],
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

  it('defaultConfig checks the relations between its overrides', () => {
    assert.throws(
      () => defaultConfig({ jwksRefreshMs: 60_000, jwksMaxStaleMs: 1_000 }),
      (err: unknown) => err instanceof ConfigError && err.variable === 'HERALD_JWKS_MAX_STALE_MS',
    );
  });

  it("derives the connect burst (0: one second's worth of the rate) and the Retry-After base", () => {
    assert.equal(connectBurstOf({ connectRate: 5, connectBurst: 9 }), 9);
    assert.equal(connectBurstOf({ connectRate: 5, connectBurst: 0 }), 5);
    assert.equal(connectBurstOf({ connectRate: 0, connectBurst: 0 }), 1, 'at least 1, though unused');
    assert.equal(retryAfterSecondsOf({ retryMs: 2000 }), 2);
    assert.equal(retryAfterSecondsOf({ retryMs: 2001 }), 3, 'rounded up');
    assert.equal(retryAfterSecondsOf({ retryMs: 0 }), 1, 'never 0, which would mean now');
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
