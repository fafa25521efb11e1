import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { type Config, createGateway, defaultConfig, type Gateway, type GatewayDeps } from '@herald/gateway';
import { readLines } from './log-lines.ts';
import { connectSse, type SseClient, type SseOptions } from './sse-client.ts';

export interface PublishResponse {
  readonly status: number;
  readonly headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: JSON of any documented shape; tests assert on it.
  readonly body: any;
}

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

export function streamPath(query: Record<string, string | readonly string[]>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    for (const one of typeof v === 'string' ? [v] : v) q.append(k, one);
  return `/v1/stream?${q}`;
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

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<PublishResponse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}

const MAIN = fileURLToPath(new URL('../../../services/gateway/src/main.ts', import.meta.url));

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

/**
 * Polls `check` until it returns true, at most `timeoutMs`. For conditions that no event
 * announces (readiness across processes); the error says what was awaited.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  /** What is awaited, for the timeout's message; a function is asked at the timeout, for the state then. */
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    if (await check()) return;
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`,
      );
    await new Promise((r) => setTimeout(r, wait));
  }
}

/** Resolves once `GET /readyz` answers `status` (200 by default). */
export function untilReady(url: string, status = 200, timeoutMs = 10_000): Promise<void> {
  return until(
    async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status === status,
    `${url}/readyz to answer ${status}`,
    timeoutMs,
  );
}
