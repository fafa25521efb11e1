import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { FakeClock, postJson, rawExchange } from '@herald/testkit';

const MiB = 1024 * 1024;

describe('publish', () => {
  let gw: TestGateway;
  const clock = new FakeClock();
  before(async () => {
    gw = await startGateway(
      { maxBodyBytes: 4096, maxMessageBytes: 256, maxBatch: 5, dedupeWindowMs: 60_000 },
      { clock },
    );
  });
  after(() => gw.close());

  it('publish - a batch answers each cursor in order and is delivered in order', async () => {
    const c = await gw.stream({ topic: 'p.>' });
    const r = await gw.publish({ messages: [1, 2, 3].map((n) => ({ topic: `p.${n}`, data: String(n) })) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    const ids = r.body.results.map((x: { id: string }) => x.id);
    assert.equal(ids.length, 3);
    assert.deepEqual(
      r.body.results.map((x: { duplicate: boolean }) => x.duplicate),
      [false, false, false],
    );
    await c.waitFor((s) => s.events.length === 3, 'three events');
    assert.deepEqual(
      c.events.map((e) => e.id),
      ids,
    );
    c.close();
  });

  it('publish - Idempotency-Key stores a retried publish once within the window, and again after it', async () => {
    const c = await gw.stream({ topic: 'idem.a' });
    const first = await gw.publish({ topic: 'idem.a', data: 'once' }, { 'Idempotency-Key': 'order-42' });
    const retry = await gw.publish({ topic: 'idem.a', data: 'once' }, { 'Idempotency-Key': 'order-42' });
    assert.deepEqual(retry.body, { id: first.body.id, duplicate: true });
    // Per-message keys, and a batch under a header key (message i gets `<key>:<i>`).
    const batch = {
      messages: [
        { topic: 'idem.a', data: 'b0' },
        { topic: 'idem.a', data: 'b1', key: 'own-key' },
      ],
    };
    const b1 = await gw.publish(batch, { 'Idempotency-Key': 'batch-7' });
    const b2 = await gw.publish(batch, { 'Idempotency-Key': 'batch-7' });
    assert.deepEqual(
      b2.body.results,
      b1.body.results.map((x: { id: string }) => ({ id: x.id, duplicate: true })),
    );
    clock.tick(60_001);
    const later = await gw.publish({ topic: 'idem.a', data: 'once' }, { 'Idempotency-Key': 'order-42' });
    assert.equal(later.body.duplicate, false);
    assert.notEqual(later.body.id, first.body.id);
    await c.waitFor((s) => s.events.length === 4, 'once, b0, b1, once again');
    assert.deepEqual(
      c.events.map((e) => e.data),
      ['once', 'b0', 'b1', 'once'],
    );
    c.close();
  });

  it('publish - every malformed input and limit is answered with its problem code and stores nothing', async () => {
    const live = await gw.stream({ topic: 'bad.>' });
    const big = 'x'.repeat(257);
    const cases: Array<[string, unknown, Record<string, string>, number, string]> = [
      ['not JSON', '{"topic":', {}, 400, 'HERALD_BODY_INVALID'],
      ['array body', '[1,2]', {}, 400, 'HERALD_BODY_INVALID'],
      ['missing topic', { data: 'x' }, {}, 400, 'HERALD_TOPIC_INVALID'],
      ['bad topic', { topic: 'a..b', data: 'x' }, {}, 400, 'HERALD_TOPIC_INVALID'],
      ['non-string topic', { topic: 7, data: 'x' }, {}, 400, 'HERALD_TOPIC_INVALID'],
      ['wildcard topic', { topic: 'bad.*', data: 'x' }, {}, 400, 'HERALD_TOPIC_WILDCARD'],
      ['missing data', { topic: 'bad.a' }, {}, 400, 'HERALD_DATA_INVALID'],
      ['lone surrogate', '{"topic":"bad.a","data":"\\ud800"}', {}, 400, 'HERALD_DATA_INVALID'],
      [
        'event with newline',
        { topic: 'bad.a', data: 'x', event: 'a\ndata: evil' },
        {},
        400,
        'HERALD_EVENT_INVALID',
      ],
      [
        'reserved event',
        { topic: 'bad.a', data: 'x', event: 'herald.reset' },
        {},
        400,
        'HERALD_EVENT_INVALID',
      ],
      ['unknown field', { topic: 'bad.a', data: 'x', evnt: 'typo' }, {}, 400, 'HERALD_BODY_INVALID'],
      ['message too large', { topic: 'bad.a', data: big }, {}, 413, 'HERALD_MESSAGE_TOO_LARGE'],
      ['empty batch', { messages: [] }, {}, 400, 'HERALD_BATCH_EMPTY'],
      [
        'batch too large',
        { messages: Array(6).fill({ topic: 'bad.a', data: 'x' }) },
        {},
        413,
        'HERALD_BATCH_TOO_LARGE',
      ],
      [
        'one bad message in a batch',
        {
          messages: [
            { topic: 'bad.a', data: 'ok' },
            { topic: 'bad..a', data: 'x' },
          ],
        },
        {},
        400,
        'HERALD_TOPIC_INVALID',
      ],
      ['body too large', { topic: 'bad.a', data: 'x'.repeat(5000) }, {}, 413, 'HERALD_BODY_TOO_LARGE'],
      [
        'bad idempotency key',
        { topic: 'bad.a', data: 'x' },
        { 'Idempotency-Key': 'has space' },
        400,
        'HERALD_IDEMPOTENCY_KEY_INVALID',
      ],
      [
        'wrong content type',
        { topic: 'bad.a', data: 'x' },
        { 'Content-Type': 'text/plain' },
        415,
        'HERALD_CONTENT_TYPE',
      ],
    ];
    for (const [name, body, headers, status, code] of cases) {
      const r = await postJson(`${gw.url}/v1/publish`, body, headers);
      assert.equal(r.status, status, name);
      assert.equal(r.headers.get('content-type'), 'application/problem+json', name);
      assert.equal(r.body.code, code, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.type, `urn:herald:error:${code}`);
    }
    const batchError = await gw.publish({
      messages: [
        { topic: 'bad.a', data: 'ok' },
        { topic: 'bad.a', data: 'x', event: 'no spaces' },
      ],
    });
    assert.equal(batchError.body.pointer, '/messages/1/event');
    assert.match(batchError.body.detail, /^messages\[1\]\.event: /);
    // Nothing above was stored: the next event is the first this stream sees.
    await gw.publish({ topic: 'bad.a', data: 'first valid' });
    await live.waitFor((s) => s.events.length >= 1, 'the valid event');
    assert.deepEqual(
      live.events.map((e) => e.data),
      ['first valid'],
    );
    live.close();
  });

  it('publish - a body larger than the limit is refused before it is read whole', async () => {
    const port = Number(new URL(gw.url).port);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({
        port,
        host: '127.0.0.1',
        path: '/v1/publish',
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': '10000000' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"topic":"a","data":"');
      // The rest of the 10 MB is never sent: the answer must not wait for it.
    });
    assert.equal(status, 413);
  });

  it('publish - a client that sends its whole oversized body before reading gets the whole 413, every time', async (t) => {
    // Far more than the socket buffers on both sides hold, so the client is still sending when the
    // gateway answers: were the connection reset then, its write would fail and it would never
    // read the answer. The head goes first and the body follows in 64 KiB writes, as curl sends it.
    const size = 8 * MiB;
    const body = Array.from({ length: size / (64 * 1024) }, () => Buffer.alloc(64 * 1024, 'x'));
    const head = (framing: string) =>
      'POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `${framing}\r\n\r\n`;
    const cases = [
      // Refused by its declared length, before a byte of it is read.
      ['Content-Length', [head(`Content-Length: ${size}`), ...body]],
      // Refused once the gateway has read past the limit.
      ['chunked', [head('Transfer-Encoding: chunked'), `${size.toString(16)}\r\n`, ...body, '\r\n0\r\n\r\n']],
    ] as const;
    for (const [framing, parts] of cases) {
      for (let i = 1; i <= 4; i++) {
        await t.test(`${framing}, try ${i}`, async () => {
          const r = await rawExchange(gw.url, parts, { readAfterSent: true, timeoutMs: 30_000 });
          assert.equal(r.error, undefined, 'the client sent everything and read without an error');
          assert.equal(r.status, 413);
          assert.equal(r.headers.get('content-type'), 'application/problem+json');
          assert.equal(r.headers.get('connection'), 'close');
          const problem = JSON.parse(r.body.toString('utf8'));
          assert.equal(problem.code, 'HERALD_BODY_TOO_LARGE');
          assert.equal(r.body.length, Number(r.headers.get('content-length')), 'the whole answer');
        });
      }
    }
  });

  it('publish - with the broker gone, publishes get 503 problem+json with Retry-After and readiness fails', async () => {
    const other = await startGateway({ retryMs: 3000 });
    await other.gateway.broker.close();
    const r = await other.publish({ topic: 'a', data: 'x' });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '3');
    assert.equal(r.body.code, 'HERALD_BROKER_UNAVAILABLE');
    const ready = await fetch(`${other.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), {
      status: 'not-ready',
      broker: 'disconnected',
      draining: false,
      warming: false,
    });
    await other.close();
  });
});
