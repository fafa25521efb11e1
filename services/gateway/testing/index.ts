import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import {
  connectSse,
  type PublishResponse,
  postJson,
  readLines,
  type SseClient,
  type SseOptions,
  streamPath,
} from '@herald/testkit';
import { type Config, createGateway, defaultConfig, type Gateway, type GatewayDeps } from '../src/index.ts';

/**
 * The gateway under test, for Herald's own tests and tools (`@herald/gateway/testing`): in this
 * process on a loopback port, or as its own process as the container runs it. It lives with the
 * gateway so that the test harness (`@herald/testkit`) imports nothing of it.
 */

/** A gateway under test, reached over real HTTP on a loopback port. */
export interface TestGateway {
  readonly gateway: Gateway;
  readonly url: string;
  /** Opens `GET /v1/stream` with these query parameters (repeat `topic` with an array). */
  stream(query: Record<string, string | readonly string[]>, opts?: SseOptions): Promise<SseClient>;
  /** POSTs a JSON body (or raw string) to `/v1/publish`. */
  publish(body: unknown, headers?: Record<string, string>): Promise<PublishResponse>;
  close(): Promise<void>;
}

/** Starts a gateway in this process on 127.0.0.1, port 0. Drains instantly on close unless told otherwise. */
export async function startGateway(
  overrides: Partial<Config> = {},
  deps: GatewayDeps = {},
): Promise<TestGateway> {
  // Authentication is off unless a test turns it on: the auth tests set it up themselves.
  const config = defaultConfig({
    host: '127.0.0.1',
    port: 0,
    metricsPort: 0,
    drainMs: 0,
    auth: 'none',
    ...overrides,
  });
  const gateway = createGateway(config, deps);
  const port = await gateway.listen();
  const url = `http://127.0.0.1:${port}`;
  const open = new Set<SseClient>();
  return {
    gateway,
    url,
    async stream(query, opts) {
      const c = await connectSse(url + streamPath(query), opts);
      open.add(c);
      return c;
    },
    publish: (body, headers) => postJson(`${url}/v1/publish`, body, headers),
    async close() {
      for (const c of open) c.close();
      await gateway.shutdown();
    },
  };
}

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/** A gateway as its own process (`make run`), for signals and exit codes. */
export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Log lines written so far. */
  readonly lines: string[];
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/** Which build of the gateway to run. */
export interface SpawnOptions {
  /** The entry point. Default: services/gateway/src/main.ts, run from source. */
  readonly main?: string;
  /** Node's `--conditions`. Default `herald-source` (packages resolve to their sources); [] for dist/. */
  readonly conditions?: readonly string[];
}

function gatewayArgs(opts: SpawnOptions): string[] {
  return [...(opts.conditions ?? ['herald-source']).map((c) => `--conditions=${c}`), opts.main ?? MAIN];
}

export async function spawnGateway(
  env: Record<string, string>,
  opts: SpawnOptions = {},
): Promise<GatewayProcess> {
  const child = spawn(process.execPath, gatewayArgs(opts), {
    env: {
      PATH: process.env['PATH'] ?? '',
      HERALD_HOST: '127.0.0.1',
      HERALD_PORT: '0',
      HERALD_METRICS_PORT: '0',
      HERALD_AUTH: 'none',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const port = new Promise<number>((resolve, reject) => {
    readLines(child.stdout, (line) => {
      lines.push(line);
      try {
        const msg = JSON.parse(line) as { msg?: string; port?: number };
        if (msg.msg === 'listening' && typeof msg.port === 'number') resolve(msg.port);
      } catch {}
    });
    readLines(child.stderr, (line) => lines.push(line));
    exited.then((code) =>
      reject(new Error(`gateway exited with ${code} before listening:\n${lines.join('\n')}`)),
    );
  });
  const p = await port;
  return { child, url: `http://127.0.0.1:${p}`, lines, exited, kill: (s = 'SIGTERM') => child.kill(s) };
}

/** Runs the gateway's main with this environment and collects its exit code and stderr (for config errors). */
export async function runGatewayToExit(
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, gatewayArgs({}), {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const [code] = await once(child, 'exit');
  return { code: code as number | null, stderr };
}
