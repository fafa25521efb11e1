import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type JetStreamClient, jetstream, jetstreamManager, type PubAck } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startNats, startNatsCluster } from '../src/nats.ts';

/** True while a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Publishes, retrying while the stream has no leader (an election after a node went away). */
async function publishWithin(
  js: JetStreamClient,
  subject: string,
  data: string,
  ms: number,
): Promise<PubAck> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await js.publish(subject, data, { timeout: 1_000 });
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(50);
    }
  }
}

describe('nats', () => {
  it('nats - a single JetStream server starts on a free port, stores a message in a file stream, and keeps it across restart', async (t) => {
    const server = await startNats();
    t.after(() => server.stop());
    assert.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(server.url, `nats://127.0.0.1:${server.port}`);
    assert.ok(server.running);

    let nc = await connect({ servers: server.url });
    let jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'HERALD', subjects: ['herald.t.>'], storage: 'file' });
    const ack = await jetstream(nc).publish('herald.t.greeting', 'hello');
    assert.equal(ack.seq, 1);
    await nc.close();

    const { port, pid, storeDir } = server;
    await server.restart();
    assert.equal(server.port, port, 'the same port');
    assert.notEqual(server.pid, pid, 'a new process');
    assert.equal(alive(pid), false, 'the old process is gone');

    nc = await connect({ servers: server.url });
    jsm = await jetstreamManager(nc);
    const msg = await jsm.streams.getMessage('HERALD', { seq: 1 });
    assert.equal(msg?.subject, 'herald.t.greeting');
    assert.equal(msg?.string(), 'hello');
    await nc.close();

    await server.stop();
    assert.equal(server.running, false);
    assert.equal(alive(server.pid), false, 'no process left');
    assert.equal(existsSync(storeDir), false, 'the temporary store is removed');
    await server.stop(); // idempotent
  });

  it('nats - a SIGKILLed server keeps its store and comes back on restart', async (t) => {
    // Extra config merges into the generated jetstream block (store_dir stays). A SIGKILL alone
    // loses nothing acknowledged (the OS still has the writes); `always` guards against OS crashes.
    const server = await startNats({ config: { jetstream: { sync_interval: 'always' } } });
    t.after(() => server.stop());
    const jsz = (await (await fetch(`${server.monitorUrl}/jsz`)).json()) as {
      config: { store_dir: string; sync_always?: boolean };
    };
    assert.equal(jsz.config.sync_always, true);
    assert.equal(jsz.config.store_dir, `${server.storeDir}/jetstream`);
    let nc = await connect({ servers: server.url });
    await (await jetstreamManager(nc)).streams.add({ name: 'CRASH', subjects: ['herald.t.>'] });
    await jetstream(nc).publish('herald.t.crash', 'before');
    await nc.close();

    const pid = server.pid;
    await server.kill();
    assert.equal(server.running, false);
    assert.equal(alive(pid), false);
    assert.ok(existsSync(server.storeDir), 'the store survives the crash');
    await assert.rejects(server.kill(), /is not running; restart\(\) it first/);

    await server.restart();
    nc = await connect({ servers: server.url });
    const msg = await (await jetstreamManager(nc)).streams.getMessage('CRASH', { seq: 1 });
    assert.equal(msg?.string(), 'before');
    await nc.close();
  });

  it('nats - a server that cannot bind its port fails fast with its log', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => blocker.close(resolve)));
    const address = blocker.address();
    assert.ok(address !== null && typeof address === 'object');
    await assert.rejects(
      startNats({ port: address.port }),
      /nats-server herald-nats exited \(code 1\) before it was ready; a port it was given is taken by another process\. Last log lines:\n[\s\S]*address already in use/,
    );
  });

  it('nats - a bad flag fails with the complaint of nats-server itself, though the usage text it prints after is longer than the tail', async () => {
    await assert.rejects(
      startNats({ args: ['--no-such-flag'] }),
      /flag provided but not defined: -no-such-flag[\s\S]*…/,
    );
  });

  it('nats - a 3-node cluster elects a meta leader and keeps an R3 stream writable with one node stopped', async (t) => {
    const cluster = await startNatsCluster(3);
    t.after(() => cluster.stop());
    assert.equal(cluster.nodes.length, 3);
    assert.equal(cluster.urls.split(',').length, 3);
    assert.equal(new Set(cluster.nodes.map((n) => n.storeDir)).size, 3, 'a store per node');
    const jsz = await jszOf(cluster.nodes[0]!.monitorUrl);
    assert.ok(jsz.meta_cluster.leader, 'a meta leader');
    assert.equal(jsz.meta_cluster.cluster_size, 3);

    const nc = await connect({ servers: cluster.urls.split(','), reconnectTimeWait: 100 });
    t.after(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: 'HERALD', subjects: ['herald.t.>'], num_replicas: 3 });
    assert.equal(info.cluster?.replicas?.length, 2, 'a leader and two replicas');
    const js = jetstream(nc);
    assert.equal((await js.publish('herald.t.a', 'one')).seq, 1);

    // Stop the stream's leader (SIGTERM: it hands leadership over as it shuts down).
    const leader = cluster.nodes.find((n) => n.name === info.cluster?.leader);
    assert.ok(leader, `leader ${info.cluster?.leader} is one of the nodes`);
    await leader.kill('SIGTERM');
    assert.equal((await publishWithin(js, 'herald.t.a', 'two', 5_000)).seq, 2);
    assert.notEqual((await jsm.streams.info('HERALD')).cluster?.leader, leader.name);
    assert.equal((await jsm.streams.getMessage('HERALD', { seq: 1 }))?.string(), 'one');
    assert.equal((await jsm.streams.getMessage('HERALD', { seq: 2 }))?.string(), 'two');

    // It rejoins with its store; restart() resolves once its replica has caught up.
    await leader.restart();
    assert.equal(await localMessages(leader.monitorUrl, 'HERALD'), 2);
  });

  it('nats - a SIGKILLed cluster node rejoins with its store and catches up on restart', async (t) => {
    const cluster = await startNatsCluster(3);
    t.after(() => cluster.stop());
    const nc = await connect({ servers: cluster.urls.split(','), reconnectTimeWait: 100 });
    t.after(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: 'HERALD', subjects: ['herald.t.>'], num_replicas: 3 });
    const js = jetstream(nc);
    await js.publish('herald.t.a', 'one');

    // A node that leads neither the stream nor the JetStream meta group crashes: the other two
    // keep both quorums, so writes go on. (Crashing a leader costs a raft election, 4-9 s.)
    const metaLeader = (await jszOf(cluster.nodes[0]!.monitorUrl)).meta_cluster.leader;
    const follower = cluster.nodes.find((n) => n.name !== info.cluster?.leader && n.name !== metaLeader)!;
    const storeDir = follower.storeDir;
    await follower.kill();
    assert.equal(follower.running, false);
    assert.ok(existsSync(storeDir), 'the crashed node keeps its store');
    for (const data of ['two', 'three']) await publishWithin(js, 'herald.t.a', data, 5_000);

    await follower.restart();
    assert.equal(follower.storeDir, storeDir);
    assert.equal(await localMessages(follower.monitorUrl, 'HERALD'), 3);
  });
});

interface Jsz {
  meta_cluster: { leader?: string; cluster_size: number };
  account_details?: { stream_detail?: { name: string; state: { messages: number } }[] }[];
}

async function jszOf(monitorUrl: string): Promise<Jsz> {
  return (await (await fetch(`${monitorUrl}/jsz?streams=true`)).json()) as Jsz;
}

/** How many messages this node's own replica of `stream` holds. */
async function localMessages(monitorUrl: string, stream: string): Promise<number | undefined> {
  const jsz = await jszOf(monitorUrl);
  return jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream)?.state
    .messages;
}
