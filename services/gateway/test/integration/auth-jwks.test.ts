import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { type ErrorCode, HeraldError } from '@herald/protocol';
import { FakeClock } from '@herald/testkit';
import { type JWTPayload, SignJWT } from 'jose';
import {
  Authenticator,
  type AuthSettings,
  authOptions,
  JWKS_COOLDOWN_MS as COOLDOWN,
  type Credentials,
  JWKS_TIMEOUT_MS,
} from '../../src/auth/index.ts';
import { defaultConfig } from '../../src/config.ts';
import { authSettingsOf } from '../../src/edge.ts';

const START = Date.UTC(2026, 0, 1);
const SEC = START / 1000;
/** The config's defaults (mode jwt, no keys); each test adds the JWKS URL. */
const DEFAULTS = authSettingsOf(defaultConfig());
const REFRESH = DEFAULTS.jwksRefreshMs;
const MAX_STALE = DEFAULTS.jwksMaxStaleMs;

interface Pair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaNext = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const jwk = (pair: Pair, kid: string) => ({ ...pair.publicKey.export({ format: 'jwk' }), kid, use: 'sig' });

/** A JWKS endpoint on 127.0.0.1 whose answers the test steers, counting the requests it gets. */
interface JwksServer {
  readonly url: string;
  readonly requests: number;
  keys: object[];
  /** Answered instead of the JWKS when not 200. */
  status: number;
  /** Never answers, to exercise the fetch timeout. */
  hang: boolean;
  /** Resolves once the server has received `n` requests in all. */
  untilRequests(n: number): Promise<void>;
}

async function startJwksServer(t: TestContext, keys: object[]): Promise<JwksServer> {
  let requests = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const state = {
    keys,
    status: 200,
    hang: false,
    url: '',
    get requests() {
      return requests;
    },
    untilRequests(n: number) {
      return requests >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
    },
  };
  const server = createServer((_req, res) => {
    requests++;
    for (const w of waiters.splice(0))
      if (requests >= w.n) w.resolve();
      else waiters.push(w);
    if (state.hang) return;
    if (state.status !== 200) {
      res.writeHead(state.status).end('down');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/jwk-set+json' })
      .end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  return state;
}

function authFor(t: TestContext, server: { url: string }, settings: Partial<AuthSettings> = {}) {
  const clock = new FakeClock(START);
  const auth = new Authenticator(authOptions({ ...DEFAULTS, jwksUrl: server.url, ...settings }), clock);
  t.after(() => auth.close());
  return { clock, auth };
}

function sign(pair: Pair, alg: string, kid: string, claims: JWTPayload = {}): Promise<string> {
  return new SignJWT({ sub: 'user-1', iat: SEC, exp: SEC + 60, herald: { subscribe: ['a.>'] }, ...claims })
    .setProtectedHeader({ alg, kid })
    .sign(pair.privateKey);
}

const jwt = (token: string): Credentials => ({ kind: 'jwt', token, source: 'header' });

async function accepted(auth: Authenticator, token: string): Promise<void> {
  const p = await auth.authenticate(jwt(token));
  assert.deepEqual([p.via, p.subject, p.subscribe], ['jwt', 'user-1', ['a.>']]);
}

async function refused(auth: Authenticator, token: string, code: ErrorCode, detail?: RegExp): Promise<void> {
  await assert.rejects(auth.authenticate(jwt(token)), (err) => {
    assert.ok(err instanceof HeraldError, String(err));
    assert.equal(err.code, code, err.message);
    if (detail) assert.match(err.message, detail);
    assert.ok(!err.message.includes(token));
    return true;
  });
}

const kinds: ReadonlyArray<{ alg: string; pair: Pair; stranger: Pair }> = [
  { alg: 'RS256', pair: rsa, stranger: rsaNext },
  { alg: 'ES256', pair: ec, stranger: generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  { alg: 'EdDSA', pair: ed, stranger: generateKeyPairSync('ed25519') },
];

for (const { alg, pair, stranger } of kinds) {
  describe(`auth-jwks - ${alg} keys from a JWKS URL`, () => {
    const setup = async (t: TestContext, settings: Partial<AuthSettings> = {}) => {
      const server = await startJwksServer(t, [jwk(rsa, 'rsa-1'), jwk(ec, 'ec-1'), jwk(ed, 'ed-1')]);
      const { clock, auth } = authFor(t, server, settings);
      await auth.start();
      return { server, clock, auth, kid: `${alg === 'RS256' ? 'rsa' : alg === 'ES256' ? 'ec' : 'ed'}-1` };
    };

    it('a valid token verifies with the key its kid names', async (t) => {
      const { auth, kid } = await setup(t);
      await accepted(auth, await sign(pair, alg, kid));
    });

    it('expired: HERALD_TOKEN_EXPIRED; not yet valid: HERALD_TOKEN_NOT_YET_VALID', async (t) => {
      const { auth, kid } = await setup(t);
      await refused(
        auth,
        await sign(pair, alg, kid, { iat: SEC - 120, exp: SEC - 60 }),
        'HERALD_TOKEN_EXPIRED',
      );
      await refused(auth, await sign(pair, alg, kid, { nbf: SEC + 60 }), 'HERALD_TOKEN_NOT_YET_VALID');
    });

    it('leeway: valid until 5 s past exp, expired from then on', async (t) => {
      const { auth, clock, kid } = await setup(t, { leewayMs: 5_000 });
      const token = await sign(pair, alg, kid);
      clock.tick(64_999);
      await accepted(auth, token);
      clock.tick(1);
      await refused(auth, token, 'HERALD_TOKEN_EXPIRED');
    });

    it('a token signed by another key under a listed kid is refused with HERALD_TOKEN_INVALID', async (t) => {
      const { auth, kid } = await setup(t);
      await refused(auth, await sign(stranger, alg, kid), 'HERALD_TOKEN_INVALID', /signature/);
    });

    it('alg none under a listed kid is refused with HERALD_TOKEN_INVALID and fetches nothing', async (t) => {
      const { auth, server, clock, kid } = await setup(t);
      clock.tick(COOLDOWN);
      const part = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
      await refused(
        auth,
        `${part({ alg: 'none', kid })}.${part({ sub: 'x', exp: SEC + 600 })}.`,
        'HERALD_TOKEN_INVALID',
      );
      assert.equal(server.requests, 1);
    });
  });
}

describe('auth-jwks - fetching, caching and rotation', () => {
  it('an unknown kid triggers at most one refetch per cooldown, however many tokens name one', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    const { clock, auth } = authFor(t, server);
    await auth.start();
    assert.equal(server.requests, 1);
    // Within the cooldown of the start fetch: refused without fetching.
    await refused(auth, await sign(rsa, 'RS256', 'random-0'), 'HERALD_TOKEN_INVALID', /kid/);
    assert.equal(server.requests, 1);
    clock.tick(COOLDOWN);
    for (let i = 1; i <= 5; i++)
      await refused(auth, await sign(rsa, 'RS256', `random-${i}`), 'HERALD_TOKEN_INVALID');
    assert.equal(server.requests, 2);
    clock.tick(COOLDOWN);
    const flood = await Promise.all(Array.from({ length: 20 }, (_, i) => sign(rsa, 'RS256', `flood-${i}`)));
    await Promise.all(flood.map((token) => refused(auth, token, 'HERALD_TOKEN_INVALID')));
    assert.equal(server.requests, 3);
  });

  it('a key added to the JWKS is picked up by the unknown-kid refetch once the cooldown has passed', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    const { clock, auth } = authFor(t, server);
    await auth.start();
    server.keys = [jwk(rsa, 'rsa-1'), jwk(rsaNext, 'rsa-2')];
    const next = await sign(rsaNext, 'RS256', 'rsa-2');
    await refused(auth, next, 'HERALD_TOKEN_INVALID', /kid/);
    clock.tick(COOLDOWN);
    await accepted(auth, next);
    await accepted(auth, await sign(rsa, 'RS256', 'rsa-1'));
    assert.equal(server.requests, 2);
  });

  it('rotation: old tokens verify while the old key is listed, and are refused once a refresh drops it', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    const { clock, auth } = authFor(t, server);
    await auth.start();
    const old = await sign(rsa, 'RS256', 'rsa-1', { exp: SEC + 3600 });
    const next = await sign(rsaNext, 'RS256', 'rsa-2', { exp: SEC + 3600 });
    server.keys = [jwk(rsa, 'rsa-1'), jwk(rsaNext, 'rsa-2')];
    clock.tick(REFRESH);
    // The periodic refresh fetched by itself; refreshKeys joins that fetch rather than starting one.
    await server.untilRequests(2);
    await auth.refreshKeys();
    assert.equal(server.requests, 2);
    await accepted(auth, old);
    await accepted(auth, next);
    server.keys = [jwk(rsaNext, 'rsa-2')];
    clock.tick(REFRESH);
    await server.untilRequests(3);
    await auth.refreshKeys();
    await refused(auth, old, 'HERALD_TOKEN_INVALID', /kid/);
    await accepted(auth, next);
    assert.equal(server.requests, 3);
  });

  it('endpoint down at start: HERALD_AUTH_UNAVAILABLE without hammering it, then keys once it is up', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    server.status = 500;
    const { clock, auth } = authFor(t, server);
    await auth.start();
    const token = await sign(rsa, 'RS256', 'rsa-1');
    for (let i = 0; i < 3; i++) await refused(auth, token, 'HERALD_AUTH_UNAVAILABLE', /HTTP 500/);
    assert.equal(server.requests, 1);
    server.status = 200;
    clock.tick(COOLDOWN);
    await accepted(auth, token);
    assert.equal(server.requests, 2);
  });

  it('endpoint unreachable at start: HERALD_AUTH_UNAVAILABLE, and the error is a HeraldError with status 503', async (t) => {
    const server = await startJwksServer(t, []);
    const { auth } = authFor(t, { url: server.url.replace(/:\d+\//, ':1/') });
    await auth.start();
    await assert.rejects(auth.authenticate(jwt(await sign(rsa, 'RS256', 'rsa-1'))), (err) => {
      assert.ok(err instanceof HeraldError);
      assert.deepEqual([err.code, err.status], ['HERALD_AUTH_UNAVAILABLE', 503]);
      return true;
    });
  });

  it('endpoint down after keys were cached: they keep working until jwksMaxStaleMs, then HERALD_AUTH_UNAVAILABLE', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    const { clock, auth } = authFor(t, server);
    await auth.start();
    const token = await sign(rsa, 'RS256', 'rsa-1', { exp: SEC + 7200 });
    server.status = 503;
    clock.tick(MAX_STALE);
    await auth.refreshKeys();
    await accepted(auth, token);
    clock.tick(1);
    await refused(auth, token, 'HERALD_AUTH_UNAVAILABLE', /HTTP 503/);
    server.status = 200;
    clock.tick(COOLDOWN);
    await accepted(auth, token);
  });

  it('a fetch that does not answer is abandoned after JWKS_TIMEOUT_MS on the clock', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    server.hang = true;
    const { clock, auth } = authFor(t, server);
    const started = auth.start();
    await server.untilRequests(1);
    clock.tick(JWKS_TIMEOUT_MS);
    await started;
    await refused(auth, await sign(rsa, 'RS256', 'rsa-1'), 'HERALD_AUTH_UNAVAILABLE', /timed out/);
  });

  it('close() stops the refresh timer', async (t) => {
    const server = await startJwksServer(t, [jwk(rsa, 'rsa-1')]);
    const { clock, auth } = authFor(t, server);
    await auth.start();
    assert.equal(clock.pending, 1);
    auth.close();
    assert.equal(clock.pending, 0);
    await auth.refreshKeys();
    assert.equal(server.requests, 1);
  });
});
