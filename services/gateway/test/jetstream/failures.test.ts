import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as backoff } from 'node:timers/promises';
import { type GatewayProcess, spawnGateway, startGateway } from '@herald/gateway/testing';
import {
  connectSse,
  type PublishResponse,
  postJson,
  type SseClient,
  startNats,
  startNatsCluster,
  streamPath,
  until,
  untilReady,
} from '@herald/testkit';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { EventSourceMessage } from 'eventsource-parser';

/**
 * Failure behaviour of the JetStream broker, against real nats-server processes: NATS missing at
 * start, NATS restarting mid-traffic, a cluster node stopping, retention overtaking a stalled pod,
 * and a stalled pod catching up. Every check is what a client would notice on its stream.
 */

const RESET = 'herald.reset';
const seqOf = (id: string | undefined) => Number(id!.split('-')[1]);

/** Whether `c.ended` has resolved, observable synchronously. */
function watchEnd(c: SseClient): () => boolean {
  let ended = false;
  void c.ended.then(() => {
    ended = true;
  });
  return () => ended;
}

/** Clean-ups run after the test in reverse order: the last thing started stops first. */
function cleanups(t: TestContext): (fn: () => unknown) => void {
  const fns: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of fns.reverse())
      await Promise.resolve()
        .then(fn)
        .catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  });
  return (fn) => {
    fns.push(fn);
  };
}

async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A 503 problem+json with HERALD_BROKER_UNAVAILABLE and a Retry-After, as publishers are promised. */
function assertUnavailable(r: PublishResponse, what: string): void {
  assert.equal(r.status, 503, `${what}: status`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, `${what}: content type`);
  assert.equal(r.body.code, 'HERALD_BROKER_UNAVAILABLE', `${what}: code`);
  assert.ok(Number(r.headers.get('retry-after')) >= 1, `${what}: Retry-After`);
}

interface Acked {
  readonly data: string;
  readonly topic: string;
  readonly seq: number;
}

/**
 * A publisher that keeps going through outages, as a well-behaved backend does: one event per
 * request with an idempotency key; a 503 (or a refused connection) is retried with the same key,
 * so an event stored before its answer was lost is stored once. It waits for readiness when the
 * gateway is not ready, and backs off briefly when it is ready but the cluster is not (a stream
 * leader being elected). Each event gives up after `giveUpMs`.
 */
function publisher(url: () => string, total: number, topicOf: (i: number) => string, giveUpMs = 15_000) {
  const acked: Acked[] = [];
  let refused = 0;
  let stop = false;
  const done = (async () => {
    for (let i = 0; i < total && !stop; i++) {
      const topic = topicOf(i);
      const deadline = Date.now() + giveUpMs;
      for (let attempt = 1; ; attempt++) {
        const r = await postJson(
          `${url()}/v1/publish`,
          { topic, data: String(i) },
          { 'Idempotency-Key': `ev-${i}` },
        ).catch((err: unknown) => ({ status: 0, body: String(err) }) as PublishResponse);
        if (r.status === 200) {
          acked.push({ data: String(i), topic, seq: seqOf(r.body.id) });
          break;
        }
        refused++;
        if (r.status !== 503 && r.status !== 0)
          throw new Error(`publish ${i}: ${r.status} ${JSON.stringify(r.body)}`);
        if (Date.now() > deadline) throw new Error(`publish ${i} still refused after ${attempt} attempts`);
        await untilReady(url(), 200, Math.max(1, deadline - Date.now()));
        await backoff(Math.min(500, 10 * 2 ** attempt));
      }
    }
  })();
  return {
    acked,
    refused: () => refused,
    done,
    stop() {
      stop = true;
      return done;
    },
  };
}

/** Events a client on `matchesTopic` must get: the acknowledged ones it subscribes to, in stream order. */
/**
 * Every client received every acknowledged event of its topics once, in order, with no reset, on
 * a stream that stayed open throughout.
 */
async function assertEveryAckedOnce(
  clients: readonly SseClient[],
  ended: readonly (() => boolean)[],
  expectedOf: (i: number) => string[],
): Promise<void> {
  for (const [i, c] of clients.entries()) {
    const expected = expectedOf(i);
    await c.waitFor(
      (s) => s.events.length >= expected.length || s.events.some((e) => e.event === RESET),
      `client ${i} to catch up`,
      15_000,
    );
    assert.ok(!c.events.some((e) => e.event === RESET), `client ${i} was not reset`);
    assert.deepEqual(
      c.events.map((e) => e.data),
      expected,
      `client ${i}: every acknowledged event once, in order`,
    );
    assertIncreasing(c.events, `client ${i}`);
    assert.equal(ended[i]!(), false, `client ${i}: the stream stayed open throughout`);
  }
}

function expectedFor(acked: readonly Acked[], matchesTopic: (topic: string) => boolean): string[] {
  return [...acked]
    .sort((a, b) => a.seq - b.seq)
    .filter((a) => matchesTopic(a.topic))
    .map((a) => a.data);
}

/** Ids strictly increasing across the stream: nothing out of order, nothing twice. */
function assertIncreasing(events: readonly EventSourceMessage[], what: string): void {
  const seqs = events.map((e) => seqOf(e.id));
  for (let k = 1; k < seqs.length; k++)
    assert.ok(seqs[k]! > seqs[k - 1]!, `${what}: id ${seqs[k]} after ${seqs[k - 1]} (at ${k})`);
}

describe('jetstream failures', () => {
  it('jetstream - NATS unreachable at start: the gateway starts, /readyz fails and streams are turned away with retry; when NATS appears it becomes ready and serves', async (t) => {
    const defer = cleanups(t);
    // A server that exists but is down: its port is known and free, so it can come back on it.
    const nats = await startNats();
    defer(() => nats.stop());
    await nats.kill('SIGTERM');
    const gw = await spawnGateway({
      HERALD_BROKER: 'jetstream',
      HERALD_NATS_URL: nats.url,
      HERALD_STREAM_NAME: 'FAIL1',
      HERALD_DRAIN_MS: '0',
    });
    let exited: number | null | undefined;
    void gw.exited.then((code) => {
      exited = code;
    });
    defer(async () => {
      if (exited === undefined) {
        gw.kill('SIGTERM');
        await gw.exited;
      }
    });

    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200, 'the process is alive');
    assert.deepEqual(await readyz(gw.url), {
      status: 503,
      body: { status: 'not-ready', broker: 'disconnected', draining: false, warming: false },
    });
    // A stream is answered 200 (EventSource gives up on anything else) with a retry and closed.
    const early = await connectSse(`${gw.url}${streamPath({ topic: 'boot' })}`);
    assert.equal(early.status, 200);
    await early.ended;
    assert.equal(early.retries.length, 1, 'a retry: line tells EventSource when to come back');
    assert.deepEqual(early.events, [], 'no events');
    assert.deepEqual(early.ids, [], 'no id: the client keeps the cursor it had');
    assertUnavailable(
      await postJson(`${gw.url}/v1/publish`, { topic: 'boot', data: 'early' }),
      'early publish',
    );

    await nats.restart();
    await untilReady(gw.url, 200, 15_000);
    assert.equal(exited, undefined, 'the gateway kept running while NATS was away');
    assert.equal((await readyz(gw.url)).body.broker, 'connected');
    const c = await connectSse(`${gw.url}${streamPath({ topic: 'boot' })}`);
    defer(() => c.close());
    await c.waitFor((s) => s.ids.length === 1, 'the opening id');
    const r = await postJson(`${gw.url}/v1/publish`, { topic: 'boot', data: 'served' });
    assert.equal(r.status, 200);
    await c.waitFor((s) => s.events.length === 1, 'the event');
    assert.deepEqual(
      c.events.map((e) => [e.id, e.data]),
      [[r.body.id, 'served']],
    );
    assert.ok(!gw.lines.some((l) => l.includes('failed for good')), 'the gateway never gave up connecting');
  });

  it('jetstream - NATS restarts mid-traffic (file store): open streams stay open, readiness fails and publishes get 503 meanwhile, and every event stored before and after arrives exactly once, in order', async (t) => {
    const defer = cleanups(t);
    const nats = await startNats();
    defer(() => nats.stop());
    const gw = await startGateway({ broker: 'jetstream', natsUrl: nats.url, streamName: 'FAIL2' });
    defer(() => gw.close());
    await untilReady(gw.url);
    const topicSets = [['r.a'], ['r.b', 'r.c'], ['r.*'], ['r.a', 'r.>']];
    const topicOf = (i: number) => ['r.a', 'r.b', 'r.c'][i % 3]!;
    const wants = (topics: string[]) => (topic: string) =>
      topics.some((p) => (p.endsWith('*') || p.endsWith('>') ? topic.startsWith('r.') : p === topic));
    const clients = await Promise.all(topicSets.map((topic) => gw.stream({ topic })));
    await Promise.all(clients.map((c) => c.waitFor((s) => s.ids.length === 1, 'the opening')));
    const ended = clients.map(watchEnd);

    const total = 1200;
    const pub = publisher(() => gw.url, total, topicOf);
    defer(() => pub.stop().catch(() => {}));
    await clients[2]!.waitFor((s) => s.events.length >= 200, 'traffic to flow', 10_000);

    await nats.kill('SIGKILL');
    const downAt = pub.acked.length;
    await untilReady(gw.url, 503);
    assert.deepEqual((await readyz(gw.url)).body, {
      status: 'not-ready',
      broker: 'disconnected',
      draining: false,
      warming: false,
    });
    const refused = await gw.publish({ topic: 'r.a', data: 'while-down' });
    assertUnavailable(refused, 'a publish while NATS is down');
    assert.deepEqual(
      ended.map((e) => e()),
      clients.map(() => false),
      'open streams stay open',
    );

    await nats.restart();
    await untilReady(gw.url, 200, 15_000);
    await pub.done;
    assert.equal(pub.acked.length, total);
    assert.ok(downAt < total, 'the outage happened mid-traffic');
    t.diagnostic(`acked before the kill: ${downAt}; publishes refused meanwhile: ${pub.refused()}`);

    await assertEveryAckedOnce(clients, ended, (i) => expectedFor(pub.acked, wants(topicSets[i]!)));
  });

  it('jetstream - one node of a 3-node cluster stops (R3 stream): clients keep receiving', async (t) => {
    const defer = cleanups(t);
    const cluster = await startNatsCluster(3);
    defer(() => cluster.stop());
    const gw = await startGateway({
      broker: 'jetstream',
      natsUrl: cluster.urls,
      streamName: 'FAIL3',
      streamReplicas: 3,
    });
    defer(() => gw.close());
    await untilReady(gw.url, 200, 15_000);
    const nc = await connect({ servers: cluster.urls.split(',') });
    defer(() => nc.close());
    // Short API timeouts: a request that lands mid-election is asked again rather than awaited.
    const jsm = await jetstreamManager(nc, { timeout: 1000 });
    const nodeNamed = (name: string | undefined) => cluster.nodes.find((n) => n.name === name)!;
    /** The gateway's live consumer (R1, on one node) once it is the only one. */
    const liveConsumer = async () => {
      const list = await jsm.consumers.list('FAIL3').next();
      return list.length === 1 && list[0]!.cluster?.leader
        ? { name: list[0]!.name, node: list[0]!.cluster.leader }
        : undefined;
    };
    const moveLeaderTo = async (node: string) => {
      if ((await jsm.streams.info('FAIL3')).cluster?.leader === node) return;
      await nc.request(
        '$JS.API.STREAM.LEADER.STEPDOWN.FAIL3',
        JSON.stringify({ placement: { preferred: node } }),
        { timeout: 5000 },
      );
      await until(
        async () => (await jsm.streams.info('FAIL3').catch(() => undefined))?.cluster?.leader === node,
        `the stream leader to move to ${node}`,
      );
    };

    // Round 1 stops the node holding the stream leader and the gateway's live consumer, but not
    // its connection: the gateway sees no disconnect, only silence. The consumer is placed by
    // the cluster; deleting it (the gateway follows on with a new one) moves it until it is apart.
    const connectedTo = (await nodeOfClient(cluster.nodes, 'herald-gateway')).name;
    const nextLiveConsumer = async (except?: string) => {
      let found: Awaited<ReturnType<typeof liveConsumer>>;
      await until(async () => {
        found = await liveConsumer();
        return found !== undefined && found.name !== except;
      }, 'the gateway to follow the stream with a (new) consumer');
      return found!;
    };
    let live = await nextLiveConsumer();
    for (let moves = 0; live.node === connectedTo; moves++) {
      assert.ok(moves < 20, 'the live consumer left the connection node');
      await jsm.consumers.delete('FAIL3', live.name);
      live = await nextLiveConsumer(live.name);
    }
    const first = nodeNamed(live.node);
    await moveLeaderTo(first.name);

    const topicSets = [['n.a'], ['n.*']];
    const topicOf = (i: number) => ['n.a', 'n.b'][i % 2]!;
    const wants = (topics: string[]) => (topic: string) =>
      topics.some((p) => (p.endsWith('*') ? topic.startsWith('n.') : p === topic));
    const clients = await Promise.all(topicSets.map((topic) => gw.stream({ topic })));
    await Promise.all(clients.map((c) => c.waitFor((s) => s.ids.length === 1, 'the opening')));
    const ended = clients.map(watchEnd);
    const all = clients[1]!;
    /** Events keep arriving: the client on every topic gets one published well after `mark`. */
    const keepsReceiving = (mark: number, what: string) =>
      all.waitFor((s) => Number(s.events.at(-1)?.data ?? -1) >= mark + 50, what, 15_000);

    const pub = publisher(() => gw.url, 1_000_000, topicOf);
    defer(() => pub.stop().catch(() => {}));
    await keepsReceiving(0, 'traffic to flow');
    await first.kill('SIGTERM');
    const firstAt = pub.acked.length;
    await keepsReceiving(firstAt, `events while ${first.name} (leader, live consumer) is down`);

    // Round 2: that node comes back; the node the gateway is connected to stops, as the leader.
    await first.restart();
    const second = nodeNamed((await nodeOfClient(cluster.nodes, 'herald-gateway')).name);
    await moveLeaderTo(second.name);
    await second.kill('SIGTERM');
    const secondAt = pub.acked.length;
    await keepsReceiving(secondAt, `events while ${second.name} (leader, connection) is down`);
    await pub.stop();
    t.diagnostic(
      `stopped ${first.name} (leader + live consumer) after ${firstAt} acks, then ${second.name} ` +
        `(leader + connection) after ${secondAt}; ${pub.acked.length} acked, ${pub.refused()} refused on the way`,
    );

    // Stored on a quorum before it was acknowledged: nothing may be missing, so no reset either.
    await assertEveryAckedOnce(clients, ended, (i) => expectedFor(pub.acked, wants(topicSets[i]!)));
  });

  it('jetstream - retention removes events a pod has not delivered yet: its clients get herald.reset (expired), never a silent gap', async (t) => {
    const defer = cleanups(t);
    const nats = await startNats();
    defer(() => nats.stop());
    const a = await spawnPod(defer, {
      HERALD_NATS_URL: nats.url,
      HERALD_STREAM_NAME: 'FAIL4',
      HERALD_HISTORY_MAX_EVENTS: '50',
    });
    const c = await connectSse(`${a.url}${streamPath({ topic: 'x.>' })}`);
    defer(() => c.close());
    await c.waitFor((s) => s.ids.length === 1, 'the opening');

    const nc = await connect({ servers: nats.url });
    defer(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const js = jsm.jetstream();
    const published: number[] = [];
    const publish = async (n: number) => {
      for (let k = 0; k < n; k++) {
        const i = published.length;
        const ack = await js.publish(`herald.t.x.${i % 3}`, new TextEncoder().encode(String(i)));
        published.push(ack.seq);
      }
    };
    await publish(20);
    await c.waitFor((s) => s.events.length === 20, 'the first 20 events');

    // The pod stalls; far more than the stream keeps (50) and the pod has asked for is published.
    a.kill('SIGSTOP');
    await publish(500);
    assert.equal((await jsm.streams.info('FAIL4')).state.messages, 50, 'retention dropped all but 50');
    a.kill('SIGCONT');
    await publish(10);

    const last = String(published.length - 1);
    await c.waitFor((s) => s.events.at(-1)?.data === last, 'the last event', 15_000);
    const resets = c.events.filter((e) => e.event === RESET);
    assert.equal(resets.length, 1, `one reset, got ${resets.length}`);
    const r = c.events.indexOf(resets[0]!);
    const before = c.events.slice(0, r);
    const after = c.events.slice(r + 1);
    assert.equal(JSON.parse(resets[0]!.data).reason, 'expired');
    // Before the reset: a gap-free prefix of what was published; after it: a gap-free tail.
    assert.deepEqual(
      before.map((e) => Number(e.data)),
      Array.from({ length: before.length }, (_, i) => i),
      'before the reset: every event from the start, once, in order',
    );
    const from = Number(after[0]!.data);
    assert.deepEqual(
      after.map((e) => Number(e.data)),
      Array.from({ length: published.length - from }, (_, i) => from + i),
      'after the reset: every event from the first one kept, once, in order',
    );
    assert.ok(from > before.length, `a gap was announced (events ${before.length}..${from - 1} lost)`);
    assert.equal(seqOf(resets[0]!.id), seqOf(after[0]!.id) - 1, 'the reset moves the cursor to just before');
    assert.equal(JSON.parse(resets[0]!.data).oldest, after[0]!.id, 'oldest names the first event kept');
    assertIncreasing(
      c.events.filter((e) => e.event !== RESET),
      'events',
    );
    t.diagnostic(`delivered ${before.length} before the gap, then reset, then ${after.length} from ${from}`);
  });

  it('jetstream - a slow pod (event loop stalled) catches up in order', async (t) => {
    const defer = cleanups(t);
    const nats = await startNats();
    defer(() => nats.stop());
    const slow = await spawnPod(defer, { HERALD_NATS_URL: nats.url, HERALD_STREAM_NAME: 'FAIL5' });
    const b = await startGateway({ broker: 'jetstream', natsUrl: nats.url, streamName: 'FAIL5' });
    defer(() => b.close());
    await untilReady(b.url);
    const topicSets = [['s.a'], ['s.*'], ['s.b', 's.c']];
    const topicOf = (i: number) => ['s.a', 's.b', 's.c'][i % 3]!;
    const wants = (topics: string[]) => (topic: string) =>
      topics.some((p) => (p.endsWith('*') ? topic.startsWith('s.') : p === topic));
    const clients = await Promise.all(
      topicSets.map((topic) => connectSse(`${slow.url}${streamPath({ topic })}`)),
    );
    defer(() => {
      for (const c of clients) c.close();
    });
    await Promise.all(clients.map((c) => c.waitFor((s) => s.ids.length === 1, 'the opening')));

    const acked: Acked[] = [];
    const publishBatches = async (from: number, to: number) => {
      for (let i = from; i < to; i += 100) {
        const messages = Array.from({ length: Math.min(100, to - i) }, (_, k) => ({
          topic: topicOf(i + k),
          data: String(i + k),
        }));
        const r = await b.publish({ messages });
        assert.equal(r.status, 200);
        for (const [k, x] of (r.body.results as { id: string }[]).entries())
          acked.push({ data: messages[k]!.data, topic: messages[k]!.topic, seq: seqOf(x.id) });
      }
    };
    await publishBatches(0, 300);
    await clients[1]!.waitFor((s) => s.events.length === 300, 'the first events live');
    // Stalled for as long as the other pod takes to store 9,700 events: a couple of seconds,
    // longer than the live feed's heartbeat interval.
    const stalledAt = Date.now();
    slow.kill('SIGSTOP');
    await publishBatches(300, 10_000);
    slow.kill('SIGCONT');
    t.diagnostic(`stalled for ${Date.now() - stalledAt} ms`);
    await publishBatches(10_000, 10_300);

    for (const [i, c] of clients.entries()) {
      const expected = expectedFor(acked, wants(topicSets[i]!));
      await c.waitFor((s) => s.events.length >= expected.length, `client ${i} to catch up`, 15_000);
      assert.ok(!c.events.some((e) => e.event === RESET), `client ${i} was not reset`);
      assert.deepEqual(
        c.events.map((e) => e.data),
        expected,
        `client ${i}: everything, once, in order`,
      );
      assertIncreasing(c.events, `client ${i}`);
    }
  });
});

/** A gateway process on JetStream, ready; stopped (continued first, if stalled) after the test. */
async function spawnPod(
  defer: (fn: () => unknown) => void,
  env: Record<string, string>,
): Promise<GatewayProcess> {
  const gw = await spawnGateway({ HERALD_BROKER: 'jetstream', HERALD_DRAIN_MS: '0', ...env });
  let exited = false;
  void gw.exited.then(() => {
    exited = true;
  });
  defer(async () => {
    if (exited) return;
    gw.kill('SIGCONT');
    gw.kill('SIGTERM');
    await gw.exited;
  });
  await untilReady(gw.url);
  return gw;
}

/** The node a client named `name` is connected to, from each node's /connz. */
async function nodeOfClient<N extends { name: string; monitorUrl: string }>(
  nodes: readonly N[],
  name: string,
) {
  for (const n of nodes) {
    const connz = (await (await fetch(`${n.monitorUrl}/connz`)).json()) as {
      connections?: { name?: string }[];
    };
    if (connz.connections?.some((c) => c.name === name)) return n;
  }
  throw new Error(`no node has a client named ${name}`);
}
