import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { builtImages, type Cluster, connectSse, startCluster, until } from '@herald/testkit';

/**
 * `make e2e` (root): `charts/herald` on the one-node cluster of packages/testkit (docs/cluster.md),
 * with the images of `make image`, through the pinned helm and the cluster's Gateway (Traefik).
 * One cluster for every test of the file; the last test stops it and checks nothing is left.
 * Named *.e2e.ts so that `make chart` (charts/*\/test/**\/*.test.ts) does not run it.
 */

const CHART = fileURLToPath(new URL('..', import.meta.url));
const ROOT = join(CHART, '..', '..');
const HELM = join(execFileSync('bash', [join(ROOT, 'tools/helm.sh')], { encoding: 'utf8' }).trim(), 'helm');
const NS = 'herald-e2e';
const run = promisify(execFile);

/** The nats-server image `make image` built: `localhost/herald/nats-server:<version>`. */
function natsImage(): { repository: string; tag: string } {
  const ref = builtImages()['nats-server']!.ref;
  const at = ref.lastIndexOf(':');
  return { repository: ref.slice(0, at), tag: ref.slice(at + 1) };
}

let c: Cluster;

async function helm(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(HELM, args, {
      cwd: CHART,
      env: {
        ...process.env,
        KUBECONFIG: c.kubeconfig,
        HELM_CACHE_HOME: join(c.root, 'helm-cache'),
        HELM_CONFIG_HOME: join(c.root, 'helm-config'),
        HELM_DATA_HOME: join(c.root, 'helm-data'),
      },
      maxBuffer: 64 << 20,
    });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${err.stderr || err.message}\n${err.stdout ?? ''}`);
  }
}

/**
 * A PersistentVolume for the bundled NATS's claim (the cluster has no provisioner; an admin of
 * such a cluster makes one): a hostPath under the cluster's directory, owned by the nats uid
 * (kubelet applies no fsGroup to hostPath volumes).
 */
async function natsVolume(release: string): Promise<void> {
  const dir = join(c.root, 'volumes', release);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, 1000, 1000);
  await c.kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: `e2e-${release}-nats`, labels: { 'e2e.herald.dev/volume': release } },
      spec: {
        capacity: { storage: '2Gi' },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        // Bound to this release's claim only, so two releases never swap volumes.
        claimRef: { namespace: NS, name: `data-${release}-nats-0` },
        hostPath: { path: dir, type: 'Directory' },
      },
    }),
  );
}

/** helm install of the quick-start profile (a release name holding "herald" is the chart's fullname), with this machine's images and the Gateway route. */
async function install(release: string, extra: string[] = []): Promise<number> {
  await natsVolume(release);
  const nats = natsImage();
  const started = Date.now();
  await helm([
    'install',
    release,
    '.',
    '-n',
    NS,
    '--create-namespace',
    '-f',
    'ci/quickstart-values.yaml',
    '--set',
    `nats.bundled.image.repository=${nats.repository}`,
    '--set',
    `nats.bundled.image.tag=${nats.tag}`,
    '--set',
    'nats.bundled.image.pullPolicy=Never',
    '--set',
    'image.pullPolicy=Never',
    '--set',
    'httpRoute.enabled=true',
    '--set',
    `httpRoute.parentRefs[0].name=${c.gateway.name}`,
    '--set',
    `httpRoute.parentRefs[0].namespace=${c.gateway.namespace}`,
    '--set',
    `httpRoute.parentRefs[0].sectionName=${c.gateway.sectionName}`,
    ...extra,
    '--wait',
    '--timeout',
    '180s',
  ]);
  return Date.now() - started;
}

interface PodList {
  items: {
    metadata: { name: string; labels?: Record<string, string> };
    spec: { containers: { image: string }[] };
    status: { phase?: string; conditions?: { type: string; status: string }[] };
  }[];
}

async function pods(selector: string): Promise<PodList['items']> {
  return (JSON.parse(await c.kubectl(['get', 'pods', '-n', NS, '-l', selector, '-o', 'json'])) as PodList)
    .items;
}

const ready = (p: PodList['items'][number]) =>
  p.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true;

async function publish(url: string, topic: string, data: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ topic, event: 'e2e', data }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, `publish through the Gateway: ${res.status} ${body}`);
  return JSON.parse(body) as { id: string };
}

describe('chart on the one-node cluster (make e2e)', () => {
  const state = { stopped: false };

  before(async () => {
    const started = Date.now();
    const images = builtImages();
    c = await startCluster({
      gateway: true,
      images: [images['pause']!.tarball, images['gateway']!.tarball, images['nats-server']!.tarball],
    });
    console.log(`# cluster ready in ${Date.now() - started} ms (images imported)`);
  });
  after(async () => {
    if (c !== undefined && !state.stopped) await c.stop();
  });
  afterEach(async (t) => {
    if (c === undefined || state.stopped || (t as { passed?: boolean }).passed !== false) return;
    // A failing test shows the namespace's objects and what the cluster's programs said.
    console.log(await c.kubectl(['get', 'all,pvc,pv,httproute', '-A', '-o', 'wide']).catch(String));
    console.log(await c.kubectl(['get', 'events', '-A', '--sort-by=.lastTimestamp']).catch(String));
    console.log(c.logs().split('\n').slice(-300).join('\n'));
  });

  it('e2e - helm install of the quick-start profile: the gateway and bundled NATS pods run the images built here and become Ready; helm test passes as a real pod', async (t) => {
    const took = await install('herald', ['--set', 'replicas=2']);
    t.diagnostic(`helm install --wait took ${took} ms`);
    const images = builtImages();
    const gateways = await pods('app.kubernetes.io/instance=herald,app.kubernetes.io/component=gateway');
    assert.equal(gateways.length, 2);
    assert.ok(gateways.every(ready), 'both gateway pods are Ready');
    assert.equal(gateways[0]!.spec.containers[0]!.image, images['gateway']!.ref);
    const nats = await c.kubectl(['get', 'pod', '-n', NS, 'herald-nats-0', '-o', 'json']);
    const natsPod = JSON.parse(nats) as PodList['items'][number];
    assert.ok(ready(natsPod), 'the bundled NATS pod is Ready');
    assert.equal(natsPod.spec.containers[0]!.image, images['nats-server']!.ref);

    const tested = Date.now();
    // No --logs: the chart's hook-delete-policy removes the pod once it succeeded.
    const out = await helm(['test', 'herald', '-n', NS, '--timeout', '120s']);
    t.diagnostic(`helm test took ${Date.now() - tested} ms`);
    assert.match(out, /TEST SUITE:\s+herald-stream-test\n(?:.*\n){2}Phase:\s+Succeeded/);
    assert.doesNotMatch(out, /Phase:\s+Failed/);
    // It ran as a pod on the node: kubelet reported its container started.
    const events = await c.kubectl([
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.kind=Pod,involvedObject.name=herald-stream-test',
      '-o',
      'jsonpath={range .items[*]}{.reason}{"\\n"}{end}',
    ]);
    assert.match(events, /^Scheduled$/m);
    assert.match(events, /^Started$/m);
  });

  it('e2e - SSE through the Gateway: the chart’s HTTPRoute carries a stream to the Service, and an event published through the route arrives live', async (t) => {
    const routed = Date.now();
    let status = '';
    await until(
      async () => {
        const res = await fetch(`${c.gatewayUrl}/readyz`).catch((e: Error) => e);
        status = res instanceof Error ? String(res.cause ?? res) : `${res.status} ${await res.text()}`;
        return status.startsWith('200');
      },
      () => `GET /readyz through the Gateway and the chart's HTTPRoute: ${status}`,
      60_000,
    );
    t.diagnostic(`routed ${Date.now() - routed} ms after the install returned`);
    const route = JSON.parse(await c.kubectl(['get', 'httproute', '-n', NS, 'herald', '-o', 'json'])) as {
      status: { parents: { conditions: { type: string; status: string }[] }[] };
    };
    assert.ok(
      route.status.parents[0]?.conditions.some((x) => x.type === 'Accepted' && x.status === 'True'),
      'Traefik accepted the chart’s route',
    );

    const client = await connectSse(`${c.gatewayUrl}/v1/stream?topic=e2e.live`);
    t.after(() => client.close());
    assert.equal(client.status, 200, client.body());
    assert.equal(client.headers['x-release-version'], '0.1.0', 'served by the chart’s gateway');
    await client.waitFor((s) => s.retries.length > 0, 'the retry: line', 10_000);
    const { id } = await publish(c.gatewayUrl, 'e2e.live', 'through the route');
    await client.waitFor((s) => s.events.some((e) => e.id === id), `event ${id} on the stream`, 10_000);
    assert.equal(client.events.find((e) => e.id === id)?.data, 'through the route');
  });

  it('e2e - two releases side by side: a client pinned by X-Release-Version, ?release= or the herald-release cookie lands on its release; unpinned clients stay on the stable release', async (t) => {
    // The canary's route takes only the clients pinned to it (httpRoute.unpinned=false): both
    // routes' catch-all rules would otherwise be identical, and Traefik gives the tie to the newer.
    const took = await install('herald-canary', [
      '--set',
      'release.version=0.2.0-canary',
      '--set',
      'httpRoute.unpinned=false',
    ]);
    t.diagnostic(`second helm install --wait took ${took} ms`);
    const servedBy = async (query: string, headers: Record<string, string> = {}) => {
      const client = await connectSse(`${c.gatewayUrl}/v1/stream?topic=e2e.pin${query}`, { headers });
      client.close();
      assert.equal(client.status, 200, client.body());
      return client.headers['x-release-version'];
    };
    let seen: unknown = '';
    await until(
      async () => {
        seen = await servedBy('', { 'X-Release-Version': '0.2.0-canary' });
        return seen === '0.2.0-canary';
      },
      () => `Traefik to route the canary’s pin (last served by ${String(seen)})`,
      60_000,
    );
    const unpinned: string[] = [];
    for (let i = 0; i < 5; i++) {
      assert.equal(await servedBy('', { 'X-Release-Version': '0.2.0-canary' }), '0.2.0-canary', 'header pin');
      assert.equal(await servedBy('&release=0.2.0-canary'), '0.2.0-canary', 'query pin');
      assert.equal(
        await servedBy('', { Cookie: 'theme=dark; herald-release=0.2.0-canary' }),
        '0.2.0-canary',
        'cookie pin',
      );
      assert.equal(await servedBy('', { 'X-Release-Version': '0.1.0' }), '0.1.0', 'header pin, stable');
      assert.equal(await servedBy('&release=0.1.0'), '0.1.0', 'query pin, stable');
      assert.equal(await servedBy('', { Cookie: 'herald-release=0.1.0' }), '0.1.0', 'cookie pin, stable');
      unpinned.push(
        String(await servedBy('')),
        String(await servedBy('', { Cookie: 'herald-release=9.9.9' })),
      );
    }
    assert.deepEqual(unpinned, Array(10).fill('0.1.0'), 'unpinned streams stay on the stable release');
    // Each release's publishes reach its own streams (its own bundled NATS).
    const canary = await connectSse(`${c.gatewayUrl}/v1/stream?topic=e2e.pin&release=0.2.0-canary`);
    t.after(() => canary.close());
    await canary.waitFor((s) => s.retries.length > 0, 'the canary stream to open', 10_000);
    const { id } = await publish(`${c.gatewayUrl}`, 'e2e.pin', 'to the canary', {
      'X-Release-Version': '0.2.0-canary',
    });
    await canary.waitFor(
      (s) => s.events.some((e) => e.id === id),
      `event ${id} on the canary stream`,
      10_000,
    );
  });

  it('e2e - deleting a gateway pod: its clients get the drain’s retry:, reconnect through the Gateway to the other pod and resume exactly, and the pod exits within its grace period', async (t) => {
    const topic = 'e2e.drain';
    // Pinned to the first release (`?release=`, kept on every reconnect), as a client of a
    // release under test would be.
    const url = `${c.gatewayUrl}/v1/stream?topic=${topic}&release=0.1.0`;
    /** A client that behaves as EventSource does: on the end of a stream it reconnects with Last-Event-ID after retry: ms. */
    const resuming = () => {
      const s = {
        ids: [] as string[],
        connections: 0,
        drained: 0,
        retried: 0,
        refused: 0,
        stopped: false,
        ready: Promise.withResolvers<void>(),
      };
      const loop = async () => {
        let retryMs = 1000;
        while (!s.stopped) {
          const headers: Record<string, string> = s.ids.length > 0 ? { 'Last-Event-ID': s.ids.at(-1)! } : {};
          const client = await connectSse(url, { headers }).catch(() => undefined);
          if (client === undefined || client.status !== 200) {
            s.refused++;
            client?.close();
            await new Promise((r) => setTimeout(r, retryMs)); // what EventSource does after a failed connection
            continue;
          }
          s.connections++;
          let seen = 0;
          const take = () => {
            for (; seen < client.events.length; seen++) s.ids.push(client.events[seen]!.id!);
          };
          await client.waitFor((x) => x.retries.length > 0, 'retry:', 10_000).catch(() => undefined);
          s.ready.resolve();
          const stop = setInterval(() => {
            take();
            if (s.stopped) client.close();
          }, 50);
          await client.ended;
          clearInterval(stop);
          take();
          retryMs = client.retries.at(-1) ?? retryMs;
          if (!s.stopped) s.drained++;
          if (!s.stopped && client.retries.length > 1) s.retried++;
          if (!s.stopped) await new Promise((r) => setTimeout(r, retryMs)); // the announced reconnection delay
        }
      };
      return { s, done: loop() };
    };
    const clients = Array.from({ length: 6 }, resuming);
    let publishing = true;
    t.after(() => {
      // A failed assertion must not leave the clients' loops or the publisher running.
      publishing = false;
      for (const x of clients) x.s.stopped = true;
    });
    await Promise.all(clients.map((x) => x.s.ready.promise));

    const acked: string[] = [];
    let failedPublishes = 0;
    const publisher = (async () => {
      for (let n = 0; publishing; n++) {
        const res = await fetch(`${c.gatewayUrl}/v1/publish`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'X-Release-Version': '0.1.0' },
          body: JSON.stringify({ topic, event: 'e2e', data: String(n) }),
        }).catch(() => undefined);
        if (res?.status === 200) acked.push(((await res.json()) as { id: string }).id);
        else failedPublishes++;
        await new Promise((r) => setTimeout(r, 20)); // the publish rate: ≈ 40/s
      }
    })();
    await until(() => acked.length >= 20, 'the first 20 acknowledged publishes', 20_000);
    const victim = (await pods('app.kubernetes.io/instance=herald,app.kubernetes.io/component=gateway')).find(
      (p) => ready(p) && (p.metadata as { deletionTimestamp?: string }).deletionTimestamp === undefined,
    )!;
    const grace = Number(
      JSON.parse(await c.kubectl(['get', 'pod', '-n', NS, victim.metadata.name, '-o', 'json'])).spec
        .terminationGracePeriodSeconds,
    );
    const deleting = Date.now();
    await c.kubectl(['delete', 'pod', '-n', NS, victim.metadata.name, '--wait=false']);
    await until(
      async () =>
        (await pods('app.kubernetes.io/instance=herald')).every(
          (p) => p.metadata.name !== victim.metadata.name,
        ),
      `pod ${victim.metadata.name} gone`,
      (grace + 10) * 1000,
    );
    const gone = Date.now() - deleting;
    t.diagnostic(`pod ${victim.metadata.name} gone ${gone} ms after delete (grace ${grace} s)`);
    assert.ok(gone < grace * 1000, `the pod exited within its grace period (${gone} ms)`);
    const drained = clients.filter((x) => x.s.drained > 0).length;
    assert.ok(drained > 0, 'some clients were on the deleted pod and saw the drain');
    await until(
      () => clients.every((x) => x.s.retried === x.s.drained),
      () =>
        `every drained stream to have announced retry: before it ended: ${JSON.stringify(clients.map((x) => [x.s.drained, x.s.retried]))}`,
      5_000,
    );
    await until(
      () => clients.every((x) => x.s.connections > x.s.drained),
      'every drained client to be connected again',
      30_000,
    );
    const mark = acked.length;
    await until(
      () => acked.length >= mark + 20,
      '20 more acknowledged publishes after the reconnects',
      20_000,
    );
    publishing = false;
    await publisher;
    const last = acked.at(-1)!;
    await until(
      () => clients.every((x) => x.s.ids.includes(last)),
      () => `every client to receive the last acknowledged id ${last}`,
      20_000,
    );
    for (const x of clients) x.s.stopped = true;
    await Promise.all(clients.map((x) => x.done));
    const report = clients.map(({ s }) => {
      const ackedSet = new Set(acked);
      const got = s.ids.filter((id) => ackedSet.has(id));
      const lost = acked.filter((id) => !s.ids.includes(id)).length;
      const duplicated = s.ids.length - new Set(s.ids).size;
      const reordered = got.filter((id, i) => i > 0 && acked.indexOf(id) < acked.indexOf(got[i - 1]!)).length;
      const unacknowledged = s.ids.filter((id) => !ackedSet.has(id)).length;
      return {
        connections: s.connections,
        retried: s.retried,
        drained: s.drained,
        refused: s.refused,
        lost,
        duplicated,
        reordered,
        unacknowledged,
      };
    });
    t.diagnostic(
      `${acked.length} acknowledged publishes (${failedPublishes} failed), ${drained} of ${clients.length} clients drained: ${JSON.stringify(report)}`,
    );
    for (const r of report) {
      assert.equal(r.lost, 0, JSON.stringify(r));
      assert.equal(r.duplicated, 0, JSON.stringify(r));
      assert.equal(r.reordered, 0, JSON.stringify(r));
    }
  });

  it('e2e - helm uninstall of both releases leaves no object of theirs behind', async (t) => {
    const uninstalling = Date.now();
    await helm(['uninstall', 'herald-canary', '-n', NS, '--wait', '--timeout', '120s']);
    await helm(['uninstall', 'herald', '-n', NS, '--wait', '--timeout', '120s']);
    // The volumes are this test's, not the chart's: released by the claims the chart deleted.
    await c.kubectl(['delete', 'pv', '-l', 'e2e.herald.dev/volume', '--wait=true']);
    const kindsOf = async (namespaced: boolean) =>
      (await c.kubectl(['api-resources', '--verbs=list', `--namespaced=${namespaced}`, '-o', 'name']))
        .split('\n')
        .filter((k) => k !== '' && !/^events(\.events\.k8s\.io)?$/.test(k));
    const namespacedKinds = await kindsOf(true);
    const kinds = [...namespacedKinds, ...(await kindsOf(false))];
    let left: string[] = [];
    const expected = new Set([`configmap/kube-root-ca.crt`, `serviceaccount/default`]);
    await until(
      async () => {
        const namespaced = (
          await c.kubectl(['get', namespacedKinds.join(','), '-n', NS, '-o', 'name', '--ignore-not-found'])
        )
          .split('\n')
          .filter((o) => o !== '' && !expected.has(o.replace(/^(\w+)\.?[^/]*\//, '$1/')));
        const labelled = (
          await c.kubectl([
            'get',
            kinds.join(','),
            '-A',
            '-l',
            'app.kubernetes.io/instance in (herald,herald-canary)',
            '-o',
            'name',
            '--ignore-not-found',
          ])
        )
          .split('\n')
          .filter((o) => o !== '');
        left = [...namespaced, ...labelled];
        return left.length === 0;
      },
      () => `no object left in ${NS} or labelled with either release: ${left.join(', ')}`,
      60_000,
    );
    t.diagnostic(`uninstalled and cleared in ${Date.now() - uninstalling} ms`);
  });

  it('e2e - the cluster stops and leaves no namespace, process or mount behind', async () => {
    state.stopped = true;
    await c.stop();
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(c.netns));
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => /kubelet|containerd|herald-cluster/.test(l));
    assert.deepEqual(mounts, []);
    const left = readdirSync('/proc').filter((p) => {
      try {
        return /^\d+$/.test(p) && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(c.root);
      } catch {
        return false;
      }
    });
    assert.deepEqual(left, [], `processes naming ${c.root}`);
  });
});
