/**
 * `make bench`: Herald's gateway, on its embedded broker and on JetStream, against a minimal
 * node:http SSE server (reference-server.ts), same machine, same run, same client. For each server
 * and connection count it measures memory per idle connection, deliveries/s and publish-to-receive
 * latency at steady publish rates, and a burst scenario; every session is repeated and medians are
 * reported, with JetStream/embedded and Herald/reference ratios. Then resume storms (storm.ts):
 * thousands of clients reconnecting at once with cursors spread over the recent history.
 *
 * Environment (docs/benchmarks.md has the table): BENCH_QUICK=1 (smoke run),
 * BENCH_CONNECTIONS=1000,10000, BENCH_SERVERS=herald,herald-jetstream,reference, BENCH_REPEATS=3,
 * BENCH_PHASE_MS, BENCH_RATES=1,5,10 (events/s, overrides the per-N default), BENCH_BURST_BATCH=5,
 * BENCH_NATS_CPU=client|server, BENCH_STEADY=0 (storms only), BENCH_STORM_CLIENTS=5000,
 * BENCH_STORM_SPAN=10000, BENCH_STORM_RINGS=16384,16, BENCH_STORM_REPEATS=1 (0: no storms),
 * BENCH_STORM_CAP_MS=60000. Results: .bench/results.json; server logs: .bench/logs/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Client,
  elapsedS,
  finish,
  fmt,
  HOST,
  int,
  intList,
  known,
  median,
  ms,
  now,
  OTHER_CPU_LIMIT,
  OUT,
  one,
  PIN,
  patient,
  progress,
  QUICK,
  ratio,
  row,
  settledRssKb,
  spend,
  startClient,
  stats,
  stopClient,
  waitForIdleMachine,
} from './lib.ts';
import {
  cpuMeter,
  GATEWAY,
  KINDS,
  type Kind,
  NATS_PLACEMENT,
  natsServerPath,
  nextExport,
  type Server,
  startServer,
  stopServer,
} from './servers.ts';
import { bucketValue, type Report } from './shared.ts';
import {
  STORM_CLIENTS,
  STORM_EVENTS,
  STORM_REPEATS,
  STORM_RINGS,
  STORM_SPAN,
  type StormKind,
  type StormResult,
  storm,
  stormTable,
  summariseStorms,
} from './storm.ts';

const TOPIC = 'bench';

const CONNECTIONS = intList('BENCH_CONNECTIONS', QUICK ? [200] : [1000, 10_000]);
const SERVERS = (process.env['BENCH_SERVERS'] ?? KINDS.join(',')).split(',') as Kind[];
if (!SERVERS.every((s) => (KINDS as readonly string[]).includes(s)))
  throw new Error(`BENCH_SERVERS: some of ${KINDS.join(',')}`);
// One client process holds every connection, and so does the server: both need a file each.
const FILE_LIMIT = Number(spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout);
if ([...CONNECTIONS, STORM_CLIENTS].some((n) => n + 100 > FILE_LIMIT)) {
  throw new Error(
    `BENCH_CONNECTIONS, BENCH_STORM_CLIENTS: the open-file limit here is ${FILE_LIMIT}; use at most ${FILE_LIMIT - 100}`,
  );
}
const REPEATS = int('BENCH_REPEATS', QUICK ? 1 : 3);
/** BENCH_STEADY=0 skips the steady and burst sessions (storms only). */
const STEADY = process.env['BENCH_STEADY'] !== '0';
const PHASE_MS = int('BENCH_PHASE_MS', QUICK ? 1500 : 4000);
// Steady rates are chosen by the deliveries/s they offer, so every N sweeps the same load range:
// 1000 connections → 10, 50, 100, 200, 400 events/s; 10000 → 1, 5, 10, 20, 40.
const OFFERED = QUICK ? [10_000, 40_000] : [10_000, 50_000, 100_000, 200_000, 400_000];
const RATES = (n: number): number[] =>
  intList('BENCH_RATES', [...new Set(OFFERED.map((d) => Math.max(1, Math.round(d / n))))]);
const BURST_EVERY_MS = 100;
const BURST_BATCH = int('BENCH_BURST_BATCH', 5);
const P99_BUDGET_MS = 100;
/** Past this p99 (or with events missing) a rate is saturated, and higher rates are not tried. */
const SATURATED_P99_MS = 1000;
const OPEN_BATCH = 250;
const WARM_UP_CONNECTIONS = 250;
const MAX_IN_FLIGHT = 256;
const DRAIN_QUIET_MS = 1000;
const DRAIN_CAP_MS = QUICK ? 5000 : 15_000;
const PHASE_ATTEMPTS = 3;
/** Past this the client's core (client, publisher, nats-server by default) is the bottleneck. */
const CLIENT_CORE_SATURATED = 95;

// --- publishing and measuring ------------------------------------------------------------------------

function post(agent: Agent, port: number, body: string): Promise<boolean> {
  return new Promise((done) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = request({ host: HOST, port, path: '/v1/publish', method: 'POST', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200));
    });
    req.setTimeout(30_000, () => req.destroy());
    req.on('error', () => done(false));
    req.end(body);
  });
}

interface Publishing {
  published: number;
  failed: number;
  /** Events not sent because MAX_IN_FLIGHT publishes were already waiting for the server. */
  skipped: number;
  durationMs: number;
}

/**
 * Open-loop publishing on a fixed schedule (a slow server does not slow the schedule down, so its
 * latency is not hidden), `batch` events per POST every `everyMs`. Each event's data is
 * `{"p":phase,"t":send time}`.
 */
async function publish(port: number, phase: number, ticks: number, everyMs: number, batch: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const result: Publishing = { published: 0, failed: 0, skipped: 0, durationMs: ticks * everyMs };
  const posts: Promise<void>[] = [];
  let inFlight = 0;
  const start = now();
  for (let i = 0; i < ticks; i++) {
    const wait = start + i * everyMs - now();
    if (wait > 0) await sleep(wait); // the schedule itself, not a wait for some condition
    if (inFlight >= MAX_IN_FLIGHT) {
      result.skipped += batch;
      continue;
    }
    const data = JSON.stringify({ p: phase, t: now() });
    const message = { topic: TOPIC, data };
    const body = JSON.stringify(
      batch === 1 ? message : { messages: Array.from({ length: batch }, () => message) },
    );
    inFlight++;
    posts.push(
      post(agent, port, body).then((ok) => {
        inFlight--;
        if (ok) result.published += batch;
        else result.failed += batch;
      }),
    );
  }
  await Promise.all(posts);
  agent.destroy();
  return { ...result, start };
}

/** Waits until every expected delivery arrived, or deliveries stopped for DRAIN_QUIET_MS, or DRAIN_CAP_MS. */
async function drain(client: Client, expected: number): Promise<void> {
  const cap = Date.now() + DRAIN_CAP_MS;
  let seen = -1;
  let changedAt = Date.now();
  while (Date.now() < cap) {
    const s = await stats(client);
    if (s.received >= expected) return;
    if (s.received + s.stale !== seen) {
      seen = s.received + s.stale;
      changedAt = Date.now();
    } else if (Date.now() - changedAt > DRAIN_QUIET_MS) return;
    await sleep(50);
  }
}

/** Waits (bounded) until a previous phase's backlog stopped arriving, so it does not load the next one. */
async function quiet(client: Client): Promise<void> {
  let last = await stats(client);
  for (let i = 0; i < 100; i++) {
    await sleep(300);
    const s = await stats(client);
    if (s.received + s.stale === last.received + last.stale) return;
    last = s;
  }
}

interface PhaseResult {
  kind: 'rate' | 'burst';
  eventsPerSec: number;
  eventsPerPost: number;
  connections: number;
  offeredDeliveriesPerSec: number;
  published: number;
  failed: number;
  skipped: number;
  expected: number;
  received: number;
  /** Deliveries received over the publishing window (or until the last arrived, if later). */
  deliveriesPerSec: number;
  /** Missing deliveries count as infinitely late; JSON shows Infinity as null. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  closedDuring: number;
  /** CPU use from the first publish until the phase drained: 100 = one core busy. */
  serverCpuPercent: number;
  clientCpuPercent: number;
  /** The server's core, including kernel work on its behalf (loopback TCP runs partly in softirq). */
  serverCoreBusyPercent: number | null;
  /** The client's core (client, publisher and, by default, nats-server): near 100 % the client limits the figures. */
  clientCoreBusyPercent: number | null;
  /** nats-server's CPU use (herald-jetstream only), 100 = one core. */
  natsCpuPercent: number | null;
  /** CPU used by processes other than the benchmark's meanwhile; above OTHER_CPU_LIMIT the phase is repeated. */
  otherCpuPercent: number;
  /** Server CPU time per delivery: its cost, whether or not it kept up. */
  serverCpuUsPerDelivery: number;
}

function percentile(report: Report, total: number, q: number): number {
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const [bucket, count] of report.histogram) {
    seen += count;
    if (seen >= rank) return bucketValue(bucket);
  }
  return Number.POSITIVE_INFINITY;
}

let phaseCounter = 0;

async function phase(
  client: Client,
  server: Server,
  kind: 'rate' | 'burst',
  eventsPerSec: number,
  batch: number,
  durationMs: number,
) {
  await quiet(client);
  const before = await stats(client);
  const id = ++phaseCounter;
  await client.ask({ cmd: 'phase', phase: id });
  const everyMs = (1000 * batch) / eventsPerSec;
  const ticks = Math.max(1, Math.round(durationMs / everyMs));
  const cpu = cpuMeter(server, client.child.pid!);
  const sent = await publish(server.port, id, ticks, everyMs, batch);
  const expected = sent.published * before.open;
  await drain(client, expected);
  const report = await client.ask({ cmd: 'report' });
  if (report.type !== 'report') throw new Error('unexpected client reply');
  const used = cpu();
  const windowMs = Math.max(sent.durationMs, report.lastAt - sent.start);
  const result: PhaseResult = {
    kind,
    eventsPerSec,
    eventsPerPost: batch,
    connections: before.open,
    offeredDeliveriesPerSec: eventsPerSec * before.open,
    published: sent.published,
    failed: sent.failed,
    skipped: sent.skipped,
    expected,
    received: report.received,
    deliveriesPerSec: report.received > 0 ? (report.received * 1000) / windowMs : 0,
    p50Ms: percentile(report, expected, 0.5),
    p99Ms: percentile(report, expected, 0.99),
    maxMs: report.received < expected ? Number.POSITIVE_INFINITY : percentile(report, expected, 1),
    closedDuring: report.closed - before.closed,
    serverCpuPercent: (100 * used.serverMs) / used.wallMs,
    serverCoreBusyPercent: used.serverCoreBusyPercent,
    clientCoreBusyPercent: used.clientCoreBusyPercent,
    natsCpuPercent: used.natsMs === null ? null : (100 * used.natsMs) / used.wallMs,
    clientCpuPercent: (100 * used.clientMs) / used.wallMs,
    otherCpuPercent: (100 * used.othersMs) / used.wallMs,
    serverCpuUsPerDelivery: report.received > 0 ? (1000 * used.serverMs) / report.received : Number.NaN,
  };
  const lost = expected - report.received;
  const pct = (n: number) => `${n.toFixed(0)}%`;
  const core =
    result.serverCoreBusyPercent === null ? '' : ` (its core ${pct(result.serverCoreBusyPercent)})`;
  const clientSaturated =
    result.clientCpuPercent > 90 || (result.clientCoreBusyPercent ?? 0) > CLIENT_CORE_SATURATED;
  progress(
    `  ${kind} ${eventsPerSec}/s × ${before.open}: ${fmt(result.deliveriesPerSec)} deliveries/s, ` +
      `p50 ${ms(result.p50Ms)}, p99 ${ms(result.p99Ms)} | server ${pct(result.serverCpuPercent)} CPU${core}, ` +
      `${result.serverCpuUsPerDelivery.toFixed(1)} µs/delivery` +
      (result.natsCpuPercent === null ? '' : ` | nats ${pct(result.natsCpuPercent)}`) +
      ` | client ${pct(result.clientCpuPercent)}` +
      (result.clientCoreBusyPercent === null ? '' : ` (its core ${pct(result.clientCoreBusyPercent)})`) +
      (clientSaturated ? ' (saturated: this measures the client)' : '') +
      (lost > 0 ? ` | ${lost} of ${expected} not delivered` : '') +
      (result.otherCpuPercent > OTHER_CPU_LIMIT
        ? ` | other processes used ${pct(result.otherCpuPercent)}`
        : '') +
      (sent.failed + sent.skipped > 0 ? ` | ${sent.failed} publishes failed, ${sent.skipped} skipped` : ''),
  );
  return result;
}

interface Session {
  server: Kind;
  connections: number;
  repeat: number;
  opened: number;
  failedToOpen: number;
  openMs: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  rssPerConnectionKb: number;
  /** After all phases, connections still open: what the load left behind (buffers, history). */
  rssAfterLoadKb: number;
  rates: PhaseResult[];
  burst: PhaseResult | null;
  /** CPU the rest of the machine used just before the session (100 = one core): other work skews results. */
  otherCpuPercent: number;
  error?: string;
}

/** Runs a phase again (bounded) while other processes on this machine took CPU during it. */
async function undisturbed(label: string, run: () => Promise<PhaseResult>): Promise<PhaseResult> {
  let result = await run();
  for (let attempt = 1; attempt < PHASE_ATTEMPTS && result.otherCpuPercent > OTHER_CPU_LIMIT; attempt++) {
    if (!patient(0)) break;
    progress('  disturbed by other processes: repeating this phase');
    await waitForIdleMachine(label);
    const start = Date.now();
    result = await run();
    spend(Date.now() - start);
  }
  return result;
}

/**
 * Opens and closes WARM_UP_CONNECTIONS streams before the baseline memory reading, so what a
 * server pays once (code compiled on first use, modules loaded lazily such as the OTLP exporter's
 * serializer) is not charged to the connections measured. `herald-observed` also waits for the
 * warm-up's spans to reach the sink, as the first export is such a one-time cost.
 */
async function warmUp(server: Server, label: string): Promise<void> {
  const exported = server.observed === undefined ? undefined : nextExport(30_000);
  exported?.catch(() => undefined); // awaited below, unless the warm-up itself fails
  const client = startClient(`${label} warm-up`);
  try {
    await client.ask(
      {
        cmd: 'open',
        host: HOST,
        port: server.port,
        topic: TOPIC,
        count: WARM_UP_CONNECTIONS,
        batch: OPEN_BATCH,
      },
      60_000,
    );
  } finally {
    await stopClient(client);
  }
  await exported;
}

async function session(kind: Kind, connections: number, repeat: number): Promise<Session> {
  const label = `${kind} n=${connections} #${repeat}`;
  const result = emptySession(kind, connections, repeat);
  result.otherCpuPercent = await waitForIdleMachine(label);
  progress(`${label}: starting server`);
  const server = await startServer(kind, join(OUT, 'logs', `${kind}-${connections}-${repeat}.log`));
  const client = startClient(label);
  try {
    await warmUp(server, label);
    result.rssBeforeKb = await settledRssKb(server.pid);
    const opening = Date.now();
    await client.ask(
      { cmd: 'open', host: HOST, port: server.port, topic: TOPIC, count: connections, batch: OPEN_BATCH },
      180_000,
    );
    result.openMs = Date.now() - opening;
    const opened = await stats(client);
    result.opened = opened.open;
    result.failedToOpen = opened.failed;
    if (opened.failed > 0) progress(`${label}: ${opened.failed} connections failed (${opened.lastError})`);
    if (opened.open === 0) throw new Error(`no connection opened: ${opened.lastError}`);
    result.rssAfterKb = await settledRssKb(server.pid);
    result.rssPerConnectionKb = (result.rssAfterKb - result.rssBeforeKb) / opened.open;
    progress(
      `${label}: ${opened.open} idle connections, ${result.rssPerConnectionKb.toFixed(1)} KB RSS each`,
    );
    for (const rate of RATES(connections)) {
      const r = await undisturbed(label, () => phase(client, server, 'rate', rate, 1, PHASE_MS));
      result.rates.push(r);
      if (r.p99Ms > SATURATED_P99_MS) {
        progress(`  saturated: higher rates skipped`);
        break;
      }
    }
    // Shorter than a rate phase: a server that cannot keep up needs long to work off this backlog.
    const burstRate = (BURST_BATCH * 1000) / BURST_EVERY_MS;
    result.burst = await undisturbed(label, () =>
      phase(client, server, 'burst', burstRate, BURST_BATCH, PHASE_MS / 2),
    );
    result.rssAfterLoadKb = await settledRssKb(server.pid);
  } catch (error) {
    result.error = (error as Error).message;
    progress(`${label}: ${result.error}`);
  } finally {
    await stopClient(client);
    await stopServer(server);
  }
  return result;
}

// --- summary ------------------------------------------------------------------------------------------

interface Measure {
  eventsPerSec: number;
  /** Sessions in which this was measured; a rate above a saturated one is skipped. */
  runs: number;
  deliveriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuUsPerDelivery: number;
  /** nats-server CPU, % of a core (herald-jetstream only). */
  natsCpuPercent: number | null;
}

interface Summary {
  server: Kind;
  connections: number;
  sessions: number;
  rssPerConnectionKb: number;
  rates: Measure[];
  /** Deliveries/s at the highest rate whose median p99 ≤ P99_BUDGET_MS (null: none). */
  headlineDeliveriesPerSec: number | null;
  headlineEventsPerSec: number | null;
  /** The same with a looser budget, p99 ≤ SATURATED_P99_MS: what the server sustains at all. */
  sustainedDeliveriesPerSec: number | null;
  sustainedEventsPerSec: number | null;
  burst: Measure | null;
}

/** Medians over sessions; a skipped rate counts as over budget (p99 = ∞) with no throughput. */
function measure(eventsPerSec: number, runs: (PhaseResult | undefined)[]): Measure {
  const pick = (f: (r: PhaseResult) => number, missing: number) =>
    median(runs.map((r) => (r ? f(r) : missing)));
  return {
    eventsPerSec,
    runs: runs.filter((r) => r !== undefined).length,
    deliveriesPerSec: pick((r) => r.deliveriesPerSec, Number.NaN),
    p50Ms: pick((r) => r.p50Ms, Number.POSITIVE_INFINITY),
    p99Ms: pick((r) => r.p99Ms, Number.POSITIVE_INFINITY),
    serverCpuUsPerDelivery: pick((r) => r.serverCpuUsPerDelivery, Number.NaN),
    natsCpuPercent: runs.some((r) => r !== undefined && r.natsCpuPercent !== null)
      ? pick((r) => r.natsCpuPercent ?? Number.NaN, Number.NaN)
      : null,
  };
}

function summarise(kind: Kind, connections: number, sessions: Session[]): Summary {
  const ok = sessions.filter((s) => s.server === kind && s.connections === connections && s.opened > 0);
  const rates = RATES(connections).map((rate) =>
    measure(
      rate,
      ok.map((s) => s.rates.find((r) => r.eventsPerSec === rate)),
    ),
  );
  const best = rates.filter((r) => r.p99Ms <= P99_BUDGET_MS).at(-1);
  const sustained = rates.filter((r) => r.p99Ms <= SATURATED_P99_MS).at(-1);
  const bursts = ok.flatMap((s) => (s.burst === null ? [] : [s.burst]));
  return {
    server: kind,
    connections,
    sessions: ok.length,
    rssPerConnectionKb: median(ok.map((s) => s.rssPerConnectionKb)),
    rates,
    headlineDeliveriesPerSec: best?.deliveriesPerSec ?? null,
    headlineEventsPerSec: best?.eventsPerSec ?? null,
    sustainedDeliveriesPerSec: sustained?.deliveriesPerSec ?? null,
    sustainedEventsPerSec: sustained?.eventsPerSec ?? null,
    burst: bursts.length === 0 ? null : measure(bursts[0]!.eventsPerSec, bursts),
  };
}

/** deliveries/s, p50, p99, server µs per delivery; "skipped" when a lower rate already saturated. */
function cells(m: Measure | null | undefined, sessions: number): string[] {
  if (m === null || m === undefined) return ['–', '–', '–', '–'];
  if (m.runs === 0) return ['skipped', '', '', ''];
  const partial = m.runs < sessions ? '*' : '';
  return [fmt(m.deliveriesPerSec) + partial, ms(m.p50Ms), ms(m.p99Ms), one(m.serverCpuUsPerDelivery)];
}

const LETTER: Record<Kind, string> = {
  herald: 'H',
  'herald-observed': 'O',
  'herald-jetstream': 'J',
  reference: 'R',
};
/** The ratios worth printing: what JetStream costs against the embedded broker, and Herald against the reference. */
const PAIRS: [Kind, Kind][] = [
  ['herald-observed', 'herald'],
  ['herald-jetstream', 'herald'],
  ['herald', 'reference'],
];

function table(summaries: Summary[], kinds: Kind[]): string {
  const find = (kind: Kind, n: number) => summaries.find((s) => s.server === kind && s.connections === n);
  const pairs = PAIRS.filter(([a, b]) => kinds.includes(a) && kinds.includes(b));
  const pairName = ([a, b]: [Kind, Kind]) => `${LETTER[a]}/${LETTER[b]}`;
  const jetstream = kinds.includes('herald-jetstream');
  const heads = kinds.flatMap((k) =>
    ['deliv/s', 'p50', 'p99', 'µs/del']
      .map((h) => `${LETTER[k]} ${h}`)
      .concat(k === 'herald-jetstream' ? ['J nats'] : []),
  );
  const out = [
    kinds.map((k) => `${LETTER[k]} = ${k}`).join(', ') +
      (jetstream ? `; nats-server on the ${NATS_PLACEMENT}'s CPU` : ''),
    '',
    'Idle connections: server RSS per connection, KB',
    row(['connections', ...kinds, ...pairs.map(pairName)], 12, 18),
  ];
  for (const n of CONNECTIONS) {
    const rss = (k: Kind) => find(k, n)?.rssPerConnectionKb;
    out.push(
      row(
        [String(n), ...kinds.map((k) => one(rss(k))), ...pairs.map(([a, b]) => ratio(rss(a), rss(b)))],
        12,
        18,
      ),
    );
  }
  const group = (k: Kind, m: Measure | null | undefined, sessions: number) => {
    const c = cells(m, sessions);
    if (k !== 'herald-jetstream') return c;
    const nats = m?.natsCpuPercent;
    const shown =
      m === null || m === undefined || m.runs === 0 ? '' : known(nats) ? `${nats.toFixed(0)}%` : '–';
    return [...c, shown];
  };
  for (const n of CONNECTIONS) {
    out.push('', `Steady publish rate, ${n} connections`, row(['events/s', ...heads]));
    for (const rate of RATES(n)) {
      const at = (kind: Kind) => {
        const s = find(kind, n);
        return group(
          kind,
          s?.rates.find((m) => m.eventsPerSec === rate),
          s?.sessions ?? 0,
        );
      };
      out.push(row([String(rate), ...kinds.flatMap(at)]));
    }
  }
  const limits = [
    ['Headline', P99_BUDGET_MS, 'headlineDeliveriesPerSec', 'headlineEventsPerSec'],
    ['Sustained', SATURATED_P99_MS, 'sustainedDeliveriesPerSec', 'sustainedEventsPerSec'],
  ] as const;
  for (const [title, budget, deliveries, rate] of limits) {
    out.push('', `${title}: deliveries/s at the highest steady rate with p99 ≤ ${budget} ms`);
    out.push(row(['connections', ...kinds.flatMap((k) => [LETTER[k], 'at']), ...pairs.map(pairName)]));
    for (const n of CONNECTIONS) {
      const value = (s: Summary | undefined) =>
        s === undefined ? '–' : s[deliveries] === null ? 'none' : fmt(s[deliveries]);
      const at = (s: Summary | undefined) => (known(s?.[rate]) ? `${s[rate]}/s` : '');
      out.push(
        row([
          String(n),
          ...kinds.flatMap((k) => [value(find(k, n)), at(find(k, n))]),
          ...pairs.map(([a, b]) => ratio(find(a, n)?.[deliveries], find(b, n)?.[deliveries])),
        ]),
      );
    }
  }
  out.push(
    '',
    `Burst: ${BURST_BATCH} events in one POST every ${BURST_EVERY_MS} ms`,
    row([
      'connections',
      ...heads,
      ...pairs.map((p) => `del ${pairName(p)}`),
      ...pairs.map((p) => `µs ${pairName(p)}`),
    ]),
  );
  for (const n of CONNECTIONS) {
    const burst = (k: Kind) => find(k, n)?.burst;
    out.push(
      row([
        String(n),
        ...kinds.flatMap((k) => group(k, burst(k), find(k, n)?.sessions ?? 0)),
        ...pairs.map(([a, b]) => ratio(burst(a)?.deliveriesPerSec, burst(b)?.deliveriesPerSec)),
        ...pairs.map(([a, b]) => ratio(burst(a)?.serverCpuUsPerDelivery, burst(b)?.serverCpuUsPerDelivery)),
      ]),
    );
  }
  out.push(
    '',
    'Medians over sessions. µs/del: server CPU per delivery (for J the gateway alone). J nats: nats-server',
    'CPU, % of a core. sat.: saturated, i.e. more than that share of the deliveries had not arrived when the',
    `phase ended, or the rate was skipped because a lower one already had p99 > ${SATURATED_P99_MS} ms.`,
    '*: measured in fewer sessions than the others (the rest skipped it).',
  );
  return out.join('\n');
}

// --- main ---------------------------------------------------------------------------------------------

rmSync(join(OUT, 'logs'), { recursive: true, force: true });
mkdirSync(join(OUT, 'logs'), { recursive: true });
// In display order, whatever the order given.
const servers = KINDS.filter((kind) => {
  if (!SERVERS.includes(kind)) return false;
  if (kind !== 'reference' && !existsSync(GATEWAY)) {
    progress(`${GATEWAY} does not exist yet: ${kind} is not measured`);
    return false;
  }
  return true;
});
// Built (once, about a minute) before anything is timed.
if (servers.includes('herald-jetstream')) progress(`nats-server: ${natsServerPath()}`);
const stormKinds = servers.flatMap((k): StormKind[] =>
  k === 'reference' || k === 'herald-observed'
    ? []
    : k === 'herald-jetstream'
      ? [k, 'herald-jetstream-new-pod']
      : [k],
);
progress(
  `servers ${servers.join(', ')}; connections ${CONNECTIONS.join(', ')}; ${REPEATS} repeats; ` +
    (PIN === undefined
      ? 'not pinned (needs taskset and 2 CPUs)'
      : `server on CPU ${PIN[0]}, client + publisher on CPU ${PIN[1]}` +
        (servers.includes('herald-jetstream')
          ? `, nats-server on CPU ${PIN[NATS_PLACEMENT === 'client' ? 1 : 0]}`
          : '')) +
    (STORM_REPEATS > 0 && stormKinds.length > 0
      ? `; then ${STORM_REPEATS}× resume storms of ${STORM_CLIENTS} clients (rings ${STORM_RINGS.join(', ')})`
      : ''),
);
const sessions: Session[] = [];
for (const connections of STEADY ? CONNECTIONS : []) {
  for (let repeat = 1; repeat <= REPEATS; repeat++) {
    // Interleaved, so slow drift of the machine affects every server alike.
    for (const kind of servers) {
      const failedBefore = sessions.some((s) => s.server === kind && s.opened === 0);
      if (failedBefore) continue;
      try {
        sessions.push(await session(kind, connections, repeat));
      } catch (error) {
        progress(`${kind}: ${(error as Error).message}`);
        sessions.push({ ...emptySession(kind, connections, repeat), error: (error as Error).message });
      }
    }
  }
}
const storms: StormResult[] = [];
for (let repeat = 1; repeat <= STORM_REPEATS; repeat++) {
  for (const ringSize of STORM_RINGS) {
    for (const kind of stormKinds) storms.push(await storm(kind, ringSize, repeat));
  }
}

function emptySession(server: Kind, connections: number, repeat: number): Session {
  return {
    server,
    connections,
    repeat,
    opened: 0,
    failedToOpen: 0,
    openMs: 0,
    rssBeforeKb: 0,
    rssAfterKb: 0,
    rssPerConnectionKb: 0,
    rssAfterLoadKb: 0,
    rates: [],
    burst: null,
    otherCpuPercent: 0,
  };
}

const summaries = (STEADY ? CONNECTIONS : []).flatMap((n) =>
  servers.map((kind) => summarise(kind, n, sessions)),
);
const stormSummaries = summariseStorms(storms);
const results = {
  date: new Date().toISOString(),
  node: process.version,
  pinned: PIN ?? null,
  natsCpu: servers.includes('herald-jetstream') ? NATS_PLACEMENT : null,
  quick: QUICK,
  config: {
    connections: CONNECTIONS,
    repeats: REPEATS,
    phaseMs: PHASE_MS,
    burst: { everyMs: BURST_EVERY_MS, eventsPerPost: BURST_BATCH },
    p99BudgetMs: P99_BUDGET_MS,
    saturatedP99Ms: SATURATED_P99_MS,
    otherCpuLimitPercent: OTHER_CPU_LIMIT,
    storm: {
      clients: STORM_CLIENTS,
      span: STORM_SPAN,
      published: STORM_EVENTS,
      rings: STORM_RINGS,
      repeats: STORM_REPEATS,
    },
  },
  summaries,
  sessions,
  stormSummaries,
  storms,
};
writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 2) + '\n');
const phases = sessions.flatMap((s) => [...s.rates, ...(s.burst === null ? [] : [s.burst])]);
const disturbed = phases.filter((p) => p.otherCpuPercent > OTHER_CPU_LIMIT).length;
const disturbedStorms = storms.filter((s) => s.otherCpuPercent > OTHER_CPU_LIMIT).length;
const clientBound = phases.filter((p) => (p.clientCoreBusyPercent ?? 0) > CLIENT_CORE_SATURATED).length;
const failed = sessions.filter((s) => s.error !== undefined);
let notes = '';
if (disturbed + disturbedStorms > 0) {
  notes += `\nWARNING: in ${disturbed} of ${phases.length} phases and ${disturbedStorms} of ${storms.length} storms`;
  notes += ` other processes used > ${OTHER_CPU_LIMIT}% CPU even after repeats; those numbers are skewed`;
  notes += ' (otherCpuPercent in results.json).\n';
}
if (clientBound > 0) {
  notes += `\nNOTE: in ${clientBound} of ${phases.length} phases the client's core was > ${CLIENT_CORE_SATURATED}% busy;`;
  notes +=
    ' there the client, not the server, may set the figures (clientCoreBusyPercent in results.json).\n';
}
for (const s of failed)
  notes += `\nWARNING: ${s.server} n=${s.connections} #${s.repeat} failed: ${s.error}\n`;
for (const s of storms.filter((s) => s.error !== undefined))
  notes += `\nWARNING: storm ${s.kind} ring ${s.ringSize} #${s.repeat} failed: ${s.error}\n`;
process.stdout.write(
  (STEADY ? table(summaries, servers) + '\n' : '') + stormTable(stormSummaries) + '\n' + notes,
);
progress(`done in ${elapsedS().toFixed(0)} s; results in ${join(OUT, 'results.json')}`);
finish();
