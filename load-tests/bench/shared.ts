/** What run.ts and client.ts say to each other over IPC, and the latency histogram they share. */

export type Command =
  | { id: number; cmd: 'open'; host: string; port: number; topic: string; count: number; batch: number }
  | { id: number; cmd: 'phase'; phase: number }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'report' };

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

export type Reply =
  | ({ id: number; type: 'stats' } & Stats)
  | ({ id: number; type: 'report' } & Report)
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
