import {
  type CompiledPattern,
  compilePattern,
  encodeComment,
  encodeFrame,
  encodeIdOnly,
  encodeRetry,
  formatCursor,
  matches,
  matchTokens,
  type ResetData,
  type ResetReason,
  SystemEvents,
} from '@herald/protocol';
import type { Broker, ReplayRequest, ReplayResult, StoredEvent, StreamState } from './broker/broker.ts';
import type { Clock } from './clock.ts';
import { FrameArena } from './frame-arena.ts';
import { Limiter } from './limiter.ts';
import { planResume } from './resume.ts';
import { Ring } from './ring.ts';

/**
 * The fan-out core: which connection wants which topic, and getting each event's bytes to them.
 * It knows neither HTTP nor the broker's wire protocol: sockets come in as `Sink`s and events as
 * the broker's live feed. Each event is encoded once; the same Buffer goes to every subscriber,
 * and everything due to one connection in one turn of the event loop is written with one call.
 */

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

export interface HubOptions {
  readonly clock: Clock;
  /** Returns a float in [0, 1); injected so drain jitter is reproducible in tests. */
  readonly random: () => number;
  readonly heartbeatMs: number;
  readonly retryMs: number;
  /** Events the ring of recent events holds at most. */
  readonly ringSize: number;
  /** Frame bytes the ring holds at most. Default 64 MiB. */
  readonly ringMaxBytes?: number;
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
   * Default 1 MiB.
   */
  readonly maxQueuedBytes?: number;
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

const HEARTBEAT = Buffer.from(encodeComment());
/** Every topic: what the ring is warmed with. */
const ALL = [compilePattern('>')];
/** A flush writes a connection's chunks separately (corked) rather than copying them together above this. */
const COPY_LIMIT = 16 * 1024;
/** setTimeout's longest delay (~24.8 days); Node fires a longer one after 1 ms. */
const TIMER_MAX_MS = 2 ** 31 - 1;

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

type Hook = 'onError' | 'onFanout' | 'onResumed' | 'onHeartbeat' | 'onClosed';

export class Hub {
  readonly #opts: Required<Omit<HubOptions, Hook>> & Pick<HubOptions, Hook>;
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
  /** Streams opened with a cursor, by where their missed events came from. Monotonic. */
  readonly resumes: Record<ResumeSource, number> = { ring: 0, log: 0, reset: 0 };
  /** Live events written to streams (one per event per stream). Monotonic. */
  delivered = 0;
  readonly #broker: Broker;
  readonly #connections = new Set<Connection>();
  readonly #exact = new Map<string, Set<Connection>>();
  readonly #wildcards = new Map<string, { tokens: readonly string[]; conns: Set<Connection> }>();
  readonly #replays: Limiter;
  readonly #inflight = new Map<string, Promise<ReplayResult>>();
  readonly #frames = new WeakMap<StoredEvent, Buffer>();
  readonly #arena = new FrameArena();
  #ring: Ring;
  /** Bumped whenever the ring is cleared, so a warm-up begun before it is dropped. */
  #generation = 0;
  #warming: Promise<void> | undefined;
  #epoch: string;
  #head: number;
  #dirty: Connection[] = [];
  #flushScheduled = false;
  #heartbeat: unknown;
  #unfollow: (() => void) | undefined;
  #draining: Promise<void> | undefined;
  #onEmpty: (() => void) | undefined;
  readonly #opening: Buffer;

  constructor(broker: Broker, opts: HubOptions) {
    this.#opts = {
      ringMaxBytes: 64 * 1024 * 1024,
      replayConcurrency: 4,
      replayPage: 1000,
      aheadGraceMs: 0,
      maxQueuedBytes: 1024 * 1024,
      ...opts,
    };
    this.#broker = broker;
    this.#replays = new Limiter(this.#opts.replayConcurrency);
    const state = broker.state();
    this.#epoch = state.epoch;
    this.#head = state.last;
    this.#ring = new Ring(opts.ringSize, this.#opts.ringMaxBytes, state.last);
    this.#opening = Buffer.from(encodeRetry(opts.retryMs) + encodeComment(`herald ${opts.releaseVersion}`));
  }

  /** Starts following the broker and the heartbeat timer. */
  start(): void {
    this.#unfollow = this.#broker.follow({
      event: (e) => this.#onEvent(e),
      reset: (s, reason) => this.#onReset(s, reason ?? 'epoch'),
    });
    this.#heartbeat = this.#opts.clock.setInterval(() => this.#tick(), this.#opts.heartbeatMs);
    if (this.live) this.#warm();
  }

  /**
   * True while the ring is being filled with the stream's newest events (at start, and after the
   * stream was replaced), so that a pod taking over another's clients serves their resumes from
   * memory. Readiness waits for it.
   */
  get warming(): boolean {
    return this.#warming !== undefined;
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
    return this.#epoch !== '';
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
    return this.#replays.running;
  }

  /** Opens a stream: the opening lines, then a resume (or reset), then live events. */
  open(sink: Sink, req: OpenRequest): Connection {
    const c = new Connection(sink, req.topics.map(compilePattern));
    c.openedAt = this.#opts.clock.now();
    c.trace = req.trace;
    const state = this.#broker.state();
    const head = this.#head;
    const plan = planResume(req.lastEventId, {
      epoch: this.#epoch,
      first: state.first,
      last: Math.max(state.last, head),
      ringFloor: this.#ring.floor,
    });
    this.#enqueue(c, this.#opening);
    switch (plan.kind) {
      case 'fresh':
        // Even a client that gets nothing before it drops then resumes from here.
        c.lastSeq = head;
        this.#enqueue(c, this.#idOnly(head));
        break;
      case 'reset':
        if (plan.reason === 'ahead' && plan.from !== undefined && this.#opts.aheadGraceMs > 0) {
          this.#awaitAhead(c, plan.from.seq);
          break;
        }
        this.resumes.reset++;
        c.resume = 'reset';
        this.#opts.onResumed?.(c, 'reset', 0);
        this.#sendReset(c, plan.reason, plan.from === undefined ? null : formatCursor(plan.from));
        break;
      case 'ring': {
        this.resumes.ring++;
        c.resume = 'ring';
        c.lastSeq = plan.after;
        const { chunks, last, count } = this.#ring.collect(plan.after, (t) =>
          c.patterns.some((p) => matches(p, t)),
        );
        for (const chunk of chunks) this.#enqueue(c, chunk);
        if (last !== undefined) c.lastSeq = last;
        c.events += count;
        this.#opts.onResumed?.(c, 'ring', count);
        this.#moveTo(c, head);
        break;
      }
      case 'log':
        this.resumes.log++;
        c.resume = 'log';
        c.lastSeq = plan.after;
        c.pending = [];
        void this.#replayLog(c, head, formatCursor({ epoch: this.#epoch, seq: plan.after }));
        break;
    }
    this.#register(c);
    if (req.expiresAt !== undefined) this.#expireAt(c, req.expiresAt, req.expiryWarnMs ?? 0);
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

  #expireAt(c: Connection, expiresAt: number, warnMs: number): void {
    const now = this.#opts.clock.now();
    const clock = this.#opts.clock;
    if (expiresAt - now > TIMER_MAX_MS) {
      // setTimeout fires at once past ~24.8 days: wait in steps instead.
      c.timers = [clock.setTimeout(() => this.#expireAt(c, expiresAt, warnMs), TIMER_MAX_MS)];
      return;
    }
    c.timers = [
      clock.setTimeout(
        () => {
          if (c.closed) return;
          const data = JSON.stringify({ expiresAt: new Date(expiresAt).toISOString() });
          this.#enqueue(c, Buffer.from(encodeFrame({ event: SystemEvents.tokenExpiring, data })));
        },
        Math.max(0, expiresAt - warnMs - now),
      ),
      clock.setTimeout(() => this.close(c, 'token-expired'), Math.max(0, expiresAt - now)),
    ];
  }

  #closeWithin(c: Connection, windowMs: number, reason: CloseReason): void {
    const delay = Math.floor(this.#opts.random() * windowMs);
    if (delay === 0) this.close(c, reason);
    else this.#opts.clock.setTimeout(() => this.close(c, reason), delay);
  }

  /** The client went away (or the adapter gave up on it). Idempotent. */
  remove(c: Connection): void {
    if (c.closed) return;
    this.#drop(c, 'client');
  }

  #drop(c: Connection, reason: CloseReason | 'client'): void {
    c.closed = true;
    this.closes[reason]++;
    this.#opts.onClosed?.(c, reason);
    if (c.timers !== undefined) for (const t of c.timers) this.#opts.clock.clearTimeout(t);
    this.#unregister(c);
  }

  /** Closes one connection from the server side with a jittered `retry:`, so its client comes back later. */
  close(c: Connection, reason: CloseReason = 'drain'): void {
    if (c.closed) return;
    const retry = this.#jitteredRetry();
    const q = c.queue;
    c.queue = undefined;
    c.sink.end(q === undefined ? retry : Buffer.concat([...(Array.isArray(q) ? q : [q]), retry]));
    this.#drop(c, reason);
  }

  /**
   * Answers a stream this gateway will not serve (it is draining) with a jittered `retry:` and
   * closes it. Not a 503: EventSource treats any non-200 answer as final and never reconnects.
   */
  turnAway(sink: Sink, why: string): void {
    sink.end(Buffer.concat([Buffer.from(encodeComment(why)), this.#jitteredRetry()]));
  }

  #jitteredRetry(): Buffer {
    return Buffer.from(`${encodeRetry(Math.round(this.#opts.retryMs * (0.5 + this.#opts.random())))}\n`);
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

  /** A replayed event's frame, encoded once however many replays send it. */
  #encode(e: StoredEvent): Buffer {
    let frame = this.#frames.get(e);
    if (frame === undefined) {
      frame = Buffer.from(this.#encodeText(e));
      this.#frames.set(e, frame);
    }
    return frame;
  }

  #encodeText(e: StoredEvent): string {
    return encodeFrame({
      id: formatCursor({ epoch: this.#epoch, seq: e.seq }),
      event: e.event,
      data: e.data,
    });
  }

  /** Moves a client's cursor to `seq` with an id-only frame when no event already took it there. */
  #moveTo(c: Connection, seq: number): void {
    if (c.lastSeq >= seq) return;
    c.lastSeq = seq;
    this.#enqueue(c, this.#idOnly(seq));
  }

  #idOnly(seq: number): Buffer {
    return Buffer.from(encodeIdOnly(formatCursor({ epoch: this.#epoch, seq })));
  }

  /** Serves a cursor ahead of the feed as a resume from it, unless the feed has not reached it in time. */
  #awaitAhead(c: Connection, seq: number): void {
    c.lastSeq = seq;
    this.#opts.clock.setTimeout(() => {
      if (!c.closed && this.#head < seq) {
        this.#sendReset(c, 'ahead', formatCursor({ epoch: this.#epoch, seq }));
      }
    }, this.#opts.aheadGraceMs);
  }

  #sendReset(c: Connection, reason: ResetReason, from: string | null): void {
    const state = this.#broker.state();
    const data: ResetData = {
      reason,
      from,
      oldest: state.first <= state.last ? formatCursor({ epoch: this.#epoch, seq: state.first }) : null,
    };
    const id = formatCursor({ epoch: this.#epoch, seq: this.#head });
    this.#enqueue(c, Buffer.from(encodeFrame({ id, event: SystemEvents.reset, data: JSON.stringify(data) })));
    c.lastSeq = this.#head;
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
          const r = await this.#fetch(
            { after: c.lastSeq, through, patterns: c.patterns, limit: this.#opts.replayPage },
            started,
          );
          started = true;
          if (r.kind === 'gone') {
            this.#sendReset(c, 'expired', from);
            lastSent = c.lastSeq;
            c.overflowed = false;
            break;
          }
          for (const e of r.events) this.#deliver(c, e, this.#encode(e), true);
          lastSent = c.lastSeq;
          c.lastSeq = Math.max(c.lastSeq, r.reached);
        }
        if (!c.overflowed || c.closed) break;
        c.overflowed = false;
        c.pending = [];
        through = this.#head;
      }
    } catch (err) {
      // The client reconnects with the cursor it has and tries again, perhaps on another pod.
      this.#opts.onError?.(err, 'replay');
      this.close(c, 'replay-failed');
      return;
    }
    if (c.closed) return;
    this.#opts.onResumed?.(c, 'log', c.events);
    const pending = c.pending ?? [];
    c.pending = undefined;
    // The replay skipped events of other topics without telling the client; tell it now.
    if (c.lastSeq > lastSent) this.#enqueue(c, this.#idOnly(c.lastSeq));
    for (const p of pending) this.#deliver(c, p.e, p.frame);
  }

  /**
   * One page of replay from the broker, bounded in concurrency; identical requests in flight or
   * queued (clients of one page reconnecting with the same cursor) share one fetch. A replay's
   * later pages (`continuing`) go ahead of first pages, so clients are served to the end one
   * after another instead of all finishing last.
   */
  #fetch(req: ReplayRequest, continuing: boolean): Promise<ReplayResult> {
    const key = `${req.after} ${req.through} ${req.limit} ${req.patterns.map((p) => p.pattern).join(' ')}`;
    let shared = this.#inflight.get(key);
    if (shared === undefined) {
      shared = this.#replays
        .run(() => this.#broker.replay(req), continuing)
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, shared);
    }
    return shared;
  }

  /**
   * Fills the ring below its floor with the stream's newest events, so resumes from before this
   * gateway started (clients moving over from a pod that went away) are served from memory.
   * Best effort: on any failure the ring simply holds less, and those resumes go to the log.
   */
  #warm(): void {
    const generation = this.#generation;
    const floor = this.#ring.floor;
    const after = Math.max(this.#broker.state().first - 1, floor - this.#opts.ringSize, 0);
    if (after >= floor) return;
    const warming = (async () => {
      const events: StoredEvent[] = [];
      let reached = after;
      while (reached < floor) {
        const req = { after: reached, through: floor, patterns: ALL, limit: this.#opts.replayPage };
        const r = await this.#fetch(req, reached > after);
        if (r.kind === 'gone' || r.reached <= reached || generation !== this.#generation) return;
        events.push(...r.events);
        reached = r.reached;
      }
      if (generation !== this.#generation || this.#ring.floor !== floor) return;
      this.#ring.prepend(
        after,
        events,
        events.map((e) => this.#arena.append(this.#encodeText(e))),
      );
    })()
      .catch((err: unknown) => this.#opts.onError?.(err, 'ring warm-up'))
      .finally(() => {
        if (this.#warming === warming) this.#warming = undefined;
      });
    this.#warming = warming;
  }

  #register(c: Connection): void {
    this.#connections.add(c);
    for (const p of c.patterns) {
      if (p.kind === 'exact') {
        const set = this.#exact.get(p.pattern);
        if (set === undefined) this.#exact.set(p.pattern, new Set([c]));
        else set.add(c);
      } else {
        const w = this.#wildcards.get(p.pattern);
        if (w === undefined) this.#wildcards.set(p.pattern, { tokens: p.tokens, conns: new Set([c]) });
        else w.conns.add(c);
      }
    }
  }

  #unregister(c: Connection): void {
    this.#connections.delete(c);
    for (const p of c.patterns) {
      const index = p.kind === 'exact' ? this.#exact : this.#wildcards;
      const entry = index.get(p.pattern);
      const set = entry instanceof Set ? entry : entry?.conns;
      set?.delete(c);
      if (set?.size === 0) index.delete(p.pattern);
    }
    if (this.#connections.size === 0) this.#onEmpty?.();
  }

  #onEvent(e: StoredEvent): void {
    this.#head = e.seq;
    const frame = this.#arena.append(this.#encodeText(e));
    this.#ring.push(e, frame);
    let streams = 0;
    const exact = this.#exact.get(e.topic);
    if (exact !== undefined) for (const c of exact) streams += this.#deliver(c, e, frame);
    if (this.#wildcards.size > 0) {
      const tokens = e.topic.split('.');
      for (const w of this.#wildcards.values()) {
        if (matchTokens(w.tokens, tokens)) for (const c of w.conns) streams += this.#deliver(c, e, frame);
      }
    }
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
    this.#enqueue(c, frame);
    return 1;
  }

  #onReset(state: StreamState, reason: 'epoch' | 'expired'): void {
    const previous = this.#epoch;
    this.#epoch = state.epoch;
    this.#head = state.last;
    this.#ring.clear(state.last);
    this.#generation++;
    this.#warming = undefined;
    this.#warm();
    for (const c of this.#connections) {
      // A replay in flight is void; the client reconnects and is told then.
      if (c.pending !== undefined) this.close(c, 'reset');
      else this.#sendReset(c, reason, formatCursor({ epoch: previous, seq: c.lastSeq }));
    }
  }

  #enqueue(c: Connection, chunk: Buffer): void {
    c.wrote = true;
    const q = c.queue;
    if (q === undefined) {
      c.queue = chunk;
      this.#dirty.push(c);
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    } else if (Array.isArray(q)) q.push(chunk);
    else c.queue = [q, chunk];
  }

  #flush(): void {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (const c of dirty) {
      const q = c.queue;
      if (q === undefined || c.closed) continue;
      c.queue = undefined;
      const sink = c.sink;
      if (sink.destroy !== undefined && (sink.writableLength ?? 0) > this.#opts.maxQueuedBytes) {
        // It has not read what it was sent; more would only pile up here.
        sink.destroy();
        this.#drop(c, 'slow');
        continue;
      }
      if (!Array.isArray(q)) {
        c.bytes += q.length;
        sink.write(q);
      } else c.bytes += this.#writeAll(sink, q);
    }
  }

  /**
   * Small chunks are copied into one write; large ones (slices of the ring) leave uncopied,
   * corked. Returns the bytes written.
   */
  #writeAll(sink: Sink, chunks: Buffer[]): number {
    let bytes = 0;
    for (const chunk of chunks) bytes += chunk.length;
    if (bytes <= COPY_LIMIT || sink.cork === undefined) {
      sink.write(Buffer.concat(chunks, bytes));
      return bytes;
    }
    sink.cork();
    for (const chunk of chunks) sink.write(chunk);
    sink.uncork?.();
    return bytes;
  }

  #tick(): void {
    const onHeartbeat = this.#opts.onHeartbeat;
    for (const c of this.#connections) {
      if (!c.wrote) {
        this.#enqueue(c, HEARTBEAT);
        onHeartbeat?.(c);
      }
      c.wrote = false;
    }
  }
}
