import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineLog, readLines } from './log-lines.ts';
import { forget, track } from './reaper.ts';

/**
 * The one supervisor for the real programs the harnesses run (nats-server, etcd, kube-apiserver,
 * Prometheus): start one, wait until it is ready (a log line, or a check polled while it runs),
 * stop it (SIGTERM, then SIGKILL after a grace period), and make sure none outlives the test
 * process however that ends.
 *
 * Readiness waits end early when the process exits; their errors name the program, how it ended
 * and the tail of its log, so a failed start explains itself without rerunning anything.
 *
 * Nothing is left behind: every child is known to reaper.ts from its start to its exit, and one
 * still running when the test process ends is killed, however that process ends.
 */

/** How long `stop()` waits after SIGTERM before SIGKILL. */
export const STOP_GRACE_MS = 5_000;
/** Readiness polls start this fast and back off to `pollMaxMs` (default POLL_MAX_MS). */
const POLL_MIN_MS = 10;
const POLL_MAX_MS = 100;
const TAIL_LINES = 40;
/** How long `exited` waits for the output pipes after the exit, in case a grandchild holds them open. */
const PIPE_LINGER_MS = 2_000;
const NOTE = '# herald-testkit: ';

/** How a process ended: an exit code, a signal, or a failure to start at all. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the program could not be started (not found, not executable). */
  readonly error?: Error;
}

/** `exited (code 1)`, `exited (SIGKILL)` or `could not be started (spawn … ENOENT)`. */
export function describeExit(exit: Exit): string {
  return exit.error
    ? `could not be started (${exit.error.message})`
    : `exited (${exit.signal ?? `code ${exit.code}`})`;
}

/** A bound shared by several waits (a start that has stages, or several processes started together). */
export interface Budget {
  /** The whole bound, for messages. */
  readonly ms: number;
  /** When it runs out, in `Date.now()` terms. */
  readonly deadline: number;
}

export function budget(ms: number): Budget {
  return { ms, deadline: Date.now() + ms };
}

/** Why a supervised process did not become ready, or did not stop when told. */
export class ProcessError extends Error {
  override readonly name = 'ProcessError';
  /** How it ended; undefined when it still runs (a timeout). */
  readonly exit: Exit | undefined;
  /** It logged "address already in use": a port it was given was taken, and a retry on fresh ports may work. */
  readonly addressInUse: boolean;

  constructor(message: string, exit: Exit | undefined, addressInUse: boolean) {
    super(message);
    this.exit = exit;
    this.addressInUse = addressInUse;
  }
}

export interface ProcessSpec {
  readonly program: string;
  readonly args?: readonly string[];
  /** Default: this process's environment. */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** How messages name it, e.g. `nats-server node-0`. Default: the program's file name. */
  readonly name?: string;
  /** Sees each line the program writes (stdout and stderr), e.g. to learn the ports it picked. */
  readonly onLine?: (line: string) => void;
  /**
   * Where its lines and the supervisor's notes (`# herald-testkit: …`) go, and what errors quote.
   * Pass one to keep a log across restarts or to interleave several programs. Default: its own.
   */
  readonly log?: LineLog;
  /** Put before each of its lines in `log` (`etcd: `), so that a shared log says who wrote what. */
  readonly prefix?: string;
  /**
   * Lines that are the program's own complaints, quoted ahead of the tail in errors: they can
   * scroll out of it (nats-server prints its usage after a bad flag).
   */
  readonly complaints?: RegExp;
  /** What to do when the program cannot be started at all, e.g. "run `bash tools/x.sh`". */
  readonly fix?: string;
}

/** A readiness check: true when ready; false or a description of what is still missing when not. Throwing counts as not ready, with the error's message. */
export type Check = () => boolean | string | Promise<boolean | string>;

export interface WaitOptions {
  /** The bound: milliseconds from now, or a budget shared with other waits. */
  readonly within: number | Budget;
  /** What is awaited, for the timeout's message: `GET http://…/healthz`. */
  readonly what: string;
  /** Said of an exit during the wait, after "exited (code 1)". Default `before it was ready`. */
  readonly during?: string;
  /** Processes it needs (etcd under kube-apiserver): their exit ends the wait too. */
  readonly alsoWatch?: readonly Supervised[];
  /** The longest pause between checks (they back off from 10 ms). Default 100 ms. */
  readonly pollMaxMs?: number;
}

export interface LineWaitOptions {
  readonly within: number | Budget;
  /** Replaces "no line matching /…/ in its output" in the timeout's message. */
  readonly what?: string;
  /** As in `WaitOptions`. */
  readonly during?: string;
}

/** Starts `spec.program`. A failure to start shows in `exit`, `exited` and every wait, not as a throw. */
export function startProcess(spec: ProcessSpec): Supervised {
  return new Supervised(spec);
}

/** One running program, started by `startProcess`. */
export class Supervised {
  readonly name: string;
  readonly program: string;
  /** Undefined when the program could not be started. */
  readonly pid: number | undefined;
  /** This run's output (both streams, without prefix or notes). */
  readonly output = new LineLog();
  /** See `ProcessSpec.log`. */
  readonly log: LineLog;
  /** Resolves once it has exited and its output has been read to the end. Never rejects. */
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcess;
  readonly #spec: ProcessSpec;
  #exit: Exit | undefined;
  #addressInUse = false;
  readonly #lineWatchers = new Set<(line: string) => void>();

  constructor(spec: ProcessSpec) {
    this.#spec = spec;
    this.program = spec.program;
    this.name = spec.name ?? basename(spec.program);
    this.log = spec.log ?? new LineLog();
    const args = spec.args ?? [];
    const child = spawn(spec.program, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(spec.env ? { env: spec.env } : {}),
      ...(spec.cwd ? { cwd: spec.cwd } : {}),
    });
    this.#child = child;
    this.pid = child.pid;
    const closed = Promise.withResolvers<Exit>();
    this.exited = closed.promise;
    // 'close' (after 'exit') means both pipes are drained: an error quoting the tail then has the
    // last words, which for a bad flag are the complaint itself.
    child.once('close', () =>
      closed.resolve(this.#exit ?? { code: child.exitCode, signal: child.signalCode }),
    );
    // `on`, not `once`: a failed kill() is reported here too, and a second 'error' with no
    // listener would throw.
    child.on('error', (error) => {
      if (child.pid === undefined) this.#exit = { code: null, signal: null, error };
    });
    child.once('exit', (code, signal) => {
      this.#exit = { code, signal };
      forget(child);
      this.#note(`pid ${child.pid} exited (${signal ?? `code ${code}`})`);
      // A grandchild that inherited the pipes would hold 'close' back for as long as it lives.
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, PIPE_LINGER_MS).unref();
    });
    this.#note(`started ${spec.program} ${args.join(' ')} (pid ${child.pid ?? 'none'})`);
    if (child.pid !== undefined) track(child);
    // Neither the child nor its pipes keep this process alive: a test that forgets stop() still
    // ends, and the reaper then kills what it left.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      (stream as Socket).unref();
      readLines(stream, (line) => this.#onLine(line));
    }
  }

  /** True from a successful start until the process exits. */
  get running(): boolean {
    return this.pid !== undefined && this.#exit === undefined;
  }

  /** How it ended; undefined while it runs. */
  get exit(): Exit | undefined {
    return this.#exit;
  }

  /** Resolves with the first line of this run that matches `pattern`; rejects if it exits or time runs out first. */
  async waitForLine(pattern: RegExp, opts: LineWaitOptions): Promise<RegExpExecArray> {
    const b = toBudget(opts.within);
    const seen = () => {
      for (const line of this.output.lines) {
        const m = pattern.exec(line);
        if (m) return m;
      }
      return undefined;
    };
    const already = seen();
    if (already) return already;
    const found = Promise.withResolvers<RegExpExecArray>();
    const watcher = (line: string) => {
      const m = pattern.exec(line);
      if (m) found.resolve(m);
    };
    this.#lineWatchers.add(watcher);
    const timer = new AbortController();
    try {
      const outcome = await Promise.race([
        found.promise,
        this.exited.then(() => 'exited' as const),
        sleep(Math.max(0, b.deadline - Date.now()), 'timeout' as const, { signal: timer.signal }),
      ]);
      if (typeof outcome !== 'string') return outcome;
      const late = seen();
      if (late) return late;
      if (outcome === 'exited') throw this.exitError(opts.during ?? 'before it was ready');
      throw this.timeoutError(b, opts.what ?? `no line matching ${pattern} in its output`);
    } finally {
      timer.abort();
      this.#lineWatchers.delete(watcher);
    }
  }

  /** Calls `check` (backing off 10 → 100 ms) until it passes; rejects if this or `alsoWatch` exits, or time runs out. */
  async waitUntil(check: Check, opts: WaitOptions): Promise<void> {
    const b = toBudget(opts.within);
    const outcome = await poll(check, [this, ...(opts.alsoWatch ?? [])], b, opts.pollMaxMs);
    if (outcome.kind === 'exited') throw outcome.proc.exitError(opts.during ?? 'before it was ready');
    if (outcome.kind === 'timeout') throw this.timeoutError(b, `${opts.what}: ${outcome.last}`);
  }

  /**
   * Sends `signal` and resolves once it has exited (SIGKILL by default: a crash, for tests).
   * Rejects if it still runs after `waitMs`; `stop()` is the way to end it for sure.
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL', waitMs = STOP_GRACE_MS): Promise<Exit> {
    if (!this.running) return this.exited;
    this.#child.kill(signal);
    if (await this.#exitsWithin(waitMs)) return this.exited;
    throw new ProcessError(
      `${this.name} (pid ${this.pid}) still runs ${waitMs} ms after ${signal}; use stop(), which follows SIGTERM with SIGKILL`,
      undefined,
      this.#addressInUse,
    );
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has exited. Idempotent. */
  async stop(graceMs = STOP_GRACE_MS): Promise<Exit> {
    if (this.running) {
      this.#child.kill('SIGTERM');
      if (!(await this.#exitsWithin(graceMs))) {
        this.#note(`no exit ${graceMs} ms after SIGTERM; sending SIGKILL`);
        this.#child.kill('SIGKILL');
        this.#child.ref();
        await this.exited;
      }
    }
    return this.exited;
  }

  /** The error for its exit: `<name> exited (code 1) <during>[; hint]. Last log lines: …`. */
  exitError(during: string): ProcessError {
    const exit = this.#exit ?? { code: null, signal: null };
    const hint = this.#addressInUse
      ? '; a port it was given is taken by another process'
      : exit.error
        ? `; ${this.#spec.fix ?? `check that ${this.program} exists and is executable`}`
        : '';
    return new ProcessError(
      `${this.name} ${describeExit(exit)} ${during}${hint}. Last log lines:\n${this.#tail()}`,
      exit,
      this.#addressInUse,
    );
  }

  /** The error for a wait that ran out: `<name> was not ready within <ms> ms (<what>). Last log lines: …`. */
  timeoutError(b: Budget, what: string): ProcessError {
    const hint = this.#addressInUse ? '; a port it was given is taken by another process' : '';
    return new ProcessError(
      `${this.name} was not ready within ${b.ms} ms (${what})${hint}. Last log lines:\n${this.#tail()}`,
      undefined,
      this.#addressInUse,
    );
  }

  #tail(): string {
    return this.log.tail(TAIL_LINES, this.#spec.complaints);
  }

  #onLine(line: string): void {
    this.output.push(line);
    this.log.push(`${this.#spec.prefix ?? ''}${line}`);
    if (/address already in use/.test(line)) this.#addressInUse = true;
    this.#spec.onLine?.(line);
    for (const watcher of this.#lineWatchers) watcher(line);
  }

  #note(text: string): void {
    this.log.push(`${this.#spec.prefix ?? ''}${NOTE}${text}`);
  }

  /** Whether it exits within `ms`; while waiting, the child keeps the event loop alive. */
  async #exitsWithin(ms: number): Promise<boolean> {
    this.#child.ref();
    const timer = new AbortController();
    try {
      return await Promise.race([this.exited.then(() => true), sleep(ms, false, { signal: timer.signal })]);
    } finally {
      timer.abort();
      if (this.running) this.#child.unref();
    }
  }
}

/**
 * Calls `check` until it passes, for a condition that belongs to no single process (a cluster
 * answering through any node); an exit of any of `watch` ends the wait with that one's error.
 */
export async function waitWhileRunning(
  check: Check,
  opts: { readonly within: number | Budget; readonly what: string; readonly watch: readonly Supervised[] },
): Promise<void> {
  const b = toBudget(opts.within);
  const outcome = await poll(check, opts.watch, b, undefined);
  if (outcome.kind === 'exited') throw outcome.proc.exitError(`while waiting for ${opts.what}`);
  if (outcome.kind === 'timeout') {
    throw new ProcessError(`${opts.what}: not ready within ${b.ms} ms (${outcome.last})`, undefined, false);
  }
}

type Outcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'exited'; readonly proc: Supervised }
  | { readonly kind: 'timeout'; readonly last: string };

async function poll(
  check: Check,
  watch: readonly Supervised[],
  b: Budget,
  pollMaxMs = POLL_MAX_MS,
): Promise<Outcome> {
  const gone = async (): Promise<Outcome | undefined> => {
    const proc = watch.find((p) => !p.running);
    if (proc === undefined) return undefined;
    await proc.exited;
    return { kind: 'exited', proc };
  };
  let last = 'no answer yet';
  for (let wait = POLL_MIN_MS; ; wait = Math.min(wait * 2, pollMaxMs)) {
    const before = await gone();
    if (before) return before;
    let verdict: boolean | string;
    try {
      verdict = await check();
    } catch (err) {
      verdict = (err as Error).message;
    }
    if (verdict === true) return { kind: 'ok' };
    if (typeof verdict === 'string') last = verdict;
    const after = await gone();
    if (after) return after;
    const left = b.deadline - Date.now();
    if (left <= 0) return { kind: 'timeout', last };
    // An exit cuts the pause short: a crash is reported at once, not after the next check.
    const timer = new AbortController();
    await Promise.race([
      sleep(Math.min(wait, left), undefined, { signal: timer.signal }),
      ...watch.map((p) => p.exited),
    ]);
    timer.abort();
  }
}

function toBudget(within: number | Budget): Budget {
  return typeof within === 'number' ? budget(within) : within;
}
