import { compilePattern, encodeComment, encodeRetry, formatCursor } from '@herald/protocol';
import type { Broker, StoredEvent, StreamState } from '../broker/broker.ts';
import type { Clock } from '../clock.ts';
import { type CloseReason, Connection, type ResumeSource, type Sink } from './connection.ts';
import { scheduleExpiry } from './expiry.ts';
import { Frames } from './frames.ts';
import { Outbox } from './outbox.ts';
import { Resumer } from './resumer.ts';
import { Subscriptions } from './subscriptions.ts';

/**
 * The fan-out core: which connection wants which topic, and getting each event's bytes to them.
 * It knows neither HTTP nor the broker's wire protocol: sockets come in as `Sink`s and events as
 * the broker's live feed. Each event is encoded once; the same Buffer goes to every subscriber,
 * and everything due to one connection in one turn of the event loop is written with one call.
 *
 * The Hub keeps the connections' lifecycle (open, close, drain, shed, token expiry, heartbeats)
 * and the feed's events; its collaborators each have one job: `Subscriptions` (who wants which
 * topic), `Outbox` (write coalescing, slow consumers), `Resumer` (ring, log replay, reset) and
 * `Frames` (the bytes, in the current epoch).
 */

export interface HubOptions {
  readonly clock: Clock;
  /** Returns a float in [0, 1); injected so drain jitter is reproducible in tests. */
  readonly random: () => number;
  readonly heartbeatMs: number;
  readonly retryMs: number;
  /** Events the ring of recent events holds at most. */
  readonly ringSize: number;
  /** Frame bytes the ring holds at most. */
  readonly ringMaxBytes: number;
  readonly releaseVersion: string;
  /**
   * Log replays running at once, each holding its slot until its client is caught up, so clients
   * finish one after another rather than all at the end; the rest queue. Default 4.
   */
  readonly replayConcurrency?: number;
  /** Events fetched per replay round trip. Default 1000. */
  readonly replayPage?: number;
  /**
   * A cursor beyond this gateway's newest event may come from a gateway whose feed is a moment
   * ahead (a shared stream): wait this long for the feed to reach it before a reset. 0 (the
   * default, right for an embedded broker): reset at once.
   */
  readonly aheadGraceMs?: number;
  /**
   * A connection with more than this many bytes still waiting to be sent when more is due is a
   * slow consumer: it is dropped, and its client resumes from its cursor when it comes back.
   */
  readonly maxQueuedBytes: number;
  /** Called once per live event fanned out, with how many streams it went to (for metrics). */
  readonly onFanout?: (e: StoredEvent, streams: number) => void;
  /** A stream's resume is done: what it missed was sent (ring, log) or it was reset. For tracing. */
  readonly onResumed?: (c: Connection, source: ResumeSource, events: number) => void;
  /** A heartbeat went to an idle stream. For tracing. */
  readonly onHeartbeat?: (c: Connection) => void;
  /** A stream ended. For tracing. */
  readonly onClosed?: (c: Connection, reason: CloseReason | 'client') => void;
  readonly onError?: (err: unknown, context: string) => void;
}

export interface OpenRequest {
  /** Subscription patterns, already checked against the topic grammar. */
  readonly topics: readonly string[];
  /** The raw `Last-Event-ID` (or `lastEventId` query); parsed strictly here. */
  readonly lastEventId: string | undefined;
  /** When the credentials expire (ms since the Unix epoch): warned before, closed then. */
  readonly expiresAt?: number | undefined;
  /** How long before `expiresAt` the `herald.token-expiring` event goes out (ms). */
  readonly expiryWarnMs?: number;
  /** Stored on the connection for the hooks (a trace context). */
  readonly trace?: unknown;
}

const HEARTBEAT = Buffer.from(encodeComment());

export class Hub {
  readonly #opts: HubOptions;
  /** Streams that ended, by reason: the client went away, or the hub closed them. Monotonic. */
  readonly closes: Record<CloseReason | 'client', number> = {
    client: 0,
    drain: 0,
    shed: 0,
    slow: 0,
    'token-expired': 0,
    'replay-failed': 0,
    reset: 0,
  };
  /** Live events written to streams (one per event per stream). Monotonic. */
  delivered = 0;
  readonly #broker: Broker;
  readonly #connections = new Set<Connection>();
  readonly #subscriptions = new Subscriptions();
  readonly #outbox: Outbox;
  readonly #frames: Frames;
  readonly #resumer: Resumer;
  #head: number;
  #heartbeat: unknown;
  #unfollow: (() => void) | undefined;
  #draining: Promise<void> | undefined;
  #onEmpty: (() => void) | undefined;
  readonly #opening: Buffer;

  constructor(broker: Broker, opts: HubOptions) {
    this.#opts = opts;
    this.#broker = broker;
    const state = broker.state();
    this.#head = state.last;
    this.#frames = new Frames(state.epoch);
    this.#outbox = new Outbox(opts.maxQueuedBytes, (c) => this.#drop(c, 'slow'));
    this.#resumer = new Resumer(
      broker,
      this.#frames,
      {
        head: () => this.#head,
        deliver: (c, e, frame, replay) => this.#deliver(c, e, frame, replay),
        enqueue: (c, chunk) => this.#outbox.enqueue(c, chunk),
        close: (c, reason) => this.close(c, reason),
      },
      {
        clock: opts.clock,
        ringSize: opts.ringSize,
        ringMaxBytes: opts.ringMaxBytes,
        replayConcurrency: opts.replayConcurrency ?? 4,
        replayPage: opts.replayPage ?? 1000,
        aheadGraceMs: opts.aheadGraceMs ?? 0,
        onResumed: opts.onResumed,
        onError: opts.onError,
      },
    );
    this.#opening = Buffer.from(encodeRetry(opts.retryMs) + encodeComment(`herald ${opts.releaseVersion}`));
  }

  /** Starts following the broker and the heartbeat timer. */
  start(): void {
    this.#unfollow = this.#broker.follow({
      event: (e) => this.#onEvent(e),
      reset: (s, reason) => this.#onReset(s, reason ?? 'epoch'),
    });
    this.#heartbeat = this.#opts.clock.setInterval(() => this.#tick(), this.#opts.heartbeatMs);
    if (this.live) this.#resumer.warm();
  }

  /**
   * True while the ring is being filled with the stream's newest events (at start, and after the
   * stream was replaced), so that a pod taking over another's clients serves their resumes from
   * memory. Readiness waits for it.
   */
  get warming(): boolean {
    return this.#resumer.warming;
  }

  /** Streams opened with a cursor, by where their missed events came from. Monotonic. */
  get resumes(): Readonly<Record<ResumeSource, number>> {
    return this.#resumer.counts;
  }

  /** The open connections. */
  connections(): IterableIterator<Connection> {
    return this.#connections.values();
  }

  get size(): number {
    return this.#connections.size;
  }

  /** False until the broker has named its stream (a JetStream gateway that never reached NATS). */
  get live(): boolean {
    return this.#frames.epoch !== '';
  }

  get draining(): boolean {
    return this.#draining !== undefined;
  }

  /** The newest sequence this gateway's live feed has delivered. */
  get head(): number {
    return this.#head;
  }

  /** Log replays (and ring warm-ups) in progress, each with at most one broker fetch in flight. */
  get replaying(): number {
    return this.#resumer.replaying;
  }

  /** Opens a stream: the opening lines, then a resume (or reset), then live events. */
  open(sink: Sink, req: OpenRequest): Connection {
    const c = new Connection(sink, req.topics.map(compilePattern));
    c.openedAt = this.#opts.clock.now();
    c.trace = req.trace;
    this.#outbox.enqueue(c, this.#opening);
    this.#resumer.begin(c, req.lastEventId);
    this.#connections.add(c);
    this.#subscriptions.add(c);
    if (req.expiresAt !== undefined)
      scheduleExpiry(c, this.#opts.clock, req.expiresAt, req.expiryWarnMs ?? 0, {
        warn: (frame) => this.#outbox.enqueue(c, frame),
        expire: () => this.close(c, 'token-expired'),
      });
    return c;
  }

  /**
   * Closes `fraction` (0–1) of the open streams, chosen at random, spread over `windowMs` with a
   * jittered `retry:`, so their clients reconnect (to other pods, once the load balancer prefers
   * them) and resume. Unlike drain, this gateway keeps taking streams. Returns how many it closes.
   */
  shed(fraction: number, windowMs: number): number {
    const all = [...this.#connections];
    const n = Math.round(Math.min(1, Math.max(0, fraction)) * all.length);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(this.#opts.random() * (all.length - i));
      [all[i], all[j]] = [all[j]!, all[i]!];
      this.#closeWithin(all[i]!, windowMs, 'shed');
    }
    return n;
  }

  /** The client went away (or the adapter gave up on it). Idempotent. */
  remove(c: Connection): void {
    if (c.closed) return;
    this.#drop(c, 'client');
  }

  /** Closes one connection from the server side with a jittered `retry:`, so its client comes back later. */
  close(c: Connection, reason: CloseReason = 'drain'): void {
    if (c.closed) return;
    this.#outbox.end(c, this.#jitteredRetry());
    this.#drop(c, reason);
  }

  /**
   * Answers a stream this gateway will not serve (it is draining) with a jittered `retry:` and
   * closes it. Not a 503: EventSource treats any non-200 answer as final and never reconnects.
   */
  turnAway(sink: Sink, why: string): void {
    sink.end(Buffer.concat([Buffer.from(encodeComment(why)), this.#jitteredRetry()]));
  }

  /**
   * Stops taking streams and closes the open ones spread uniformly over `windowMs`, so their
   * clients reconnect elsewhere a few at a time. Resolves when none is left.
   */
  drain(windowMs: number): Promise<void> {
    if (this.#draining !== undefined) return this.#draining;
    this.#draining = new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
      if (this.#connections.size === 0) resolve();
    });
    for (const c of this.#connections) this.#closeWithin(c, windowMs, 'drain');
    return this.#draining;
  }

  /** Stops timers and the live feed; closes whatever is still open at once. */
  stop(): void {
    this.#opts.clock.clearInterval(this.#heartbeat);
    this.#unfollow?.();
    for (const c of this.#connections) this.close(c);
  }

  #closeWithin(c: Connection, windowMs: number, reason: CloseReason): void {
    const delay = Math.floor(this.#opts.random() * windowMs);
    if (delay === 0) this.close(c, reason);
    else this.#opts.clock.setTimeout(() => this.close(c, reason), delay);
  }

  #drop(c: Connection, reason: CloseReason | 'client'): void {
    c.closed = true;
    this.closes[reason]++;
    this.#opts.onClosed?.(c, reason);
    if (c.timers !== undefined) for (const t of c.timers) this.#opts.clock.clearTimeout(t);
    this.#connections.delete(c);
    this.#subscriptions.delete(c);
    if (this.#connections.size === 0) this.#onEmpty?.();
  }

  #jitteredRetry(): Buffer {
    return Buffer.from(`${encodeRetry(Math.round(this.#opts.retryMs * (0.5 + this.#opts.random())))}\n`);
  }

  #onEvent(e: StoredEvent): void {
    this.#head = e.seq;
    const frame = this.#frames.live(e);
    this.#resumer.remember(e, frame);
    let streams = 0;
    for (const set of this.#subscriptions.matching(e.topic))
      for (const c of set) streams += this.#deliver(c, e, frame);
    this.delivered += streams;
    this.#opts.onFanout?.(e, streams);
  }

  /**
   * Queues one event to one client, once: a client matching it through several patterns gets it
   * once. Returns 1 when it was queued to be written now, else 0 (a duplicate, or held back).
   */
  #deliver(c: Connection, e: StoredEvent, frame: Buffer, replay = false): number {
    if (c.lastSeq >= e.seq) return 0;
    if (c.pending !== undefined && !replay) {
      if (c.pending.length < this.#opts.ringSize) c.pending.push({ e, frame });
      else c.overflowed = true;
      return 0;
    }
    c.lastSeq = e.seq;
    c.events++;
    this.#outbox.enqueue(c, frame);
    return 1;
  }

  #onReset(state: StreamState, reason: 'epoch' | 'expired'): void {
    const previous = this.#frames.epoch;
    this.#frames.epoch = state.epoch;
    this.#head = state.last;
    this.#resumer.restart(state.last);
    for (const c of this.#connections) {
      // A replay in flight is void; the client reconnects and is told then.
      if (c.pending !== undefined) this.close(c, 'reset');
      else this.#resumer.reset(c, reason, formatCursor({ epoch: previous, seq: c.lastSeq }));
    }
  }

  #tick(): void {
    const onHeartbeat = this.#opts.onHeartbeat;
    for (const c of this.#connections) {
      if (!c.wrote) {
        this.#outbox.enqueue(c, HEARTBEAT);
        onHeartbeat?.(c);
      }
      c.wrote = false;
    }
  }
}
