/**
 * The servers under test: Herald's gateway on its embedded broker (`herald`), the gateway on
 * JetStream with a fresh nats-server of its own (`herald-jetstream`), and the reference SSE server.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  busyPercent,
  cpuMs,
  cpuTicks,
  freePort,
  get,
  HOST,
  launch,
  launchNode,
  now,
  onExit,
  othersCpuMs,
  PIN,
  ROOT,
  stop,
  tail,
} from './lib.ts';

/**
 * `herald`: the gateway on its embedded broker with metrics and tracing off; `herald-observed`: the
 * same with metrics on (scraped every 5 s) and tracing exported over OTLP at the default ratios, to
 * a sink in this process that discards it.
 */
export const KINDS = ['herald', 'herald-observed', 'herald-jetstream', 'reference'] as const;
export type Kind = (typeof KINDS)[number];
export const GATEWAY = join(ROOT, 'services/gateway/src/main.ts');
const REFERENCE = join(import.meta.dirname, 'reference-server.ts');
const NATS_SCRIPT = join(ROOT, 'tools/nats-server.sh');

/**
 * Where nats-server runs. `client` (default): on the client's CPU, so the gateway has CPU 0 to
 * itself in both Herald modes and the comparison is the gateway's own cost. `server`: on CPU 0
 * with the gateway, so one core pays for gateway and broker together.
 */
export const NATS_PLACEMENT = process.env['BENCH_NATS_CPU'] ?? 'client';
if (NATS_PLACEMENT !== 'client' && NATS_PLACEMENT !== 'server')
  throw new Error('BENCH_NATS_CPU: client or server');
const NATS_CPU = PIN?.[NATS_PLACEMENT === 'client' ? 1 : 0];

export interface Nats {
  child: ChildProcess;
  pid: number;
  port: number;
  storeDir: string;
  forget: () => void;
}

export interface Server {
  kind: Kind;
  child: ChildProcess;
  pid: number;
  port: number;
  /** The gateway's own nats-server, in `herald-jetstream` mode. */
  nats: Nats | undefined;
  /** The gateway settings given to `startServer`. */
  env: Record<string, string>;
  /** `herald-observed`: its metrics port and the timer scraping it. */
  observed: { metricsPort: number; scraper: NodeJS.Timeout } | undefined;
}

let sink: Promise<number> | undefined;
const received = new EventEmitter();
/** An OTLP/HTTP receiver that reads and discards what it gets; its port. One per run. */
function otlpSink(): Promise<number> {
  sink ??= new Promise((resolve) => {
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
        received.emit('export');
      });
    });
    server.listen(0, HOST, () => resolve((server.address() as AddressInfo).port));
    server.unref();
  });
  return sink;
}

/** Resolves when the OTLP sink next receives an export; rejects after `ms`. */
export const nextExport = (ms: number): Promise<unknown> =>
  once(received, 'export', { signal: AbortSignal.timeout(ms) });

/** Scrapes `/metrics` as Prometheus would (every 15 s by default; every 5 s here, to be safe). */
function scrapeEvery(port: number, ms: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    void fetch(`http://${HOST}:${port}/metrics`).then(
      (r) => r.arrayBuffer(),
      () => undefined,
    );
  }, ms);
  timer.unref();
  return timer;
}

/** Every process a server consists of. */
export const serverPids = (s: Server): number[] => (s.nats === undefined ? [s.pid] : [s.pid, s.nats.pid]);

/** CPU used during one measurement by the server, its nats-server, the client and everything else. */
export interface CpuUse {
  readonly wallMs: number;
  readonly serverMs: number;
  readonly natsMs: number | null;
  readonly clientMs: number;
  readonly othersMs: number;
  /** Busy share of the pinned cores; null when unpinned. */
  readonly serverCoreBusyPercent: number | null;
  readonly clientCoreBusyPercent: number | null;
}

/** Starts measuring; the returned function reads what was used since. */
export function cpuMeter(server: Server, clientPid: number): () => CpuUse {
  const serverCore = PIN === undefined ? undefined : String(PIN[0]);
  const clientCore = PIN === undefined ? undefined : String(PIN[1]);
  const ours = [...serverPids(server), clientPid, process.pid];
  const before = {
    server: cpuMs(server.pid),
    nats: cpuMs(server.nats?.pid),
    client: cpuMs(clientPid),
    others: othersCpuMs(ours),
    serverCore: cpuTicks(serverCore),
    clientCore: cpuTicks(clientCore),
    at: now(),
  };
  return () => ({
    wallMs: now() - before.at,
    serverMs: cpuMs(server.pid) - before.server,
    natsMs: server.nats === undefined ? null : cpuMs(server.nats.pid) - before.nats,
    clientMs: cpuMs(clientPid) - before.client,
    othersMs: othersCpuMs(ours) - before.others,
    serverCoreBusyPercent:
      serverCore === undefined ? null : busyPercent(before.serverCore, cpuTicks(serverCore)),
    clientCoreBusyPercent:
      clientCore === undefined ? null : busyPercent(before.clientCore, cpuTicks(clientCore)),
  });
}

let natsBinary: string | undefined;
/** The pinned nats-server (tools/nats-server.sh builds it with `go install` the first time). */
export function natsServerPath(): string {
  if (natsBinary !== undefined) return natsBinary;
  const out = spawnSync('bash', [NATS_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const path = out.stdout?.trim() ?? '';
  if (out.status !== 0 || !existsSync(path)) throw new Error(`${NATS_SCRIPT} did not provide nats-server`);
  natsBinary = path;
  return path;
}

/**
 * A fresh nats-server with JetStream in a new store directory (only one stream may hold
 * `herald.t.>` per server, so every session gets its own), on a port it picks itself (`-p -1`)
 * and reports in its log: no race for the port.
 */
async function startNats(logFile: string): Promise<Nats> {
  const storeDir = mkdtempSync(join(tmpdir(), 'herald-bench-nats-'));
  const forget = onExit(() => rmSync(storeDir, { recursive: true, force: true }));
  const log = openSync(logFile, 'w');
  let child: ChildProcess;
  try {
    const args = ['-a', HOST, '-p', '-1', '-js', '-sd', storeDir, '-n', 'herald-bench'];
    child = launch([natsServerPath(), ...args], NATS_CPU, { stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
    const port = /Listening for client connections on [^\s]*:(\d+)/.exec(text)?.[1];
    if (port !== undefined && text.includes('Server is ready'))
      return { child, pid: child.pid!, port: Number(port), storeDir, forget };
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop(child);
      rmSync(storeDir, { recursive: true, force: true });
      forget();
      throw new Error(`nats-server did not become ready:\n${tail(logFile)}`);
    }
    await sleep(50);
  }
}

async function stopNats(nats: Nats): Promise<void> {
  await stop(nats.child, 5000);
  rmSync(nats.storeDir, { recursive: true, force: true });
  nats.forget();
}

/** Starts a server and waits until `GET /readyz` answers 200. `env`: extra gateway settings. */
export async function startServer(
  kind: Kind,
  logFile: string,
  env: Record<string, string> = {},
): Promise<Server> {
  let nats: Nats | undefined;
  let child: ChildProcess;
  let observed: Server['observed'];
  let port: number;
  if (kind === 'herald-jetstream') nats = await startNats(logFile.replace(/\.log$/, '-nats.log'));
  const log = openSync(logFile, 'w');
  try {
    if (kind === 'reference') {
      // Port 0 and read back: no race for the port.
      child = launchNode([REFERENCE, '0'], PIN?.[0], { stdio: ['ignore', 'pipe', log] });
      port = await new Promise<number>((done, fail) => {
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const line = /^\{"listening":(\d+)\}$/m.exec(out);
          if (line !== null) done(Number(line[1]));
        });
        child.once('exit', () => fail(new Error(`reference server exited: ${tail(logFile)}`)));
        setTimeout(() => fail(new Error('reference server did not listen within 15 s')), 15_000).unref();
      });
    } else {
      port = await freePort();
      if (kind === 'herald-observed') {
        const metricsPort = await freePort();
        observed = { metricsPort, scraper: scrapeEvery(metricsPort, 5000) };
        env = {
          ...env,
          HERALD_METRICS: '1',
          HERALD_METRICS_PORT: String(metricsPort),
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://${HOST}:${await otlpSink()}`,
        };
      } else env = { ...env, HERALD_METRICS: '0' };
      child = launchGateway(port, nats, env, log);
    }
  } catch (error) {
    if (nats !== undefined) await stopNats(nats);
    throw error;
  } finally {
    closeSync(log);
  }
  const server: Server = { kind, child, pid: child.pid!, port, nats, env, observed };
  await untilReady(server, logFile);
  return server;
}

function launchGateway(
  port: number,
  nats: Nats | undefined,
  env: Record<string, string>,
  log: number,
): ChildProcess {
  // The benchmark sets the whole configuration: inherited HERALD_* variables (HERALD_CACHE is
  // tools/node.sh's) would change it, or stop the gateway, which refuses unknown ones.
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('HERALD_'));
  const broker =
    nats === undefined
      ? { HERALD_BROKER: 'memory' }
      : { HERALD_BROKER: 'jetstream', HERALD_NATS_URL: `nats://${HOST}:${nats.port}` };
  const settings = {
    ...Object.fromEntries(inherited),
    HERALD_PORT: String(port),
    HERALD_HOST: HOST,
    ...broker,
    HERALD_HEARTBEAT_MS: '15000',
    // Authentication is not what is measured (the same token check per connect in every server).
    HERALD_AUTH: 'none',
    HERALD_METRICS_PORT: '0',
    // Stop at once when the session ends: draining is not what is measured.
    HERALD_DRAIN_MS: '0',
    ...env,
  };
  return launchNode([GATEWAY], PIN?.[0], { env: settings, stdio: ['ignore', log, log] });
}

/**
 * Replaces a Herald gateway with a new process on the same port and nats-server, as when a pod is
 * replaced: the new one knows the stream only from JetStream. Resolves once it is ready.
 */
export async function replaceGateway(server: Server, logFile: string): Promise<void> {
  await stop(server.child);
  const log = openSync(logFile, 'w');
  try {
    server.child = launchGateway(server.port, server.nats, server.env, log);
  } finally {
    closeSync(log);
  }
  server.pid = server.child.pid!;
  await untilReady(server, logFile);
}

async function untilReady(server: Server, logFile: string): Promise<void> {
  const { kind, child } = server;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if ((await get(server.port, '/readyz')) === 200) return;
    const failure =
      child.exitCode !== null
        ? `${kind} exited (${child.exitCode})`
        : Date.now() > deadline
          ? `${kind} /readyz not 200 within 30 s`
          : undefined;
    if (failure !== undefined) {
      await stopServer(server);
      throw new Error(`${failure}:\n${tail(logFile)}`);
    }
    await sleep(100);
  }
}

export async function stopServer(server: Server): Promise<void> {
  if (server.observed !== undefined) clearInterval(server.observed.scraper);
  await stop(server.child);
  if (server.nats !== undefined) await stopNats(server.nats);
}
