import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { reservePorts } from './free-ports.ts';
import { LineLog } from './log-lines.ts';
import {
  type Budget,
  budget,
  ProcessError,
  type Supervised,
  startProcess,
  waitWhileRunning,
} from './process.ts';
import { makeTempDir, removeTempDir } from './reaper.ts';

/**
 * Real nats-server processes for tests (never a mock): the pinned binary from
 * `tools/nats-server.sh`, on 127.0.0.1 only, each with its own temporary directory holding its
 * config file and (by default) its JetStream store.
 *
 * Ports: a single server and every node's client and monitoring listeners are given port -1, so
 * nats-server picks free ones itself (no race), and the harness reads them from its log. A
 * restart reuses the same ports and store. Cluster route ports must be known before any node
 * starts (each node lists the others), so they are reserved by binding port 0 first; if one is
 * taken in between, the whole cluster start is retried with fresh ports.
 *
 * Ready means, each step polled (backing off 10 → 100 ms) until a bound: the log says "Server is
 * ready"; `/healthz` answers 200 (JetStream enabled; in a cluster, a meta leader is known and
 * this node is current); a client connects and `jsm.getAccountInfo()` is answered; and, for a
 * cluster node, every replicated stream it hosts knows its leader and holds the leader's last
 * sequence (a restarted node passes /healthz before it has heard from its stream leaders).
 *
 * Processes, waits and cleanup are process.ts's: `stop()` removes the temporary directory, and a
 * server or directory a test leaves behind is reaped when the test process ends, however it ends.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/nats-server.sh', import.meta.url));
const HOST = '127.0.0.1';
/** How long `stop()` and `restart()` wait after SIGTERM before escalating to SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** How long `kill()` waits for the process to exit after its signal. */
const KILL_WAIT_MS = 5_000;
const MAX_LOG_LINES = 10_000;
const CLUSTER_START_ATTEMPTS = 3;

let resolved: string | undefined;

/** The nats-server executable: whatever `tools/nats-server.sh` prints (it builds it with `go install` when missing). */
export function natsServerPath(): string {
  if (resolved !== undefined) return resolved;
  if (!existsSync(SCRIPT)) throw new Error(`${SCRIPT} is missing; it installs the pinned nats-server`);
  const path = execFileSync('bash', [SCRIPT], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  if (!existsSync(path)) {
    throw new Error(
      `nats-server not found at ${path}; run \`bash tools/nats-server.sh\` (it builds it with go install)`,
    );
  }
  resolved = path;
  return path;
}

export interface NatsOptions {
  /** Enable JetStream (default true). */
  readonly jetstream?: boolean;
  /**
   * JetStream store directory. Default: `store/` inside the server's temporary directory, removed
   * by `stop()`. A directory given here belongs to the caller and is never removed.
   */
  readonly storeDir?: string;
  /** Client port. Default: a free one picked by nats-server (`-1`); restarts keep it. */
  readonly port?: number;
  /** `server_name` (default `herald-nats`). */
  readonly name?: string;
  /**
   * Extra settings merged into the generated config file; object values are merged one level
   * deep, e.g. `{ jetstream: { sync_interval: 'always' } }` keeps the store directory.
   */
  readonly config?: Readonly<Record<string, unknown>>;
  /**
   * Extra command-line flags, after `-c <config>` (flags override the config file). Not `-l`:
   * the harness reads the log from stderr.
   */
  readonly args?: readonly string[];
  /** Bound on start and restart readiness, in ms (default 10 s). */
  readonly readyTimeoutMs?: number;
}

export interface NatsClusterOptions {
  /** `cluster.name` (default `herald-test`); nodes are named `node-0` … `node-<size-1>`. */
  readonly name?: string;
  /** Merged into every node's config file, as in `NatsOptions.config`. */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Extra command-line flags for every node. */
  readonly args?: readonly string[];
  /** Bound on cluster start (all nodes healthy, JetStream answering), in ms (default 20 s). */
  readonly readyTimeoutMs?: number;
}

/** One real nats-server process on 127.0.0.1. */
export interface NatsServer {
  /** `server_name`. */
  readonly name: string;
  /** `nats://127.0.0.1:<port>`; the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** `http://127.0.0.1:<port>` of the monitoring endpoints (`/healthz`, `/jsz`, `/varz`, …). */
  readonly monitorUrl: string;
  /** The JetStream store directory (nats-server keeps its data in `<storeDir>/jetstream`). */
  readonly storeDir: string;
  /** The current process id (the last one while the server is down). */
  readonly pid: number;
  /** True while a process is running (false after `kill()` or `stop()`). */
  readonly running: boolean;
  /** SIGTERM, wait for exit (SIGKILL after 5 s), remove the temporary directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Sends `signal` (default SIGKILL) and waits for the process to exit, keeping the store and
   * config for `restart()`: a crash, for tests.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Stops the process if running (SIGTERM) and starts a new one on the same ports with the same
   * store, resolving when it is ready again. A cluster node rejoins its cluster.
   */
  restart(): Promise<void>;
  /** Everything the server has logged so far, across restarts. */
  logs(): string;
}

/** A JetStream cluster of real nats-server processes, each with its own store and routes on loopback. */
export interface NatsCluster {
  readonly name: string;
  readonly nodes: readonly NatsServer[];
  /** Comma-separated client URLs of all nodes (the same across node restarts). */
  readonly urls: string;
  /** Stops every node. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts one nats-server with JetStream (unless `jetstream: false`) and resolves when it accepts
 * clients, `/healthz` answers 200 and a JetStream API call succeeds.
 */
export async function startNats(opts: NatsOptions = {}): Promise<NatsServer> {
  const node = await createNode({
    name: opts.name ?? 'herald-nats',
    jetstream: opts.jetstream ?? true,
    storeDir: opts.storeDir,
    port: opts.port,
    config: opts.config ?? {},
    args: opts.args ?? [],
    readyTimeoutMs: opts.readyTimeoutMs ?? 10_000,
    cluster: undefined,
  });
  try {
    await node.launch(budget(node.readyTimeoutMs));
  } catch (err) {
    await node.stop();
    throw err;
  }
  return node.api;
}

/**
 * Starts a JetStream cluster of `size` nodes (default 3) and resolves when every node's
 * `/healthz` answers 200 (it has a JetStream meta leader and is current with it) and a JetStream
 * API call through the cluster succeeds.
 */
export async function startNatsCluster(size = 3, opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  if (!Number.isInteger(size) || size < 2) {
    throw new RangeError(`cluster size must be an integer >= 2, got ${size}; use startNats() for one server`);
  }
  const name = opts.name ?? 'herald-test';
  const timeout = opts.readyTimeoutMs ?? 20_000;
  for (let attempt = 1; ; attempt++) {
    const routePorts = await reservePorts(size);
    const nodes = await Promise.all(
      routePorts.map((routePort, i) =>
        createNode({
          name: `node-${i}`,
          jetstream: true,
          storeDir: undefined,
          port: undefined,
          config: opts.config ?? {},
          args: opts.args ?? [],
          readyTimeoutMs: timeout,
          cluster: { name, port: routePort, routes: routePorts.filter((p) => p !== routePort) },
        }),
      ),
    );
    const stopAll = async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    };
    const b = budget(timeout);
    const results = await Promise.allSettled(nodes.map((n) => n.launch(b)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      await stopAll();
      const err = failed.reason as Error;
      if (attempt < CLUSTER_START_ATTEMPTS && err instanceof ProcessError && err.addressInUse) continue;
      throw err;
    }
    const urls = nodes.map((n) => n.api.url);
    try {
      await waitWhileRunning(async () => (await jetstreamAnswers(urls)) ?? true, {
        within: b,
        what: `JetStream API through the cluster ${urls.join(',')}`,
        watch: nodes.map((n) => n.process()!),
      });
    } catch (err) {
      await stopAll();
      throw new Error(
        `${(err as Error).message}\n${nodes.map((n) => `--- ${n.api.name}\n${n.log.tail(40, ERROR_LINE)}`).join('\n')}`,
      );
    }
    return { name, nodes: nodes.map((n) => n.api), urls: urls.join(','), stop: stopAll };
  }
}

interface NodeSpec {
  readonly name: string;
  readonly jetstream: boolean;
  readonly storeDir: string | undefined;
  readonly port: number | undefined;
  readonly config: Readonly<Record<string, unknown>>;
  readonly args: readonly string[];
  readonly readyTimeoutMs: number;
  readonly cluster: { readonly name: string; readonly port: number; readonly routes: number[] } | undefined;
}

interface Node {
  readonly api: NatsServer;
  readonly log: LineLog;
  readonly readyTimeoutMs: number;
  /** The current (or last) process; undefined before the first launch. */
  process(): Supervised | undefined;
  launch(b: Budget): Promise<void>;
  stop(): Promise<void>;
}

async function createNode(spec: NodeSpec): Promise<Node> {
  const binary = natsServerPath();
  const title = `nats-server ${spec.name}`;
  const root = await makeTempDir('herald-nats-');
  const storeDir = spec.storeDir ?? join(root, 'store');
  const configFile = join(root, 'nats-server.conf');
  /** Every run's output, so that `logs()` and errors span restarts. */
  const log = new LineLog(MAX_LOG_LINES);
  let port = spec.port ?? -1;
  let httpPort = -1;
  let proc: Supervised | undefined;
  let lastPid = -1;
  let stopped = false;

  const writeConfig = async () => {
    const config: Record<string, unknown> = {
      server_name: spec.name,
      listen: `${HOST}:${port}`,
      http: `${HOST}:${httpPort}`,
    };
    if (spec.jetstream) config['jetstream'] = { store_dir: storeDir };
    if (spec.cluster) {
      config['cluster'] = {
        name: spec.cluster.name,
        listen: `${HOST}:${spec.cluster.port}`,
        routes: spec.cluster.routes.map((p) => `nats-route://${HOST}:${p}`),
      };
    }
    for (const [key, value] of Object.entries(spec.config)) {
      const base = config[key];
      config[key] = isPlainObject(base) && isPlainObject(value) ? { ...base, ...value } : value;
    }
    // nats-server's config format is a superset of JSON.
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  };

  const launch = async (b: Budget): Promise<void> => {
    if (stopped) throw new Error(`${title} was stopped; start a new one`);
    await writeConfig();
    const current = startProcess({
      name: title,
      program: binary,
      args: ['-c', configFile, ...spec.args],
      log,
      complaints: ERROR_LINE,
      fix: `check ${binary} (\`bash tools/nats-server.sh\` rebuilds it)`,
      onLine: (line) => {
        const client = /Listening for client connections on [^\s]+:(\d+)$/.exec(line);
        if (client) port = Number(client[1]);
        const monitor = /Starting http monitor on [^\s]+:(\d+)$/.exec(line);
        if (monitor) httpPort = Number(monitor[1]);
      },
    });
    proc = current;
    if (current.pid !== undefined) lastPid = current.pid;
    // 1. The log says it is listening (client and monitoring ports known).
    await current.waitForLine(/\] Server is ready$/, {
      within: b,
      what: 'start: no "Server is ready" in its log',
    });
    if (port <= 0 || httpPort <= 0) {
      throw new Error(`${title}: could not read its ports from the log:\n${log.tail(40, ERROR_LINE)}`);
    }
    // 2. /healthz: JetStream enabled and, in a cluster, a meta leader exists and this node is
    //    current with it and with the streams it hosts.
    const health = `http://${HOST}:${httpPort}/healthz`;
    await current.waitUntil(
      async () => {
        const res = await fetch(health, { signal: AbortSignal.timeout(2_000) });
        return res.status === 200 || `${res.status} ${(await res.text()).trim()}`;
      },
      { within: b, what: `GET ${health}`, during: 'while becoming healthy' },
    );
    // 3. A client connects and a JetStream API request ($JS.API.INFO) is answered.
    const url = `nats://${HOST}:${port}`;
    if (spec.jetstream) {
      await current.waitUntil(async () => (await jetstreamAnswers([url], loginOf(spec.config))) ?? true, {
        within: b,
        what: `JetStream account info from ${url}`,
        during: 'while JetStream was starting',
      });
    }
    // 4. A cluster node that comes back with a store: /healthz already passes while it has not
    //    yet heard from its streams' leaders, so also wait until each replicated stream it hosts
    //    knows its leader and holds everything the leader held when asked.
    if (spec.cluster) {
      const monitor = `http://${HOST}:${httpPort}`;
      await current.waitUntil(async () => (await replicasBehind(spec.name, url, monitor)) ?? true, {
        within: b,
        what: 'stream replicas catching up',
        during: 'while catching up with its cluster',
      });
    }
  };

  const stop = async (): Promise<void> => {
    stopped = true;
    await proc?.stop(STOP_GRACE_MS);
    await removeTempDir(root);
  };

  const api: NatsServer = {
    name: spec.name,
    get url() {
      return `nats://${HOST}:${port}`;
    },
    get port() {
      return port;
    },
    get monitorUrl() {
      return `http://${HOST}:${httpPort}`;
    },
    storeDir,
    get pid() {
      return lastPid;
    },
    get running() {
      return proc?.running ?? false;
    },
    stop,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc === undefined || !proc.running) {
        throw new Error(`${title} is not running; restart() it first`);
      }
      await proc.kill(signal, KILL_WAIT_MS);
    },
    async restart() {
      if (stopped) throw new Error(`${title} was stopped; start a new one`);
      await proc?.stop(STOP_GRACE_MS);
      try {
        await launch(budget(spec.readyTimeoutMs));
      } catch (err) {
        // A server that failed to come back gets no grace: nothing of it is worth keeping.
        await proc?.stop(0);
        throw err;
      }
    },
    logs: () => log.text(),
  };
  return { api, log, readyTimeoutMs: spec.readyTimeoutMs, process: () => proc, launch, stop };
}

/**
 * How readiness checks log in to a server with an `authorization` block: its `token`, or the first
 * of its `users` (which needs JetStream API permissions).
 */
function loginOf(config: Record<string, unknown>): Login {
  // A `tls` block with a CA: the readiness check trusts the same CA the server's certificate is from.
  const tlsBlock = config['tls'];
  const tls =
    isPlainObject(tlsBlock) && typeof tlsBlock['ca_file'] === 'string'
      ? { tls: { caFile: tlsBlock['ca_file'] } }
      : {};
  const auth = config['authorization'];
  if (!isPlainObject(auth)) return tls;
  if (typeof auth['token'] === 'string') return { ...tls, token: auth['token'] };
  const first = Array.isArray(auth['users']) ? auth['users'][0] : undefined;
  return isPlainObject(first) && typeof first['user'] === 'string' && typeof first['password'] === 'string'
    ? { ...tls, user: first['user'], pass: first['password'] }
    : tls;
}

interface Login {
  readonly token?: string;
  readonly user?: string;
  readonly pass?: string;
  readonly tls?: { readonly caFile: string };
}

/** Undefined when a client can connect to `servers` and JetStream answers an account-info request; else the problem. */
async function jetstreamAnswers(servers: string[], login: Login = {}): Promise<string | undefined> {
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    nc = await connect({
      servers,
      reconnect: false,
      timeout: 2_000,
      ignoreClusterUpdates: true,
      ...login,
    });
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2_000 });
    await jsm.getAccountInfo();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await nc?.close().catch(() => {});
  }
}

interface Jsz {
  account_details?: {
    name: string;
    stream_detail?: {
      name: string;
      cluster?: { leader?: string };
      state: { last_seq: number };
    }[];
  }[];
}

/** Streams of the default account hosted on `monitor`'s node, as that node sees them. */
async function localStreams(monitor: string) {
  const res = await fetch(`${monitor}/jsz?streams=true`, { signal: AbortSignal.timeout(2_000) });
  if (res.status !== 200) throw new Error(`GET ${monitor}/jsz: ${res.status}`);
  const jsz = (await res.json()) as Jsz;
  // The harness's client connects without credentials, to the default account.
  return jsz.account_details?.find((a) => a.name === '$G')?.stream_detail ?? [];
}

/**
 * Undefined when every replicated stream hosted on this node knows its leader and, when the
 * leader is another node, holds at least the last sequence the leader reported just before;
 * else what is still missing.
 */
async function replicasBehind(name: string, url: string, monitor: string): Promise<string | undefined> {
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    const followed = (await localStreams(monitor)).filter((s) => s.cluster?.leader !== name);
    if (followed.length === 0) return undefined;
    const leaderless = followed.find((s) => !s.cluster?.leader);
    if (leaderless) return `stream ${leaderless.name} has no leader known to ${name} yet`;
    nc = await connect({ servers: [url], reconnect: false, timeout: 2_000, ignoreClusterUpdates: true });
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2_000 });
    const atLeader = new Map<string, number>();
    for (const s of followed) atLeader.set(s.name, (await jsm.streams.info(s.name)).state.last_seq);
    for (const s of await localStreams(monitor)) {
      const want = atLeader.get(s.name);
      if (want !== undefined && s.state.last_seq < want) {
        return `stream ${s.name} on ${name} is at sequence ${s.state.last_seq}, its leader at ${want}`;
      }
    }
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await nc?.close().catch(() => {});
  }
}

/** nats-server's own complaints, which can scroll out of the tail (a bad flag prints usage after it). */
const ERROR_LINE = /\[(FTL|ERR)\]|^nats-server: |^flag provided but not defined/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
