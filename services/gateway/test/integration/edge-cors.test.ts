import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { FakeClock, mintToken, refusalOf, TEST_HMAC_SECRET, writeTempFiles } from '@herald/testkit';

const ORIGINS = 'https://app.example.com,https://*.example.org';

async function startCorsGateway(t: TestContext): Promise<TestGateway> {
  const gw = await startGateway({ corsOrigins: ORIGINS });
  t.after(() => gw.close());
  return gw;
}

/** The response headers CORS decides, lower-cased, as a plain object (absent ones left out). */
function corsHeaders(get: (name: string) => string | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of [
    'access-control-allow-origin',
    'access-control-allow-credentials',
    'access-control-allow-methods',
    'access-control-allow-headers',
    'access-control-max-age',
    'access-control-expose-headers',
    'vary',
  ]) {
    const v = get(name);
    if (typeof v === 'string') out[name] = v;
  }
  return out;
}

const fromNode = (h: Readonly<Record<string, string | string[] | undefined>>) => (name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v.join(', ') : v;
};

describe('edge cors - HERALD_CORS_ORIGINS https://app.example.com,https://*.example.org', () => {
  it('cors - an allowed origin, listed or matching the wildcard, is echoed with credentials and Vary on stream and publish', async (t) => {
    const gw = await startCorsGateway(t);
    for (const origin of [
      'https://app.example.com',
      'https://eu.example.org',
      'https://a.b.example.org:443',
    ]) {
      const expected = {
        'access-control-allow-origin': origin,
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': 'x-release-version',
        vary: 'Origin',
      };
      const c = await gw.stream({ topic: 'cors.ok' }, { headers: { Origin: origin } });
      assert.equal(c.status, 200, origin);
      assert.deepEqual(corsHeaders(fromNode(c.headers)), expected, `stream from ${origin}`);
      const p = await gw.publish({ topic: 'cors.ok', data: origin }, { Origin: origin });
      assert.equal(p.status, 200, origin);
      assert.deepEqual(
        corsHeaders((n) => p.headers.get(n)),
        expected,
        `publish from ${origin}`,
      );
      await c.waitFor((s) => s.events.some((e) => e.data === origin), `the event published from ${origin}`);
    }
  });

  it('cors - an unlisted origin is refused 403 HERALD_ORIGIN_FORBIDDEN on stream, publish and preflight, with no allow headers and nothing stored', async (t) => {
    const gw = await startCorsGateway(t);
    const before = gw.gateway.broker.state().last;
    for (const origin of [
      'https://evil.example.com',
      'https://example.org', // the wildcard needs a subdomain
      'http://app.example.com', // another scheme
      'https://app.example.com:8443', // another port
      'https://app.example.com.evil.net',
      'null',
    ]) {
      const r = await refusalOf(await gw.stream({ topic: 'cors.no' }, { headers: { Origin: origin } }));
      assert.equal(r.status, 403, origin);
      assert.equal(r.contentType, 'application/problem+json');
      assert.equal(r.problem.code, 'HERALD_ORIGIN_FORBIDDEN', origin);
      assert.deepEqual(corsHeaders(fromNode(r.headers)), { vary: 'Origin' }, `stream from ${origin}`);

      const p = await gw.publish({ topic: 'cors.no', data: 'x' }, { Origin: origin });
      assert.equal(p.status, 403, origin);
      assert.equal(p.body.code, 'HERALD_ORIGIN_FORBIDDEN', origin);
      assert.deepEqual(
        corsHeaders((n) => p.headers.get(n)),
        { vary: 'Origin' },
        `publish from ${origin}`,
      );

      const pre = await fetch(`${gw.url}/v1/publish`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST' },
      });
      assert.equal(pre.status, 403, origin);
      assert.equal(((await pre.json()) as { code: string }).code, 'HERALD_ORIGIN_FORBIDDEN');
      assert.equal(pre.headers.get('access-control-allow-origin'), null);
    }
    assert.equal(gw.gateway.broker.state().last, before, 'nothing was stored');
    assert.equal(gw.gateway.hub.size, 0);
  });

  it('cors - a preflight from an allowed origin is answered 204 with the allowed methods and headers', async (t) => {
    const gw = await startCorsGateway(t);
    for (const [path, method, asked] of [
      ['/v1/publish', 'POST', 'content-type, authorization, idempotency-key'],
      ['/v1/stream', 'GET', 'last-event-id'],
    ] as const) {
      const res = await fetch(`${gw.url}${path}`, {
        method: 'OPTIONS',
        headers: {
          Origin: 'https://app.example.com',
          'Access-Control-Request-Method': method,
          'Access-Control-Request-Headers': asked,
        },
      });
      assert.equal(res.status, 204, path);
      assert.equal(await res.text(), '');
      assert.deepEqual(
        corsHeaders((n) => res.headers.get(n)),
        {
          'access-control-allow-origin': 'https://app.example.com',
          'access-control-allow-credentials': 'true',
          'access-control-allow-methods': 'GET, POST',
          'access-control-allow-headers':
            'authorization, content-type, idempotency-key, last-event-id, x-release-version',
          'access-control-max-age': '600',
          vary: 'Origin',
        },
        path,
      );
    }
  });

  it('cors - a same-origin request (Origin naming the gateway itself) is served as not CORS, not refused', async (t) => {
    const gw = await startCorsGateway(t);
    const self = gw.url; // http://127.0.0.1:<port>, which the client also sends as Host
    const c = await gw.stream({ topic: 'cors.self' }, { headers: { Origin: self } });
    assert.equal(c.status, 200);
    assert.deepEqual(corsHeaders(fromNode(c.headers)), { vary: 'Origin' });
    const p = await gw.publish({ topic: 'cors.self', data: 'same origin' }, { Origin: self });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(
      corsHeaders((n) => p.headers.get(n)),
      { vary: 'Origin' },
    );
    await c.waitFor((s) => s.events.some((e) => e.data === 'same origin'), 'the event');
    // Without an Origin at all (curl, a backend) it is not CORS either.
    const plain = await gw.stream({ topic: 'cors.self' });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
  });

  it('cors - refusals for other reasons (401, 403, 503) still carry the CORS headers to an allowed origin, so its page can read the problem', async (t) => {
    const files = writeTempFiles({ secrets: `${TEST_HMAC_SECRET}\n` });
    t.after(() => files.remove());
    const clock = new FakeClock();
    const gw = await startGateway(
      { corsOrigins: ORIGINS, auth: 'jwt', jwtSecretsFile: files.paths['secrets']!, maxConnections: 1 },
      { clock },
    );
    t.after(() => gw.close());
    const origin = 'https://app.example.com';
    const allowed = { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true' };
    const has = (h: Record<string, string>) => ({
      'access-control-allow-origin': h['access-control-allow-origin'],
      'access-control-allow-credentials': h['access-control-allow-credentials'],
    });
    const token = await mintToken({ subscribe: ['c.>'], expiresAt: clock.now() + 3_600_000 });
    const unauthenticated = await refusalOf(
      await gw.stream({ topic: 'c.a' }, { headers: { Origin: origin } }),
    );
    assert.equal(unauthenticated.status, 401);
    assert.deepEqual(has(corsHeaders(fromNode(unauthenticated.headers))), allowed);
    const publish = await gw.publish({ topic: 'c.a', data: 'x' }, { Origin: origin });
    assert.equal(publish.status, 401);
    assert.deepEqual(has(corsHeaders((n) => publish.headers.get(n))), allowed);
    const forbidden = await refusalOf(
      await gw.stream({ topic: 'd.a' }, { headers: { Origin: origin, Authorization: `Bearer ${token}` } }),
    );
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.problem.code, 'HERALD_FORBIDDEN');
    assert.deepEqual(has(corsHeaders(fromNode(forbidden.headers))), allowed);
    const headers = { Origin: origin, Authorization: `Bearer ${token}` };
    assert.equal((await gw.stream({ topic: 'c.a' }, { headers })).status, 200);
    const full = await refusalOf(await gw.stream({ topic: 'c.a' }, { headers }));
    assert.equal(full.status, 503);
    assert.deepEqual(has(corsHeaders(fromNode(full.headers))), allowed);
  });
});
