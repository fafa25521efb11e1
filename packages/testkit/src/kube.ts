import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { kubeconfig as kubeconfigFor, makePki } from './cluster-pki.ts';
import { reservePorts } from './free-ports.ts';
import { type KubeResponse, kubeApiRequest } from './kube-api.ts';
import { LineLog } from './log-lines.ts';
import {
  type Budget,
  budget,
  ProcessError,
  STOP_GRACE_MS,
  type Supervised,
  startProcess,
} from './process.ts';
import { makeTempDir, removeTempDir } from './reaper.ts';

/**
 * A real Kubernetes control plane for tests, the way controller-runtime's envtest does it: the
 * pinned etcd and kube-apiserver from `tools/kube.sh`, on 127.0.0.1 only, in one temporary
 * directory holding certificates (made with `openssl`), etcd's data and a kubeconfig. There is
 * no kubelet, controller-manager or scheduler: objects are stored and validated, nothing runs.
 *
 * Credentials: a throw-away CA signs the serving certificate (SANs 127.0.0.1, localhost) and a
 * client certificate for `herald-admin` in group `system:masters` (RBAC lets that group do
 * anything); a separate key pair signs service-account tokens.
 *
 * Ready means, each step polled (backing off 10 → 200 ms) until a bound: etcd's `/health` says
 * true; kube-apiserver's `/readyz` answers 200 to the admin certificate; every CRD from
 * `tools/kube.sh crds` (Gateway API standard channel, ServiceMonitor, PrometheusRule) is created
 * and reports `Established`.
 *
 * Cleanup: `stop()` terminates both processes (SIGKILL after a grace period) and removes the
 * directory; process.ts reaps whatever a test leaves behind when the test process ends.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/kube.sh', import.meta.url));
const HOST = '127.0.0.1';
const POLL_MAX_MS = 200;
const MAX_LOG_LINES = 5_000;
const START_ATTEMPTS = 3;
const _execFileAsync = promisify(execFile);

let binDir: string | undefined;
let crdDir: string | undefined;

function runScript(args: string[]): string {
  if (!existsSync(SCRIPT))
    throw new Error(`${SCRIPT} is missing; it builds the pinned etcd and kube-apiserver`);
  return execFileSync('bash', [SCRIPT, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** The directory holding `etcd` and `kube-apiserver`: what `tools/kube.sh` prints (it builds them when missing). */
export function kubeBinDir(): string {
  if (binDir !== undefined) return binDir;
  const dir = runScript([]);
  for (const bin of ['etcd', 'kube-apiserver']) {
    if (!existsSync(join(dir, bin))) {
      throw new Error(`${bin} not found in ${dir}; run \`bash tools/kube.sh\` (it builds it with go)`);
    }
  }
  binDir = dir;
  return dir;
}

/** The directory of CRD manifests the chart needs: what `tools/kube.sh crds` prints. */
export function kubeCrdDir(): string {
  if (crdDir !== undefined) return crdDir;
  const dir = runScript(['crds']);
  if (!existsSync(dir)) throw new Error(`no CRD directory at ${dir}; run \`bash tools/kube.sh crds\``);
  crdDir = dir;
  return dir;
}

export interface ControlPlaneOptions {
  /** Install the CRDs from `tools/kube.sh crds` (default true). */
  readonly crds?: boolean;
  /** Extra kube-apiserver flags (later flags win). */
  readonly apiserverArgs?: readonly string[];
  /** Bound on the whole start (etcd, kube-apiserver, CRDs), in ms (default 60 s). */
  readonly readyTimeoutMs?: number;
}

export type { KubeResponse };

export interface ControlPlane {
  /** Path of a kubeconfig (JSON, which is YAML) for the admin user, credentials embedded; for helm/kubectl. */
  readonly kubeconfig: string;
  /** `https://127.0.0.1:<port>`. */
  readonly server: string;
  /** PEM of the CA that signed the serving and client certificates. */
  readonly ca: string;
  /** PEM client certificate and key of `herald-admin` (group `system:masters`). */
  readonly adminCert: string;
  readonly adminKey: string;
  /** Pids of etcd and kube-apiserver (for checks that nothing outlives `stop()`). */
  readonly pids: { readonly etcd: number; readonly apiserver: number };
  /**
   * One request to the API server as the admin user. `body` objects are sent as JSON, strings
   * as YAML (`application/yaml`).
   */
  request(method: string, path: string, body?: unknown): Promise<KubeResponse>;
  /** Everything etcd and kube-apiserver have logged. */
  logs(): string;
  /** Terminates kube-apiserver and etcd (SIGKILL after 5 s) and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts etcd and kube-apiserver on free loopback ports, installs the CRDs, writes a kubeconfig,
 * and resolves when the API server is ready and every CRD is established.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bins = kubeBinDir();
  const crds = (opts.crds ?? true) ? kubeCrdDir() : undefined;
  const timeout = opts.readyTimeoutMs ?? 60_000;
  const b = budget(timeout);
  const root = await makeTempDir('herald-kube-');
  const log = new LineLog(MAX_LOG_LINES);
  const procs: Supervised[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // The API server first: it would otherwise keep retrying a vanished etcd.
    for (const p of [...procs].reverse()) await p.stop(STOP_GRACE_MS);
    await removeTempDir(root);
  };
  const launch = (name: string, args: string[]) => {
    const p = startProcess({
      name,
      program: join(bins, name),
      args,
      log,
      prefix: `${name}: `,
      fix: 'run `bash tools/kube.sh` (it builds etcd and kube-apiserver)',
    });
    procs.push(p);
    return p;
  };
  /** Whether a failed start is worth a retry on fresh ports: the process exited because one was taken. */
  const portTaken = (err: unknown) =>
    err instanceof ProcessError && err.exit !== undefined && err.addressInUse;

  try {
    const pki = await makePki(join(root, 'pki'), [
      { name: 'serving', cn: '127.0.0.1', sans: ['IP:127.0.0.1', 'DNS:localhost'] },
      { name: 'admin', cn: 'herald-admin', groups: ['system:masters'] },
    ]);
    const admin = pki.get('admin');
    const tls = { ca: pki.ca, cert: admin.cert, key: admin.key };
    for (let attempt = 1; ; attempt++) {
      const [etcdPort, apiPort] = await reservePorts(2);
      const etcd = launch('etcd', [
        '--name=herald-test',
        `--data-dir=${join(root, `etcd-${attempt}`)}`,
        `--listen-client-urls=http://${HOST}:${etcdPort}`,
        `--advertise-client-urls=http://${HOST}:${etcdPort}`,
        '--listen-peer-urls=http://localhost:0',
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ]);
      const etcdHealth = `http://${HOST}:${etcdPort}/health`;
      try {
        await etcd.waitUntil(
          async () => {
            const res = await fetch(etcdHealth, { signal: AbortSignal.timeout(2_000) });
            const text = await res.text();
            return (res.status === 200 && /"health":\s*"true"/.test(text)) || `${res.status} ${text.trim()}`;
          },
          { within: b, what: `GET ${etcdHealth}`, during: 'before it was healthy', pollMaxMs: POLL_MAX_MS },
        );
      } catch (err) {
        await etcd.stop();
        procs.pop();
        if (portTaken(err) && attempt < START_ATTEMPTS) continue;
        throw err;
      }

      const server = `https://${HOST}:${apiPort}`;
      const apiserver = launch('kube-apiserver', [
        `--etcd-servers=http://${HOST}:${etcdPort}`,
        `--cert-dir=${join(root, 'cert')}`,
        `--tls-cert-file=${pki.get('serving').certFile}`,
        `--tls-private-key-file=${pki.get('serving').keyFile}`,
        `--client-ca-file=${pki.caFile}`,
        `--secure-port=${apiPort}`,
        `--bind-address=${HOST}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        '--authorization-mode=RBAC',
        '--disable-admission-plugins=ServiceAccount',
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${pki.saPubFile}`,
        `--service-account-signing-key-file=${pki.saKeyFile}`,
        ...(opts.apiserverArgs ?? []),
      ]);
      try {
        await apiserver.waitUntil(
          async () => {
            const res = await kubeApiRequest(server, tls, 'GET', '/readyz');
            const failing = res.body
              .trim()
              .split('\n')
              .filter((l) => !l.startsWith('[+]'))
              .join(' ');
            return res.status === 200 || `${res.status} ${failing}`;
          },
          {
            within: b,
            what: `GET ${server}/readyz`,
            during: 'before /readyz',
            alsoWatch: [etcd],
            pollMaxMs: POLL_MAX_MS,
          },
        );
      } catch (err) {
        await apiserver.stop();
        await etcd.stop();
        procs.length = 0;
        if (portTaken(err) && attempt < START_ATTEMPTS) continue;
        throw err;
      }

      const request = (method: string, path: string, body?: unknown) =>
        kubeApiRequest(server, tls, method, path, body);
      if (crds !== undefined) await installCrds(crds, request, apiserver, etcd, b);

      const kubeconfig = join(root, 'kubeconfig');
      await writeFile(kubeconfig, kubeconfigFor(server, pki.ca, 'herald-admin', admin), { mode: 0o600 });
      return {
        kubeconfig,
        server,
        ca: pki.ca,
        adminCert: admin.cert,
        adminKey: admin.key,
        pids: { etcd: etcd.pid ?? -1, apiserver: apiserver.pid ?? -1 },
        request,
        logs: () => log.text(),
        stop,
      };
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// The API.

type Requester = (method: string, path: string, body?: unknown) => Promise<KubeResponse>;

const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/** Creates every CustomResourceDefinition document under `dir` and waits until each is Established. */
async function installCrds(
  dir: string,
  request: Requester,
  apiserver: Supervised,
  etcd: Supervised,
  b: Budget,
) {
  const names: string[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    const docs = readFileSync(join(dir, file), 'utf8').split(/^---[ \t]*$/m);
    for (const doc of docs) {
      // The Gateway API directory also holds a ValidatingAdmissionPolicy; only CRDs here.
      if (!/^kind:\s*CustomResourceDefinition\s*$/m.test(doc)) continue;
      const res = await request('POST', CRD_PATH, doc);
      if (res.status !== 201)
        throw new Error(`creating the CRD in ${file} failed: ${res.status} ${res.body}`);
      names.push((res.json as { metadata: { name: string } }).metadata.name);
    }
  }
  await apiserver.waitUntil(
    async () => {
      for (const name of names) {
        const res = await request('GET', `${CRD_PATH}/${name}`);
        const conditions =
          (res.json as { status?: { conditions?: { type: string; status: string }[] } } | undefined)?.status
            ?.conditions ?? [];
        if (!conditions.some((c) => c.type === 'Established' && c.status === 'True')) {
          return `${name} not Established yet`;
        }
      }
      return true;
    },
    {
      within: b,
      what: 'CRDs established',
      during: 'while the CRDs were installed',
      alsoWatch: [etcd],
      pollMaxMs: POLL_MAX_MS,
    },
  );
}
