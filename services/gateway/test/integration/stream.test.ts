import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { until } from '@herald/testkit';

describe('subscribe', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ releaseVersion: 'v1.2.3', retryMs: 1500 });
  });
  after(() => gw.close());

  it('stream - answers 200 event-stream with the contract headers, flushed at once with retry, a comment and an id', async () => {
    const c = await gw.stream({ topic: 'hdr.a' });
    assert.equal(c.status, 200);
    assert.equal(c.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(c.headers['cache-control'], 'no-cache, no-transform');
    assert.equal(c.headers['x-accel-buffering'], 'no');
    assert.equal(c.headers['x-release-version'], 'v1.2.3');
    await c.waitFor((s) => s.ids.length === 1, 'the opening id');
    assert.match(c.raw(), /^retry: 1500\n: herald v1\.2\.3\nid: [A-Za-z0-9]+-\d+\n\n$/);
    assert.deepEqual(c.retries, [1500]);
    assert.equal(c.events.length, 0, 'the opening dispatches no event');
    c.close();
  });

  it('stream - delivers published events with id, event type and multi-line data intact', async () => {
    const c = await gw.stream({ topic: 'chat.room1' });
    const single = await gw.publish({
      topic: 'chat.room1',
      event: 'message',
      data: 'line one\nline two\r\nthree',
    });
    assert.equal(single.status, 200);
    assert.match(single.body.id, /^[A-Za-z0-9]+-\d+$/);
    await gw.publish({ topic: 'chat.room1', data: { json: true, n: 1 } });
    await c.waitFor((s) => s.events.length === 2, 'two events');
    assert.deepEqual(c.events[0], {
      id: single.body.id,
      event: 'message',
      data: 'line one\nline two\nthree',
    });
    assert.equal(c.events[1]!.event, undefined);
    assert.deepEqual(JSON.parse(c.events[1]!.data), { json: true, n: 1 });
    c.close();
  });

  it('stream - only subscribed topics arrive; * matches one token and > the rest', async () => {
    const star = await gw.stream({ topic: 'wild.*' });
    const tail = await gw.stream({ topic: 'wild.>' });
    const exact = await gw.stream({ topic: 'wild.a' });
    for (const topic of ['wild.a', 'wild.a.b', 'wild', 'other.a', 'wild.c'])
      await gw.publish({ topic, data: topic });
    const done = (s: { events: unknown[] }, n: number) => s.events.length === n;
    await star.waitFor((s) => done(s, 2), 'wild.* events');
    await tail.waitFor((s) => done(s, 3), 'wild.> events');
    await exact.waitFor((s) => done(s, 1), 'wild.a events');
    // A marker published after everything proves nothing else was on its way.
    await gw.publish({ topic: 'wild.z', data: 'end' });
    await star.waitFor((s) => done(s, 3), 'marker');
    await tail.waitFor((s) => done(s, 4), 'marker');
    assert.deepEqual(
      star.events.map((e) => e.data),
      ['wild.a', 'wild.c', 'end'],
    );
    assert.deepEqual(
      tail.events.map((e) => e.data),
      ['wild.a', 'wild.a.b', 'wild.c', 'end'],
    );
    assert.deepEqual(
      exact.events.map((e) => e.data),
      ['wild.a'],
    );
    for (const c of [star, tail, exact]) c.close();
  });

  it('stream - several topics on one connection share one cursor and an event matching two patterns arrives once', async () => {
    const c = await gw.stream({ topic: ['multi.a', 'multi.b', 'multi.*'] });
    await gw.publish({
      messages: [
        { topic: 'multi.a', data: '1' },
        { topic: 'multi.b', data: '2' },
        { topic: 'multi.c', data: '3' },
      ],
    });
    await c.waitFor((s) => s.events.length >= 3, 'three events');
    await gw.publish({ topic: 'multi.a', data: 'end' });
    await c.waitFor((s) => s.events.at(-1)?.data === 'end', 'marker');
    assert.deepEqual(
      c.events.map((e) => e.data),
      ['1', '2', '3', 'end'],
    );
    const seqs = c.events.map((e) => Number(e.id!.split('-')[1]));
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
    assert.equal(new Set(c.events.map((e) => e.id!.split('-')[0])).size, 1);
    c.close();
  });

  it('stream - a bad request is refused with problem+json while other streams keep flowing', async () => {
    const live = await gw.stream({ topic: 'keep.flowing' });
    const cases: Array<[Record<string, string | string[]>, number, string]> = [
      [{}, 400, 'HERALD_TOPIC_MISSING'],
      [{ topic: 'a..b' }, 400, 'HERALD_TOPIC_INVALID'],
      [{ topic: 'a.>.b' }, 400, 'HERALD_TOPIC_INVALID'],
      [{ topic: 'x'.repeat(129) }, 400, 'HERALD_TOPIC_INVALID'],
      [{ topic: 'a', topics: 'b' }, 400, 'HERALD_QUERY_INVALID'],
      [{ topic: 'a', lastEventId: ['x-1', 'x-2'] }, 400, 'HERALD_QUERY_INVALID'],
      [{ topic: Array.from({ length: 33 }, (_, i) => `t${i}`) }, 400, 'HERALD_TOO_MANY_TOPICS'],
    ];
    for (const [query, status, code] of cases) {
      const c = await gw.stream(query);
      await c.ended;
      assert.equal(c.status, status, JSON.stringify(query));
      assert.equal(c.headers['content-type'], 'application/problem+json');
      const problem = JSON.parse(c.body());
      assert.equal(problem.code, code, JSON.stringify(query));
      assert.equal(problem.status, status);
      assert.equal(typeof problem.detail, 'string');
    }
    await gw.publish({ topic: 'keep.flowing', data: 'still here' });
    await live.waitFor(
      (s) => s.events.some((e) => e.data === 'still here'),
      'the live stream to keep flowing',
    );
    live.close();
  });

  it('http - unknown paths and methods get 404 and 405 problems; malformed HTTP gets 400 and nothing crashes', async () => {
    const notFound = await fetch(`${gw.url}/nope`);
    assert.equal(notFound.status, 404);
    assert.equal(((await notFound.json()) as { code: string }).code, 'HERALD_NOT_FOUND');
    const wrongMethod = await fetch(`${gw.url}/v1/stream?topic=a`, { method: 'DELETE' });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'GET');
    assert.equal(((await wrongMethod.json()) as { code: string }).code, 'HERALD_METHOD_NOT_ALLOWED');
    const sock = connect(Number(new URL(gw.url).port), '127.0.0.1');
    sock.write('GARBAGE / HTTP/9\r\n\r\n');
    let reply = '';
    for await (const chunk of sock) reply += chunk;
    const [refusal] = answers(reply);
    assert.equal(refusal?.status, 400);
    assert.equal(refusal?.problem?.code, 'HERALD_REQUEST_MALFORMED');
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  });
});

interface Answer {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
  /** The body parsed, when it is problem+json. */
  // biome-ignore lint/suspicious/noExplicitAny: a problem+json body; tests assert on its members.
  readonly problem: any;
}

/** The answers in a connection's reply, in order; one without a length runs to the end (a stream). */
function answers(reply: string): Answer[] {
  const out: Answer[] = [];
  let at = 0;
  while (at < reply.length) {
    const end = reply.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const [line, ...fields] = reply.slice(at, end).split('\r\n');
    const headers = new Map(
      fields.map((f) => [f.slice(0, f.indexOf(':')).toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]),
    );
    const length = headers.get('content-length');
    const bodyEnd = length === undefined ? reply.length : end + 4 + Number(length);
    const body = reply.slice(end + 4, bodyEnd);
    const problem = headers.get('content-type') === 'application/problem+json' ? JSON.parse(body) : undefined;
    out.push({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(line ?? '')?.[1]), headers, body, problem });
    at = bodyEnd;
  }
  return out;
}

describe('connections node:http answers', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  /** Sends raw bytes on one connection and collects everything until the server closes or `until` matches. */
  function raw(bytes: string, until?: RegExp): Promise<string> {
    return new Promise((resolve) => {
      const sock = connect(Number(new URL(gw.url).port), '127.0.0.1');
      let reply = '';
      // A server that answers before reading everything may reset the connection: keep what came.
      sock.on('error', () => {});
      sock.on('close', () => resolve(reply));
      sock.on('data', (chunk) => {
        reply += chunk;
        if (until?.test(reply)) sock.destroy();
      });
      sock.write(bytes);
    });
  }

  it('stream - a stream requested on a kept-alive connection after another request is served too', async () => {
    const reply = await raw(
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/stream?topic=ka HTTP/1.1\r\nHost: x\r\n\r\n',
      /id: \S+\n\n$/,
    );
    assert.match(reply, /^HTTP\/1\.1 200 OK[\s\S]*"status":"ok"/);
    assert.match(
      reply,
      /HTTP\/1\.1 200 OK\r\nContent-Type: text\/event-stream; charset=utf-8\r\n[\s\S]*retry: \d+\n/,
    );
  });

  it('stream - oversized and malformed heads are answered by node:http, and the gateway keeps serving', async () => {
    assert.match(
      await raw(`GET /v1/stream?topic=a HTTP/1.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`),
      /^HTTP\/1\.1 431/,
    );
    assert.match(await raw('GET /v1/stream?topic=a HTTP/1.1\r\nHost : x\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(
      await raw('GET /v1/stream?topic=a..b HTTP/1.1\r\nHost: x\r\n\r\n', /\r\n\r\n\{.*\}$/),
      /^HTTP\/1\.1 400[\s\S]*HERALD_TOPIC_INVALID/,
    );
    const c = await gw.stream({ topic: 'still.ok' });
    assert.equal(c.status, 200);
    c.close();
  });

  it('http - what node:http cannot take is refused with problem+json and a stable code, closing the connection', async () => {
    const cases: Array<[string, string, number, string]> = [
      ['an unknown method', 'BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'HERALD_REQUEST_MALFORMED'],
      [
        'a space before the colon',
        'GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n',
        400,
        'HERALD_REQUEST_MALFORMED',
      ],
      ['a bare LF', 'GET /healthz HTTP/1.1\nHost: x\n\n', 400, 'HERALD_REQUEST_MALFORMED'],
      [
        'Content-Length and Transfer-Encoding',
        'POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}',
        400,
        'HERALD_REQUEST_MALFORMED',
      ],
      [
        'a broken chunk in a publish body',
        'POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
        400,
        'HERALD_REQUEST_MALFORMED',
      ],
      ['no Host', 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'HERALD_REQUEST_MALFORMED'],
      // The front's fast path as well: a stream is a request like any other.
      [
        'a stream without Host',
        'GET /v1/stream?topic=a HTTP/1.1\r\nConnection: close\r\n\r\n',
        400,
        'HERALD_REQUEST_MALFORMED',
      ],
      [
        'an Expect other than 100-continue',
        'POST /v1/publish HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\nContent-Length: 2\r\n\r\n{}',
        417,
        'HERALD_EXPECTATION_FAILED',
      ],
      [
        'a head over the limit',
        `GET /healthz HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`,
        431,
        'HERALD_HEADERS_TOO_LARGE',
      ],
    ];
    for (const [what, bytes, status, code] of cases) {
      const all = answers(await raw(bytes));
      assert.equal(all.length, 1, `${what}: one answer`);
      const [a] = all;
      assert.equal(a?.status, status, what);
      assert.equal(a?.headers.get('content-type'), 'application/problem+json', what);
      assert.equal(a?.headers.get('connection'), 'close', what);
      assert.equal(a?.problem.code, code, what);
      assert.equal(a?.problem.status, status, what);
      assert.doesNotMatch(a?.problem.detail, /BREW|coffee|aaaa/, `${what}: nothing of the request is echoed`);
    }
  });

  it('http - pipelined: a malformed request after a publish is refused after the publish is answered, so the refusal cannot be taken for its answer', async () => {
    const live = await gw.stream({ topic: 'pipe.a' });
    const body = JSON.stringify({ topic: 'pipe.a', data: 'stored once' });
    const all = answers(
      await raw(
        'POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${body.length}\r\n\r\n${body}GARBAGE / HTTP/9\r\n\r\n`,
      ),
    );
    assert.deepEqual(
      all.map((a) => a.status),
      [200, 400],
    );
    const [published, refused] = all;
    assert.match(published!.body, /"duplicate":false/);
    assert.equal(refused!.problem.code, 'HERALD_REQUEST_MALFORMED');
    assert.equal(refused!.headers.get('connection'), 'close');
    await live.waitFor((c) => c.events.length === 1, 'the event');
    assert.equal(live.events[0]!.id, JSON.parse(published!.body).id);
    live.close();
  });

  it('http - nothing sent after a request that asked to close is processed: a publish pipelined behind it is neither answered nor stored', async () => {
    const live = await gw.stream({ topic: 'after.close' });
    const publish = (data: string, extra = '') => {
      const body = JSON.stringify({ topic: 'after.close', data });
      return (
        'POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `${extra}Content-Length: ${body.length}\r\n\r\n${body}`
      );
    };
    const all = answers(await raw(`${publish('last', 'Connection: close\r\n')}${publish('ignored')}`));
    assert.deepEqual(
      all.map((a) => a.status),
      [200],
    );
    const next = await gw.publish({ topic: 'after.close', data: 'next' });
    await live.waitFor((c) => c.events.some((e) => e.id === next.body.id), 'the next event');
    assert.deepEqual(
      live.events.map((e) => e.data),
      ['last', 'next'],
    );
    live.close();
  });

  it('http - pipelined garbage after a stream served through node:http ends the connection and adds nothing to the stream', async () => {
    const sock = connect(Number(new URL(gw.url).port), '127.0.0.1');
    sock.on('error', () => {});
    let reply = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      reply += chunk;
    });
    const closed = new Promise((r) => sock.once('close', r));
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/stream?topic=pg HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => /id: \S+\n\n$/.test(reply), 'the stream opening');
    sock.write('GARBAGE / HTTP/9\r\n\r\n');
    await closed;
    const all = answers(reply);
    assert.deepEqual(
      all.map((a) => a.status),
      [200, 200],
    );
    assert.equal(all[1]!.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.doesNotMatch(all[1]!.body, /HTTP\/1\.1|HERALD_/, 'no refusal inside the stream');
  });

  it('publish - a body split across packets after the head reaches node:http intact', async () => {
    const port = Number(new URL(gw.url).port);
    const sock = connect(port, '127.0.0.1');
    const body = JSON.stringify({ topic: 'split', data: 'x'.repeat(3000) });
    sock.setNoDelay(true);
    sock.write(
      `POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    await new Promise((r) => setImmediate(r));
    sock.write(body.slice(0, 100));
    await new Promise((r) => setImmediate(r));
    sock.end(body.slice(100));
    let reply = '';
    for await (const chunk of sock) reply += chunk;
    assert.match(reply, /^HTTP\/1\.1 200[\s\S]*"duplicate":false/);
  });

  it('drop - dropConnections closes streams and kept-alive connections that node:http holds', async () => {
    const c = await gw.stream({ topic: 'drop.a' });
    const kept = connect(Number(new URL(gw.url).port), '127.0.0.1');
    kept.on('error', () => {});
    const closed = new Promise((r) => kept.once('close', r));
    let reply = '';
    const answered = new Promise<void>((r) =>
      kept.on('data', (d) => {
        reply += d;
        if (reply.includes('"status":"ok"')) r();
      }),
    );
    kept.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await answered;
    gw.gateway.dropConnections();
    await c.ended;
    await closed;
    assert.equal(gw.gateway.hub.size, 0);
  });
});
