import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { type SseClient, startNats, untilReady } from '@herald/testkit';
import { connect } from '@nats-io/transport-node';

const seqOf = (id: string) => Number(id.split('-')[1]);

/**
 * The NATS identities of docs/security.md: gateways may not publish commands, the operator may
 * publish nothing else, publishers only events.
 */
// Drawn per run: no credential lives in the repository.
const secret = () => randomBytes(16).toString('hex');
const PASSWORDS = { gateway: secret(), operator: secret(), publisher: secret() };
const USERS = [
  {
    user: 'gateway',
    password: PASSWORDS.gateway,
    permissions: { publish: { allow: ['herald.t.>', '$JS.API.>', '_INBOX.>'], deny: ['herald.ctl.>'] } },
  },
  { user: 'operator', password: PASSWORDS.operator, permissions: { publish: { allow: ['herald.ctl.>'] } } },
  { user: 'publisher', password: PASSWORDS.publisher, permissions: { publish: { allow: ['herald.t.>'] } } },
];

it('shed - only the operator identity can shed; the named version closes that share of its streams and every client resumes on the other gateway without loss or repeat', async (t) => {
  const nats = await startNats({ config: { authorization: { users: USERS } } });
  const dir = mkdtempSync(join(tmpdir(), 'herald-shed-'));
  const password = join(dir, 'password');
  writeFileSync(password, `${PASSWORDS.gateway}\n`);
  const gateways: TestGateway[] = [];
  const clients: SseClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    for (const g of gateways) await g.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = async (releaseVersion: string) => {
    const gw = await startGateway(
      {
        broker: 'jetstream',
        natsUrl: nats.url,
        natsUser: 'gateway',
        natsPasswordFile: password,
        releaseVersion,
      },
      { random: () => 0.5 },
    );
    gateways.push(gw);
    await untilReady(gw.url);
    return gw;
  };
  const v1 = await start('v1');
  const v2 = await start('v2');

  const first = await Promise.all(Array.from({ length: 10 }, () => v1.stream({ topic: 'shed.>' })));
  clients.push(...first);
  const onV2 = await v2.stream({ topic: 'shed.>' });
  clients.push(onV2);
  for (const c of [...first, onV2]) await c.waitFor((s) => s.ids.length === 1, 'the opening');

  const login = (user: keyof typeof PASSWORDS) => connect({ servers: nats.url, user, pass: PASSWORDS[user] });
  const publisher = await login('publisher');
  const operator = await login('operator');
  t.after(async () => {
    await publisher.close();
    await operator.close();
  });
  const shed = JSON.stringify({ fraction: 0.5, windowMs: 100, version: 'v1' });

  // A publisher may not send commands: the server refuses it, and no gateway acts.
  const refused = new Promise<Error>((resolve) => {
    void (async () => {
      for await (const s of publisher.status()) if (s.type === 'error') resolve(s.error as Error);
    })();
  });
  publisher.publish('herald.ctl.shed', shed);
  assert.match(String((await refused).message), /permissions violation/i);
  await publisher.flush();

  // Events flow throughout; the operator sheds half of v1's streams.
  let published = 0;
  const publishSome = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await v2.publish({ topic: `shed.${published % 3}`, data: String(++published) });
      assert.equal(r.status, 200);
    }
  };
  await publishSome(20);
  const ended = new Set<SseClient>();
  for (const c of first) void c.ended.then(() => ended.add(c));
  operator.publish('herald.ctl.shed', shed);
  operator.publish('herald.ctl.shed', 'not json');
  await operator.flush();
  for (let i = 0; i < 200 && ended.size < 5; i++) await publishSome(1);
  await publishSome(10);
  assert.equal(ended.size, 5, 'half of v1 streams were closed');
  assert.equal(v1.gateway.hub.closes.shed, 5);
  assert.equal(v2.gateway.hub.closes.shed, 0, 'v2 was not named');
  assert.equal(v1.gateway.hub.size, 5, 'v1 keeps the rest, and keeps taking streams');

  // The shed clients come back (to v2: the new pods) with their cursors and miss nothing.
  const shedClients = first.filter((c) => ended.has(c));
  for (const c of shedClients) assert.equal(c.retries.length, 2, 'the opening retry:, then a jittered one');
  const resumed = await Promise.all(
    shedClients.map((c) => v2.stream({ topic: 'shed.>' }, { headers: { 'Last-Event-ID': c.lastEventId() } })),
  );
  clients.push(...resumed);
  await publishSome(10);
  for (const [i, c] of shedClients.entries()) {
    const again = resumed[i]!;
    await again.waitFor((s) => s.events.at(-1)?.data === String(published), 'the newest event', 10_000);
    const seen = [...c.events, ...again.events].map((e) => Number(e.data));
    assert.deepEqual(
      seen,
      Array.from({ length: published }, (_, k) => k + 1),
      `client ${i}: every event once, in order, across the move`,
    );
    assert.ok(seqOf(again.events[0]!.id!) > seqOf(c.lastEventId()));
  }
});
