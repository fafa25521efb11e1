import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { builtImages, type Cluster, ClusterUnavailableError, startCluster } from '../src/cluster.ts';
import { type HostFacts, KUBELET_SYSCTLS, missingOnHost, STATE_DIR } from '../src/cluster-host.ts';
import { targetGroups } from '../src/cluster-targets.ts';
import { readLines } from '../src/log-lines.ts';
import { until } from '../src/until.ts';

/**
 * `make cluster` (not part of `make test` yet): the one-node cluster of cluster.ts on this
 * machine, with the images of `make image`. Needs root, network namespaces and cgroups; the
 * tools build on the first run.
 */

const execFileAsync = promisify(execFile);

/** The Kubernetes version tools/kube.sh pins. */
const PINNED = /^kube_version=(v[\d.]+)/m.exec(
  readFileSync(new URL('../../../tools/kube.sh', import.meta.url), 'utf8'),
)?.[1];

/** What the cluster may touch on the machine, as it is now. */
function machine() {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => /kubelet|containerd|herald-cluster|\/run\/netns/.test(m))
    .sort();
  const cgroups = readdirSync('/sys/fs/cgroup')
    .flatMap((h) => {
      try {
        return readdirSync(`/sys/fs/cgroup/${h}`).map((d) => `${h}/${d}`);
      } catch {
        return [];
      }
    })
    .filter((d) => /\/herald-/.test(d))
    .sort();
  const sysctls = Object.fromEntries(
    KUBELET_SYSCTLS.map((k) => [
      k,
      existsSync(`/proc/sys/${k}`) ? readFileSync(`/proc/sys/${k}`, 'utf8').trim() : '',
    ]),
  );
  const paths = [
    '/var/lib/kubelet',
    '/run/containerd',
    '/var/log/containers',
    '/var/log/pods',
    '/var/lib/cni',
    '/run/netns',
    '/run/herald-cluster',
  ].filter((p) => existsSync(p));
  return { mounts, cgroups, sysctls, paths };
}

async function netnsList(): Promise<string> {
  return (await execFileAsync('ip', ['netns', 'list'])).stdout;
}

async function rootAddresses(): Promise<string> {
  return (await execFileAsync('ip', ['-o', 'addr'])).stdout;
}

/** Processes whose command line names `root` (the cluster's directory). */
function processesNaming(root: string): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(root);
      } catch {
        return false;
      }
    });
}

interface Pod {
  status?: {
    phase?: string;
    podIP?: string;
    containerStatuses?: { ready: boolean; state?: Record<string, unknown> }[];
  };
}

describe('cluster', () => {
  it('cluster - a machine without root, network namespaces or cgroups is told what it lacks and that the other tests run without it', () => {
    const fit: HostFacts = {
      uid: 0,
      netns: true,
      programs: { ip: true, nsenter: true, umount: true },
      overlay: true,
      kmsg: true,
      cgroups: {
        version: 1,
        writable: {
          cpu: true,
          cpuacct: true,
          cpuset: true,
          memory: true,
          pids: true,
          devices: true,
          freezer: true,
        },
      },
    };
    assert.deepEqual(missingOnHost(fit), []);
    const unfit = missingOnHost({
      ...fit,
      uid: 1000,
      netns: false,
      programs: { ip: true, nsenter: false, umount: true },
      cgroups: { version: 1, writable: { cpu: true } },
    });
    const message = new ClusterUnavailableError(unfit).message;
    assert.match(message, /root: .*uid 1000.*sudo make cluster/);
    assert.match(message, /network namespaces/);
    assert.match(message, /nsenter: install/);
    assert.match(message, /cgroups: no writable \/sys\/fs\/cgroup\/cpuacct, .*\/sys\/fs\/cgroup\/freezer/);
    assert.doesNotMatch(message, /\/sys\/fs\/cgroup\/cpu,/);
    assert.match(message, /`make test` runs them/);
    assert.match(
      missingOnHost({ ...fit, cgroups: { version: 2, controllers: ['cpu', 'memory'] } }).join('\n'),
      /v2 controllers cpuset, pids/,
    );
    assert.deepEqual(missingOnHost(), [], 'this machine has what the cluster needs');
  });

  it('cluster - Prometheus targets: ready endpoints of Service ports named metrics, labelled like the chart’s ServiceMonitor', () => {
    const slice = (service: string, ports: { name: string; port: number }[], ready: boolean[]) => ({
      metadata: { namespace: 'ns', labels: { 'kubernetes.io/service-name': service } },
      ports,
      endpoints: ready.map((r, i) => ({
        addresses: [`10.244.0.${i + 2}`],
        conditions: { ready: r },
        targetRef: { kind: 'Pod', name: `${service}-${i}`, namespace: 'ns' },
      })),
    });
    const groups = targetGroups(
      [
        slice(
          'herald',
          [
            { name: 'http', port: 8080 },
            { name: 'metrics', port: 9464 },
          ],
          [true, false],
        ),
        slice('nats', [{ name: 'client', port: 4222 }], [true]),
      ],
      [{ metadata: { namespace: 'ns', name: 'herald-0', labels: { 'herald.dev/release': 'v2' } } }],
    );
    assert.deepEqual(groups, [
      {
        targets: ['10.244.0.2:9464'],
        labels: { namespace: 'ns', service: 'herald', pod: 'herald-0', release: 'v2' },
      },
    ]);
  });

  describe('a running cluster (one for these tests, with the Gateway API and Prometheus)', () => {
    let machineBefore: ReturnType<typeof machine>;
    let beforeNetns: string;
    let c: Cluster;
    const state = { stopped: false };

    before(async () => {
      machineBefore = machine();
      beforeNetns = await netnsList();
      const started = Date.now();
      c = await startCluster({ gateway: true, prometheus: true });
      console.log(`# cluster ready in ${Date.now() - started} ms: ${JSON.stringify(c.timings)}`);
    });
    after(async () => {
      if (c !== undefined && !state.stopped) await c.stop();
    });
    afterEach((t) => {
      // A failing test shows what the cluster's programs said.
      if (c !== undefined && (t as { passed?: boolean }).passed === false)
        console.log(c.logs().split('\n').slice(-300).join('\n'));
    });

    it('cluster - the node is Ready with an address that exists only inside its namespace, and cluster DNS answers through the Service', async () => {
      const node = (await c.request('GET', `/api/v1/nodes/${c.nodeName}`)).json as {
        status: { addresses: { type: string; address: string }[] };
      };
      const internal = node.status.addresses.find((a) => a.type === 'InternalIP')?.address;
      assert.ok(internal, 'the node has an InternalIP');
      assert.ok(
        !(await rootAddresses()).includes(` ${internal}/`),
        `${internal} must not exist in the root namespace`,
      );
      assert.equal(((await c.request('GET', '/version')).json as { gitVersion: string }).gitVersion, PINNED);
      assert.match(await c.kubectl(['get', 'nodes', '-o', 'name']), new RegExp(`node/${c.nodeName}`));
      // Through the kube-dns Service (kube-proxy's rules) to CoreDNS.
      const lookup = await execFileAsync('nsenter', [
        `--net=/run/netns/${c.netns}`,
        '--',
        process.execPath,
        '-e',
        `const r = new (require('node:dns').promises.Resolver)(); r.setServers(['10.96.0.10']);
         r.resolve4('kubernetes.default.svc.cluster.local').then((a) => console.log(a.join(',')), (e) => { console.error(e.message); process.exit(1); });`,
      ]);
      assert.equal(lookup.stdout.trim(), '10.96.0.1', 'kubernetes.default resolves to the API Service');
    });

    it('cluster - a pod of a local image runs, and is deleted', async (t) => {
      // `make image`'s pause image: the sandbox of every pod, and here the pod's container too.
      const pause = builtImages()['pause']!;
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'pause', namespace: 'default' },
        spec: {
          containers: [{ name: 'pause', image: pause.ref, imagePullPolicy: 'Never' }],
          terminationGracePeriodSeconds: 10,
        },
      };
      const created = Date.now();
      const res = await c.request('POST', '/api/v1/namespaces/default/pods', pod);
      assert.equal(res.status, 201, res.body);
      let last: Pod = {};
      await until(
        async () => {
          last = (await c.request('GET', '/api/v1/namespaces/default/pods/pause')).json as Pod;
          return last.status?.phase === 'Running' && last.status.containerStatuses?.[0]?.ready === true;
        },
        () => `pod default/pause Running: ${JSON.stringify(last.status)}`,
        60_000,
      );
      const running = Date.now() - created;
      assert.match(last.status?.podIP ?? '', /^10\.244\.0\.\d+$/);
      const deleted = Date.now();
      assert.equal((await c.request('DELETE', '/api/v1/namespaces/default/pods/pause')).status, 200);
      await until(
        async () => (await c.request('GET', '/api/v1/namespaces/default/pods/pause')).status === 404,
        'pod default/pause gone',
        30_000,
      );
      t.diagnostic(`pod Running ${running} ms after create, gone ${Date.now() - deleted} ms after delete`);
    });

    it('cluster - an HTTPRoute on the Gateway carries SSE from a Deployment of the gateway image to the test side, through Traefik, and Prometheus scrapes the pod', async (t) => {
      const image = builtImages()['gateway']!;
      const imported = Date.now();
      await c.importImage(image.tarball);
      t.diagnostic(`gateway image imported in ${Date.now() - imported} ms`);
      const labels = { app: 'probe' };
      const podLabels = { ...labels, 'herald.dev/release': 'probe-1' };
      const objects = [
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'probe', namespace: 'default' },
          spec: {
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
              metadata: { labels: podLabels },
              spec: {
                containers: [
                  {
                    name: 'gateway',
                    image: image.ref,
                    imagePullPolicy: 'Never',
                    env: [
                      { name: 'HERALD_AUTH', value: 'none' },
                      { name: 'HERALD_RELEASE_VERSION', value: 'probe-1' },
                    ],
                    ports: [
                      { containerPort: 8080, name: 'http' },
                      { containerPort: 9464, name: 'metrics' },
                    ],
                    readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 1 },
                  },
                ],
              },
            },
          },
        },
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'probe', namespace: 'default' },
          spec: {
            selector: labels,
            ports: [
              { name: 'http', port: 80, targetPort: 'http' },
              { name: 'metrics', port: 9464, targetPort: 'metrics' },
            ],
          },
        },
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'HTTPRoute',
          metadata: { name: 'probe', namespace: 'default' },
          spec: {
            parentRefs: [c.gateway],
            rules: [
              {
                matches: [{ path: { type: 'PathPrefix', value: '/' } }],
                backendRefs: [{ name: 'probe', port: 80 }],
              },
            ],
          },
        },
      ];
      await c.kubectl(['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n'));
      const applied = Date.now();
      let status = '';
      await until(
        async () => {
          const res = await fetch(`${c.gatewayUrl}/readyz`).catch((e: Error) => e);
          status = res instanceof Error ? String(res.cause ?? res) : `${res.status} ${await res.text()}`;
          return status.startsWith('200');
        },
        () => `GET ${c.gatewayUrl}/readyz through the Gateway: ${status}`,
        90_000,
      );
      t.diagnostic(`routed through the Gateway ${Date.now() - applied} ms after apply`);

      // A stream through Traefik gets a live event published through it.
      const stream = await fetch(`${c.gatewayUrl}/v1/stream?topic=probe.t`);
      assert.equal(stream.status, 200);
      assert.equal(stream.headers.get('content-type')?.split(';')[0], 'text/event-stream');
      assert.equal(stream.headers.get('x-release-version'), 'probe-1', 'the stream is served by the pod');
      const reader = stream.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      const read = async (pattern: RegExp) => {
        const deadline = Date.now() + 10_000;
        while (!pattern.test(text)) {
          if (Date.now() > deadline) throw new Error(`no ${pattern} in the stream: ${JSON.stringify(text)}`);
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ended: ${JSON.stringify(text)}`);
          text += decoder.decode(value, { stream: true });
        }
      };
      await read(/^retry:/m);
      const published = await fetch(`${c.gatewayUrl}/v1/publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'probe.t', event: 'hello', data: 'through the gateway' }),
      });
      assert.equal(published.status, 200, await published.clone().text());
      const { id } = (await published.json()) as { id: string };
      await read(/data: through the gateway\n/);
      assert.match(text, new RegExp(`id: ${id}\\nevent: hello\\ndata: through the gateway\\n`));

      // Prometheus found the pod through the API server and scrapes it: it counts this stream.
      let seen = '';
      await until(
        async () => {
          const url = `${c.prometheusUrl}/api/v1/query?query=${encodeURIComponent('herald_connections{service="probe"}')}`;
          const body = (await (await fetch(url)).json()) as {
            data: { result: { metric: Record<string, string>; value: [number, string] }[] };
          };
          const sample = body.data.result[0];
          seen = JSON.stringify(body.data.result);
          return (
            sample !== undefined &&
            Number(sample.value[1]) >= 1 &&
            sample.metric['release'] === 'probe-1' &&
            /^probe-/.test(sample.metric['pod'] ?? '')
          );
        },
        () => `Prometheus to scrape herald_connections >= 1 from the pod: ${seen}`,
        30_000,
      );
      await reader.cancel();
      await c.kubectl(['delete', '-f', '-', '--wait=true'], objects.map((o) => JSON.stringify(o)).join('\n'));
    });

    it('cluster - stop() ends every process and leaves no namespace, mount, cgroup, path or kernel setting behind', async (t) => {
      const stopping = Date.now();
      state.stopped = true;
      await c.stop();
      t.diagnostic(`stopped in ${Date.now() - stopping} ms`);
      assert.deepEqual(processesNaming(c.root), []);
      assert.equal(await netnsList(), beforeNetns);
      assert.deepEqual(machine(), machineBefore);
      assert.ok(!existsSync(c.root), `${c.root} is removed`);
    });
  });

  it('cluster - a test process killed with its cluster running leaves nothing behind (the watcher cleans up)', async (t) => {
    const before = machine();
    const beforeNetns = await netnsList();
    const child = spawn(
      process.execPath,
      ['--conditions=herald-source', new URL('./fixtures/cluster-child.ts', import.meta.url).pathname],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => child.kill('SIGKILL'));
    const output: string[] = [];
    const started = Promise.withResolvers<{ root: string; netns: string }>();
    for (const stream of [child.stdout, child.stderr]) {
      readLines(stream, (line) => {
        output.push(line);
        if (line.startsWith('{"root"')) started.resolve(JSON.parse(line));
      });
    }
    child.once('exit', (code, signal) =>
      started.reject(new Error(`the child exited (${signal ?? code}):\n${output.slice(-40).join('\n')}`)),
    );
    const { root, netns } = await started.promise;
    assert.match(await netnsList(), new RegExp(netns));
    child.kill('SIGKILL');
    const killed = Date.now();
    await until(
      async () => !existsSync(STATE_DIR) && !(await netnsList()).includes(netns),
      () =>
        `the watcher to clean up ${netns} (${readdirSync('/run').includes('herald-cluster') ? 'record still there' : 'record gone'})`,
      60_000,
    );
    t.diagnostic(`cleaned up ${Date.now() - killed} ms after the kill`);
    assert.deepEqual(processesNaming(root), []);
    assert.equal(await netnsList(), beforeNetns);
    assert.deepEqual(machine(), before);
    assert.ok(!existsSync(root), `${root} is removed`);
  });
});
