import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  API_PORT,
  API_SERVICE_IP,
  bootstrapObjects,
  CLUSTER_DOMAIN,
  cniConflist,
  containerdToml,
  corefile,
  DNS_READY_PORT,
  DNS_SERVICE_IP,
  ETCD_PORT,
  GATEWAY,
  GATEWAY_PORT,
  gatewayObjects,
  KUBELET_HEALTHZ_PORT,
  kubeletConfig,
  type Layout,
  layout,
  NODE_IP,
  NODE_NAME,
  NODE_PREFIX,
  PROMETHEUS_PORT,
  PROXY_HEALTHZ_PORT,
  prometheusConfig,
  proxyConfig,
  SERVICE_CIDR,
  TRAEFIK_PING_PORT,
  traefikArgs,
} from './cluster-config.ts';
import {
  cgroupHierarchies,
  cleanupHost,
  type HostState,
  missingOnHost,
  snapshotHost,
  startCleanupWatcher,
  sweepStale,
  writeState,
} from './cluster-host.ts';
import { type Identity, kubeconfig, makePki, type Pki } from './cluster-pki.ts';
import { writeTargets } from './cluster-targets.ts';
import { type KubeResponse, kubeApiRequest } from './kube-api.ts';
import { LineLog } from './log-lines.ts';
import { budget, type Supervised, startProcess, waitWhileRunning } from './process.ts';
import { prometheusDir } from './prometheus.ts';

/**
 * A real one-node Kubernetes cluster for tests: etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler, containerd, kubelet, kube-proxy, the CNI bridge and CoreDNS, every one a
 * process of process.ts, all inside a network namespace the harness creates (entered with
 * `nsenter --net`, not `ip netns exec`, which would hide the cgroup hierarchies behind a fresh
 * /sys). No node, pod or Service address exists outside that namespace: the test side reaches the
 * API server through a unix socket bridged to 127.0.0.1 (cluster-bridge.ts).
 *
 * What the cluster changes outside its directory is recorded before it is changed and undone by
 * `stop()`, or, when the test process dies first, by a detached watcher, or by the next start
 * (cluster-host.ts). One cluster runs per machine: kubelet and containerd use a few fixed paths.
 *
 * The machine needs root, network namespaces, cgroup hierarchies, overlayfs and /dev/kmsg
 * (`missingClusterPrerequisites` names what lacks), and the tools built by tools/kube.sh,
 * tools/containerd.sh and tools/coredns.sh.
 */

const TOOLS = fileURLToPath(new URL('../../../tools/', import.meta.url));
const BRIDGE = fileURLToPath(new URL('./cluster-bridge.ts', import.meta.url));
const execFileAsync = promisify(execFile);
const MAX_LOG_LINES = 5_000;
const POLL_MAX_MS = 250;

export interface ClusterOptions {
  /**
   * Image archives (docker-archive or OCI tarballs) imported into containerd before kubelet
   * starts. Default: the pause image of `make image`.
   */
  readonly images?: readonly string[];
  /**
   * The sandbox ("pause") image's reference; one of `images` must hold it (nothing is ever
   * pulled). Default: the pause image of `make image`.
   */
  readonly pauseImage?: string;
  /**
   * Also run the Gateway API data plane: the Gateway API CRDs (and the ServiceMonitor and
   * PrometheusRule CRDs of `tools/kube.sh crds`), Traefik serving GatewayClass `traefik`, and the
   * Gateway `default/herald-gateway` (listener `http`, routes from any namespace), reached from
   * the test side at `gatewayUrl`. Default false.
   */
  readonly gateway?: boolean;
  /**
   * Also run Debian's Prometheus (tools/prometheus.sh) inside the namespace, scraping every
   * ready endpoint of a Service port named `metrics` (found through the API server by
   * cluster-targets.ts), reached from the test side at `prometheusUrl`. Default false.
   */
  readonly prometheus?: boolean;
  /** Prometheus's scrape interval, in ms (default 1000). */
  readonly scrapeIntervalMs?: number;
  /** Bound on the start once the tools are built, in ms (default 120 s). */
  readonly readyTimeoutMs?: number;
}

/** An API server's answer: the body as text and, when it is JSON, parsed. */
export type ClusterResponse = KubeResponse;

export interface Cluster {
  /** Admin kubeconfig (group system:masters) for the test side: its server is the bridged 127.0.0.1 port. */
  readonly kubeconfig: string;
  /** `https://127.0.0.1:<port>`: the API server, through the bridge. */
  readonly server: string;
  readonly nodeName: string;
  /** The cluster's directory (configuration, data, containerd's and kubelet's roots). */
  readonly root: string;
  /** The network namespace's name (`/run/netns/<netns>`). */
  readonly netns: string;
  /**
   * `http://127.0.0.1:<port>`: the Gateway's listener, through the bridge (with `gateway: true`;
   * otherwise nothing answers there).
   */
  readonly gatewayUrl: string;
  /** `http://127.0.0.1:<port>`: Prometheus's HTTP API, through the bridge (with `prometheus: true`). */
  readonly prometheusUrl: string;
  /** The Gateway routes attach to (`parentRefs`), with `gateway: true`. */
  readonly gateway: { readonly namespace: string; readonly name: string; readonly sectionName: string };
  /** How long each stage of the start took, in ms. */
  readonly timings: Readonly<Record<string, number>>;
  /** One request to the API server as the admin; object bodies are sent as JSON, strings as YAML. */
  request(method: string, path: string, body?: unknown, contentType?: string): Promise<ClusterResponse>;
  /** The pinned kubectl with the admin kubeconfig; rejects with its stderr when it fails. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  /** Imports an image archive into containerd's k8s.io namespace (for pods with imagePullPolicy Never). */
  importImage(tarball: string): Promise<void>;
  /** Everything the cluster's programs have logged, program by program. */
  logs(): string;
  /** Stops every program and undoes every change to the machine; throws naming what could not be undone. Idempotent. */
  stop(): Promise<void>;
}

const IMAGES = fileURLToPath(new URL('../../../.images/', import.meta.url));

/** One image `make image` wrote: its reference and its archive. */
export interface BuiltImage {
  readonly ref: string;
  readonly tarball: string;
}

/** The images `make image` wrote into .images/ (gateway, nats-server, pause), by name. */
export function builtImages(): Record<string, BuiltImage> {
  const index = join(IMAGES, 'images.json');
  if (!existsSync(index)) throw new Error(`${index} is missing; run \`make image\` first`);
  const entries = JSON.parse(readFileSync(index, 'utf8')) as Record<string, { ref: string; file: string }>;
  return Object.fromEntries(
    Object.entries(entries).map(([name, e]) => [name, { ref: e.ref, tarball: join(IMAGES, e.file) }]),
  );
}

/** Why the cluster cannot run on this machine. */
export class ClusterUnavailableError extends Error {
  override readonly name = 'ClusterUnavailableError';
  readonly missing: readonly string[];
  constructor(missing: readonly string[]) {
    super(
      `the one-node cluster cannot run on this machine; it lacks:\n  - ${missing.join('\n  - ')}\n` +
        'The other tests do not need it: `make test` runs them.',
    );
    this.missing = missing;
  }
}

/** What this machine lacks for the cluster (root, network namespaces, cgroups, …); empty when nothing. */
export function missingClusterPrerequisites(): string[] {
  return missingOnHost();
}

interface Tools {
  readonly kube: string;
  readonly node: string;
  readonly debian: string;
  readonly coredns: string;
  readonly traefik: string;
  readonly crds: string;
}

let tools: Tools | undefined;

/** Runs the installers (they build or install on the first call, minutes; later a file check). */
export function clusterTools(): Tools {
  if (tools !== undefined) return tools;
  const run = (script: string, ...args: string[]) =>
    execFileSync('bash', [join(TOOLS, script), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  tools = {
    kube: run('kube.sh'),
    node: run('kube.sh', 'node'),
    debian: run('containerd.sh'),
    coredns: run('coredns.sh'),
    traefik: run('traefik.sh'),
    crds: run('kube.sh', 'crds'),
  };
  return tools;
}

/** The identities the cluster's programs authenticate as (RBAC and the Node authorizer know these names). */
function identities(): Identity[] {
  return [
    {
      name: 'apiserver',
      cn: 'kube-apiserver',
      sans: [
        `IP:${NODE_IP}`,
        'IP:127.0.0.1',
        `IP:${API_SERVICE_IP}`,
        'DNS:localhost',
        'DNS:kubernetes',
        'DNS:kubernetes.default',
        'DNS:kubernetes.default.svc',
        `DNS:kubernetes.default.svc.${CLUSTER_DOMAIN}`,
      ],
    },
    { name: 'apiserver-kubelet-client', cn: 'kube-apiserver-kubelet-client', groups: ['system:masters'] },
    { name: 'admin', cn: 'herald-admin', groups: ['system:masters'] },
    { name: 'kubelet', cn: `system:node:${NODE_NAME}`, groups: ['system:nodes'] },
    { name: 'kubelet-serving', cn: NODE_NAME, sans: [`IP:${NODE_IP}`, `DNS:${NODE_NAME}`] },
    { name: 'controller-manager', cn: 'system:kube-controller-manager' },
    { name: 'scheduler', cn: 'system:kube-scheduler' },
    { name: 'kube-proxy', cn: 'system:kube-proxy' },
    { name: 'coredns', cn: 'herald:coredns' },
    { name: 'traefik', cn: 'herald:traefik' },
  ];
}

/**
 * Starts the cluster and resolves once the node is Ready, the `default` service account exists
 * (pods can be created), CoreDNS is ready and kube-proxy is healthy. Throws
 * `ClusterUnavailableError` at once when the machine lacks what it needs; any other failure stops
 * what was started and undoes every change before it is thrown.
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const missing = missingOnHost();
  if (missing.length > 0) throw new ClusterUnavailableError(missing);
  const pause =
    opts.pauseImage === undefined || opts.images === undefined ? builtImages()['pause'] : undefined;
  const pauseImage = opts.pauseImage ?? pause?.ref;
  const images = opts.images ?? (pause ? [pause.tarball] : []);
  if (pauseImage === undefined)
    throw new Error('no pause image: .images/images.json has none; run `make image`');
  const timings: Record<string, number> = {};
  const t0 = Date.now();
  const mark = (stage: string, since: number) => {
    timings[stage] = Date.now() - since;
  };
  const bins = clusterTools();
  mark('tools', t0);

  const notes = new LineLog(MAX_LOG_LINES);
  const note = (line: string) => notes.push(`# herald-cluster: ${line}`);
  const live = await sweepStale(note);
  if (live.length > 0) {
    const other = live[0]!;
    throw new Error(
      `another one-node cluster runs on this machine (pid ${other.owner.pid}, ${other.root}); one runs at a time`,
    );
  }

  const b = budget(opts.readyTimeoutMs ?? 120_000);
  const started = Date.now();
  const root = mkdtempSync(join(tmpdir(), 'herald-cluster-'));
  const id = basename(root).slice('herald-cluster-'.length);
  const l = layout(root);
  const netns = `herald-${id}`;
  const cgroupRoot = `herald-${id}`;
  const state: HostState = snapshotHost(id, root, netns, cgroupRoot);
  const stateFile = writeState(state);
  const watcher = startCleanupWatcher(stateFile);

  const procs: Supervised[] = [];
  let targets: { stop(): Promise<void> } | undefined;
  const logs: { name: string; log: LineLog }[] = [{ name: 'harness', log: notes }];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const t = Date.now();
      await targets?.stop();
      // Controllers first (nothing is recreated), then the node, then the API server and its
      // store, containerd, and the bridges; cleanupHost ends what is left (shims, containers).
      for (const p of [...procs].reverse()) {
        const tp = Date.now();
        await p.stop();
        if (Date.now() - tp > 1_000) note(`${p.name} took ${Date.now() - tp} ms to stop`);
      }
      await cleanupHost(state, note);
      watcher.end();
      note(`stopped in ${Date.now() - t} ms`);
    })();
    return stopped;
  };

  const env = {
    ...process.env,
    PATH: `${bins.debian}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
  };
  /** A program of the cluster, inside its network namespace. */
  const launch = (
    name: string,
    program: string,
    args: readonly string[],
    extraEnv: NodeJS.ProcessEnv = {},
  ) => {
    const log = new LineLog(MAX_LOG_LINES);
    logs.push({ name, log });
    const p = startProcess({
      name,
      program: 'nsenter',
      args: [`--net=/run/netns/${netns}`, '--', program, ...args],
      env: { ...env, ...extraEnv },
      log,
      fix: 'check that nsenter (util-linux) is installed',
    });
    procs.push(p);
    return p;
  };
  const sock = (name: string) => join(l.sockets, `${name}.sock`);

  try {
    // The namespace: lo, and a veth pair inside it whose one end holds the node address.
    let t = Date.now();
    await createNamespace(netns);
    state.netnsInode = statSync(`/run/netns/${netns}`).ino;
    writeState(state);
    createCgroupRoot(cgroupRoot);
    mark('namespace', t);

    t = Date.now();
    const pki = await makePki(l.pki, identities());
    await writeConfigs(l, pki, bins, pauseImage, cgroupRoot);
    mark('certificates and configuration', t);

    // The bridge out of the namespace: unix sockets for the API server and the health ports.
    t = Date.now();
    const bridgeIn = launch('bridge-in', process.execPath, [
      BRIDGE,
      `api=unix:${sock('api')}=>tcp:${NODE_IP}:${API_PORT}`,
      `etcd=unix:${sock('etcd')}=>tcp:127.0.0.1:${ETCD_PORT}`,
      `kubelet=unix:${sock('kubelet')}=>tcp:127.0.0.1:${KUBELET_HEALTHZ_PORT}`,
      `proxy=unix:${sock('proxy')}=>tcp:127.0.0.1:${PROXY_HEALTHZ_PORT}`,
      `dns=unix:${sock('dns')}=>tcp:127.0.0.1:${DNS_READY_PORT}`,
      `gateway=unix:${sock('gateway')}=>tcp:${NODE_IP}:${GATEWAY_PORT}`,
      `traefik=unix:${sock('traefik')}=>tcp:127.0.0.1:${TRAEFIK_PING_PORT}`,
      `prometheus=unix:${sock('prometheus')}=>tcp:127.0.0.1:${PROMETHEUS_PORT}`,
    ]);
    const etcd = launch('etcd', join(bins.kube, 'etcd'), [
      '--name=herald',
      `--data-dir=${l.etcdData}`,
      `--listen-client-urls=http://127.0.0.1:${ETCD_PORT}`,
      `--advertise-client-urls=http://127.0.0.1:${ETCD_PORT}`,
      '--listen-peer-urls=http://127.0.0.1:2380',
      '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=herald=http://127.0.0.1:2380',
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ]);
    const containerd = launch('containerd', join(bins.debian, 'containerd'), [
      `--config=${l.containerdConfig}`,
    ]);
    // The bridge out, in the root namespace: 127.0.0.1:<free port> → the API server's socket.
    const bridgeOut = startProcess({
      name: 'bridge-out',
      program: process.execPath,
      args: [
        BRIDGE,
        `api=tcp:127.0.0.1:0=>unix:${sock('api')}`,
        `gateway=tcp:127.0.0.1:0=>unix:${sock('gateway')}`,
        `prometheus=tcp:127.0.0.1:0=>unix:${sock('prometheus')}`,
      ],
      log: new LineLog(MAX_LOG_LINES),
    });
    procs.push(bridgeOut);
    logs.push({ name: 'bridge-out', log: bridgeOut.log });
    await bridgeIn.waitForLine(/^ready$/, { within: b, what: 'its unix sockets' });
    const bridgedPort = async (name: string) => {
      const line = await bridgeOut.waitForLine(new RegExp(`^listening ${name} tcp:127\\.0\\.0\\.1:(\\d+)$`), {
        within: b,
        what: `its ${name} port`,
      });
      return Number(line[1]);
    };
    const apiPort = await bridgedPort('api');
    const gatewayPort = await bridgedPort('gateway');
    const prometheusPort = await bridgedPort('prometheus');
    await etcd.waitUntil(
      async () => {
        const res = await unixGet(sock('etcd'), '/health');
        return (
          (res.status === 200 && /"health":\s*"true"/.test(res.body)) || `${res.status} ${res.body.trim()}`
        );
      },
      { within: b, what: 'GET /health', during: 'before it was healthy', pollMaxMs: POLL_MAX_MS },
    );
    mark('etcd', t);

    t = Date.now();
    const apiserver = launch('kube-apiserver', join(bins.kube, 'kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${ETCD_PORT}`,
      `--bind-address=0.0.0.0`,
      `--secure-port=${API_PORT}`,
      `--advertise-address=${NODE_IP}`,
      `--cert-dir=${join(root, 'apiserver')}`,
      `--tls-cert-file=${pki.get('apiserver').certFile}`,
      `--tls-private-key-file=${pki.get('apiserver').keyFile}`,
      `--client-ca-file=${pki.caFile}`,
      `--kubelet-client-certificate=${pki.get('apiserver-kubelet-client').certFile}`,
      `--kubelet-client-key=${pki.get('apiserver-kubelet-client').keyFile}`,
      `--kubelet-certificate-authority=${pki.caFile}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      `--service-account-issuer=https://kubernetes.default.svc.${CLUSTER_DOMAIN}`,
      `--service-account-key-file=${pki.saPubFile}`,
      `--service-account-signing-key-file=${pki.saKeyFile}`,
      '--allow-privileged=true',
      '--profiling=false',
    ]);
    const server = `https://127.0.0.1:${apiPort}`;
    const admin = pki.get('admin');
    const tls = { ca: pki.ca, cert: admin.cert, key: admin.key };
    const request = (method: string, path: string, body?: unknown, contentType?: string) =>
      kubeApiRequest(server, tls, method, path, body, contentType);
    const adminKubeconfig = join(l.kubeconfigs, 'admin-host.kubeconfig');
    writeFileSync(adminKubeconfig, kubeconfig(server, pki.ca, 'herald-admin', admin), { mode: 0o600 });
    const kubectlAsAdmin = (args: readonly string[], input?: string) =>
      kubectl(join(bins.node, 'kubectl'), adminKubeconfig, args, input);
    // Images go in while the API server starts.
    const containerdUp = containerd.waitForLine(/containerd successfully booted/, {
      within: b,
      what: 'its "successfully booted" line',
    });
    const imported = containerdUp.then(async () => {
      const ti = Date.now();
      for (const image of images) await ctrImport(bins.debian, l.containerdSocket, image);
      mark('images imported', ti);
    });
    await apiserver.waitUntil(
      async () => {
        const res = await request('GET', '/readyz');
        const failing = res.body
          .trim()
          .split('\n')
          .filter((line) => !line.startsWith('[+]'))
          .join(' ');
        return res.status === 200 || `${res.status} ${failing}`;
      },
      { within: b, what: 'GET /readyz', during: 'before /readyz', alsoWatch: [etcd], pollMaxMs: POLL_MAX_MS },
    );
    const create = async (objects: { path: string; body: unknown }[]) => {
      for (const { path, body } of objects) {
        const res = await request('POST', path, body);
        if (res.status !== 201) throw new Error(`creating ${path} failed: ${res.status} ${res.body}`);
      }
    };
    await create(bootstrapObjects());
    mark('kube-apiserver', t);

    // The Gateway API CRDs and Traefik come up while the node does.
    let traefik: Supervised | undefined;
    const gatewaySetup = (async () => {
      if (!opts.gateway) return;
      const tg = Date.now();
      await kubectlAsAdmin(['apply', '--server-side', '--field-manager=herald-testkit', '-f', bins.crds]);
      await kubectlAsAdmin(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
      await create(gatewayObjects());
      traefik = launch('traefik', join(bins.traefik, 'traefik'), traefikArgs(), {
        KUBECONFIG: join(l.kubeconfigs, 'traefik.kubeconfig'),
      });
      mark('gateway API CRDs', tg);
    })();
    // Awaited below; a failure before then must not be an unhandled rejection.
    gatewaySetup.catch(() => {});

    let prometheus: Supervised | undefined;
    if (opts.prometheus) {
      const interval = opts.scrapeIntervalMs ?? 1_000;
      await writeFile(l.prometheusTargets, '[]\n');
      await writeFile(l.prometheusConfig, prometheusConfig(l.prometheusTargets, interval));
      targets = writeTargets(request, l.prometheusTargets, interval);
      prometheus = launch('prometheus', join(prometheusDir(), 'prometheus'), [
        `--config.file=${l.prometheusConfig}`,
        `--storage.tsdb.path=${l.prometheusData}`,
        `--web.listen-address=127.0.0.1:${PROMETHEUS_PORT}`,
        '--log.level=warn',
      ]);
    }

    t = Date.now();
    const kc = (name: string) => join(l.kubeconfigs, `${name}.kubeconfig`);
    launch('kube-controller-manager', join(bins.node, 'kube-controller-manager'), [
      `--kubeconfig=${kc('controller-manager')}`,
      '--secure-port=0',
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${pki.saKeyFile}`,
      `--root-ca-file=${pki.caFile}`,
      `--cluster-signing-cert-file=${pki.caFile}`,
      `--cluster-signing-key-file=${pki.caKeyFile}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
    ]);
    launch('kube-scheduler', join(bins.node, 'kube-scheduler'), [
      `--kubeconfig=${kc('scheduler')}`,
      '--secure-port=0',
      '--leader-elect=false',
    ]);
    const coredns = launch('coredns', join(bins.coredns, 'coredns'), [`-conf=${l.corefile}`]);
    const proxy = launch('kube-proxy', join(bins.node, 'kube-proxy'), [`--config=${l.proxyConfig}`]);
    await containerdUp;
    await imported;
    const kubelet = launch('kubelet', join(bins.node, 'kubelet'), [
      `--config=${l.kubeletConfig}`,
      `--kubeconfig=${kc('kubelet')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      `--root-dir=${l.kubeletRoot}`,
      `--cert-dir=${join(l.kubeletRoot, 'pki')}`,
    ]);
    await waitWhileRunning(
      async () => {
        const res = await request('GET', `/api/v1/nodes/${NODE_NAME}`);
        if (res.status !== 200) return `node ${NODE_NAME}: ${res.status}`;
        const ready = (
          res.json as { status?: { conditions?: { type: string; status: string; message?: string }[] } }
        ).status?.conditions?.find((c) => c.type === 'Ready');
        return (
          ready?.status === 'True' || `node Ready=${ready?.status} (${ready?.message ?? 'no condition yet'})`
        );
      },
      { within: b, what: `node ${NODE_NAME} Ready`, watch: procs },
    );
    mark('node ready', t);
    t = Date.now();
    await gatewaySetup;
    await waitWhileRunning(
      async () => {
        const res = await request('GET', '/api/v1/namespaces/default/serviceaccounts/default');
        return res.status === 200 || `service account default/default: ${res.status}`;
      },
      { within: b, what: 'the default service account', watch: procs },
    );
    await kubelet.waitUntil(async () => (await unixGet(sock('kubelet'), '/healthz')).status === 200, {
      within: b,
      what: 'GET /healthz',
    });
    await proxy.waitUntil(async () => (await unixGet(sock('proxy'), '/healthz')).status === 200, {
      within: b,
      what: 'GET /healthz',
    });
    await coredns.waitUntil(async () => (await unixGet(sock('dns'), '/ready')).status === 200, {
      within: b,
      what: 'GET /ready',
    });
    if (prometheus !== undefined) {
      await prometheus.waitUntil(async () => (await unixGet(sock('prometheus'), '/-/ready')).status === 200, {
        within: b,
        what: 'GET /-/ready',
      });
    }
    if (traefik !== undefined) {
      await traefik.waitUntil(async () => (await unixGet(sock('traefik'), '/ping')).status === 200, {
        within: b,
        what: 'GET /ping',
      });
      const gatewayPath = `/apis/gateway.networking.k8s.io/v1/namespaces/${GATEWAY.namespace}/gateways/${GATEWAY.name}`;
      // A provider that cannot start is only logged; Traefik keeps running without it.
      let fatal: string | undefined;
      await traefik.waitUntil(
        async () => {
          fatal = traefik?.output.lines.find((line) => /Error while initializing provider/.test(line));
          if (fatal !== undefined) return true;
          const res = await request('GET', gatewayPath);
          const programmed = (
            res.json as { status?: { conditions?: { type: string; status: string; message?: string }[] } }
          ).status?.conditions?.find((c) => c.type === 'Programmed');
          return (
            programmed?.status === 'True' || `Programmed=${programmed?.status} (${programmed?.message ?? ''})`
          );
        },
        { within: b, what: `Gateway ${GATEWAY.namespace}/${GATEWAY.name} Programmed` },
      );
      if (fatal !== undefined) throw new Error(`traefik could not start its Gateway API provider: ${fatal}`);
    }
    mark('services ready', t);
    mark('start', started);
    note(`ready in ${timings['start']} ms: ${JSON.stringify(timings)}`);

    return {
      kubeconfig: adminKubeconfig,
      server,
      nodeName: NODE_NAME,
      root,
      netns,
      gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
      prometheusUrl: `http://127.0.0.1:${prometheusPort}`,
      gateway: { namespace: GATEWAY.namespace, name: GATEWAY.name, sectionName: GATEWAY.listener },
      timings,
      request,
      kubectl: kubectlAsAdmin,
      importImage: (tarball) => ctrImport(bins.debian, l.containerdSocket, tarball),
      logs: () => logs.map(({ name, log }) => `==> ${name} <==\n${log.text()}`).join('\n'),
      stop,
    };
  } catch (err) {
    try {
      await stop();
    } catch (cleanupErr) {
      throw new AggregateError(
        [err, cleanupErr],
        `${(err as Error).message}\n(and ${(cleanupErr as Error).message})`,
      );
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// The machine.

async function run(program: string, args: readonly string[]): Promise<string> {
  try {
    return (await execFileAsync(program, args, { encoding: 'utf8' })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${program} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

async function createNamespace(netns: string): Promise<void> {
  try {
    await run('ip', ['netns', 'add', netns]);
  } catch (err) {
    throw new ClusterUnavailableError([
      `network namespaces: \`ip netns add\` failed (${(err as Error).message.split('\n')[0]})`,
    ]);
  }
  const ip = (...args: string[]) => run('ip', ['-n', netns, ...args]);
  await ip('link', 'set', 'lo', 'up');
  await ip('link', 'add', 'herald0', 'type', 'veth', 'peer', 'name', 'herald1');
  await ip('addr', 'add', `${NODE_IP}/${NODE_PREFIX}`, 'dev', 'herald0');
  await ip('link', 'set', 'herald0', 'up');
  await ip('link', 'set', 'herald1', 'up');
  // Service addresses are rewritten by kube-proxy's rules after the route lookup, which needs a route.
  await ip('route', 'add', 'default', 'dev', 'herald0');
  // The namespace's own settings (gone with it): forwarding between pods and Services, and
  // bridged traffic through iptables so that a pod reaching a Service on its own bridge is NATed.
  await run('nsenter', [
    `--net=/run/netns/${netns}`,
    '--',
    'sh',
    '-c',
    'echo 1 > /proc/sys/net/ipv4/ip_forward && ' +
      'if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi',
  ]);
}

/** kubelet requires its cgroupRoot to exist in every hierarchy; a v1 cpuset needs its cpus and mems filled in. */
function createCgroupRoot(cgroupRoot: string): void {
  for (const h of cgroupHierarchies()) {
    const dir = join(h, cgroupRoot);
    if (!existsSync(dir)) mkdirSync(dir);
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const parent = join(h, f);
      if (existsSync(parent) && readFileSync(join(dir, f), 'utf8').trim() === '') {
        writeFileSync(join(dir, f), readFileSync(parent, 'utf8').trim());
      }
    }
  }
}

async function writeConfigs(l: Layout, pki: Pki, bins: Tools, pauseImage: string, cgroupRoot: string) {
  for (const dir of [l.cniConfDir, l.cniDataDir, l.kubeletRoot, l.podLogs, l.sockets, l.kubeconfigs]) {
    await mkdir(dir, { recursive: true });
  }
  await mkdir(join(l.root, 'containerd'), { recursive: true });
  const inside = `https://${NODE_IP}:${API_PORT}`;
  const kc = (name: string, user: string) =>
    writeFile(join(l.kubeconfigs, `${name}.kubeconfig`), kubeconfig(inside, pki.ca, user, pki.get(name)), {
      mode: 0o600,
    });
  await Promise.all([
    kc('kubelet', `system:node:${NODE_NAME}`),
    kc('controller-manager', 'system:kube-controller-manager'),
    kc('scheduler', 'system:kube-scheduler'),
    kc('kube-proxy', 'system:kube-proxy'),
    kc('coredns', 'herald:coredns'),
    kc('traefik', 'herald:traefik'),
    writeFile(
      l.containerdConfig,
      containerdToml(l, {
        sandboxImage: pauseImage,
        runc: join(bins.debian, 'runc'),
        cniBin: join(bins.debian, 'cni'),
      }),
    ),
    writeFile(join(l.cniConfDir, '10-herald.conflist'), cniConflist(l)),
    writeFile(
      l.kubeletConfig,
      kubeletConfig(l, {
        caFile: pki.caFile,
        certFile: pki.get('kubelet-serving').certFile,
        keyFile: pki.get('kubelet-serving').keyFile,
        cgroupRoot: `/${cgroupRoot}`,
      }),
    ),
    // Only the cluster DNS: pods must never query a resolver off the machine.
    writeFile(l.resolvConf, `nameserver ${DNS_SERVICE_IP}\n`),
    writeFile(l.proxyConfig, proxyConfig(join(l.kubeconfigs, 'kube-proxy.kubeconfig'))),
    writeFile(l.corefile, corefile(join(l.kubeconfigs, 'coredns.kubeconfig'))),
  ]);
}

async function ctrImport(debian: string, socket: string, tarball: string): Promise<void> {
  await run(join(debian, 'ctr'), ['--address', socket, '--namespace', 'k8s.io', 'images', 'import', tarball]);
}

async function kubectl(
  bin: string,
  config: string,
  args: readonly string[],
  input?: string,
): Promise<string> {
  const child = execFileAsync(bin, [...args], {
    encoding: 'utf8',
    env: { ...process.env, KUBECONFIG: config },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (input !== undefined) child.child.stdin?.end(input);
  try {
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Requests.

/** A plain HTTP GET over a unix socket (the bridge's health ports); a refused connection is a 0. */
function unixGet(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath, path, timeout: 2_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ status: 0, body: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 2 s')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}
