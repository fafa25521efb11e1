/**
 * The resume storm: a gateway holding a history of events takes thousands of reconnecting clients
 * at once, each with a `Last-Event-ID` somewhere in the recent history, and must send each of them
 * every event it missed. Measured: how long until 99 % of them are caught up, how many events/s
 * the resume paths serve (the in-memory ring and the broker's log), and whether anyone got
 * `herald.reset`, a duplicate or an event out of order.
 *
 * One storm: a fresh gateway (and nats-server), `published` events over four topics, one probe
 * stream to see the gateway's live feed reach the newest event, then `clients` streams on
 * `bench.>`, their cursors spread uniformly over the last `span` events (shuffled, so ring and log
 * resumes arrive mixed), opened in batches of 500 as fast as the gateway answers them.
 */
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Client,
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
  progress,
  QUICK,
  row,
  rssKb,
  startClient,
  stopClient,
  waitForIdleMachine,
} from './lib.ts';
import { cpuMeter, replaceGateway, type Server, startServer, stopServer } from './servers.ts';
import type { StormReport, StormStats } from './shared.ts';

/**
 * `herald-jetstream-new-pod`: the gateway that takes the storm was started after the events were
 * stored, as when clients move over from a pod that went away; its ring holds what it loaded from
 * JetStream at start.
 */
export type StormKind = 'herald' | 'herald-jetstream' | 'herald-jetstream-new-pod';

export const STORM_CLIENTS = int('BENCH_STORM_CLIENTS', QUICK ? 150 : 5000);
export const STORM_SPAN = int('BENCH_STORM_SPAN', QUICK ? 5000 : 10_000);
/** Events published before the storm: the span plus some older history. */
export const STORM_EVENTS = STORM_SPAN + Math.max(1000, Math.round(STORM_SPAN / 5));
/** Ring sizes (HERALD_RING_SIZE) to storm with: the default, and 16 to send every resume to the log. */
export const STORM_RINGS = intList('BENCH_STORM_RINGS', [16_384, 16]);
/** 0 skips the storms. */
export const STORM_REPEATS = process.env['BENCH_STORM_REPEATS'] === '0' ? 0 : int('BENCH_STORM_REPEATS', 1);
const STORM_TOPICS = ['bench.a', 'bench.b', 'bench.c', 'bench.d'];
const STORM_PATTERN = 'bench.>';
const PUBLISH_BATCH = 100; // HERALD_MAX_BATCH's default
const PUBLISH_CONCURRENCY = 4;
const OPEN_BATCH = 500;
/** The storm ends when every client is caught up, or nothing arrived for this long, or at the cap. */
const STALL_MS = 10_000;
export const STORM_CAP_MS = int('BENCH_STORM_CAP_MS', QUICK ? 20_000 : 60_000);
/** The target from the issue. */
export const STORM_TARGET_MS = 5000;

interface ClassResult {
  clients: number;
  /** Events these clients received. */
  events: number;
  /** Time until 99 % of them (all of them) were caught up; ∞ when they never were. */
  p99Ms: number;
  maxMs: number;
  /** Their events over the time until the last of them was caught up (or the storm ended). */
  eventsPerSec: number;
}

export interface StormResult {
  kind: StormKind;
  ringSize: number;
  repeat: number;
  clients: number;
  published: number;
  last: number;
  span: number;
  opened: number;
  failed: number;
  closed: number;
  /** Time until 99 % (all) of the response heads arrived. */
  headP99Ms: number;
  headMaxMs: number;
  caughtUp: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  events: number;
  expectedEvents: number;
  eventsPerSec: number;
  /** When not every client caught up: the time all would have needed at the storm's average rate. */
  projectedAllMs: number | null;
  /** Clients whose cursor the ring holds (seq ≥ newest − ring size), and the rest, served from the log. */
  ring: ClassResult;
  log: ClassResult;
  resets: number;
  disorder: number;
  extra: number;
  /** From the first connection until the storm ended. */
  wallMs: number;
  gatewayCpuMs: number;
  /** The gateway's largest RSS seen during the storm (sampled every 100 ms). */
  gatewayPeakRssMb: number;
  natsCpuMs: number | null;
  clientCpuPercent: number;
  serverCoreBusyPercent: number | null;
  clientCoreBusyPercent: number | null;
  otherCpuPercent: number;
  error?: string;
}

/** Deterministic shuffle (mulberry32), so every storm opens its cursors in the same mixed order. */
function shuffle<T>(items: T[], seed: number): T[] {
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function postJson(agent: Agent, port: number, body: string): Promise<{ status: number; text: string }> {
  return new Promise((done, fail) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = request({ host: HOST, port, path: '/v1/publish', method: 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => done({ status: res.statusCode ?? 0, text }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('publish: no answer within 30 s')));
    req.on('error', fail);
    req.end(body);
  });
}

/** Publishes `count` events over the storm topics; returns the epoch and the newest sequence. */
async function fill(port: number, count: number): Promise<{ epoch: string; last: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: PUBLISH_CONCURRENCY });
  let epoch = '';
  let last = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = Math.min(PUBLISH_BATCH, count - next);
      const first = next;
      next += n;
      const messages = Array.from({ length: n }, (_, i) => ({
        topic: STORM_TOPICS[(first + i) % STORM_TOPICS.length]!,
        data: JSON.stringify({ p: 0, t: now() }),
      }));
      const { status, text } = await postJson(agent, port, JSON.stringify({ messages }));
      if (status !== 200) throw new Error(`publish answered ${status}: ${text.slice(0, 300)}`);
      for (const { id } of (JSON.parse(text) as { results: { id: string }[] }).results) {
        const dash = id.lastIndexOf('-');
        epoch = id.slice(0, dash);
        last = Math.max(last, Number(id.slice(dash + 1)));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: PUBLISH_CONCURRENCY }, worker));
  } finally {
    agent.destroy();
  }
  return { epoch, last };
}

/**
 * Waits (bounded) until the gateway's live feed has reached `last`: a JetStream publish is
 * acknowledged before the gateway's consumer delivers it, and a cursor beyond what the gateway has
 * seen would be answered with a reset (`ahead`). A fresh stream starts with an id-only frame at the
 * gateway's newest sequence, then live events.
 */
function reachHead(port: number, last: number): Promise<void> {
  return new Promise((done, fail) => {
    const path = `/v1/stream?topic=${encodeURIComponent(STORM_PATTERN)}`;
    const req = request({ host: HOST, port, path, headers: { accept: 'text/event-stream' } }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => {
        text = (text + chunk).slice(-4096);
        for (const m of text.matchAll(/^id: [^\n]*-(\d+)$/gm)) {
          if (Number(m[1]) >= last) {
            clearTimeout(timer);
            req.destroy();
            done();
          }
        }
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      fail(new Error(`the gateway's feed did not reach sequence ${last} within 30 s`));
    }, 30_000);
    req.on('error', (error) => {
      clearTimeout(timer);
      fail(error);
    });
    req.end();
  });
}

async function stormStats(client: Client): Promise<StormStats> {
  const reply = await client.ask({ cmd: 'stormStats' });
  if (reply.type !== 'stormStats') throw new Error('unexpected client reply');
  return reply;
}

/** The q-quantile of times where -1 means never (∞), over all of them. */
function quantile(times: number[], q: number): number {
  if (times.length === 0) return Number.NaN;
  const sorted = times.map((t) => (t < 0 ? Number.POSITIVE_INFINITY : t)).sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

function classOf(report: StormReport, members: number[], endMs: number): ClassResult {
  const times = members.map((i) => report.doneMs[i]!);
  const events = members.reduce((sum, i) => sum + report.events[i]!, 0);
  const maxMs = quantile(times, 1);
  const windowMs = Number.isFinite(maxMs) ? maxMs : endMs;
  return {
    clients: members.length,
    events,
    p99Ms: quantile(times, 0.99),
    maxMs,
    eventsPerSec: members.length === 0 || windowMs <= 0 ? Number.NaN : (events * 1000) / windowMs,
  };
}

function emptyStorm(kind: StormKind, ringSize: number, repeat: number): StormResult {
  const none: ClassResult = { clients: 0, events: 0, p99Ms: Number.NaN, maxMs: Number.NaN, eventsPerSec: 0 };
  return {
    kind,
    ringSize,
    repeat,
    clients: STORM_CLIENTS,
    published: 0,
    last: 0,
    span: STORM_SPAN,
    opened: 0,
    failed: 0,
    closed: 0,
    headP99Ms: Number.NaN,
    headMaxMs: Number.NaN,
    caughtUp: 0,
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    maxMs: Number.NaN,
    events: 0,
    expectedEvents: 0,
    eventsPerSec: 0,
    projectedAllMs: null,
    ring: none,
    log: { ...none },
    resets: 0,
    disorder: 0,
    extra: 0,
    wallMs: 0,
    gatewayCpuMs: 0,
    gatewayPeakRssMb: 0,
    natsCpuMs: null,
    clientCpuPercent: 0,
    serverCoreBusyPercent: null,
    clientCoreBusyPercent: null,
    otherCpuPercent: 0,
  };
}

export async function storm(kind: StormKind, ringSize: number, repeat: number): Promise<StormResult> {
  const label = `storm ${kind} ring=${ringSize} #${repeat}`;
  const result = emptyStorm(kind, ringSize, repeat);
  await waitForIdleMachine(label);
  progress(`${label}: starting server`);
  let server: Server | undefined;
  let client: Client | undefined;
  try {
    const logFile = join(OUT, 'logs', `storm-${kind}-ring${ringSize}-${repeat}.log`);
    const serverKind = kind === 'herald-jetstream-new-pod' ? 'herald-jetstream' : kind;
    server = await startServer(serverKind, logFile, { HERALD_RING_SIZE: String(ringSize) });
    const { epoch, last } = await fill(server.port, STORM_EVENTS);
    result.published = STORM_EVENTS;
    result.last = last;
    await reachHead(server.port, last);
    progress(`${label}: ${STORM_EVENTS} events published (newest ${epoch}-${last})`);
    if (kind === 'herald-jetstream-new-pod') {
      await replaceGateway(server, logFile.replace(/\.log$/, '-new.log'));
      progress(`${label}: replaced the gateway with a new one (ready: its ring is loaded)`);
    }
    const span = Math.min(STORM_SPAN, last);
    const order = shuffle(
      Array.from({ length: STORM_CLIENTS }, (_, i) => i),
      repeat,
    );
    const cursors = order.map((i) => last - span + Math.floor((i * span) / STORM_CLIENTS));
    result.expectedEvents = cursors.reduce((sum, c) => sum + (last - c), 0);
    client = startClient(label);
    const meter = cpuMeter(server, client.child.pid!);
    const opening = client
      .ask(
        {
          cmd: 'storm',
          host: HOST,
          port: server.port,
          topic: STORM_PATTERN,
          epoch,
          last,
          cursors,
          batch: OPEN_BATCH,
        },
        STORM_CAP_MS + 60_000,
      )
      .then(
        () => undefined,
        (error: Error) => error,
      );
    let opened = false;
    void opening.then(() => {
      opened = true;
    });
    const start = Date.now();
    let seen = -1;
    let changedAt = Date.now();
    let shownAt = Date.now();
    let s: StormStats;
    let peakRssKb = 0;
    for (;;) {
      await sleep(100);
      peakRssKb = Math.max(peakRssKb, rssKb(server.pid));
      s = await stormStats(client);
      if (s.done + s.failed >= STORM_CLIENTS) break;
      if (s.received + s.resets + s.failed !== seen) {
        seen = s.received + s.resets + s.failed;
        changedAt = Date.now();
      } else if (opened && Date.now() - changedAt > STALL_MS) {
        progress(`${label}: nothing arrived for ${STALL_MS / 1000} s; stopping`);
        break;
      }
      if (Date.now() - start > STORM_CAP_MS) {
        progress(`${label}: not caught up within ${STORM_CAP_MS / 1000} s; stopping`);
        break;
      }
      if (Date.now() - shownAt >= 2000) {
        shownAt = Date.now();
        progress(
          `${label}: ${s.open} open, ${s.done}/${STORM_CLIENTS} caught up, ` +
            `${fmt(s.received)} of ${fmt(result.expectedEvents)} events` +
            (s.resets + s.failed + s.closed > 0
              ? `, ${s.resets} resets, ${s.failed} failed, ${s.closed} closed`
              : ''),
        );
      }
    }
    const used = meter();
    const wallMs = used.wallMs;
    const openError = opened ? await opening : undefined;
    if (openError !== undefined) throw openError;
    const reply = await client.ask({ cmd: 'stormReport' }, 30_000);
    if (reply.type !== 'stormReport') throw new Error('unexpected client reply');
    const report: StormReport = reply;
    const endMs = now() - report.startAt;
    const all = cursors.map((_, i) => i);
    const ringFloor = last - ringSize;
    Object.assign(result, {
      opened: report.open + report.closed,
      failed: report.failed,
      closed: report.closed,
      headP99Ms: quantile(report.headMs, 0.99),
      headMaxMs: quantile(report.headMs, 1),
      caughtUp: report.done,
      p50Ms: quantile(report.doneMs, 0.5),
      p99Ms: quantile(report.doneMs, 0.99),
      maxMs: quantile(report.doneMs, 1),
      events: report.received,
      eventsPerSec: classOf(report, all, endMs).eventsPerSec,
      projectedAllMs:
        report.done === STORM_CLIENTS || report.received === 0
          ? null
          : (endMs * result.expectedEvents) / report.received,
      ring: classOf(
        report,
        all.filter((i) => cursors[i]! >= ringFloor),
        endMs,
      ),
      log: classOf(
        report,
        all.filter((i) => cursors[i]! < ringFloor),
        endMs,
      ),
      resets: report.resets,
      disorder: report.disorder,
      extra: report.extra,
      wallMs,
      gatewayCpuMs: used.serverMs,
      gatewayPeakRssMb: peakRssKb / 1024,
      natsCpuMs: used.natsMs,
      clientCpuPercent: (100 * used.clientMs) / wallMs,
      serverCoreBusyPercent: used.serverCoreBusyPercent,
      clientCoreBusyPercent: used.clientCoreBusyPercent,
      otherCpuPercent: (100 * used.othersMs) / wallMs,
    } satisfies Partial<StormResult>);
    const r = result;
    progress(
      `${label}: ${r.caughtUp}/${r.clients} caught up; p50 ${ms(r.p50Ms)}, p99 ${ms(r.p99Ms)}, ` +
        `all ${ms(r.maxMs)}` +
        (r.projectedAllMs === null ? '' : ` (≈ ${(r.projectedAllMs / 1000).toFixed(0)} s at this rate)`) +
        `; ${fmt(r.eventsPerSec)} events/s (ring ${r.ring.clients} clients ` +
        `${fmt(r.ring.eventsPerSec)}/s, log ${r.log.clients} clients ${fmt(r.log.eventsPerSec)}/s) | ` +
        `gateway ${(r.gatewayCpuMs / 1000).toFixed(1)} s CPU` +
        (r.serverCoreBusyPercent === null ? '' : ` (its core ${r.serverCoreBusyPercent.toFixed(0)}%)`) +
        `, ${r.gatewayPeakRssMb.toFixed(0)} MB peak RSS` +
        (r.natsCpuMs === null ? '' : `, nats ${(r.natsCpuMs / 1000).toFixed(1)} s CPU`) +
        `, client ${r.clientCpuPercent.toFixed(0)}%` +
        (r.clientCoreBusyPercent === null ? '' : ` (its core ${r.clientCoreBusyPercent.toFixed(0)}%)`) +
        (r.resets + r.disorder + r.extra + r.failed + r.closed > 0
          ? ` | ${r.resets} resets, ${r.disorder} out of order, ${r.extra} extra, ${r.failed} failed, ${r.closed} closed`
          : '') +
        (r.otherCpuPercent > OTHER_CPU_LIMIT
          ? ` | other processes used ${r.otherCpuPercent.toFixed(0)}%`
          : ''),
    );
  } catch (error) {
    result.error = (error as Error).message;
    progress(`${label}: ${result.error}`);
  } finally {
    if (client !== undefined) await stopClient(client);
    if (server !== undefined) await stopServer(server);
  }
  return result;
}

// --- summary ------------------------------------------------------------------------------------------

export interface StormSummary {
  kind: StormKind;
  ringSize: number;
  storms: number;
  /** Medians over the storms of the fields below. */
  headP99Ms: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  projectedAllMs: number | null;
  /** Share of clients caught up when the storm ended (median). */
  caughtUpPercent: number;
  eventsPerSec: number;
  ringClients: number;
  ringP99Ms: number;
  ringEventsPerSec: number;
  logClients: number;
  logP99Ms: number;
  logEventsPerSec: number;
  gatewayCpuMs: number;
  gatewayPeakRssMb: number;
  natsCpuMs: number | null;
  /** Totals over the storms. */
  resets: number;
  disorder: number;
  extra: number;
  failed: number;
  notCaughtUp: number;
}

export function summariseStorms(results: StormResult[]): StormSummary[] {
  const variants = [...new Set(results.map((r) => `${r.kind} ${r.ringSize}`))];
  return variants.map((v) => {
    const runs = results.filter((r) => `${r.kind} ${r.ringSize}` === v && r.error === undefined);
    const first = results.find((r) => `${r.kind} ${r.ringSize}` === v)!;
    const m = (f: (r: StormResult) => number) => median(runs.map(f));
    const sum = (f: (r: StormResult) => number) => runs.reduce((total, r) => total + f(r), 0);
    return {
      kind: first.kind,
      ringSize: first.ringSize,
      storms: runs.length,
      headP99Ms: m((r) => r.headP99Ms),
      p50Ms: m((r) => r.p50Ms),
      p99Ms: m((r) => r.p99Ms),
      maxMs: m((r) => r.maxMs),
      projectedAllMs: runs.some((r) => r.projectedAllMs !== null)
        ? m((r) => r.projectedAllMs ?? r.maxMs)
        : null,
      caughtUpPercent: m((r) => (100 * r.caughtUp) / r.clients),
      eventsPerSec: m((r) => r.eventsPerSec),
      ringClients: m((r) => r.ring.clients),
      ringP99Ms: m((r) => r.ring.p99Ms),
      ringEventsPerSec: m((r) => r.ring.eventsPerSec),
      logClients: m((r) => r.log.clients),
      logP99Ms: m((r) => r.log.p99Ms),
      logEventsPerSec: m((r) => r.log.eventsPerSec),
      gatewayCpuMs: m((r) => r.gatewayCpuMs),
      gatewayPeakRssMb: m((r) => r.gatewayPeakRssMb),
      natsCpuMs: first.kind === 'herald' ? null : m((r) => r.natsCpuMs ?? Number.NaN),
      resets: sum((r) => r.resets),
      disorder: sum((r) => r.disorder),
      extra: sum((r) => r.extra),
      failed: sum((r) => r.failed),
      notCaughtUp: sum((r) => r.clients - r.caughtUp),
    };
  });
}

const seconds = (n: number | null): string => (known(n) ? `${(n / 1000).toFixed(1)}s` : '–');
const broker = (kind: StormKind) =>
  kind === 'herald' ? 'memory' : kind === 'herald-jetstream' ? 'jetstream' : 'js new pod';

export function stormTable(summaries: StormSummary[]): string {
  if (summaries.length === 0) return '';
  const out = [
    '',
    `Resume storm: ${STORM_CLIENTS} clients at once on ${STORM_PATTERN}, cursors uniform over the last ` +
      `${STORM_SPAN} of ${STORM_EVENTS} events; stopped after ${STORM_CAP_MS / 1000} s`,
    row(
      [
        'broker',
        'ring',
        'heads p99',
        'p50',
        'p99',
        'all',
        'caught up',
        `p99≤${STORM_TARGET_MS / 1000}s`,
        'events/s',
      ],
      10,
    ),
  ];
  for (const s of summaries) {
    const met = s.storms === 0 ? '–' : known(s.p99Ms) && s.p99Ms <= STORM_TARGET_MS ? 'yes' : 'no';
    const all = known(s.maxMs)
      ? seconds(s.maxMs)
      : known(s.projectedAllMs)
        ? `≈${seconds(s.projectedAllMs)}`
        : '–';
    out.push(
      row(
        [
          broker(s.kind),
          String(s.ringSize),
          seconds(s.headP99Ms),
          seconds(s.p50Ms),
          seconds(s.p99Ms),
          all,
          known(s.caughtUpPercent) ? `${s.caughtUpPercent.toFixed(0)}%` : '–',
          met,
          fmt(s.eventsPerSec),
        ],
        10,
      ),
    );
  }
  out.push(
    '',
    'Resume paths: clients resuming from the ring (cursor within the ring) and from the log',
    row(
      [
        'broker',
        'ring',
        'ring cl.',
        'ring p99',
        'ring ev/s',
        'log cl.',
        'log p99',
        'log ev/s',
        'gw CPU',
        'gw RSS',
        'nats CPU',
      ],
      10,
    ),
  );
  for (const s of summaries) {
    out.push(
      row(
        [
          broker(s.kind),
          String(s.ringSize),
          fmt(s.ringClients),
          seconds(s.ringP99Ms),
          fmt(s.ringEventsPerSec),
          fmt(s.logClients),
          seconds(s.logP99Ms),
          fmt(s.logEventsPerSec),
          seconds(s.gatewayCpuMs),
          known(s.gatewayPeakRssMb) ? `${s.gatewayPeakRssMb.toFixed(0)}MB` : '–',
          seconds(s.natsCpuMs),
        ],
        10,
      ),
    );
  }
  const problems = summaries.filter((s) => s.resets + s.disorder + s.extra + s.failed > 0);
  out.push(
    '',
    'Times from the first connection. p50/p99/all: until that share of the clients had every event after',
    'its cursor; – when it was not reached before the storm stopped (≈: the time all would have needed at',
    'the average rate). ev/s: events those clients received ÷ time until the last of them was caught up',
    '(or the storm stopped). gw CPU: gateway CPU time during the storm; gw RSS: its peak.',
    ...(problems.length === 0
      ? ['No client got herald.reset, a duplicate or an event out of order.']
      : problems.map(
          (s) =>
            `WARNING: ${broker(s.kind)} ring ${s.ringSize}: ${s.resets} resets, ${s.disorder} out of order, ` +
            `${s.extra} extra events, ${s.failed} failed to open (over ${s.storms} storms)`,
        )),
  );
  return out.join('\n');
}
