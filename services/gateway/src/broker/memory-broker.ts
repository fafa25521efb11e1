import { randomBytes } from 'node:crypto';
import { topicMatcher } from '@herald/protocol';
import type { Clock } from '../clock.ts';
import type {
  Broker,
  BrokerListener,
  PublishAck,
  PublishMessage,
  ReplayRequest,
  ReplayResult,
  StoredEvent,
  StreamState,
} from './broker.ts';

export interface MemoryBrokerOptions {
  readonly clock: Clock;
  /** Events retained; older ones are dropped first. */
  readonly maxEvents: number;
  /** Events older than this are dropped (ms). */
  readonly maxAgeMs: number;
  /** A repeated idempotency key within this window is stored once (ms). */
  readonly dedupeWindowMs: number;
}

/** A fresh epoch per process: a restarted embedded broker has lost its history, so old cursors are foreign. */
function newEpoch(): string {
  return randomBytes(6).readUIntBE(0, 6).toString(36);
}

/**
 * The embedded broker: one process, history in memory. Sequences are contiguous from 1.
 * Publishing is synchronous underneath, so the live feed sees events in sequence order.
 */
export class MemoryBroker implements Broker {
  readonly kind = 'memory';
  readonly #opts: MemoryBrokerOptions;
  readonly #epoch = newEpoch();
  // The log is an array with a moving start, compacted when the dead prefix grows large.
  #log: StoredEvent[] = [];
  #start = 0;
  #last = 0;
  readonly #keys = new Map<string, { seq: number; expires: number }>();
  readonly #listeners = new Set<BrokerListener>();
  #closed = false;

  constructor(opts: MemoryBrokerOptions) {
    this.#opts = opts;
  }

  get ready(): boolean {
    return !this.#closed;
  }

  async start(): Promise<void> {}

  state(): StreamState {
    this.#expire();
    const oldest = this.#log[this.#start];
    return {
      epoch: this.#epoch,
      first: oldest === undefined ? this.#last + 1 : oldest.seq,
      last: this.#last,
    };
  }

  async publish(messages: readonly PublishMessage[]): Promise<PublishAck[]> {
    if (this.#closed) throw new Error('memory broker is closed');
    const now = this.#opts.clock.now();
    this.#expireKeys(now);
    const acks: PublishAck[] = [];
    for (const m of messages) {
      const seen = m.key === undefined ? undefined : this.#keys.get(m.key);
      if (seen !== undefined) {
        acks.push({ epoch: this.#epoch, seq: seen.seq, duplicate: true });
        continue;
      }
      const e: StoredEvent = {
        seq: ++this.#last,
        topic: m.topic,
        event: m.event,
        data: m.data,
        time: now,
        ...(m.traceparent === undefined ? {} : { traceparent: m.traceparent }),
      };
      this.#log.push(e);
      if (m.key !== undefined && this.#opts.dedupeWindowMs > 0) {
        this.#keys.set(m.key, { seq: e.seq, expires: now + this.#opts.dedupeWindowMs });
      }
      acks.push({ epoch: this.#epoch, seq: e.seq, duplicate: false });
      for (const l of this.#listeners) l.event(e);
    }
    this.#expire();
    return acks;
  }

  follow(listener: BrokerListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async replay(req: ReplayRequest): Promise<ReplayResult> {
    const state = this.state();
    if (req.after < state.first - 1) return { kind: 'gone', state };
    const events: StoredEvent[] = [];
    const through = Math.min(req.through, state.last);
    const wanted = topicMatcher(req.patterns);
    // Contiguous sequences make the first index a subtraction.
    for (let i = this.#start + (req.after + 1 - state.first); i < this.#log.length; i++) {
      const e = this.#log[i]!;
      if (e.seq > through) break;
      if (wanted(e.topic)) {
        events.push(e);
        if (events.length >= req.limit) return { kind: 'events', events, reached: e.seq };
      }
    }
    return { kind: 'events', events, reached: through };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
  }

  #expire(): void {
    const { maxEvents, maxAgeMs, clock } = this.#opts;
    const cutoff = clock.now() - maxAgeMs;
    while (this.#start < this.#log.length) {
      const e = this.#log[this.#start]!;
      if (this.#log.length - this.#start <= maxEvents && e.time > cutoff) break;
      this.#start++;
    }
    if (this.#start > 1024 && this.#start * 2 > this.#log.length) {
      this.#log = this.#log.slice(this.#start);
      this.#start = 0;
    }
  }

  #expireKeys(now: number): void {
    // Map order is insertion order and every key gets the same window, so expiry is a prefix.
    for (const [key, v] of this.#keys) {
      if (v.expires > now) break;
      this.#keys.delete(key);
    }
  }
}
