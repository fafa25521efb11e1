import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reservePorts } from './free-ports.ts';

/**
 * A real Prometheus for tests: Debian's package, installed by `tools/prometheus.sh`, started on a
 * free loopback port with its own data directory, scraping the targets it is given.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/prometheus.sh', import.meta.url));

let binaries: string | undefined;
/** The directory holding `prometheus` and `promtool` (installed on first use). */
export function prometheusDir(): string {
  binaries ??= execFileSync('bash', [SCRIPT], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  return binaries;
}

export interface PrometheusOptions {
  /** `host:port` of each target, scraped at `/metrics`. */
  readonly targets: readonly string[];
  /** The job name; alert rules select gateways by it. Default `herald-gateway`. */
  readonly job?: string;
  /** Extra target labels (Kubernetes service discovery would add `pod`). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Default 1000 ms: tests want samples quickly. */
  readonly scrapeIntervalMs?: number;
}

export interface PrometheusServer {
  readonly url: string;
  /** An instant query; rejects on a PromQL error with Prometheus's message. */
  query(expr: string): Promise<readonly { metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-prometheus-'));
  const interval = `${opts.scrapeIntervalMs ?? 1000}ms`;
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    scrape_configs: [
      {
        job_name: opts.job ?? 'herald-gateway',
        static_configs: [{ targets: [...opts.targets], labels: { ...opts.labels } }],
      },
    ],
  };
  // Prometheus reads YAML, a superset of JSON.
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
  const [port] = await reservePorts(1);
  const child: ChildProcess = spawn(
    join(prometheusDir(), 'prometheus'),
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (c: Buffer) => {
    log = (log + c.toString()).slice(-4000);
  });
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (let wait = 20; ; wait = Math.min(wait * 2, 250)) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited (${child.exitCode}):\n${log}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready within 30 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, wait));
  }
  return {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ query: expr }),
      });
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: unknown };
      };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? res.status}`);
      const result = body.data?.result;
      return Array.isArray(result) ? result : [];
    },
    stop,
  };
}
