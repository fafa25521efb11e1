import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { reservePorts } from './free-ports.ts';
import { readLines, tail } from './log-lines.ts';

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
 * directory. As a last resort, children still running when this process exits are SIGKILLed
 * from an `exit` hook, and a detached `sh` reaper kills them by pid file and removes the
 * directory if this process dies without running that hook.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/kube.sh', import.meta.url));
const HOST = '127.0.0.1';
const STOP_GRACE_MS = 5_000;
const POLL_MIN_MS = 10;
const POLL_MAX_MS = 200;
const MAX_LOG_LINES = 5_000;
const START_ATTEMPTS = 3;
const execFileAsync = promisify(execFile);

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

export interface KubeResponse {
  readonly status: number;
  readonly body: string;
  /** `body` parsed as JSON (undefined when it is not JSON). */
  readonly json: unknown;
}

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

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  exit: string | undefined;
}

/**
 * Starts etcd and kube-apiserver on free loopback ports, installs the CRDs, writes a kubeconfig,
 * and resolves when the API server is ready and every CRD is established.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bins = kubeBinDir();
  const crds = (opts.crds ?? true) ? kubeCrdDir() : undefined;
  const timeout = opts.readyTimeoutMs ?? 60_000;
  const deadline = Date.now() + timeout;
  const root = await mkdtemp(join(tmpdir(), 'herald-kube-'));
  trackDir(root);
  const lines: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
  };
  const procs: Proc[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // The API server first: it would otherwise keep retrying a vanished etcd.
    for (const p of [...procs].reverse()) await terminate(p);
    await rm(root, { recursive: true, force: true });
    untrackDir(root);
  };

  try {
    const pki = await makeCredentials(join(root, 'pki'));
    const tls = { ca: pki.ca, cert: pki.adminCert, key: pki.adminKey };
    for (let attempt = 1; ; attempt++) {
      const [etcdPort, apiPort] = await reservePorts(2);
      const etcd = launch(
        root,
        'etcd',
        join(bins, 'etcd'),
        [
          '--name=herald-test',
          `--data-dir=${join(root, `etcd-${attempt}`)}`,
          `--listen-client-urls=http://${HOST}:${etcdPort}`,
          `--advertise-client-urls=http://${HOST}:${etcdPort}`,
          '--listen-peer-urls=http://localhost:0',
          '--unsafe-no-fsync=true',
          '--log-level=warn',
        ],
        log,
      );
      procs.push(etcd);
      const etcdHealth = `http://${HOST}:${etcdPort}/health`;
      let last = 'no answer yet';
      const etcdReady = await pollUntil([etcd], deadline, async () => {
        try {
          const res = await fetch(etcdHealth, { signal: AbortSignal.timeout(2_000) });
          const text = await res.text();
          last = `${res.status} ${text.trim()}`;
          return res.status === 200 && /"health":\s*"true"/.test(text);
        } catch (err) {
          last = (err as Error).message;
          return false;
        }
      });
      if (etcdReady !== 'ok') {
        await terminate(etcd);
        procs.pop();
        if (
          etcdReady === 'exited' &&
          attempt < START_ATTEMPTS &&
          /address already in use/.test(tail(lines))
        ) {
          continue;
        }
        throw new Error(
          etcdReady === 'exited'
            ? `etcd exited (${etcd.exit}) before it was healthy. Last log lines:\n${tail(lines)}`
            : `etcd was not healthy within ${timeout} ms (GET ${etcdHealth}: ${last}). Last log lines:\n${tail(lines)}`,
        );
      }

      const server = `https://${HOST}:${apiPort}`;
      const apiserver = launch(
        root,
        'kube-apiserver',
        join(bins, 'kube-apiserver'),
        [
          `--etcd-servers=http://${HOST}:${etcdPort}`,
          `--cert-dir=${join(root, 'cert')}`,
          `--tls-cert-file=${pki.files.servingCert}`,
          `--tls-private-key-file=${pki.files.servingKey}`,
          `--client-ca-file=${pki.files.ca}`,
          `--secure-port=${apiPort}`,
          `--bind-address=${HOST}`,
          '--service-cluster-ip-range=10.0.0.0/24',
          '--allow-privileged=true',
          '--authorization-mode=RBAC',
          '--disable-admission-plugins=ServiceAccount',
          `--service-account-issuer=${server}`,
          `--service-account-key-file=${pki.files.saPub}`,
          `--service-account-signing-key-file=${pki.files.saKey}`,
          ...(opts.apiserverArgs ?? []),
        ],
        log,
      );
      procs.push(apiserver);
      const readyz = await pollUntil([etcd, apiserver], deadline, async () => {
        try {
          const res = await kubeRequest(server, tls, 'GET', '/readyz');
          last = `${res.status} ${res.body
            .trim()
            .split('\n')
            .filter((l) => !l.startsWith('[+]'))
            .join(' ')}`;
          return res.status === 200;
        } catch (err) {
          last = (err as Error).message;
          return false;
        }
      });
      if (readyz !== 'ok') {
        const addressInUse = /address already in use/.test(tail(lines));
        await terminate(apiserver);
        await terminate(etcd);
        procs.length = 0;
        if (readyz === 'exited' && addressInUse && attempt < START_ATTEMPTS) continue;
        throw new Error(
          readyz === 'exited'
            ? `kube-apiserver or etcd exited (${apiserver.exit ?? etcd.exit}) before /readyz. Last log lines:\n${tail(lines)}`
            : `kube-apiserver was not ready within ${timeout} ms (GET ${server}/readyz: ${last}). Last log lines:\n${tail(lines)}`,
        );
      }

      const request = (method: string, path: string, body?: unknown) =>
        kubeRequest(server, tls, method, path, body);
      if (crds !== undefined) await installCrds(crds, request, [etcd, apiserver], deadline, timeout);

      const kubeconfig = join(root, 'kubeconfig');
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'herald-test', cluster: { server, 'certificate-authority-data': b64(pki.ca) } }],
        users: [
          {
            name: 'herald-admin',
            user: { 'client-certificate-data': b64(pki.adminCert), 'client-key-data': b64(pki.adminKey) },
          },
        ],
        contexts: [{ name: 'herald-test', context: { cluster: 'herald-test', user: 'herald-admin' } }],
        'current-context': 'herald-test',
      };
      await writeFile(kubeconfig, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
      return {
        kubeconfig,
        server,
        ca: pki.ca,
        adminCert: pki.adminCert,
        adminKey: pki.adminKey,
        pids: { etcd: etcd.child.pid ?? -1, apiserver: apiserver.child.pid ?? -1 },
        request,
        logs: () => lines.join('\n'),
        stop,
      };
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Credentials, with openssl (node's crypto makes keys but cannot issue X.509 certificates).

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd: dir });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error('openssl is needed to make test certificates; install it (apt-get install openssl)');
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

async function makeCredentials(dir: string) {
  await mkdir(dir, { mode: 0o700 });
  await writeFile(join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc'];
  const common = ['-config', 'openssl.cnf', '-days', '2'];
  await openssl(dir, [
    'req',
    '-x509',
    ...ec,
    ...common,
    '-extensions',
    'ca',
    '-subj',
    '/CN=herald-test-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  ]);
  const leaf = (name: string, subj: string, ext: string) =>
    openssl(dir, [
      'req',
      '-x509',
      ...ec,
      ...common,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-extensions',
      ext,
      '-subj',
      subj,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
    ]);
  await Promise.all([
    leaf('serving', '/CN=127.0.0.1', 'serving'),
    leaf('admin', '/O=system:masters/CN=herald-admin', 'client'),
    openssl(dir, [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-out',
      'sa.key',
    ]).then(() => openssl(dir, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'])),
  ]);
  const files = {
    ca: join(dir, 'ca.crt'),
    servingCert: join(dir, 'serving.crt'),
    servingKey: join(dir, 'serving.key'),
    saKey: join(dir, 'sa.key'),
    saPub: join(dir, 'sa.pub'),
  };
  return {
    files,
    ca: await readFile(files.ca, 'utf8'),
    adminCert: await readFile(join(dir, 'admin.crt'), 'utf8'),
    adminKey: await readFile(join(dir, 'admin.key'), 'utf8'),
  };
}

// ---------------------------------------------------------------------------------------------
// The API.

interface Tls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

function kubeRequest(
  server: string,
  tls: Tls,
  method: string,
  path: string,
  body?: unknown,
): Promise<KubeResponse> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (payload !== undefined) {
    headers['content-type'] = typeof body === 'string' ? 'application/yaml' : 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, server),
      { method, headers, ...tls, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

type Requester = (method: string, path: string, body?: unknown) => Promise<KubeResponse>;

const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/** Creates every CustomResourceDefinition document under `dir` and waits until each is Established. */
async function installCrds(
  dir: string,
  request: Requester,
  procs: Proc[],
  deadline: number,
  timeout: number,
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
  let last = '';
  const established = await pollUntil(procs, deadline, async () => {
    for (const name of names) {
      const res = await request('GET', `${CRD_PATH}/${name}`);
      const conditions =
        (res.json as { status?: { conditions?: { type: string; status: string }[] } } | undefined)?.status
          ?.conditions ?? [];
      if (!conditions.some((c) => c.type === 'Established' && c.status === 'True')) {
        last = `${name} not Established yet`;
        return false;
      }
    }
    return true;
  });
  if (established === 'exited')
    throw new Error('kube-apiserver or etcd exited while the CRDs were installed');
  if (established === 'timeout') throw new Error(`CRDs not established within ${timeout} ms: ${last}`);
}

// ---------------------------------------------------------------------------------------------
// Processes.

function launch(root: string, name: string, binary: string, args: string[], log: (l: string) => void): Proc {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = {
    name,
    child,
    exit: undefined,
    exited: new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        proc.exit ??= signal ?? `code ${code}`;
        resolve();
      });
      child.once('error', (err) => {
        if (child.pid === undefined) {
          proc.exit = `could not be started: ${err.message}`;
          resolve();
        }
      });
    }),
  };
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.unref();
  if (child.pid !== undefined) rmOnReap(root, name, child.pid);
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    (stream as Socket).unref();
    readLines(stream, (line) => log(`${name}: ${line}`));
  }
  return proc;
}

async function terminate(p: Proc): Promise<void> {
  if (p.exit !== undefined) return;
  p.child.ref();
  p.child.kill('SIGTERM');
  const timer = new AbortController();
  const exited = await Promise.race([
    p.exited.then(() => true),
    sleep(STOP_GRACE_MS, false, { signal: timer.signal }).catch(() => false),
  ]);
  timer.abort();
  if (!exited) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** Calls `probe` until it returns true, one of `procs` exits, or the deadline passes. */
async function pollUntil(
  procs: Proc[],
  deadline: number,
  probe: () => Promise<boolean>,
): Promise<'ok' | 'exited' | 'timeout'> {
  const anyExited = () => procs.some((p) => p.exit !== undefined);
  for (let wait = POLL_MIN_MS; ; wait = Math.min(wait * 2, POLL_MAX_MS)) {
    if (anyExited()) return 'exited';
    if (await probe()) return 'ok';
    if (anyExited()) return 'exited';
    if (Date.now() >= deadline) return 'timeout';
    await sleep(wait);
  }
}

// ---------------------------------------------------------------------------------------------
// Last-resort cleanup.

const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * Reads lines from stdin until EOF, which comes when this process is gone however it died. A
 * line `pid <dir> <name> <pid>` records a child; `dir <dir>` a directory. Then it kills each
 * recorded pid whose directory still exists (not yet stopped) and is still that program, and
 * removes the directories.
 */
const REAPER = `
lines=''
while IFS= read -r l; do lines="$lines$l
"; done
printf %s "$lines" | while read -r kind d name p; do
  [ "$kind" = pid ] && [ -d "$d" ] || continue
  if grep -q "$name" "/proc/$p/cmdline" 2>/dev/null; then kill -9 "$p" 2>/dev/null; fi
done
printf %s "$lines" | while read -r kind d rest; do
  [ "$kind" = dir ] && rm -rf "$d"
done
`;

let reaper: Socket | undefined;

function toReaper(line: string): void {
  installExitHook();
  if (reaper === undefined) {
    const child = spawn('sh', ['-c', REAPER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    child.on('error', () => {});
    child.unref();
    reaper = child.stdin as Socket;
    reaper.on('error', () => {});
    reaper.unref();
  }
  reaper.write(`${line}\n`);
}

function trackDir(dir: string): void {
  ownedDirs.add(dir);
  toReaper(`dir ${dir}`);
}

function rmOnReap(dir: string, name: string, pid: number): void {
  toReaper(`pid ${dir} ${name} ${pid}`);
}

function untrackDir(dir: string): void {
  ownedDirs.delete(dir);
}
