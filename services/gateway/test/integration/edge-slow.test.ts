import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { connectSse, startGateway, until } from '@herald/testkit';
import { createParser } from 'eventsource-parser';

const KiB = 1024;
/**
 * A full garbage collection, so RSS is compared without the garbage of the moment (its amount
 * depends on when V8 last collected, not on what the gateway holds).
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function collectGarbage(): Promise<void> {
  // Twice, a turn apart: array buffers are swept off the main thread after a collection.
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
}

const MiB = 1024 * KiB;

/** Resolves when `socket` closes (whatever error came first); rejects after `timeoutMs` naming `what`. */
function closed(socket: Socket, what: string, timeoutMs: number): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('close', onClose);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const onClose = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once('close', onClose);
  });
}

/** A raw TCP client that sends a stream request and then never reads a byte. */
function stalledStream(port: number, path: string): Socket {
  const s = connect(port, '127.0.0.1');
  // The gateway closes it; a reset on the way is expected.
  s.on('error', () => {});
  s.pause();
  s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
  return s;
}

/**
 * Reads what a stalled client was sent, to the end, and parses it as EventSource would: the
 * events dispatched, and the id it would reconnect with (that of the last complete frame; a
 * frame cut off by the drop is discarded, id and all).
 */
async function drain(s: Socket, timeoutMs: number): Promise<{ data: string[]; lastEventId: string }> {
  let text = '';
  s.setEncoding('utf8');
  s.on('data', (chunk: string) => {
    text += chunk;
  });
  s.resume();
  await closed(s, 'a dropped client to read the rest of what it was sent', timeoutMs);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  const complete = body.slice(0, body.lastIndexOf('\n\n') + 2);
  const data: string[] = [];
  let lastEventId = '';
  const parser = createParser({
    onEvent: (e) => {
      data.push(e.data);
      if (e.id !== undefined) lastEventId = e.id;
    },
    onId: (id) => {
      lastEventId = id;
    },
  });
  parser.feed(complete);
  return { data, lastEventId };
}

describe('edge slow consumers', () => {
  it('slow - 1,000 clients that never read are dropped past maxQueuedBytes with bounded memory, while a reading canary gets every event in order, promptly; a dropped client resumes exactly', async (t) => {
    const STALLED = 1000;
    const MAX_QUEUED = 64 * KiB;
    const BATCH = 8;
    const gw = await startGateway({ maxQueuedBytes: MAX_QUEUED });
    t.after(() => gw.close());
    const port = Number(new URL(gw.url).port);
    const sockets: Socket[] = [];
    t.after(() => {
      for (const s of sockets) s.destroy();
    });

    const canary = await gw.stream({ topic: 'slow.feed' });
    await collectGarbage();
    const before = process.memoryUsage();
    for (let i = 0; i < STALLED; i++) sockets.push(stalledStream(port, '/v1/stream?topic=slow.feed'));
    await until(
      () => gw.gateway.hub.size === STALLED + 1,
      () => `every stalled client to be streaming (${gw.gateway.hub.size - 1} of ${STALLED} are)`,
      30_000,
    );

    // Batches of small events: everything due to one socket in one turn is copied into one write
    // per socket (the copying path), the worst case for what a stalled socket can pin.
    const filler = 'x'.repeat(1500);
    let n = 0;
    let published = 0;
    const latencies: number[] = [];
    for (let round = 0; gw.gateway.hub.closes.slow < STALLED; round++) {
      assert.ok(
        round < 2000,
        `all stalled clients dropped within 2000 batches (${gw.gateway.hub.closes.slow} were)`,
      );
      const messages = Array.from({ length: BATCH }, () => ({
        topic: 'slow.feed',
        data: `${++n} ${filler}`,
      }));
      published += messages.reduce((sum, m) => sum + m.data.length, 0);
      const started = performance.now();
      const r = await gw.publish({ messages });
      assert.equal(r.status, 200);
      await canary.waitFor((c) => c.events.length >= n, `event ${n} at the canary`);
      latencies.push(performance.now() - started);
    }
    await until(() => gw.gateway.hub.size === 1, 'the hub to hold only the canary');
    await until(() => gw.gateway.edge.admission.open === 1, 'the dropped streams to release their slots');
    await collectGarbage();
    const after = process.memoryUsage();
    const growth = after.rss - before.rss;
    const retained = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);

    assert.equal(gw.gateway.hub.closes.slow, STALLED);
    assert.deepEqual(
      canary.events.map((e) => Number(e.data.split(' ')[0])),
      Array.from({ length: n }, (_, i) => i + 1),
      'the canary got every event, once, in order',
    );
    latencies.sort((a, b) => a - b);
    const median = latencies[latencies.length >> 1]!;
    const worst = latencies.at(-1)!;
    t.diagnostic(
      `${n} events (${(published / MiB).toFixed(1)} MiB) until all ${STALLED} were dropped; ` +
        `RSS +${(growth / MiB).toFixed(1)} MiB, retained +${(retained / MiB).toFixed(1)} MiB; canary publish-to-receive median ${median.toFixed(1)} ms, worst ${worst.toFixed(1)} ms`,
    );
    // Publish to receive, through a real HTTP publish and SSE read while 1,000 stalled sockets get
    // the same events, is ≈ 50 ms median and ≤ 200 ms worst here alone; the bounds leave room for
    // the other test files running at the same time, yet fail if stalled sockets held the canary up.
    assert.ok(median < 250, `canary median latency ${median.toFixed(1)} ms < 250 ms`);
    assert.ok(worst < 2000, `canary worst latency ${worst.toFixed(1)} ms < 2000 ms`);
    // RSS: what may legitimately stay is a few copies of what was published (the broker's
    // history, the ring's frames, the canary's text and events); per stalled socket its queue up to
    // the limit plus one turn's write (server side) and its unread read buffer (client side); and
    // 128 MiB for the heap and malloc growing in steps, since every socket's batches went through
    // short-lived per-socket copies, and malloc keeps what it freed. Measured here with 1,000
    // stalled clients: +131 MiB (with 200: +85–145 MiB; with a 16× looser threshold, +244 MiB).
    // Without the drop every further batch would pin 1,000 × 12 KiB more.
    const bound = 4 * published + STALLED * (MAX_QUEUED + 2 * 64 * KiB) + 128 * MiB;
    assert.ok(
      growth < bound,
      `RSS grew ${(growth / MiB).toFixed(1)} MiB, bound ${(bound / MiB).toFixed(1)} MiB`,
    );
    // What is still referenced after a full collection (heap and buffers), a tighter check: about
    // one copy of the published data in the broker's history and one in the ring's frames (measured
    // here: +1.6 MiB for 1.5 MiB published). Were the dropped connections or their queues kept,
    // that would add at least 1,000 × 64 KiB = 62.5 MiB and cross 2 × published + 8 MiB.
    const retainedBound = 2 * published + 8 * MiB;
    assert.ok(
      retained < retainedBound,
      `retained +${(retained / MiB).toFixed(1)} MiB, bound ${(retainedBound / MiB).toFixed(1)} MiB`,
    );

    // One dropped client comes back with the id of the last complete frame it got.
    const dropped = await drain(sockets[0]!, 5000);
    const got = dropped.data.map((d) => Number(d.split(' ')[0]));
    assert.deepEqual(
      got,
      Array.from({ length: got.length }, (_, i) => i + 1),
      'the dropped client got a gap-free prefix',
    );
    assert.ok(got.length < n, 'it was dropped before the end');
    const back = await connectSse(`${gw.url}/v1/stream?topic=slow.feed`, {
      headers: { 'Last-Event-ID': dropped.lastEventId },
    });
    t.after(() => back.close());
    assert.equal(back.status, 200);
    await gw.publish({ topic: 'slow.feed', data: `${++n} live` });
    await back.waitFor((c) => c.events.length === n - got.length, 'the missed events and the live one');
    assert.deepEqual(
      [...got, ...back.events.map((e) => Number(e.data.split(' ')[0]))],
      Array.from({ length: n }, (_, i) => i + 1),
      'nothing missed, nothing twice',
    );
    assert.ok(!back.events.some((e) => e.event === 'herald.reset'));
  });
});

describe('edge slowloris', () => {
  it('slowloris - a head trickled a byte at a time is closed at the head deadline without an answer, while normal streams connect and outlive it', async (t) => {
    const HEAD_DEADLINE_MS = 300;
    const TRICKLERS = 20;
    const gw = await startGateway({ headersTimeoutMs: HEAD_DEADLINE_MS });
    t.after(() => gw.close());
    const port = Number(new URL(gw.url).port);

    const tricklers = Array.from({ length: TRICKLERS }, () => {
      const s = connect(port, '127.0.0.1');
      const state = { socket: s, sent: 0, received: '', openedAt: performance.now(), closedAt: 0 };
      s.on('error', () => {});
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        state.received += chunk;
      });
      s.write('GET /v1/stream?topic=a HTTP/1.1\r\n');
      // An endless header, one byte every 20 ms: never idle, never complete.
      const header = 'X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
      const trickle = setInterval(() => {
        if (s.writable) s.write(header[state.sent++ % header.length]!);
      }, 20);
      s.once('close', () => {
        clearInterval(trickle);
        state.closedAt = performance.now();
      });
      return state;
    });
    // One that connects and sends nothing at all.
    const silent = connect(port, '127.0.0.1');
    silent.on('error', () => {});
    const silentOpened = performance.now();

    // Meanwhile a normal client connects and is served.
    const normal = await gw.stream({ topic: 'a' });
    assert.equal(normal.status, 200);

    await Promise.all(tricklers.map((s, i) => closed(s.socket, `trickling client ${i} to be closed`, 5000)));
    await closed(silent, 'the silent client to be closed', 5000);
    const silentAfter = performance.now() - silentOpened;
    for (const s of tricklers) {
      const after = s.closedAt - s.openedAt;
      assert.ok(
        after >= HEAD_DEADLINE_MS - 10,
        `closed after ${after.toFixed(0)} ms, not before the deadline`,
      );
      assert.ok(after < HEAD_DEADLINE_MS + 1500, `closed after ${after.toFixed(0)} ms, near the deadline`);
      assert.ok(s.sent >= 5, `it kept sending (${s.sent} bytes) and was closed anyway`);
      assert.equal(s.received, '', 'no answer to a head that never completed');
    }
    assert.ok(silentAfter >= HEAD_DEADLINE_MS - 10 && silentAfter < HEAD_DEADLINE_MS + 1500);

    // The normal stream outlived the head deadline: its head was complete in time.
    await gw.publish({ topic: 'a', data: 'still here' });
    await normal.waitFor((c) => c.events.some((e) => e.data === 'still here'), 'an event after the deadline');
    assert.equal(gw.gateway.hub.size, 1);
    const late = await gw.stream({ topic: 'a' });
    assert.equal(late.status, 200, 'new streams are still served');
  });

  it('slowloris - the head of a second request on a kept-alive connection, trickled, is closed at the head deadline too', async (t) => {
    const HEAD_DEADLINE_MS = 300;
    const gw = await startGateway({ headersTimeoutMs: HEAD_DEADLINE_MS });
    t.after(() => gw.close());
    const s = connect(Number(new URL(gw.url).port), '127.0.0.1');
    s.on('error', () => {});
    t.after(() => s.destroy());
    let received = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      received += chunk;
    });
    s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => received.includes('{"status":"ok"}'), 'the first answer');
    s.write('GET /v1/stream?topic=a HTTP/1.1\r\n');
    const trickle = setInterval(() => s.writable && s.write('a'), 20);
    s.once('close', () => clearInterval(trickle));
    t.after(() => clearInterval(trickle));
    await closed(s, 'the kept-alive connection to be closed', HEAD_DEADLINE_MS + 1500);
  });
});
