import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reservePorts } from './free-ports.ts';
import { budget, ProcessError, type Supervised, startProcess } from './process.ts';
import { makeTempDir, removeTempDir } from './reaper.ts';

/**
 * A real Prometheus for tests: Debian's package, installed by `tools/prometheus.sh`, started on a
 * free loopback port with its own data directory, scraping the targets it is given. Ready when
 * `/-/ready` answers 200; process.ts stops it (SIGKILL after a grace period) and reaps it if a
 * test does not.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/prometheus.sh', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
/** The port is reserved before Prometheus binds it; another process can take it in between. */
const START_ATTEMPTS = 3;

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
  const program = join(prometheusDir(), 'prometheus');
  const dir = await makeTempDir('herald-prometheus-');
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
  let proc: Supervised | undefined;
  const stop = async () => {
    await proc?.stop();
    await removeTempDir(dir);
  };
  try {
    // Prometheus reads YAML, a superset of JSON.
    await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
    const b = budget(READY_TIMEOUT_MS);
    for (let attempt = 1; ; attempt++) {
      const [port] = await reservePorts(1);
      const url = `http://127.0.0.1:${port}`;
      proc = startProcess({
        name: 'prometheus',
        program,
        args: [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        fix: 'run `bash tools/prometheus.sh` (it installs the pinned Debian package)',
      });
      try {
        await proc.waitUntil(
          async () => {
            const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) });
            return res.ok || `${res.status} ${(await res.text()).trim()}`;
          },
          { within: b, what: `GET ${url}/-/ready` },
        );
      } catch (err) {
        const portTaken = err instanceof ProcessError && err.exit !== undefined && err.addressInUse;
        if (portTaken && attempt < START_ATTEMPTS) continue;
        throw err;
      }
      return { url, query: (expr) => query(url, expr), stop };
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

async function query(url: string, expr: string) {
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
}
