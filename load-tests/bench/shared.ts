/** What run.ts and client.ts say to each other over IPC, and the latency histogram they share. */

export type Command =
  | { id: number; cmd: 'open'; host: string; port: number; topic: string; count: number; batch: number }
  | { id: number; cmd: 'phase'; phase: number }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'report' }
  /**
   * Resume storm: opens one stream per cursor (sent as `Last-Event-ID: <epoch>-<cursor>`), each
   * expecting every event after its cursor up to `last` (so all must subscribe to every topic
   * published to). Answers once all are opened (or failed).
   */
  | {
      id: number;
      cmd: 'storm';
      host: string;
      port: number;
      topic: string;
      epoch: string;
      last: number;
      cursors: number[];
      batch: number;
    }
  | { id: number; cmd: 'stormStats' }
  | { id: number; cmd: 'stormReport' };

export interface Stats {
  open: number;
  failed: number;
  /** Streams that closed after they had opened. */
  closed: number;
  /** Events of the current phase. */
  received: number;
  /** Events of another phase (arriving late) or without a timestamp. */
  stale: number;
  /** The last connection error, for the progress log. */
  lastError: string;
}

export interface Report extends Stats {
  phase: number;
  /** Receive time (epoch ms) of the current phase's first and last event. */
  firstAt: number;
  lastAt: number;
  /** Sparse latency histogram: [bucket, count] pairs; see bucketOf/bucketValue. */
  histogram: [number, number][];
}

export interface StormStats {
  open: number;
  failed: number;
  /** Streams that closed after they had opened. */
  closed: number;
  /** Clients that received every event after their cursor. */
  done: number;
  /** Events received by all clients together. */
  received: number;
  /** `herald.reset` events received. */
  resets: number;
  /** Events whose sequence was not above the previous one's (or the cursor's): duplicates or reordering. */
  disorder: number;
  /** Events beyond what a client expected. */
  extra: number;
  lastError: string;
}

export interface StormReport extends StormStats {
  /** Epoch ms when the storm's first connection was started: the origin of the times below. */
  startAt: number;
  /** Per client, in `cursors` order: ms until it had every event after its cursor (-1: never). */
  doneMs: number[];
  /** Per client: ms until its response head (-1: never). */
  headMs: number[];
  /** Per client: events received. */
  events: number[];
}

export type Reply =
  | ({ id: number; type: 'stats' } & Stats)
  | ({ id: number; type: 'report' } & Report)
  | ({ id: number; type: 'stormStats' } & StormStats)
  | ({ id: number; type: 'stormReport' } & StormReport)
  | { id: number; type: 'ok' }
  | { type: 'progress'; open: number; failed: number; target: number };

// Latency histogram with 1 % wide buckets over microseconds: exact enough for p50/p99, fixed memory.
const GROWTH = Math.log(1.01);
export const BUCKETS = 2400; // 1.01^2400 µs ≈ 6 hours: nothing overflows.
export function bucketOf(latencyMs: number): number {
  const us = latencyMs * 1000;
  return us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / GROWTH));
}
/** Upper bound of a bucket, in ms. */
export function bucketValue(bucket: number): number {
  return Math.exp(bucket * GROWTH) / 1000;
}
