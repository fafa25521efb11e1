import {
  compilePattern,
  encodeFrame,
  formatCursor,
  matches,
  type ResetData,
  type ResetReason,
  SystemEvents,
} from '@herald/protocol';
import type { Broker, ReplayRequest, ReplayResult, StoredEvent } from '../broker/broker.ts';
import type { Clock } from '../clock.ts';
import type { CloseReason, Connection, ResumeSource } from './connection.ts';
import type { Frames } from './frames.ts';
import { Limiter } from './limiter.ts';
import { planResume } from './resume-plan.ts';
import { Ring } from './ring.ts';

/** Every topic: what the ring is warmed with. */
const ALL = [compilePattern('>')];

export interface ResumerOptions {
  readonly clock: Clock;
  /** Events the ring of recent events holds at most. */
  readonly ringSize: number;
  /** Frame bytes the ring holds at most. */
  readonly ringMaxBytes: number;
  /** Log replays running at once, each until its client is caught up; the rest queue. */
  readonly replayConcurrency: number;
  /** Events fetched per replay round trip. */
  readonly replayPage: number;
  /** How long a cursor ahead of the feed waits for the feed to reach it before a reset (ms). */
  readonly aheadGraceMs: number;
  readonly onResumed?: ((c: Connection, source: ResumeSource, events: number) => void) | undefined;
  readonly onError?: ((err: unknown, context: string) => void) | undefined;
}

/** What the resumer needs of the hub: its feed's head, and delivery by the hub's rules. */
export interface ResumeHost {
  /** The newest sequence the live feed has delivered. */
  head(): number;
  /** Queues an event once per sequence; live ones wait while the connection's replay runs. */
  deliver(c: Connection, e: StoredEvent, frame: Buffer, replay?: boolean): number;
  enqueue(c: Connection, chunk: Buffer): void;
  close(c: Connection, reason: CloseReason): void;
}

/**
 * How a stream starts: what a client missed comes from the ring of recent events, else from the
 * broker's log, else it gets `herald.reset`. Owns the ring (and fills it from the log when the
 * gateway starts or the stream is replaced) and the paged, shared, bounded log reads.
 */
export class Resumer {
  /** Streams opened with a cursor, by where their missed events came from. Monotonic. */
  readonly counts: Record<ResumeSource, number> = { ring: 0, log: 0, reset: 0 };
  readonly #broker: Broker;
  readonly #frames: Frames;
  readonly #host: ResumeHost;
  readonly #opts: ResumerOptions;
  readonly #ring: Ring;
  readonly #pages: Limiter;
  readonly #inflight = new Map<string, Promise<ReplayResult>>();
  /** Bumped whenever the ring is cleared, so a warm-up begun before it is dropped. */
  #generation = 0;
  #warming: Promise<void> | undefined;

  constructor(broker: Broker, frames: Frames, host: ResumeHost, opts: ResumerOptions) {
    this.#broker = broker;
    this.#frames = frames;
    this.#host = host;
    this.#opts = opts;
    this.#pages = new Limiter(opts.replayConcurrency);
    this.#ring = new Ring(opts.ringSize, opts.ringMaxBytes, broker.state().last);
  }

  /** True while the ring is being filled from the log. */
  get warming(): boolean {
    return this.#warming !== undefined;
  }

  /** Log replays (and ring warm-ups) in progress, each with at most one broker fetch in flight. */
  get replaying(): number {
    return this.#pages.running;
  }

  /** Keeps a live event's frame for resumes. */
  remember(e: StoredEvent, frame: Buffer): void {
    this.#ring.push(e, frame);
  }

  /** The stream starts over after `last` (replaced, or events lost): the ring's events are void. */
  restart(last: number): void {
    this.#ring.clear(last);
    this.#generation++;
    this.#warming = undefined;
    this.warm();
  }

  /** Queues a new connection's start: its cursor for a fresh stream, else what it missed or a reset. */
  begin(c: Connection, lastEventId: string | undefined): void {
    const state = this.#broker.state();
    const head = this.#host.head();
    const plan = planResume(lastEventId, {
      epoch: this.#frames.epoch,
      first: state.first,
      last: Math.max(state.last, head),
      ringFloor: this.#ring.floor,
    });
    switch (plan.kind) {
      case 'fresh':
        // Even a client that gets nothing before it drops then resumes from here.
        c.lastSeq = head;
        this.#host.enqueue(c, this.#frames.idOnly(head));
        break;
      case 'reset':
        if (plan.reason === 'ahead' && plan.from !== undefined && this.#opts.aheadGraceMs > 0) {
          this.#awaitAhead(c, plan.from.seq);
          break;
        }
        this.#resumed(c, 'reset', 0);
        // `from` is re-encoded from its parse, in its own epoch: never the raw header.
        this.reset(c, plan.reason, plan.from === undefined ? null : formatCursor(plan.from));
        break;
      case 'ring': {
        c.lastSeq = plan.after;
        const { chunks, last, count } = this.#ring.collect(plan.after, (t) =>
          c.patterns.some((p) => matches(p, t)),
        );
        for (const chunk of chunks) this.#host.enqueue(c, chunk);
        if (last !== undefined) c.lastSeq = last;
        c.events += count;
        this.#resumed(c, 'ring', count);
        this.#moveTo(c, head);
        break;
      }
      case 'log':
        this.counts.log++;
        c.resume = 'log';
        c.lastSeq = plan.after;
        c.pending = [];
        void this.#replayLog(c, head, this.#frames.cursor(plan.after));
        break;
    }
  }

  /** Sends `herald.reset`, whose id is the head: the client resumes from there after reloading. */
  reset(c: Connection, reason: ResetReason, from: string | null): void {
    const state = this.#broker.state();
    const head = this.#host.head();
    const data: ResetData = {
      reason,
      from,
      oldest: state.first <= state.last ? this.#frames.cursor(state.first) : null,
    };
    const id = this.#frames.cursor(head);
    this.#host.enqueue(
      c,
      Buffer.from(encodeFrame({ id, event: SystemEvents.reset, data: JSON.stringify(data) })),
    );
    c.lastSeq = head;
  }

  /**
   * Fills the ring below its floor with the stream's newest events, so resumes from before this
   * gateway started (clients moving over from a pod that went away) are served from memory.
   * Best effort: on any failure the ring simply holds less, and those resumes go to the log.
   */
  warm(): void {
    const generation = this.#generation;
    const floor = this.#ring.floor;
    const after = Math.max(this.#broker.state().first - 1, floor - this.#opts.ringSize, 0);
    if (after >= floor) return;
    const warming = (async () => {
      const events: StoredEvent[] = [];
      let reached = after;
      while (reached < floor) {
        const req = { after: reached, through: floor, patterns: ALL, limit: this.#opts.replayPage };
        const r = await this.#page(req, reached > after);
        if (r.kind === 'gone' || r.reached <= reached || generation !== this.#generation) return;
        events.push(...r.events);
        reached = r.reached;
      }
      if (generation !== this.#generation || this.#ring.floor !== floor) return;
      this.#ring.prepend(
        after,
        events,
        events.map((e) => this.#frames.live(e)),
      );
    })()
      .catch((err: unknown) => this.#opts.onError?.(err, 'ring warm-up'))
      .finally(() => {
        if (this.#warming === warming) this.#warming = undefined;
      });
    this.#warming = warming;
  }

  #resumed(c: Connection, source: 'ring' | 'reset', events: number): void {
    this.counts[source]++;
    c.resume = source;
    this.#opts.onResumed?.(c, source, events);
  }

  /** Moves a client's cursor to `seq` with an id-only frame when no event already took it there. */
  #moveTo(c: Connection, seq: number): void {
    if (c.lastSeq >= seq) return;
    c.lastSeq = seq;
    this.#host.enqueue(c, this.#frames.idOnly(seq));
  }

  /** Serves a cursor ahead of the feed as a resume from it, unless the feed has not reached it in time. */
  #awaitAhead(c: Connection, seq: number): void {
    c.lastSeq = seq;
    this.#opts.clock.setTimeout(() => {
      if (!c.closed && this.#host.head() < seq) this.reset(c, 'ahead', this.#frames.cursor(seq));
    }, this.#opts.aheadGraceMs);
  }

  /**
   * Replays from the broker's log up to `through` (the head when the stream opened) while live
   * events wait in `c.pending`; then sends the waiting ones. If more arrive during the replay than
   * the ring holds, they are dropped from `pending` and fetched by another round of replay up to
   * the new head instead, so a slow replay under heavy traffic costs bounded memory.
   */
  async #replayLog(c: Connection, through: number, from: string): Promise<void> {
    let lastSent = c.lastSeq;
    let started = false;
    try {
      for (;;) {
        while (c.lastSeq < through && !c.closed) {
          const r = await this.#page(
            { after: c.lastSeq, through, patterns: c.patterns, limit: this.#opts.replayPage },
            started,
          );
          started = true;
          if (r.kind === 'gone') {
            this.reset(c, 'expired', from);
            lastSent = c.lastSeq;
            c.overflowed = false;
            break;
          }
          for (const e of r.events) this.#host.deliver(c, e, this.#frames.replayed(e), true);
          lastSent = c.lastSeq;
          c.lastSeq = Math.max(c.lastSeq, r.reached);
        }
        if (!c.overflowed || c.closed) break;
        c.overflowed = false;
        c.pending = [];
        through = this.#host.head();
      }
    } catch (err) {
      // The client reconnects with the cursor it has and tries again, perhaps on another pod.
      this.#opts.onError?.(err, 'replay');
      this.#host.close(c, 'replay-failed');
      return;
    }
    if (c.closed) return;
    this.#opts.onResumed?.(c, 'log', c.events);
    const pending = c.pending ?? [];
    c.pending = undefined;
    // The replay skipped events of other topics without telling the client; tell it now.
    if (c.lastSeq > lastSent) this.#host.enqueue(c, this.#frames.idOnly(c.lastSeq));
    for (const p of pending) this.#host.deliver(c, p.e, p.frame);
  }

  /**
   * One page of replay from the broker, bounded in concurrency; identical requests in flight or
   * queued (clients of one page reconnecting with the same cursor) share one fetch. A replay's
   * later pages (`continuing`) go ahead of first pages, so clients are served to the end one
   * after another instead of all finishing last.
   */
  #page(req: ReplayRequest, continuing: boolean): Promise<ReplayResult> {
    const key = `${req.after} ${req.through} ${req.limit} ${req.patterns.map((p) => p.pattern).join(' ')}`;
    let shared = this.#inflight.get(key);
    if (shared === undefined) {
      shared = this.#pages
        .run(() => this.#broker.replay(req), continuing)
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, shared);
    }
    return shared;
  }
}
