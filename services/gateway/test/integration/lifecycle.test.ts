import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { runGatewayToExit, spawnGateway, startGateway } from '@herald/gateway/testing';
import { connectSse, FakeClock, until } from '@herald/testkit';
import { DISCARD_MAX_MS } from '../../src/http/close.ts';

describe('heartbeat', () => {
  it('heartbeat - a comment goes only to streams that wrote nothing in the interval, from one shared timer', async (t) => {
    const clock = new FakeClock();
    const gw = await startGateway({ heartbeatMs: 15_000 }, { clock });
    t.after(() => gw.close());
    const idle = await gw.stream({ topic: 'hb.idle' });
    const busy = await gw.stream({ topic: 'hb.busy' });
    await idle.waitFor((s) => s.ids.length === 1, 'the opening');
    // The opening counts as writing: the first tick sends nothing to either.
    clock.tick(15_000);
    clock.tick(15_000);
    const beats = (s: { comments: string[] }) => s.comments.filter((c) => c === '').length;
    await idle.waitFor((s) => beats(s) === 1, 'a heartbeat on the idle stream');
    await gw.publish({ topic: 'hb.busy', data: 'activity' });
    clock.tick(15_000);
    await gw.publish({ topic: 'hb.busy', data: 'marker' });
    await busy.waitFor((s) => s.events.length === 2, 'both events');
    await idle.waitFor((s) => beats(s) === 2, 'a second heartbeat');
    // The busy stream got one heartbeat, in the second interval when it had been idle, and none after writing.
    assert.equal(beats(busy), 1, busy.raw());
    assert.equal(idle.events.length, 0, 'heartbeats dispatch no events');
  });
});

describe('shutdown', () => {
  it('drain - readiness fails and new streams are refused at once; open streams close spread over the window with a jittered retry', async () => {
    const clock = new FakeClock();
    const jitter = [0.1, 0.9, 0.5, 0.0, 0.3, 0.7];
    let i = 0;
    const gw = await startGateway(
      { drainMs: 10_000, retryMs: 2000 },
      { clock, random: () => jitter[i++ % jitter.length]! },
    );
    const streams = await Promise.all([1, 2, 3].map(() => gw.stream({ topic: 'drain.a' })));
    await Promise.all(streams.map((s) => s.waitFor((c) => c.ids.length === 1, 'opening')));
    // The gateway itself, not the harness's close(), which would also close the clients.
    const done = gw.gateway.shutdown();
    assert.equal((await fetch(`${gw.url}/readyz`)).status, 503);
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    // Close times are random() × window: 1 s, 9 s, 5 s. Retry is retryMs × (0.5 + random()).
    clock.tick(1000);
    await streams[0]!.ended;
    assert.deepEqual(streams[0]!.retries, [2000, Math.round(2000 * (0.5 + 0.0))]);
    // A new stream is turned away with 200 and a retry, not a 503, which would stop EventSource for good.
    const refused = await gw.stream({ topic: 'drain.a' });
    await refused.ended;
    assert.equal(refused.status, 200);
    assert.deepEqual(refused.comments, ['draining; reconnect']);
    assert.deepEqual(refused.retries, [Math.round(2000 * (0.5 + 0.3))]);
    assert.equal(refused.ids.length, 0);
    clock.tick(3999);
    assert.equal(gw.gateway.hub.size, 2, 'the others are still open until their time');
    clock.tick(1);
    await streams[2]!.ended;
    clock.tick(4000);
    await streams[1]!.ended;
    await done;
    // Retry jitter is drawn at close time: the turned-away stream drew 0.3, then stream 2 0.7, stream 1 0.1.
    assert.deepEqual(streams[2]!.retries, [2000, Math.round(2000 * (0.5 + 0.7))]);
    assert.deepEqual(streams[1]!.retries, [2000, Math.round(2000 * (0.5 + 0.1))]);
  });

  it('shutdown - a drained stream whose client neither reads nor closes its side is cut off after 2 s, so shutdown completes', async (t) => {
    const clock = new FakeClock();
    const gw = await startGateway({ drainMs: 0 }, { clock });
    const client = connect(Number(new URL(gw.url).port), '127.0.0.1');
    t.after(() => client.destroy());
    client.on('error', () => {});
    client.pause();
    client.write('GET /v1/stream?topic=stall HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => gw.gateway.hub.size === 1, 'the stream');
    let finished = false;
    const done = gw.gateway.shutdown().then(() => {
      finished = true;
    });
    await until(() => gw.gateway.hub.size === 0, 'the drain to end the stream');
    clock.tick(1999);
    await new Promise((r) => setImmediate(r));
    assert.equal(finished, false, 'the client still has its moment to take the last bytes');
    clock.tick(1);
    await until(() => finished, 'shutdown to complete once the stream is cut off');
    await done;
  });

  it('shed - a stream the hub ends whose client never closes its side is cut off after 5 s, not held until shutdown', async (t) => {
    const clock = new FakeClock();
    const gw = await startGateway({}, { clock });
    t.after(() => gw.close());
    // A client that reads everything but never closes its side (allowHalfOpen).
    const client = connect({ port: Number(new URL(gw.url).port), host: '127.0.0.1', allowHalfOpen: true });
    t.after(() => client.destroy());
    client.on('error', () => {});
    let ended = false;
    let closed = false;
    client.on('data', () => {});
    client.on('end', () => {
      ended = true;
    });
    client.on('close', () => {
      closed = true;
    });
    client.write('GET /v1/stream?topic=shed.me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => gw.gateway.hub.size === 1, 'the stream');
    const timers = clock.pending;
    assert.equal(gw.gateway.hub.shed(1, 0), 1);
    await until(() => ended, 'the gateway to end its side');
    // The FIN can arrive before the gateway has seen its write side finish and set the bound.
    await until(() => clock.pending > timers, 'the bound on the half-closed stream to be set');
    clock.tick(DISCARD_MAX_MS - 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, 'the client has its moment to close first');
    clock.tick(1);
    // Its read side already ended, the client learns the socket is gone when it next sends.
    await until(() => {
      if (!closed) client.write('?');
      return closed;
    }, 'the gateway to cut the half-closed stream off');
  });

  it('process - SIGTERM drains open streams, which end with retry:, and the process exits 0', async () => {
    const gw = await spawnGateway({ HERALD_DRAIN_MS: '300', HERALD_RETRY_MS: '1000' });
    const c = await connectSse(`${gw.url}/v1/stream?topic=sig.a`);
    await c.waitFor((s) => s.ids.length === 1, 'opening');
    gw.kill('SIGTERM');
    await c.ended;
    assert.equal(c.retries.length, 2, c.raw());
    assert.ok(c.retries[1]! >= 500 && c.retries[1]! <= 1500);
    assert.equal(await gw.exited, 0);
    assert.ok(gw.lines.some((l) => l.includes('"msg":"stopped"')));
  });

  it('config - an invalid or unknown HERALD_* variable, an unreadable key, NATS credential or TLS file, or auth on without keys stops the process with exit 2 naming the variable', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ HERALD_PORT: 'eighty' }, /HERALD_PORT: expected a whole number, got "eighty"/],
      [{ HERALD_PORT: '70000' }, /HERALD_PORT: must be between 0 and 65535/],
      [{ HERALD_BROKER: 'kafka' }, /HERALD_BROKER: expected one of memory/],
      [{ HERALD_DEMO: 'yes' }, /HERALD_DEMO: expected 1, 0, true or false/],
      [{ HERALD_HEARTBEAT_SECONDS: '5' }, /HERALD_HEARTBEAT_SECONDS: is not a Herald setting/],
      [{}, /HERALD_AUTH: is jwt \(the default\) but no key is configured: .* or set HERALD_AUTH=none/],
      [
        { HERALD_JWT_SECRETS_FILE: '/nonexistent/secrets' },
        /HERALD_JWT_SECRETS_FILE: cannot read \/nonexistent\/secrets/,
      ],
      [{ HERALD_AUTH: 'none', HERALD_CORS_ORIGINS: 'https://a.example/path' }, /HERALD_CORS_ORIGINS: /],
      [{ HERALD_AUTH: 'none', HERALD_JWT_ALGORITHMS: 'none' }, /HERALD_JWT_ALGORITHMS: /],
      // NATS files too, at start: not every connection attempt failing for ever.
      ...(
        [
          'HERALD_NATS_CREDS_FILE',
          'HERALD_NATS_TOKEN_FILE',
          'HERALD_NATS_PASSWORD_FILE',
          'HERALD_NATS_TLS_CA_FILE',
          'HERALD_NATS_TLS_CERT_FILE',
          'HERALD_NATS_TLS_KEY_FILE',
        ] as const
      ).map((variable): [Record<string, string>, RegExp] => [
        { HERALD_AUTH: 'none', HERALD_BROKER: 'jetstream', [variable]: '/nonexistent/nats-file' },
        new RegExp(`${variable}: cannot read /nonexistent/nats-file`),
      ]),
    ];
    for (const [env, message] of cases) {
      const { code, stderr } = await runGatewayToExit(env);
      assert.equal(code, 2, stderr);
      assert.match(stderr, message);
    }
  });
});
