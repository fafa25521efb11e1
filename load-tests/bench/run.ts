/**
 * `make bench`: Herald's gateway against a minimal node:http SSE server (reference-server.ts), same
 * machine, same run, same client. For each server and connection count it measures memory per idle
 * connection, deliveries/s and publish-to-receive latency at steady publish rates, and a burst
 * scenario; every session is repeated and medians are reported, with Herald/reference ratios.
 *
 * Environment: BENCH_QUICK=1 (smoke run), BENCH_CONNECTIONS=1000,10000, BENCH_SERVERS=herald,reference,
 * BENCH_REPEATS=3, BENCH_PHASE_MS, BENCH_RATES=1,5,10 (events/s, overrides the per-N default),
 * BENCH_BURST_BATCH=5. Results: .bench/results.json; server logs: .bench/logs/.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { bucketValue, type Command, type Reply, type Report, type Stats } from './shared.ts';

type Kind = 'herald' | 'reference';
type WithoutId<C> = C extends unknown ? Omit<C, 'id'> : never;
type Ask = WithoutId<Command>;

const ROOT = resolve(import.meta.dirname, '../..');
const OUT = join(ROOT, '.bench');
const GATEWAY = join(ROOT, 'services/gateway/src/main.ts');
const REFERENCE = join(import.meta.dirname, 'reference-server.ts');
const CLIENT = join(import.meta.dirname, 'client.ts');
const HOST = '127.0.0.1';
const TOPIC = 'bench';

function intList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const list = raw.split(',').map(Number);
  if (!list.every((n) => Number.isSafeInteger(n) && n > 0))
    throw new Error(`${name}: expected positive integers`);
  return list;
}
const int = (name: string, fallback: number): number => intList(name, [fallback])[0]!;

const QUICK = process.env['BENCH_QUICK'] === '1';
const CONNECTIONS = intList('BENCH_CONNECTIONS', QUICK ? [200] : [1000, 10_000]);
const SERVERS = (process.env['BENCH_SERVERS'] ?? 'herald,reference').split(',') as Kind[];
if (!SERVERS.every((s) => s === 'herald' || s === 'reference'))
  throw new Error('BENCH_SERVERS: herald,reference');
// One client process holds every connection, and so does the server: both need a file each.
const FILE_LIMIT = Number(spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout);
if (CONNECTIONS.some((n) => n + 100 > FILE_LIMIT)) {
  throw new Error(
    `BENCH_CONNECTIONS: the open-file limit here is ${FILE_LIMIT}; use at most ${FILE_LIMIT - 100}`,
  );
}
const REPEATS = int('BENCH_REPEATS', 3);
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
const MAX_IN_FLIGHT = 256;
const DRAIN_QUIET_MS = 1000;
const DRAIN_CAP_MS = QUICK ? 5000 : 15_000;
/** A phase during which other processes used more CPU than this (% of a core) is repeated, a bounded number of times. */
const OTHER_CPU_LIMIT = 15;
const PHASE_ATTEMPTS = 3;

const startedAt = Date.now();
const now = (): number => performance.timeOrigin + performance.now();
function progress(message: string): void {
  process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${message}\n`);
}

// --- processes -------------------------------------------------------------------------------------

/** The first two CPUs this process may use: the server gets one to itself, client and publisher the other. */
function cpus(): [number, number] | undefined {
  const list = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const all = list.split(',').flatMap((range) => {
    const [a, b = a] = range.split('-').map(Number);
    return a === undefined || b === undefined ? [] : Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
  const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  return hasTaskset && all.length > 1 ? [all[0]!, all[1]!] : undefined;
}
const PIN = cpus();
// The publisher runs in this process: keep it off the server's core too.
if (PIN !== undefined)
  spawnSync('taskset', ['-a', '-p', '-c', String(PIN[1]), String(process.pid)], { stdio: 'ignore' });

// Servers must not outlive this process, even when it is killed without running its handlers
// (SIGKILL): a tiny reaper holds a pipe from us and kills whatever is registered when it closes.
const REAPER = `
const pids = new Set();
let rest = '';
process.stdin.on('data', (chunk) => {
  const lines = (rest + chunk).split('\\n');
  rest = lines.pop();
  for (const line of lines) (line[0] === '+' ? pids.add : pids.delete).call(pids, Number(line.slice(1)));
});
process.stdin.on('end', () => {
  for (const pid of pids) try { process.kill(pid, 'SIGKILL'); } catch {}
});`;
const reaper = spawn(process.execPath, ['-e', REAPER], { stdio: ['pipe', 'ignore', 'ignore'] });

const children = new Set<ChildProcess>();
function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    progress(`${signal}: stopping`);
    killAll();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/** Runs a Node script with the open-file soft limit raised to the hard one, pinned to a CPU when possible. */
function launch(args: string[], cpu: number | undefined, options: Parameters<typeof spawn>[2]): ChildProcess {
  const pin = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  // exec all the way down, so the child's pid is node's own (its /proc/<pid>/status is what we read).
  const script = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
  const command = [...pin, process.execPath, '--conditions=herald-source', ...args];
  const child = spawn('bash', ['-c', script, 'bench', ...command], { cwd: ROOT, ...options });
  children.add(child);
  reaper.stdin?.write(`+${child.pid}\n`);
  child.once('exit', () => {
    children.delete(child);
    reaper.stdin?.write(`-${child.pid}\n`);
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  if ((await Promise.race([exited, sleep(3000, 'timeout')])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address !== null ? done(address.port) : fail()));
    });
  });
}

function get(port: number, path: string): Promise<number> {
  return new Promise((done) => {
    const req = request({ host: HOST, port, path, timeout: 1000 }, (res) => {
      res.resume();
      done(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(0));
    req.end();
  });
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-15).join('\n') : '';
}

interface Server {
  child: ChildProcess;
  pid: number;
  port: number;
}

async function startServer(kind: Kind, logFile: string): Promise<Server> {
  const log = openSync(logFile, 'w');
  let child: ChildProcess;
  let port: number;
  try {
    if (kind === 'reference') {
      // Port 0 and read back: no race for the port.
      child = launch([REFERENCE, '0'], PIN?.[0], { stdio: ['ignore', 'pipe', log] });
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
      // The benchmark sets the whole configuration: inherited HERALD_* variables (HERALD_CACHE is
      // tools/node.sh's) would change it, or stop the gateway, which refuses unknown ones.
      const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('HERALD_'));
      const env = {
        ...Object.fromEntries(inherited),
        HERALD_PORT: String(port),
        HERALD_HOST: HOST,
        HERALD_BROKER: 'memory',
        HERALD_HEARTBEAT_MS: '15000',
        // Stop at once when the session ends: draining is not what is measured.
        HERALD_DRAIN_MS: '0',
      };
      child = launch([GATEWAY], PIN?.[0], { env, stdio: ['ignore', log, log] });
    }
  } finally {
    closeSync(log);
  }
  const deadline = Date.now() + 30_000;
  while ((await get(port, '/readyz')) !== 200) {
    if (child.exitCode !== null) throw new Error(`${kind} exited (${child.exitCode}):\n${tail(logFile)}`);
    if (Date.now() > deadline) {
      await stop(child);
      throw new Error(`${kind} /readyz not 200 within 30 s:\n${tail(logFile)}`);
    }
    await sleep(100);
  }
  return { child, pid: child.pid!, port };
}

function rssKb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

const TICK_MS = 1000 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100);
/** CPU time (user + system) a process has used so far. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After the parenthesised command name: state is field 3, utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** Busy and total CPU time of the whole machine (or one CPU), in ticks, from /proc/stat. */
function cpuTicks(cpu = ''): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = (line ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/**
 * Time the whole run may spend waiting out other processes (idle waits and repeated phases), so a
 * busy machine cannot stretch it without bound. Returns whether any is left after `spentMs`.
 */
let patienceMs = QUICK ? 15_000 : 150_000;
function patient(spentMs: number): boolean {
  return patienceMs - spentMs > 0;
}
function spend(ms: number): void {
  patienceMs -= ms;
}

/**
 * CPU time used so far by every process except ours and kernel threads, counting what exited
 * processes left in their parent's cutime/cstime, so the total carries over exits.
 */
function othersCpuMs(ours: readonly number[]): number {
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || ours.includes(Number(name))) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile: its parent's cutime has it now
    }
    // Fields from 3 (state) on: flags is field 9, utime/stime/cutime/cstime are 14 to 17.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if ((Number(f[6]) & PF_KTHREAD) !== 0) continue;
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks * TICK_MS;
}
const PF_KTHREAD = 0x200000;

/**
 * The benchmark needs the machine to itself: before each session, wait (bounded) until other
 * processes are quiet, and record what they used, so a skewed session can be recognised.
 */
async function waitForIdleMachine(label: string): Promise<number> {
  const start = Date.now();
  let shown = 0;
  for (;;) {
    const before = othersCpuMs([process.pid]);
    await sleep(500);
    const busy = (othersCpuMs([process.pid]) - before) / 5;
    if (busy < OTHER_CPU_LIMIT) {
      spend(Date.now() - start);
      return busy;
    }
    if (!patient(Date.now() - start)) {
      spend(Date.now() - start);
      progress(`${label}: other processes still use ${busy.toFixed(0)}% CPU; measuring anyway`);
      return busy;
    }
    if (Date.now() - shown > 5000) {
      shown = Date.now();
      progress(`${label}: other processes use ${busy.toFixed(0)}% CPU; waiting for a quiet machine`);
    }
  }
}

/** RSS once two readings 250 ms apart agree within 0.2 % (allocation after a burst of work settles). */
async function settledRssKb(pid: number): Promise<number> {
  let previous = rssKb(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const current = rssKb(pid);
    if (Math.abs(current - previous) <= Math.max(64, previous * 0.002)) return current;
    previous = current;
  }
  return previous;
}

interface Client {
  child: ChildProcess;
  ask<C extends Ask>(command: C, timeoutMs?: number): Promise<Reply & { id: number }>;
}

function startClient(label: string): Client {
  const child = launch([CLIENT], PIN?.[1], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // undefined: the client exited before it answered.
  const waiting = new Map<number, (reply: (Reply & { id: number }) | undefined) => void>();
  let nextId = 0;
  let lastShown = 0;
  child.once('exit', () => {
    for (const answer of waiting.values()) answer(undefined);
  });
  child.on('message', (reply: Reply) => {
    if (reply.type === 'progress') {
      if (reply.open - lastShown >= 2000 || reply.open + reply.failed >= reply.target) {
        lastShown = reply.open;
        progress(`${label}: ${reply.open}/${reply.target} connections open, ${reply.failed} failed`);
      }
    } else waiting.get(reply.id)?.(reply);
  });
  return {
    child,
    ask(command, timeoutMs = 10_000) {
      const id = ++nextId;
      return new Promise((done, fail) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          fail(new Error(`client did not answer ${command.cmd} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, (reply) => {
          clearTimeout(timer);
          waiting.delete(id);
          if (reply === undefined) fail(new Error('client exited'));
          else done(reply);
        });
        child.send({ ...command, id });
      });
    },
  };
}

async function stats(client: Client): Promise<Stats> {
  const reply = await client.ask({ cmd: 'stats' });
  if (reply.type !== 'stats') throw new Error('unexpected client reply');
  return reply;
}

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
  const serverCore = PIN === undefined ? undefined : String(PIN[0]);
  const ours = [server.pid, client.child.pid!, process.pid];
  const cpuBefore = {
    server: cpuMs(server.pid),
    client: cpuMs(client.child.pid!),
    others: othersCpuMs(ours),
    core: cpuTicks(serverCore),
    at: now(),
  };
  const sent = await publish(server.port, id, ticks, everyMs, batch);
  const expected = sent.published * before.open;
  await drain(client, expected);
  const report = await client.ask({ cmd: 'report' });
  if (report.type !== 'report') throw new Error('unexpected client reply');
  const cpuWallMs = now() - cpuBefore.at;
  const serverCpu = cpuMs(server.pid) - cpuBefore.server;
  const clientCpu = cpuMs(client.child.pid!) - cpuBefore.client;
  const coreAfter = cpuTicks(serverCore);
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
    serverCpuPercent: (100 * serverCpu) / cpuWallMs,
    serverCoreBusyPercent:
      serverCore === undefined
        ? null
        : (100 * (coreAfter.busy - cpuBefore.core.busy)) /
          Math.max(1, coreAfter.total - cpuBefore.core.total),
    clientCpuPercent: (100 * clientCpu) / cpuWallMs,
    otherCpuPercent: (100 * (othersCpuMs(ours) - cpuBefore.others)) / cpuWallMs,
    serverCpuUsPerDelivery: report.received > 0 ? (1000 * serverCpu) / report.received : Number.NaN,
  };
  const lost = expected - report.received;
  const pct = (n: number) => `${n.toFixed(0)}%`;
  const core =
    result.serverCoreBusyPercent === null ? '' : ` (its core ${pct(result.serverCoreBusyPercent)})`;
  progress(
    `  ${kind} ${eventsPerSec}/s × ${before.open}: ${fmt(result.deliveriesPerSec)} deliveries/s, ` +
      `p50 ${ms(result.p50Ms)}, p99 ${ms(result.p99Ms)} | server ${pct(result.serverCpuPercent)} CPU${core}, ` +
      `${result.serverCpuUsPerDelivery.toFixed(1)} µs/delivery | client ${pct(result.clientCpuPercent)}` +
      (result.clientCpuPercent > 90 ? ' (saturated: this measures the client)' : '') +
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

async function session(kind: Kind, connections: number, repeat: number): Promise<Session> {
  const label = `${kind} n=${connections} #${repeat}`;
  const result = emptySession(kind, connections, repeat);
  result.otherCpuPercent = await waitForIdleMachine(label);
  progress(`${label}: starting server`);
  const server = await startServer(kind, join(OUT, 'logs', `${kind}-${connections}-${repeat}.log`));
  const client = startClient(label);
  try {
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
    if (client.child.connected) client.child.disconnect();
    await stop(client.child);
    await stop(server.child);
  }
  return result;
}

// --- summary ------------------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Measure {
  eventsPerSec: number;
  /** Sessions in which this was measured; a rate above a saturated one is skipped. */
  runs: number;
  deliveriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuUsPerDelivery: number;
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

type Num = number | null | undefined;
const known = (n: Num): n is number => n !== null && n !== undefined && Number.isFinite(n);
function fmt(n: Num): string {
  if (!known(n)) return '–';
  return n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}
function ms(n: Num): string {
  if (n === Number.POSITIVE_INFINITY) return 'sat.';
  if (!known(n)) return '–';
  return n >= 100 ? `${n.toFixed(0)}ms` : `${n.toFixed(1)}ms`;
}
const one = (n: Num): string => (known(n) ? n.toFixed(1) : '–');
const ratio = (a: Num, b: Num): string => (known(a) && known(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '–');
function row(cells: string[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(12) : c.padStart(10))).join('');
}
/** deliveries/s, p50, p99, server µs per delivery; "skipped" when a lower rate already saturated. */
function cells(m: Measure | null | undefined, sessions: number): string[] {
  if (m === null || m === undefined) return ['–', '–', '–', '–'];
  if (m.runs === 0) return ['skipped', '', '', ''];
  const partial = m.runs < sessions ? '*' : '';
  return [fmt(m.deliveriesPerSec) + partial, ms(m.p50Ms), ms(m.p99Ms), one(m.serverCpuUsPerDelivery)];
}

function table(summaries: Summary[]): string {
  const find = (kind: Kind, n: number) => summaries.find((s) => s.server === kind && s.connections === n);
  const both = ['H deliv/s', 'H p50', 'H p99', 'H µs/del', 'R deliv/s', 'R p50', 'R p99', 'R µs/del'];
  const out = [
    'Idle connections: server RSS per connection, KB',
    row(['connections', 'herald', 'reference', 'H/R']),
  ];
  for (const n of CONNECTIONS) {
    const [h, r] = [find('herald', n)?.rssPerConnectionKb, find('reference', n)?.rssPerConnectionKb];
    out.push(row([String(n), one(h), one(r), ratio(h, r)]));
  }
  for (const n of CONNECTIONS) {
    out.push(
      '',
      `Steady publish rate, ${n} connections (H = herald, R = reference)`,
      row(['events/s', ...both]),
    );
    for (const rate of RATES(n)) {
      const at = (kind: Kind) => {
        const s = find(kind, n);
        return cells(
          s?.rates.find((m) => m.eventsPerSec === rate),
          s?.sessions ?? 0,
        );
      };
      out.push(row([String(rate), ...at('herald'), ...at('reference')]));
    }
  }
  const limits = [
    ['Headline', P99_BUDGET_MS, 'headlineDeliveriesPerSec', 'headlineEventsPerSec'],
    ['Sustained', SATURATED_P99_MS, 'sustainedDeliveriesPerSec', 'sustainedEventsPerSec'],
  ] as const;
  for (const [title, budget, deliveries, rate] of limits) {
    out.push('', `${title}: deliveries/s at the highest steady rate with p99 ≤ ${budget} ms`);
    out.push(row(['connections', 'herald', 'at', 'reference', 'at', 'H/R']));
    for (const n of CONNECTIONS) {
      const [h, r] = [find('herald', n), find('reference', n)];
      const value = (s: Summary | undefined) =>
        s === undefined ? '–' : s[deliveries] === null ? 'none' : fmt(s[deliveries]);
      const at = (s: Summary | undefined) => (known(s?.[rate]) ? `${s[rate]}/s` : '');
      out.push(row([String(n), value(h), at(h), value(r), at(r), ratio(h?.[deliveries], r?.[deliveries])]));
    }
  }
  out.push(
    '',
    `Burst: ${BURST_BATCH} events in one POST every ${BURST_EVERY_MS} ms`,
    row(['connections', ...both, 'deliv H/R', 'µs H/R']),
  );
  for (const n of CONNECTIONS) {
    const [h, r] = [find('herald', n), find('reference', n)];
    const deliveries = ratio(h?.burst?.deliveriesPerSec, r?.burst?.deliveriesPerSec);
    out.push(
      row([
        String(n),
        ...cells(h?.burst, h?.sessions ?? 0),
        ...cells(r?.burst, r?.sessions ?? 0),
        deliveries,
        ratio(h?.burst?.serverCpuUsPerDelivery, r?.burst?.serverCpuUsPerDelivery),
      ]),
    );
  }
  out.push(
    '',
    'Medians over sessions. µs/del: server CPU per delivery. sat.: saturated, i.e. more than that share of',
    'the deliveries had not arrived when the phase ended, or the rate was skipped because a lower one',
    `already had p99 > ${SATURATED_P99_MS} ms. *: measured in fewer sessions than the others (the rest skipped it).`,
  );
  return out.join('\n');
}

// --- main ---------------------------------------------------------------------------------------------

rmSync(join(OUT, 'logs'), { recursive: true, force: true });
mkdirSync(join(OUT, 'logs'), { recursive: true });
const servers = SERVERS.filter((kind) => {
  if (kind === 'herald' && !existsSync(GATEWAY)) {
    progress(`${GATEWAY} does not exist yet: measuring the reference only`);
    return false;
  }
  return true;
});
progress(
  `servers ${servers.join(', ')}; connections ${CONNECTIONS.join(', ')}; ${REPEATS} repeats; ` +
    (PIN === undefined
      ? 'not pinned (needs taskset and 2 CPUs)'
      : `server on CPU ${PIN[0]}, client + publisher on CPU ${PIN[1]}`),
);
const sessions: Session[] = [];
for (const connections of CONNECTIONS) {
  for (let repeat = 1; repeat <= REPEATS; repeat++) {
    // Interleaved, so slow drift of the machine affects both servers alike.
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

const summaries = CONNECTIONS.flatMap((n) => servers.map((kind) => summarise(kind, n, sessions)));
const results = {
  date: new Date().toISOString(),
  node: process.version,
  pinned: PIN ?? null,
  quick: QUICK,
  config: {
    connections: CONNECTIONS,
    repeats: REPEATS,
    phaseMs: PHASE_MS,
    burst: { everyMs: BURST_EVERY_MS, eventsPerPost: BURST_BATCH },
    p99BudgetMs: P99_BUDGET_MS,
    saturatedP99Ms: SATURATED_P99_MS,
    otherCpuLimitPercent: OTHER_CPU_LIMIT,
  },
  summaries,
  sessions,
};
writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 2) + '\n');
const phases = sessions.flatMap((s) => [...s.rates, ...(s.burst === null ? [] : [s.burst])]);
const disturbed = phases.filter((p) => p.otherCpuPercent > OTHER_CPU_LIMIT).length;
const failed = sessions.filter((s) => s.error !== undefined);
let notes = '';
if (disturbed > 0) {
  notes += `\nWARNING: in ${disturbed} of ${phases.length} phases other processes used > ${OTHER_CPU_LIMIT}% CPU`;
  notes += ' even after repeats; those numbers are skewed (otherCpuPercent in results.json).\n';
}
for (const s of failed)
  notes += `\nWARNING: ${s.server} n=${s.connections} #${s.repeat} failed: ${s.error}\n`;
process.stdout.write(table(summaries) + '\n' + notes);
progress(
  `done in ${((Date.now() - startedAt) / 1000).toFixed(0)} s; results in ${join(OUT, 'results.json')}`,
);
reaper.stdin?.end();
