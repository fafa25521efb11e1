/**
 * Publish throughput of two builds of the gateway on JetStream, in one run: `BASE` (another
 * checkout of Herald, e.g. a `git worktree` of the commit before a change, with `node_modules`
 * linked in) against this checkout. Each round starts a fresh nats-server and one gateway of each
 * build in turn, warms it up, then times PUBLISH_AB_REQUESTS single-message publishes from
 * PUBLISH_AB_CONCURRENCY keep-alive connections. Prints requests/s per round, the medians and
 * their ratio (this / base): a publish-path change is judged by the ratio, never one run.
 *
 *   git worktree add /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   make bench-publish BASE=/tmp/base
 */
import { Agent, request } from 'node:http';
import { join, resolve } from 'node:path';
import { spawnGateway } from '@herald/gateway/testing';
import { startNats, untilReady } from '@herald/testkit';
import { int, progress, ROOT } from './lib.ts';

const BASE = process.env['BASE'];
if (BASE === undefined || BASE === '')
  throw new Error('BASE: the directory of the checkout to compare against');
const REQUESTS = int('PUBLISH_AB_REQUESTS', 6000);
const CONCURRENCY = int('PUBLISH_AB_CONCURRENCY', 32);
const ROUNDS = int('PUBLISH_AB_ROUNDS', 5);
const builds = { base: resolve(BASE), this: ROOT } as const;

async function publishes(port: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const body = JSON.stringify({ topic: 'bench.publish', data: 'x'.repeat(100) });
  const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
  const one = () =>
    new Promise<void>((done, fail) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/publish', method: 'POST', agent, headers },
        (res) => {
          res.resume();
          res.on('end', () =>
            res.statusCode === 200 ? done() : fail(new Error(`publish: ${res.statusCode}`)),
          );
        },
      );
      req.on('error', fail);
      req.end(body);
    });
  let sent = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (sent++ < REQUESTS) await one();
    }),
  );
  agent.destroy();
  return REQUESTS / ((performance.now() - started) / 1000);
}

const rates: Record<keyof typeof builds, number[]> = { base: [], this: [] };
for (let round = 1; round <= ROUNDS; round++) {
  for (const build of ['base', 'this'] as const) {
    // A fresh server each time: one stream owns `herald.t.>` on a server.
    const nats = await startNats();
    const gw = await spawnGateway(
      { HERALD_BROKER: 'jetstream', HERALD_NATS_URL: nats.url, HERALD_AUTH: 'none', HERALD_METRICS: '0' },
      { main: join(builds[build], 'services/gateway/src/main.ts') },
    );
    try {
      await untilReady(gw.url);
      const port = Number(new URL(gw.url).port);
      await publishes(port);
      rates[build].push(await publishes(port));
      progress(`round ${round}/${ROUNDS} ${build}: ${rates[build].at(-1)!.toFixed(0)} publishes/s`);
    } finally {
      gw.kill('SIGKILL');
      await gw.exited;
      await nats.stop();
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  JSON.stringify({
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    base: rates.base.map(Math.round),
    this: rates.this.map(Math.round),
    medianBase: Math.round(median(rates.base)),
    medianThis: Math.round(median(rates.this)),
    ratio: Number((median(rates.this) / median(rates.base)).toFixed(3)),
  }),
);
