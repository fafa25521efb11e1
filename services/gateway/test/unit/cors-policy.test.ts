import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type CorsDecision, corsPolicy } from '../../src/cors/index.ts';

const LIST = ['https://app.example.com', 'https://*.example.org', 'http://localhost:3000'];
const decide = corsPolicy({ origins: LIST });
const get = (origin: string | undefined, host?: string) => decide({ method: 'GET', origin, host });
const kind = (d: CorsDecision) => d.kind;

describe('cors policy', () => {
  it('a request without Origin is not CORS, and still varies on Origin', () => {
    assert.deepEqual(get(undefined), { kind: 'not-cors', headers: { Vary: 'Origin' } });
  });

  it('a listed origin gets its exact Origin echoed with credentials and exposed headers', () => {
    assert.deepEqual(get('https://app.example.com'), {
      kind: 'actual',
      headers: {
        'Access-Control-Allow-Origin': 'https://app.example.com',
        'Access-Control-Allow-Credentials': 'true',
        'Access-Control-Expose-Headers': 'x-release-version',
        Vary: 'Origin',
      },
    });
  });

  it('an unlisted origin is forbidden with HERALD_ORIGIN_FORBIDDEN 403, on streams and preflights alike', () => {
    const d = get('https://evil.test');
    assert.deepEqual(d, {
      kind: 'forbidden',
      code: 'HERALD_ORIGIN_FORBIDDEN',
      status: 403,
      detail: 'origin "https://evil.test" is not allowed',
      headers: { Vary: 'Origin' },
    });
    assert.equal(
      kind(decide({ method: 'OPTIONS', origin: 'https://evil.test', requestMethod: 'POST' })),
      'forbidden',
    );
    assert.equal(kind(decide({ method: 'POST', origin: 'https://evil.test' })), 'forbidden');
  });

  it('the forbidden detail quotes and bounds the client-supplied origin', () => {
    const d = get(`https://${'a'.repeat(5000)}.test\r\nX: 1`);
    assert.ok(d.kind === 'forbidden');
    assert.ok(d.detail.length < 300);
    assert.doesNotMatch(d.detail, /[\r\n]/);
  });

  it('scheme and host compare case-insensitively; the request Origin is echoed verbatim', () => {
    const upper = corsPolicy({ origins: ['HTTPS://App.Example.COM'] });
    const d = upper({ method: 'GET', origin: 'https://APP.example.com' });
    assert.equal(d.kind, 'actual');
    assert.equal(d.headers['Access-Control-Allow-Origin'], 'https://APP.example.com');
    assert.equal(kind(get('HTTPS://APP.EXAMPLE.COM')), 'actual');
  });

  it('ports must match; a default port equals no port', () => {
    assert.equal(kind(get('http://localhost:3000')), 'actual');
    assert.equal(kind(get('http://localhost')), 'forbidden');
    assert.equal(kind(get('http://localhost:3001')), 'forbidden');
    assert.equal(kind(get('https://app.example.com:443')), 'actual');
    assert.equal(kind(get('https://app.example.com:8443')), 'forbidden');
    const withDefault = corsPolicy({ origins: ['https://app.example.com:443', 'http://x.test:80'] });
    assert.equal(kind(withDefault({ method: 'GET', origin: 'https://app.example.com' })), 'actual');
    assert.equal(kind(withDefault({ method: 'GET', origin: 'http://x.test' })), 'actual');
  });

  it('a wildcard matches subdomains at any depth, never the bare domain, a look-alike or another scheme', () => {
    for (const origin of ['https://a.example.org', 'https://a.b.example.org', 'https://A.Example.ORG']) {
      assert.equal(kind(get(origin)), 'actual', origin);
    }
    for (const origin of [
      'https://example.org',
      'https://evilexample.org',
      'https://a.evilexample.org',
      'http://a.example.org',
      'https://a.example.org:8443',
      'https://a.example.org.evil.test',
      'https://.example.org',
      'https://a..example.org',
    ]) {
      assert.equal(kind(get(origin)), 'forbidden', origin);
    }
  });

  it('a wildcard may carry a port, which must then match', () => {
    const p = corsPolicy({ origins: ['https://*.example.org:8443'] });
    assert.equal(kind(p({ method: 'GET', origin: 'https://a.example.org:8443' })), 'actual');
    assert.equal(kind(p({ method: 'GET', origin: 'https://a.example.org' })), 'forbidden');
  });

  it('Origin "null" matches only when listed literally, even with "*"', () => {
    assert.equal(kind(get('null')), 'forbidden');
    const any = corsPolicy({ origins: ['*'], credentials: false });
    assert.equal(kind(any({ method: 'GET', origin: 'null' })), 'forbidden');
    const listed = corsPolicy({ origins: ['null'] });
    const d = listed({ method: 'GET', origin: 'null' });
    assert.equal(d.kind, 'actual');
    assert.equal(d.headers['Access-Control-Allow-Origin'], 'null');
  });

  it('"*" allows any well-formed origin, echoed rather than "*", without credentials', () => {
    const any = corsPolicy({ origins: ['*'], credentials: false });
    assert.deepEqual(any({ method: 'GET', origin: 'https://whoever.test:9000' }), {
      kind: 'actual',
      headers: {
        'Access-Control-Allow-Origin': 'https://whoever.test:9000',
        'Access-Control-Expose-Headers': 'x-release-version',
        Vary: 'Origin',
      },
    });
    for (const origin of [
      '',
      'whoever',
      'https://a.test/path',
      'https://a.test\r\nSet-Cookie: x=1',
      'https://a.test, https://b.test',
    ]) {
      assert.equal(kind(any({ method: 'GET', origin })), 'forbidden', JSON.stringify(origin));
    }
  });

  it('preflight answers 204 material: the allow lists and max-age, whatever was requested', () => {
    const d = decide({
      method: 'OPTIONS',
      origin: 'https://app.example.com',
      requestMethod: 'DELETE',
      requestHeaders: 'x-custom, authorization',
    });
    assert.deepEqual(d, {
      kind: 'preflight',
      headers: {
        'Access-Control-Allow-Origin': 'https://app.example.com',
        'Access-Control-Allow-Credentials': 'true',
        Vary: 'Origin',
        'Access-Control-Allow-Methods': 'GET, POST',
        'Access-Control-Allow-Headers':
          'authorization, content-type, idempotency-key, last-event-id, x-release-version',
        'Access-Control-Max-Age': '600',
      },
    });
  });

  it('OPTIONS without Access-Control-Request-Method is an actual request, not a preflight', () => {
    assert.equal(kind(decide({ method: 'OPTIONS', origin: 'https://app.example.com' })), 'actual');
  });

  it('options shape the headers: credentials off, custom lists (lower-cased), max-age, empty expose', () => {
    const p = corsPolicy({
      origins: ['https://app.example.com'],
      credentials: false,
      maxAgeSeconds: 0,
      allowHeaders: ['Authorization', 'X-Trace'],
      exposeHeaders: [],
    });
    const pre = p({ method: 'OPTIONS', origin: 'https://app.example.com', requestMethod: 'GET' });
    assert.deepEqual(pre.headers, {
      'Access-Control-Allow-Origin': 'https://app.example.com',
      Vary: 'Origin',
      'Access-Control-Allow-Methods': 'GET, POST',
      'Access-Control-Allow-Headers': 'authorization, x-trace',
      'Access-Control-Max-Age': '0',
    });
    assert.deepEqual(p({ method: 'GET', origin: 'https://app.example.com' }).headers, {
      'Access-Control-Allow-Origin': 'https://app.example.com',
      Vary: 'Origin',
    });
  });

  it('an Origin naming the request Host is same-origin, not CORS (the gateway’s own pages)', () => {
    assert.equal(
      kind(decide({ method: 'POST', origin: 'http://gw.internal:8080', host: 'gw.internal:8080' })),
      'not-cors',
    );
    assert.equal(
      kind(decide({ method: 'POST', origin: 'http://GW.internal:8080', host: 'gw.INTERNAL:8080' })),
      'not-cors',
    );
    assert.equal(
      kind(decide({ method: 'POST', origin: 'https://gw.internal', host: 'gw.internal:443' })),
      'not-cors',
    );
    assert.equal(
      kind(decide({ method: 'POST', origin: 'http://gw.internal:8080', host: 'gw.internal' })),
      'forbidden',
    );
    assert.equal(
      kind(decide({ method: 'POST', origin: 'http://gw.internal:8080', host: 'other:8080' })),
      'forbidden',
    );
    assert.equal(
      kind(decide({ method: 'POST', origin: 'http://gw.internal:8080', host: 'a/b' })),
      'forbidden',
    );
  });

  it('refuses invalid entries at construction, naming the entry', () => {
    const cases: Array<[string, RegExp]> = [
      [
        'https://app.example.com/',
        /^Error: CORS origin "https:\/\/app\.example\.com\/": an origin has no path.*trailing slash/,
      ],
      ['https://app.example.com/app', /"https:\/\/app\.example\.com\/app": an origin has no path/],
      ['https://app.example.com?x=1', /no path, query or fragment/],
      ['app.example.com', /^Error: CORS origin "app\.example\.com": expected scheme:\/\/host\[:port\]/],
      ['https://user@app.example.com', /"https:\/\/user@app\.example\.com": expected/],
      ['https://app.example.com:99999', /:99999": expected/],
      ['https://app_1.example.com', /expected/],
      ['https://bücher.example', /expected/],
      [
        'https://*.com',
        /^Error: CORS origin "https:\/\/\*\.com": a wildcard needs a domain of at least two labels/,
      ],
      ['https://a.*.example.com', /expected/],
      ['*.example.com', /expected/],
      ['', /^Error: CORS origin "": expected/],
    ];
    for (const [entry, message] of cases) {
      assert.throws(() => corsPolicy({ origins: ['https://ok.test', entry] }), message, entry);
    }
  });

  it('refuses "*" with credentials at construction, saying what to do instead', () => {
    assert.throws(
      () => corsPolicy({ origins: ['*'] }),
      /^Error: CORS origin "\*": any origin cannot be combined with credentials; list the origins, or set credentials to false$/,
    );
    assert.throws(() => corsPolicy({ origins: ['*'], credentials: true }), /credentials/);
  });

  it('refuses bad header names and max-age', () => {
    assert.throws(
      () => corsPolicy({ origins: [], allowHeaders: ['x y'] }),
      /^Error: CORS allowHeaders: "x y"/,
    );
    assert.throws(
      () => corsPolicy({ origins: [], exposeHeaders: ['*'] }),
      /^Error: CORS exposeHeaders: "\*"/,
    );
    assert.throws(() => corsPolicy({ origins: [], maxAgeSeconds: -1 }), /^RangeError: CORS maxAgeSeconds/);
    assert.throws(() => corsPolicy({ origins: [], maxAgeSeconds: 1.5 }), /^RangeError: CORS maxAgeSeconds/);
  });

  it('an empty list forbids every cross-origin request', () => {
    const none = corsPolicy({ origins: [] });
    assert.equal(kind(none({ method: 'GET', origin: 'https://app.example.com' })), 'forbidden');
    assert.equal(kind(none({ method: 'GET' })), 'not-cors');
  });

  // Hosts built to sit near the listed ones: the listed names themselves, suffix and prefix
  // look-alikes, extra labels on either side, and random domains.
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
  const near = (base: string) =>
    fc.oneof(
      fc.constant(base),
      label.map((l) => `${l}.${base}`),
      label.map((l) => `${l}${base}`),
      label.map((l) => `${base}.${l}`),
      label.map((l) => `${base}${l}`),
      fc.tuple(label, label).map(([a, b]) => `${a}.${b}.${base}`),
    );
  const host = fc.oneof(
    near('app.example.com'),
    near('example.com'),
    near('example.org'),
    near('localhost'),
    fc.domain(),
  );
  const caseMix = (s: string, flips: readonly boolean[]) =>
    [...s].map((c, i) => (flips[i % Math.max(1, flips.length)] ? c.toUpperCase() : c)).join('');
  const origin = fc
    .tuple(
      // Weighted towards the listed scheme and port, so a fair share of runs land on allowed origins.
      fc.oneof({ weight: 3, arbitrary: fc.constant('https') }, fc.constantFrom('http', 'wss')),
      host,
      fc.option(fc.oneof(fc.constantFrom(80, 443, 3000, 8443), fc.integer({ min: 1, max: 65535 })), {
        nil: undefined,
        freq: 2,
      }),
      fc.array(fc.boolean(), { maxLength: 8 }),
    )
    .map(([scheme, h, port, flips]) => ({
      scheme,
      host: h,
      port,
      text: caseMix(`${scheme}://${h}${port === undefined ? '' : `:${port}`}`, flips),
    }));

  it('property - no origin outside the list is ever allowed (list without "*")', () => {
    const effectivePort = (scheme: string, port: number | undefined) =>
      port === undefined || (scheme === 'http' && port === 80) || (scheme === 'https' && port === 443)
        ? undefined
        : port;
    fc.assert(
      fc.property(origin, fc.constantFrom('GET', 'POST', 'OPTIONS'), (o, method) => {
        const port = effectivePort(o.scheme, o.port);
        const listed =
          (o.scheme === 'https' && port === undefined && o.host === 'app.example.com') ||
          (o.scheme === 'https' && port === undefined && o.host.endsWith('.example.org')) ||
          (o.scheme === 'http' && port === 3000 && o.host === 'localhost');
        const d = decide({ method, origin: o.text, requestMethod: method === 'OPTIONS' ? 'GET' : undefined });
        assert.equal(d.kind === 'actual' || d.kind === 'preflight', listed, o.text);
        if (d.kind === 'actual' || d.kind === 'preflight') {
          assert.equal(d.headers['Access-Control-Allow-Origin'], o.text);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('property - with exact entries, an origin is allowed exactly when it is listed (ignoring case)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.domain(), { minLength: 1, maxLength: 5 }),
        fc.domain(),
        (domains, candidate) => {
          const p = corsPolicy({ origins: domains.map((d) => `https://${d}`) });
          const probe = `https://${candidate.toUpperCase()}`;
          const listed = domains.includes(candidate);
          assert.equal(kind(p({ method: 'GET', origin: probe })), listed ? 'actual' : 'forbidden');
          assert.equal(kind(p({ method: 'GET', origin: `https://${domains[0]!}` })), 'actual');
        },
      ),
    );
  });
});
