import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startGateway } from '@herald/gateway/testing';
import {
  FakeClock,
  mintToken,
  type Refusal,
  refusalOf,
  type SseClient,
  seededRandom,
  TEST_HMAC_SECRET,
  until,
  writeTempFiles,
} from '@herald/testkit';

const NO_REFUSALS = { 'pod-full': 0, rate: 0, 'ip-full': 0, 'subject-full': 0 };

/** Retry-After of a refusal, checked against the problem body's `retryAfter`. */
function retryAfterOf(r: Refusal): number {
  const header = r.headers['retry-after'];
  assert.equal(typeof header, 'string', 'a Retry-After header');
  const seconds = Number(header);
  assert.ok(Number.isInteger(seconds), `whole seconds: ${header}`);
  assert.equal(r.problem.retryAfter, seconds, 'the body says the same Retry-After');
  return seconds;
}

describe('edge admission - caps and connect rate', () => {
  it('admission - past maxConnections a stream gets 503 HERALD_OVERLOADED with a jittered Retry-After in [base, 2·base]; closing one frees a slot', async (t) => {
    let r = 0;
    const RETRY_MS = 2000;
    const base = Math.ceil(RETRY_MS / 1000);
    const gw = await startGateway({ maxConnections: 3, retryMs: RETRY_MS }, { random: () => r });
    t.after(() => gw.close());
    const open = [];
    for (let i = 0; i < 3; i++) open.push(await gw.stream({ topic: 'full' }));
    assert.deepEqual(
      open.map((c) => c.status),
      [200, 200, 200],
    );
    // The jitter source at its low end, middle and high end spans the whole window.
    for (const [random, expected] of [
      [0, base],
      [0.5, base + 1],
      [0.999_999, 2 * base],
    ] as const) {
      r = random;
      const refusal = await refusalOf(await gw.stream({ topic: 'full' }));
      assert.equal(refusal.status, 503);
      assert.equal(refusal.contentType, 'application/problem+json');
      assert.equal(refusal.problem.code, 'HERALD_OVERLOADED');
      assert.equal(refusal.problem.limit, 3);
      const seconds = retryAfterOf(refusal);
      assert.equal(seconds, expected, `random ${random}`);
      assert.ok(
        seconds >= base && seconds <= 2 * base,
        `Retry-After ${seconds} within [${base}, ${2 * base}]`,
      );
    }
    assert.deepEqual(gw.gateway.edge.admission.counts(), { ...NO_REFUSALS, 'pod-full': 3 });
    assert.equal(gw.gateway.hub.size, 3, 'refused streams never reached the hub');

    open[0]!.close();
    await until(() => gw.gateway.edge.admission.open === 2, 'the closed stream to release its slot');
    const next = await gw.stream({ topic: 'full' });
    assert.equal(next.status, 200);
    await gw.publish({ topic: 'full', data: 'after' });
    await next.waitFor((s) => s.events.some((e) => e.data === 'after'), 'an event on the freed slot');
    assert.equal(gw.gateway.edge.admission.counts()['pod-full'], 3);
  });

  it('admission - past maxConnectionsPerIp a stream gets 429 HERALD_RATE_LIMITED with Retry-After; other limits are untouched', async (t) => {
    const gw = await startGateway({ maxConnectionsPerIp: 2, retryMs: 1000 }, { random: () => 0 });
    t.after(() => gw.close());
    const a = await gw.stream({ topic: 'ip' });
    const b = await gw.stream({ topic: 'ip' });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const refusal = await refusalOf(await gw.stream({ topic: 'ip' }));
    assert.equal(refusal.status, 429);
    assert.equal(refusal.problem.code, 'HERALD_RATE_LIMITED');
    assert.equal(refusal.problem.limit, 2);
    assert.equal(retryAfterOf(refusal), 1);
    assert.deepEqual(gw.gateway.edge.admission.counts(), { ...NO_REFUSALS, 'ip-full': 1 });
    b.close();
    await until(
      () => gw.gateway.edge.admission.openForIp('127.0.0.1') === 1,
      'the slot of the closed stream',
    );
    assert.equal((await gw.stream({ topic: 'ip' })).status, 200);
  });

  it('admission - behind a trusted proxy the per-IP cap counts the X-Forwarded-For client; from anyone else the header is ignored', async (t) => {
    const behind = await startGateway({ maxConnectionsPerIp: 1, trustedProxies: '127.0.0.0/8' });
    t.after(() => behind.close());
    const via = (client: string) => ({ headers: { 'X-Forwarded-For': `${client}, 127.0.0.9` } });
    assert.equal((await behind.stream({ topic: 'ip' }, via('198.51.100.1'))).status, 200);
    assert.equal((await behind.stream({ topic: 'ip' }, via('198.51.100.2'))).status, 200, 'another client');
    const again = await refusalOf(await behind.stream({ topic: 'ip' }, via('198.51.100.1')));
    assert.equal(again.status, 429, 'the first client again');
    assert.equal(behind.gateway.edge.admission.openForIp('198.51.100.1'), 1);

    const direct = await startGateway({ maxConnectionsPerIp: 1 });
    t.after(() => direct.close());
    assert.equal((await direct.stream({ topic: 'ip' }, via('198.51.100.1'))).status, 200);
    const forged = await refusalOf(await direct.stream({ topic: 'ip' }, via('198.51.100.2')));
    assert.equal(forged.status, 429, 'a forged header does not buy another slot');
    assert.equal(direct.gateway.edge.admission.openForIp('127.0.0.1'), 1);
  });

  it('admission - past maxConnectionsPerSubject a user gets 429 while another user still connects', async (t) => {
    const files = writeTempFiles({ secrets: `${TEST_HMAC_SECRET}\n` });
    t.after(() => files.remove());
    const clock = new FakeClock();
    const gw = await startGateway(
      { auth: 'jwt', jwtSecretsFile: files.paths['secrets']!, maxConnectionsPerSubject: 2 },
      { clock },
    );
    t.after(() => gw.close());
    const as = async (sub: string) => ({
      Authorization: `Bearer ${await mintToken({ sub, subscribe: ['u.>'], expiresAt: clock.now() + 3_600_000 })}`,
    });
    const alice = await as('alice');
    assert.equal((await gw.stream({ topic: 'u.a' }, { headers: alice })).status, 200);
    assert.equal((await gw.stream({ topic: 'u.b' }, { headers: alice })).status, 200);
    const refusal = await refusalOf(await gw.stream({ topic: 'u.c' }, { headers: alice }));
    assert.equal(refusal.status, 429);
    assert.equal(refusal.problem.code, 'HERALD_RATE_LIMITED');
    assert.match(refusal.problem.detail, /user/);
    assert.ok(!refusal.body.includes('alice'), 'the subject is never echoed');
    retryAfterOf(refusal);
    assert.equal((await gw.stream({ topic: 'u.a' }, { headers: await as('bob') })).status, 200);
    assert.deepEqual(gw.gateway.edge.admission.counts(), { ...NO_REFUSALS, 'subject-full': 1 });
  });

  it('admission - a storm of 50 connects: the burst is admitted, the rest get 429 with Retry-After, and retrying when told they all connect and catch up', async (t) => {
    const RATE = 10;
    const BURST = 5;
    const RETRY_MS = 2000;
    const CLIENTS = 50;
    const base = Math.ceil(RETRY_MS / 1000);
    const clock = new FakeClock();
    const gw = await startGateway(
      { connectRate: RATE, connectBurst: BURST, retryMs: RETRY_MS },
      { clock, random: seededRandom(42) },
    );
    t.after(() => gw.close());
    let n = 0;
    const publish = async () => {
      const r = await gw.publish({ topic: 'storm', data: String(++n) });
      assert.equal(r.status, 200);
    };
    // Every client asks for everything after this cursor, as if it had seen it before the storm.
    const seed = (await gw.publish({ topic: 'storm', data: 'seed' })).body.id as string;
    for (let i = 0; i < 5; i++) await publish();

    const start = clock.now();
    const connected = new Map<number, SseClient>();
    const due = new Map<number, number>();
    let refusals = 0;
    const attempt = async (i: number) => {
      const c = await gw.stream({ topic: 'storm' }, { headers: { 'Last-Event-ID': seed } });
      if (c.status === 200) {
        connected.set(i, c);
        due.delete(i);
        return;
      }
      const r = await refusalOf(c);
      assert.equal(r.status, 429);
      assert.equal(r.problem.code, 'HERALD_RATE_LIMITED');
      const seconds = retryAfterOf(r);
      assert.ok(
        seconds >= base && seconds <= 2 * base,
        `Retry-After ${seconds} within [${base}, ${2 * base}]`,
      );
      refusals++;
      due.set(i, clock.now() + seconds * 1000);
    };

    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => attempt(i)));
    assert.equal(connected.size, BURST, 'the burst is admitted at once');
    assert.equal(refusals, CLIENTS - BURST);

    let rounds = 0;
    while (due.size > 0) {
      assert.ok(++rounds <= 50, `every client connected within 50 retry rounds; ${due.size} still refused`);
      await publish(); // events keep coming during the storm
      const next = Math.min(...due.values());
      clock.tick(next - clock.now());
      await Promise.all([...due].filter(([, at]) => at <= clock.now()).map(([i]) => attempt(i)));
    }
    const elapsed = clock.now() - start;
    // At most BURST clients pass per retry instant (the bucket holds no more, and Retry-After is
    // whole seconds, so retries land on whole seconds): (50 - 5) / 5 = 9 instants at least, one
    // second or more apart. The jitter spreads them over up to twice as long as that.
    const ideal = ((CLIENTS - BURST) / BURST) * 1000;
    assert.ok(elapsed <= 2 * ideal + 2 * base * 1000, `all connected after ${elapsed} ms of (fake) time`);
    t.diagnostic(`storm: ${refusals} refusals over ${rounds} rounds, all connected after ${elapsed} fake ms`);

    await publish();
    const expected = Array.from({ length: n }, (_, i) => String(i + 1));
    for (const [i, c] of connected) {
      await c.waitFor((s) => s.events.length >= n, `client ${i} to catch up to event ${n}`);
      assert.deepEqual(
        c.events.map((e) => e.data),
        expected,
        `client ${i}: every event after the seed, once, in order`,
      );
    }
    assert.equal(connected.size, CLIENTS);
    assert.equal(gw.gateway.hub.size, CLIENTS);
    assert.equal(gw.gateway.edge.admission.open, CLIENTS);
    assert.deepEqual(gw.gateway.edge.admission.counts(), { ...NO_REFUSALS, rate: refusals });
  });
});
