import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import type { Config } from '@herald/gateway';
import { DISCARD_MAX_MS } from '@herald/gateway/internal';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import {
  FakeClock,
  mintToken,
  refusalOf,
  type SseClient,
  TEST_HMAC_SECRET,
  type TokenSpec,
  unsignedToken,
  until,
  writeTempFiles,
} from '@herald/testkit';

/** Publish-only API keys: one limited to `orders.>`, one that may publish anywhere. */
// Drawn per run: no credential lives in the repository.
const ORDERS_KEY = randomBytes(16).toString('hex');
const ANY_KEY = randomBytes(16).toString('hex');
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

interface AuthGateway extends TestGateway {
  readonly clock: FakeClock;
  /** A token minted at the gateway's (fake) now, valid for an hour unless `spec` says otherwise. */
  token(spec?: TokenSpec): Promise<string>;
}

async function startAuthGateway(t: TestContext, overrides: Partial<Config> = {}): Promise<AuthGateway> {
  const clock = new FakeClock();
  const files = writeTempFiles({
    secrets: `# current secret\n${TEST_HMAC_SECRET}\n`,
    'api-keys': `# backends\n${ORDERS_KEY} orders.>\n${ANY_KEY}\n`,
  });
  t.after(() => files.remove());
  const gw = await startGateway(
    {
      auth: 'jwt',
      jwtSecretsFile: files.paths['secrets']!,
      apiKeysFile: files.paths['api-keys']!,
      ...overrides,
    },
    { clock, random: () => 0.5 },
  );
  t.after(() => gw.close());
  return {
    ...gw,
    clock,
    token: (spec = {}) => mintToken({ issuedAt: clock.now(), expiresAt: clock.now() + 60 * MINUTE, ...spec }),
  };
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** Asserts a stream request was refused with `status` and `code`, as problem+json and nothing else. */
async function assertRefused(c: SseClient, status: number, code: string) {
  const r = await refusalOf(c);
  assert.equal(r.status, status, `status of ${r.body}`);
  assert.equal(r.contentType, 'application/problem+json');
  assert.equal(r.problem.code, code);
  assert.equal(r.problem.status, status);
  assert.doesNotMatch(r.body, /^(retry|id|data|event):/m, 'no SSE field in a refusal');
  return r.problem;
}

describe('edge auth - streams and publishes with HERALD_AUTH=jwt and an HMAC secret', () => {
  it('auth - a token granting the topic opens the stream (200) and events published with a token arrive', async (t) => {
    const gw = await startAuthGateway(t);
    const reader = await gw.token({ sub: 'alice', subscribe: ['chat.room1', 'alerts.>'] });
    const c = await gw.stream({ topic: ['chat.room1', 'alerts.eu.*'] }, { headers: bearer(reader) });
    assert.equal(c.status, 200);
    assert.equal(c.headers['content-type'], 'text/event-stream; charset=utf-8');
    const writer = await gw.token({ sub: 'svc', publish: ['chat.>', 'alerts.>'] });
    const a = await gw.publish({ topic: 'chat.room1', data: 'hello' }, bearer(writer));
    const b = await gw.publish({ topic: 'alerts.eu.fr', data: 'fire' }, bearer(writer));
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    await c.waitFor((s) => s.events.length === 2, 'both events');
    assert.deepEqual(
      c.events.map((e) => [e.id, e.data]),
      [
        [a.body.id, 'hello'],
        [b.body.id, 'fire'],
      ],
    );
  });

  it('auth - a stream without a valid token is refused 401 with the reason, as problem+json with no SSE bytes, holding no slot', async (t) => {
    const gw = await startAuthGateway(t);
    const now = gw.clock.now();
    const grants = { subscribe: ['chat.room1'] };
    const cases: Array<[string, Record<string, string>, string]> = [
      ['no token', {}, 'HERALD_UNAUTHENTICATED'],
      // Beyond the default 5 s leeway.
      ['expired', bearer(await gw.token({ ...grants, expiresAt: now - 10_000 })), 'HERALD_TOKEN_EXPIRED'],
      [
        'not yet valid',
        bearer(await gw.token({ ...grants, notBefore: now + MINUTE })),
        'HERALD_TOKEN_NOT_YET_VALID',
      ],
      [
        'issued in the future',
        bearer(await gw.token({ ...grants, issuedAt: now + MINUTE })),
        'HERALD_TOKEN_NOT_YET_VALID',
      ],
      [
        'signed with another key',
        bearer(await gw.token({ ...grants, secret: randomBytes(32).toString('hex') })),
        'HERALD_TOKEN_INVALID',
      ],
      ['alg none', bearer(unsignedToken({ ...grants, expiresAt: now + MINUTE })), 'HERALD_TOKEN_INVALID'],
      ['a tampered payload', bearer(tamper(await gw.token(grants))), 'HERALD_TOKEN_INVALID'],
      ['an unknown scheme', { Authorization: 'Basic YWxpY2U6c2VjcmV0' }, 'HERALD_TOKEN_INVALID'],
      ['an API key (publish only)', { Authorization: `ApiKey ${ANY_KEY}` }, 'HERALD_FORBIDDEN'],
    ];
    for (const [what, headers, code] of cases) {
      const c = await gw.stream({ topic: 'chat.room1' }, { headers });
      await t.test(what, async () => {
        await assertRefused(c, code === 'HERALD_FORBIDDEN' ? 403 : 401, code);
      });
    }
    assert.equal(gw.gateway.hub.size, 0);
    assert.equal(gw.gateway.edge.admission.open, 0, 'a refusal takes no admission slot');
  });

  it('auth - a token without exp is refused 401 HERALD_TOKEN_INVALID for streams and publishes, unless jwtRequireExp is off', async (t) => {
    const gw = await startAuthGateway(t);
    // Signed with the gateway's secret and otherwise valid: only the expiry is missing.
    const forever = await mintToken({
      sub: 'alice',
      issuedAt: gw.clock.now(),
      subscribe: ['x.>'],
      publish: ['x.>'],
    });
    const problem = await assertRefused(
      await gw.stream({ topic: 'x.a' }, { headers: bearer(forever) }),
      401,
      'HERALD_TOKEN_INVALID',
    );
    assert.match(problem.detail, /no expiry \(exp\)/);
    const refused = await gw.publish({ topic: 'x.a', data: 'never stored' }, bearer(forever));
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json');
    assert.equal(refused.body.code, 'HERALD_TOKEN_INVALID');
    assert.equal(gw.gateway.broker.state().last, 0, 'nothing was stored');

    const lax = await startAuthGateway(t, { jwtRequireExp: false });
    const c = await lax.stream({ topic: 'x.a' }, { headers: bearer(forever) });
    assert.equal(c.status, 200);
    assert.equal((await lax.publish({ topic: 'x.a', data: 'stored' }, bearer(forever))).status, 200);
    await c.waitFor((s) => s.events.some((e) => e.data === 'stored'), 'the event');
  });

  it('auth - a publish refused 401 before its body arrived closes its connection instead of waiting for the body, and never holds it past the close bound', async (t) => {
    const gw = await startAuthGateway(t);
    // The body is announced and barely begun; the client then sends nothing, and keeps its side open.
    const c = connect({ port: Number(new URL(gw.url).port), host: '127.0.0.1', allowHalfOpen: true });
    c.on('error', () => {});
    t.after(() => c.destroy());
    let reply = '';
    c.setEncoding('utf8');
    c.on('data', (chunk: string) => {
      reply += chunk;
    });
    c.write(
      'POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
        'Content-Length: 100000\r\n\r\n{"topic":"a","data":"',
    );
    await until(() => /\r\n\r\n\{.*\}$/s.test(reply), 'the refusal');
    assert.match(reply, /^HTTP\/1\.1 401 /);
    assert.match(reply, /\r\nContent-Type: application\/problem\+json\r\n/i);
    assert.match(reply, /\r\nConnection: close\r\n/i, 'the refusal ends the connection');
    assert.match(reply, /"code":"HERALD_UNAUTHENTICATED"/);
    // A FIN after the answer, not a reset: what the client still sends is read and dropped.
    await until(() => c.readableEnded, "the gateway's FIN");
    assert.ok(!c.closed && !c.errored);
    // At the bound the gateway lets go: what the client sends then is answered with a reset (a
    // client learns of it on its next send).
    gw.clock.tick(DISCARD_MAX_MS);
    const closedOrSend = () => {
      if (!c.closed) c.write('more of the body');
      return c.closed;
    };
    await until(closedOrSend, 'the connection to be closed at the bound', 5000);
  });

  it('auth - a topic or wildcard pattern the grants do not cover is refused 403 HERALD_FORBIDDEN naming it', async (t) => {
    const gw = await startAuthGateway(t);
    const headers = bearer(await gw.token({ sub: 'bob', subscribe: ['chat.room1', 'alerts.*'] }));
    const cases: Array<[string[], string]> = [
      [['chat.room1', 'chat.room2'], 'chat.room2'],
      [['chat.*'], 'chat.*'],
      [['alerts.>'], 'alerts.>'],
      [['alerts.eu.fr'], 'alerts.eu.fr'],
    ];
    for (const [topics, denied] of cases) {
      const problem = await assertRefused(
        await gw.stream({ topic: topics }, { headers }),
        403,
        'HERALD_FORBIDDEN',
      );
      assert.equal(problem.topic, denied);
      assert.equal(problem.action, 'subscribe');
      assert.ok(problem.detail.includes(JSON.stringify(denied)), problem.detail);
    }
    // What the grants do cover is served.
    const ok = await gw.stream({ topic: ['chat.room1', 'alerts.*', 'alerts.eu'] }, { headers });
    assert.equal(ok.status, 200);
  });

  it('auth - with authCookie set the token is read from that cookie; other cookies are ignored', async (t) => {
    const gw = await startAuthGateway(t, { authCookie: 'herald_token' });
    const token = await gw.token({ subscribe: ['c.>'], publish: ['c.>'] });
    const c = await gw.stream(
      { topic: 'c.one' },
      { headers: { Cookie: `theme=dark; herald_token=${token}; lang=en` } },
    );
    assert.equal(c.status, 200);
    await gw.publish({ topic: 'c.one', data: 'by cookie' }, { Cookie: `herald_token=${token}` });
    await c.waitFor((s) => s.events.some((e) => e.data === 'by cookie'), 'the event');
    await assertRefused(
      await gw.stream({ topic: 'c.one' }, { headers: { Cookie: `session=${token}` } }),
      401,
      'HERALD_UNAUTHENTICATED',
    );
    // A logout leaves an empty cookie: absent, not a malformed token.
    await assertRefused(
      await gw.stream({ topic: 'c.one' }, { headers: { Cookie: 'herald_token=' } }),
      401,
      'HERALD_UNAUTHENTICATED',
    );
  });

  it('auth - an access_token query parameter is refused with 401 saying so unless authQueryToken is on, then it opens the stream', async (t) => {
    const off = await startAuthGateway(t);
    const offToken = await off.token({ subscribe: ['q.a'] });
    const problem = await assertRefused(
      await off.stream({ topic: 'q.a', access_token: offToken }),
      401,
      'HERALD_TOKEN_INVALID',
    );
    assert.match(problem.detail, /access_token.*disabled/);
    assert.ok(!problem.detail.includes(offToken), 'the token is never echoed');

    const on = await startAuthGateway(t, { authQueryToken: true });
    const onToken = await on.token({ subscribe: ['q.a'], publish: ['q.a'] });
    const c = await on.stream({ topic: 'q.a', access_token: onToken });
    assert.equal(c.status, 200);
    await on.publish({ topic: 'q.a', data: 'by query' }, bearer(onToken));
    await c.waitFor((s) => s.events.some((e) => e.data === 'by query'), 'the event');
    // Still checked: a bad token in the query is refused like one in a header.
    const bad = await on.token({ subscribe: ['q.a'], expiresAt: on.clock.now() - MINUTE });
    await assertRefused(await on.stream({ topic: 'q.a', access_token: bad }), 401, 'HERALD_TOKEN_EXPIRED');
  });

  it('auth - publishes: an API key publishes within its patterns, is refused 403 outside them and 401 when unknown; a subscribe-only token gets 403; nothing refused is stored', async (t) => {
    const gw = await startAuthGateway(t);
    const stored = () => gw.gateway.broker.state().last;
    const orders = { Authorization: `ApiKey ${ORDERS_KEY}` };
    const ok = await gw.publish({ topic: 'orders.eu', data: '1' }, orders);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(
      (await gw.publish({ topic: 'chat.room1', data: '2' }, { Authorization: `ApiKey ${ANY_KEY}` })).status,
      200,
    );
    const before = stored();

    const refusals: Array<[string, unknown, Record<string, string>, number, string, string?]> = [
      [
        'outside the key patterns',
        { topic: 'chat.room1', data: 'x' },
        orders,
        403,
        'HERALD_FORBIDDEN',
        'chat.room1',
      ],
      [
        'a batch with one topic outside',
        {
          messages: [
            { topic: 'orders.eu', data: 'a' },
            { topic: 'order', data: 'b' },
          ],
        },
        orders,
        403,
        'HERALD_FORBIDDEN',
        'order',
      ],
      [
        'an unknown key',
        { topic: 'orders.eu', data: 'x' },
        { Authorization: 'ApiKey not-a-known-key-0000000' },
        401,
        'HERALD_API_KEY_INVALID',
      ],
      ['no credentials', { topic: 'orders.eu', data: 'x' }, {}, 401, 'HERALD_UNAUTHENTICATED'],
      [
        'a subscribe-only token',
        { topic: 'chat.room1', data: 'x' },
        bearer(await gw.token({ subscribe: ['chat.room1', '>'] })),
        403,
        'HERALD_FORBIDDEN',
        'chat.room1',
      ],
      [
        'an expired publish token',
        { topic: 'chat.room1', data: 'x' },
        bearer(await gw.token({ publish: ['>'], expiresAt: gw.clock.now() - MINUTE })),
        401,
        'HERALD_TOKEN_EXPIRED',
      ],
    ];
    for (const [what, body, headers, status, code, topic] of refusals) {
      const r = await gw.publish(body, headers);
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.headers.get('content-type'), 'application/problem+json', what);
      assert.equal(r.body.code, code, what);
      if (topic !== undefined) {
        assert.equal(r.body.topic, topic, what);
        assert.equal(r.body.action, 'publish', what);
      }
    }
    assert.equal(stored(), before, 'no refused message was stored');
  });
});

/** The token with one claim changed and the original signature kept. */
function tamper(token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claims.herald = { subscribe: ['>'] };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
}

describe('edge auth - token expiry on a live stream', () => {
  it('expiry - herald.token-expiring arrives warnMs before exp, the stream closes at exp with a retry, and a fresh token resumes exactly the missed events', async (t) => {
    const WARN = 30_000;
    const RETRY = 2000;
    const gw = await startAuthGateway(t, { tokenExpiryWarnMs: WARN, retryMs: RETRY });
    const { clock } = gw;
    const expiresAt = clock.now() + 5 * MINUTE;
    const publisher = { Authorization: `ApiKey ${ANY_KEY}` };
    let n = 0;
    const publish = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const r = await gw.publish({ topic: 'live.feed', data: String(++n) }, publisher);
        assert.equal(r.status, 200);
      }
    };
    const data = (c: SseClient) =>
      c.events.filter((e) => e.event !== 'herald.token-expiring').map((e) => e.data);

    const first = await gw.stream(
      { topic: 'live.feed' },
      { headers: bearer(await gw.token({ sub: 'carol', subscribe: ['live.>'], expiresAt })) },
    );
    assert.equal(first.status, 200);
    await publish(3);
    await first.waitFor((s) => s.events.length === 3, 'events 1-3');

    // One millisecond before the warning is due: nothing yet.
    clock.tick(expiresAt - WARN - clock.now() - 1);
    await publish(1);
    await first.waitFor((s) => s.events.length === 4, 'event 4');
    assert.ok(!first.events.some((e) => e.event === 'herald.token-expiring'), 'no warning before warnMs');

    clock.tick(1);
    await first.waitFor((s) => s.events.some((e) => e.event === 'herald.token-expiring'), 'the warning');
    const warning = first.events.find((e) => e.event === 'herald.token-expiring')!;
    assert.deepEqual(JSON.parse(warning.data), { expiresAt: new Date(expiresAt).toISOString() });
    assert.equal(warning.id, undefined, 'the warning moves no cursor');

    // Still live between the warning and expiry.
    await publish(2);
    await first.waitFor((s) => data(s).length === 6, 'events 5-6 after the warning');

    clock.tick(expiresAt - clock.now() - 1);
    await publish(1);
    await first.waitFor((s) => data(s).length === 7, 'event 7, a millisecond before expiry');
    clock.tick(1);
    await first.ended;
    // random() is 0.5: the jittered retry is exactly retryMs (it spans 0.5–1.5 × retryMs).
    assert.equal(first.retries.at(-1), RETRY);
    assert.ok(/retry: \d+\n\n?$/.test(first.raw()), 'the stream ends with its retry line');
    assert.equal(gw.gateway.hub.closes['token-expired'], 1);
    await until(() => gw.gateway.edge.admission.open === 0, 'the expired stream to release its slot');

    // Events keep coming while the client fetches a fresh token.
    await publish(3);
    const cursor = first.lastEventId();
    const second = await gw.stream(
      { topic: 'live.feed' },
      {
        headers: {
          ...bearer(
            await gw.token({ sub: 'carol', subscribe: ['live.>'], expiresAt: clock.now() + 5 * MINUTE }),
          ),
          'Last-Event-ID': cursor,
        },
      },
    );
    assert.equal(second.status, 200);
    await second.waitFor((s) => s.events.length === 3, 'the three missed events');
    await publish(1);
    await second.waitFor((s) => s.events.length === 4, 'the next live event');
    assert.deepEqual(
      [...data(first), ...data(second)],
      Array.from({ length: n }, (_, i) => String(i + 1)),
      'every event exactly once, in order, across the expiry',
    );
    assert.ok(!second.events.some((e) => e.event === 'herald.reset'), 'no reset');
  });

  it('expiry - a token valid for 30 days (past the ~24.8-day limit of setTimeout) keeps its stream open until its exp', async (t) => {
    const WARN = 30_000;
    const gw = await startAuthGateway(t, { tokenExpiryWarnMs: WARN });
    const { clock } = gw;
    const expiresAt = clock.now() + 30 * DAY;
    const c = await gw.stream(
      { topic: 'live.feed' },
      { headers: bearer(await gw.token({ sub: 'dave', subscribe: ['live.>'], expiresAt })) },
    );
    assert.equal(c.status, 200);
    clock.tick(25 * DAY);
    const r = await gw.publish(
      { topic: 'live.feed', data: 'day 25' },
      { Authorization: `ApiKey ${ANY_KEY}` },
    );
    assert.equal(r.status, 200);
    await c.waitFor((s) => s.events.some((e) => e.data === 'day 25'), 'an event on day 25');
    assert.equal(gw.gateway.hub.closes['token-expired'], 0, 'still open on day 25');
    assert.ok(!c.events.some((e) => e.event === 'herald.token-expiring'), 'no warning yet');
    clock.tick(expiresAt - WARN - clock.now());
    await c.waitFor((s) => s.events.some((e) => e.event === 'herald.token-expiring'), 'the warning');
    clock.tick(WARN);
    await c.ended;
    assert.equal(gw.gateway.hub.closes['token-expired'], 1);
  });
});
