import type { CompiledPattern } from '@herald/protocol';
import type { StoredEvent } from '../broker/broker.ts';

/** Where a connection's bytes go: the HTTP adapter implements it over a socket. */
export interface Sink {
  write(chunk: Buffer): void;
  /** Writes a last chunk, then closes. */
  end(chunk: Buffer): void;
  /** Optional: hold writes until `uncork`, so several chunks leave in one system call. */
  cork?(): void;
  uncork?(): void;
  /** Bytes written but not yet taken by the kernel; with `destroy`, lets the hub drop slow readers. */
  readonly writableLength?: number;
  /** Closes at once, dropping what is queued. */
  destroy?(): void;
}

/** Why the hub closed a connection itself. */
export type CloseReason = 'drain' | 'shed' | 'slow' | 'token-expired' | 'replay-failed' | 'reset';

/** How metrics and traces name a stream's end (snake case, as label values are). */
export const CLOSE_LABELS: Readonly<Record<CloseReason | 'client', string>> = {
  client: 'client',
  drain: 'drain',
  shed: 'shed',
  slow: 'slow',
  'token-expired': 'token_expired',
  'replay-failed': 'replay_failed',
  reset: 'reset',
};

/** Where a stream opened with a cursor got what it missed. */
export type ResumeSource = 'ring' | 'log' | 'reset';

/** One open stream, as every part of the hub sees it. */
export class Connection {
  static #ids = 0;
  readonly id = ++Connection.#ids;
  readonly sink: Sink;
  readonly patterns: readonly CompiledPattern[];
  /** Highest sequence queued to this client: the cursor it will resume from. */
  lastSeq = 0;
  /** While a log replay runs, live events wait here instead of going out. */
  pending: { readonly e: StoredEvent; readonly frame: Buffer }[] | undefined;
  /** More live events arrived during the replay than `pending` holds; the replay fetches them. */
  overflowed = false;
  /** Bytes due in this turn, written together by the next flush. */
  queue: Buffer | Buffer[] | undefined;
  /** Something was queued since the last heartbeat tick. */
  wrote = false;
  closed = false;
  /** Token expiry timers, cleared when the connection goes. */
  timers: unknown[] | undefined;
  /** When it opened (ms since the Unix epoch), events and bytes written to it: for its disconnect. */
  openedAt = 0;
  events = 0;
  bytes = 0;
  /** The adapter's trace context for this stream; opaque to the hub. */
  trace: unknown;
  /** Where its resume came from; undefined for a fresh stream. */
  resume: ResumeSource | undefined;

  constructor(sink: Sink, patterns: readonly CompiledPattern[]) {
    this.sink = sink;
    this.patterns = patterns;
  }
}
