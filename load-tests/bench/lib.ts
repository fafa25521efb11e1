/**
 * What the benchmark's parts (run.ts, servers.ts, storm.ts) share: settings from the environment,
 * progress on stderr, CPU pinning, child processes that never outlive the run, /proc readings,
 * the load client, and number formatting.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command, Reply, Stats } from './shared.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const OUT = join(ROOT, '.bench');
export const HOST = '127.0.0.1';
const CLIENT = join(import.meta.dirname, 'client.ts');

type WithoutId<C> = C extends unknown ? Omit<C, 'id'> : never;
export type Ask = WithoutId<Command>;

// --- settings -------------------------------------------------------------------------------------

export function intList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const list = raw.split(',').map(Number);
  if (!list.every((n) => Number.isSafeInteger(n) && n > 0))
    throw new Error(`${name}: expected positive integers`);
  return list;
}
export const int = (name: string, fallback: number): number => intList(name, [fallback])[0]!;

export const QUICK = process.env['BENCH_QUICK'] === '1';
/** A phase during which other processes used more CPU than this (% of a core) is repeated, a bounded number of times. */
export const OTHER_CPU_LIMIT = 15;

const startedAt = Date.now();
export const now = (): number => performance.timeOrigin + performance.now();
export const elapsedS = (): number => (Date.now() - startedAt) / 1000;
export function progress(message: string): void {
  process.stderr.write(`[bench ${elapsedS().toFixed(0).padStart(4)}s] ${message}\n`);
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
export const PIN = cpus();
// The publisher runs in this process: keep it off the server's core too.
if (PIN !== undefined)
  spawnSync('taskset', ['-a', '-p', '-c', String(PIN[1]), String(process.pid)], { stdio: 'ignore' });

// Children must not outlive this process, even when it is killed without running its handlers
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
const cleanups = new Set<() => void>();
function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
  for (const cleanup of cleanups) cleanup();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    progress(`${signal}: stopping`);
    killAll();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}
/** Runs `cleanup` (synchronous: e.g. removing a temporary directory) when the run exits, however it exits. */
export function onExit(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}
/** Lets the reaper go: call once at the very end. */
export function finish(): void {
  reaper.stdin?.end();
}

/** Runs a command with the open-file soft limit raised to the hard one, pinned to a CPU when given one. */
export function launch(
  command: string[],
  cpu: number | undefined,
  options: Parameters<typeof spawn>[2],
): ChildProcess {
  const pin = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  // exec all the way down, so the child's pid is the command's own (its /proc/<pid>/status is what we read).
  const script = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
  const child = spawn('bash', ['-c', script, 'bench', ...pin, ...command], { cwd: ROOT, ...options });
  children.add(child);
  reaper.stdin?.write(`+${child.pid}\n`);
  child.once('exit', () => {
    children.delete(child);
    reaper.stdin?.write(`-${child.pid}\n`);
  });
  return child;
}

/** A Node script of this repository, as `launch` runs commands. */
export function launchNode(args: string[], cpu: number | undefined, options: Parameters<typeof spawn>[2]) {
  return launch([process.execPath, '--conditions=herald-source', ...args], cpu, options);
}

export async function stop(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  if ((await Promise.race([exited, sleep(graceMs, 'timeout')])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address !== null ? done(address.port) : fail()));
    });
  });
}

export function get(port: number, path: string): Promise<number> {
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

export function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-15).join('\n') : '';
}

// --- /proc ------------------------------------------------------------------------------------------

export function rssKb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

/** RSS once two readings 250 ms apart agree within 0.2 % (allocation after a burst of work settles). */
export async function settledRssKb(pid: number): Promise<number> {
  let previous = rssKb(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const current = rssKb(pid);
    if (Math.abs(current - previous) <= Math.max(64, previous * 0.002)) return current;
    previous = current;
  }
  return previous;
}

const TICK_MS = 1000 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100);
/** CPU time (user + system) a process has used so far; 0 once it is gone. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  // After the parenthesised command name: state is field 3, utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** Busy and total CPU time of the whole machine (or one CPU), in ticks, from /proc/stat. */
export function cpuTicks(cpu = ''): { busy: number; total: number } {
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
/** Busy share (%) of one CPU between two cpuTicks readings. */
export const busyPercent = (a: { busy: number; total: number }, b: { busy: number; total: number }) =>
  (100 * (b.busy - a.busy)) / Math.max(1, b.total - a.total);

/**
 * CPU time used so far by every process except ours and kernel threads, counting what exited
 * processes left in their parent's cutime/cstime, so the total carries over exits.
 */
export function othersCpuMs(ours: readonly number[]): number {
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
 * Time the whole run may spend waiting out other processes (idle waits and repeated phases), so a
 * busy machine cannot stretch it without bound. Returns whether any is left after `spentMs`.
 */
let patienceMs = QUICK ? 15_000 : 150_000;
export function patient(spentMs: number): boolean {
  return patienceMs - spentMs > 0;
}
export function spend(ms: number): void {
  patienceMs -= ms;
}

/**
 * The benchmark needs the machine to itself: before each session, wait (bounded) until other
 * processes are quiet, and record what they used, so a skewed session can be recognised.
 */
export async function waitForIdleMachine(label: string): Promise<number> {
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

// --- the load client --------------------------------------------------------------------------------

export interface Client {
  child: ChildProcess;
  ask<C extends Ask>(command: C, timeoutMs?: number): Promise<Reply & { id: number }>;
}

export function startClient(label: string): Client {
  const child = launchNode([CLIENT], PIN?.[1], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

export async function stopClient(client: Client): Promise<void> {
  if (client.child.connected) client.child.disconnect();
  await stop(client.child);
}

export async function stats(client: Client): Promise<Stats> {
  const reply = await client.ask({ cmd: 'stats' });
  if (reply.type !== 'stats') throw new Error('unexpected client reply');
  return reply;
}

// --- numbers ------------------------------------------------------------------------------------------

export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export type Num = number | null | undefined;
export const known = (n: Num): n is number => n !== null && n !== undefined && Number.isFinite(n);
export function fmt(n: Num): string {
  if (!known(n)) return '–';
  return n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}
export function ms(n: Num): string {
  if (n === Number.POSITIVE_INFINITY) return 'sat.';
  if (!known(n)) return '–';
  return n >= 100 ? `${n.toFixed(0)}ms` : `${n.toFixed(1)}ms`;
}
export const one = (n: Num): string => (known(n) ? n.toFixed(1) : '–');
export const ratio = (a: Num, b: Num): string =>
  known(a) && known(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '–';
export function row(cells: string[], first = 12, rest = 10): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(first) : c.padStart(rest))).join('');
}
