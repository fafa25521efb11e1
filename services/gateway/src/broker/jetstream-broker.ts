import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  isEventType,
  minimalPatterns,
  RESERVED_EVENT_PREFIX,
  SUBJECT_PREFIX,
  subjectToTopic,
  topicMatcher,
  topicToSubject,
} from '@herald/protocol';
import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import {
  connect,
  credsAuthenticator,
  headers,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
  nanos,
} from '@nats-io/transport-node';
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

/** The header that carries an event's type; plain NATS publishers may set it too. */
export const EVENT_HEADER = 'Herald-Event';
/** W3C trace context of the publish, so a delivery can link back to it. */
export const TRACEPARENT_HEADER = 'traceparent';
/** Fleet commands from the operator; see control.ts. */
export const CONTROL_SUBJECTS = 'herald.ctl.>';

export interface JetStreamBrokerOptions {
  readonly clock: Clock;
  /** Client URLs, e.g. `nats://nats:4222`. */
  readonly servers: readonly string[];
  /** A `.creds` file (JWT + nkey seed), a token file, and TLS files: all optional paths. */
  readonly credsFile?: string | undefined;
  readonly tokenFile?: string | undefined;
  readonly user?: string | undefined;
  readonly passwordFile?: string | undefined;
  readonly tlsCaFile?: string | undefined;
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
  readonly stream: {
    readonly name: string;
    /** Create or update the stream at start; otherwise only verify it. */
    readonly manage: boolean;
    readonly replicas: number;
    readonly maxEvents: number;
    readonly maxAgeMs: number;
    readonly maxBytes: number;
    readonly dedupeWindowMs: number;
  };
  /** How often the stream's state (first sequence, incarnation) is read (ms). Default 1000. */
  readonly refreshMs?: number;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Heartbeat asked of the server while the live feed waits for events (ms). Two missed in a row
 * mean the feed's consumer is gone (e.g. the cluster node holding it stopped) and the feed is
 * restarted; the client library alone would wait for that node to come back.
 */
const LIVE_HEARTBEAT_MS = 1_000;

/** JetStream says the stream does not exist (by its API error code, not its message). */
function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

/** The stream was deleted and recreated while a publish was in flight: its cursors are unknown. */
export class StreamReplacedError extends Error {
  constructor(stream: string) {
    super(`stream ${stream} was replaced while publishing; retry (with the same idempotency key)`);
    this.name = 'StreamReplacedError';
  }
}

/**
 * A stream's incarnation: its creation time, hashed short. A deleted and recreated stream has a
 * new one, so cursors from before are recognised as foreign.
 */
export function epochOf(info: StreamInfo): string {
  return createHash('sha256')
    .update(`${info.config.name}\n${info.created}`)
    .digest()
    .readUIntBE(0, 6)
    .toString(36);
}

/** What Herald needs of a stream it did not create; each entry names what is wrong. */
export function streamProblems(config: StreamConfig): string[] {
  const problems: string[] = [];
  // Exactly: the live feed reads `herald.t.>`, and messages on other subjects would look like gaps.
  if (config.subjects?.length !== 1 || config.subjects[0] !== `${SUBJECT_PREFIX}>`) {
    problems.push(
      `subjects must be exactly ["${SUBJECT_PREFIX}>"] (has ${JSON.stringify(config.subjects ?? [])})`,
    );
  }
  if (config.retention !== RetentionPolicy.Limits) {
    problems.push(`retention must be "limits" (has "${config.retention}"): resume needs the history kept`);
  }
  return problems;
}

/**
 * The JetStream broker: one stream, one ordered consumer for the live feed, and short-lived
 * ordered consumers (filtered server-side) for replays. Ordered consumers are served by the
 * stream leader, so a replay never reads a lagging replica.
 */
export class JetStreamBroker implements Broker {
  readonly kind = 'jetstream';
  readonly #opts: JetStreamBrokerOptions;
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #connected = false;
  #streamOk = false;
  #closed = false;
  #state: StreamState = { epoch: '', first: 1, last: 0 };
  #live: ConsumerMessages | undefined;
  /** Bumped when the live feed starts over on a (new) stream; older feed loops stop. */
  #liveGen = 0;
  /** The last sequence handed to listeners: a restarted live feed continues after it. */
  #seen = 0;
  #refresh: unknown;
  #ensuring = false;
  readonly #listeners = new Set<BrokerListener>();
  readonly #control = new Set<(subject: string, data: Uint8Array) => void>();
  readonly #sleepers = new Set<() => void>();
  /** A read of the stream's incarnation not sent yet, which publishes join; see #currentEpoch. */
  #epochRead: Promise<string> | undefined;
  #epochReadInFlight: Promise<void> | undefined;

  constructor(opts: JetStreamBrokerOptions) {
    this.#opts = opts;
  }

  get ready(): boolean {
    return this.#connected && this.#streamOk && !this.#closed;
  }

  state(): StreamState {
    return this.#state;
  }

  /** Returns at once: connecting waits for NATS in the background, and readiness says when it is there. */
  async start(): Promise<void> {
    void this.#connect().catch((err: unknown) =>
      this.#opts.log('error', 'nats connection failed for good', { error: String(err) }),
    );
  }

  onControl(handler: (subject: string, data: Uint8Array) => void): () => void {
    this.#control.add(handler);
    return () => this.#control.delete(handler);
  }

  follow(listener: BrokerListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async publish(messages: readonly PublishMessage[]): Promise<PublishAck[]> {
    const js = this.#js;
    if (js === undefined || !this.ready) throw new Error('not connected to JetStream');
    const { epoch } = this.#state;
    // All on one connection without waiting in between: JetStream stores them in this order.
    const acks = await Promise.all(
      messages.map(async (m) => {
        const h = headers();
        if (m.event !== undefined) h.set(EVENT_HEADER, m.event);
        if (m.traceparent !== undefined) h.set(TRACEPARENT_HEADER, m.traceparent);
        const ack = await js.publish(topicToSubject(m.topic), encoder.encode(m.data), {
          headers: h,
          ...(m.key === undefined ? {} : { msgID: m.key }),
          expect: { streamName: this.#opts.stream.name },
        });
        return { epoch, seq: ack.seq, duplicate: ack.duplicate };
      }),
    );
    // An ack names a sequence, not the stream's incarnation. Known to be `epoch` before the
    // publish and read again after the acks, the stream was that incarnation throughout, so the
    // cursors are right; otherwise it was replaced meanwhile and no cursor can be vouched for.
    if ((await this.#currentEpoch()) !== epoch) throw new StreamReplacedError(this.#opts.stream.name);
    return acks;
  }

  /**
   * The stream's incarnation, read by a request sent after this call; concurrent callers share
   * one read, so a burst of publishes costs one round trip, not one each. A new incarnation is
   * followed at once, resetting clients.
   */
  #currentEpoch(): Promise<string> {
    this.#epochRead ??= (async () => {
      // A caller joining a read already sent could get an answer from before its ack: the next
      // read waits for the one in flight, and callers join it until it is sent.
      await this.#epochReadInFlight;
      this.#epochRead = undefined;
      const reading = this.#clients()
        .jsm.streams.info(this.#opts.stream.name)
        .then((info) => {
          const epoch = epochOf(info);
          if (epoch !== this.#state.epoch) this.#startLive(info);
          return epoch;
        });
      this.#epochReadInFlight = reading.then(
        () => {},
        () => {},
      );
      return reading;
    })();
    return this.#epochRead;
  }

  async replay(req: ReplayRequest): Promise<ReplayResult> {
    const { js, jsm } = this.#clients();
    const info = await jsm.streams.info(this.#opts.stream.name);
    const state = this.#observe(info);
    if (state.epoch !== this.#state.epoch) return { kind: 'gone', state };
    this.#state = { ...this.#state, first: state.first, last: Math.max(this.#state.last, state.last) };
    if (req.after < state.first - 1) return { kind: 'gone', state };
    const through = Math.min(req.through, state.last);
    if (req.after >= through) return { kind: 'events', events: [], reached: through };
    const consumer = await js.consumers.get(this.#opts.stream.name, {
      filter_subjects: minimalPatterns(req.patterns.map((p) => p.pattern)).map(topicToSubject),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: req.after + 1,
    });
    try {
      return await this.#fetchThrough(consumer, req, through);
    } finally {
      await consumer.delete().catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#sleepers) wake();
    this.#opts.clock.clearInterval(this.#refresh);
    this.#listeners.clear();
    await this.#live?.close();
    await this.#nc?.close().catch(() => {});
  }

  /** Waits `ms`, or less when the broker closes, so no retry timer outlives it. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const handle = this.#opts.clock.setTimeout(() => wake(), ms);
      const wake = () => {
        this.#opts.clock.clearTimeout(handle);
        this.#sleepers.delete(wake);
        resolve();
      };
      this.#sleepers.add(wake);
    });
  }

  async #fetchThrough(consumer: Consumer, req: ReplayRequest, through: number): Promise<ReplayResult> {
    const events: StoredEvent[] = [];
    const wanted = topicMatcher(req.patterns);
    const pending = (await consumer.info(true)).num_pending;
    if (pending === 0) return { kind: 'events', events, reached: through };
    const batch = await consumer.fetch({ max_messages: Math.min(req.limit, pending), expires: 5000 });
    let read = req.after;
    for await (const m of batch) {
      if (m.seq > through) return { kind: 'events', events, reached: through };
      read = m.seq;
      const e = this.#toEvent(m.subject, m.seq, m.headers, m.data, m.timestampNanos);
      if (e !== undefined && wanted(e.topic)) events.push(e);
      if (m.info.pending === 0) return { kind: 'events', events, reached: through };
      if (events.length >= req.limit) return { kind: 'events', events, reached: m.seq };
    }
    // The batch ended (its size reached, or it expired): it covered everything up to the last
    // message read, matching or not; the caller asks again from there.
    return { kind: 'events', events, reached: read };
  }

  #clients(): { js: JetStreamClient; jsm: JetStreamManager } {
    if (this.#js === undefined || this.#jsm === undefined || !this.ready)
      throw new Error('not connected to JetStream');
    return { js: this.#js, jsm: this.#jsm };
  }

  #connectOptions(): NodeConnectionOptions {
    const o = this.#opts;
    const opts: NodeConnectionOptions = {
      servers: [...o.servers],
      name: 'herald-gateway',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
    };
    if (o.credsFile) opts.authenticator = credsAuthenticator(readFileSync(o.credsFile));
    if (o.tokenFile) opts.token = readFileSync(o.tokenFile, 'utf8').trim();
    if (o.user) opts.user = o.user;
    if (o.passwordFile) opts.pass = readFileSync(o.passwordFile, 'utf8').trim();
    if (o.tlsCaFile || o.tlsCertFile) {
      opts.tls = {
        ...(o.tlsCaFile ? { caFile: o.tlsCaFile } : {}),
        ...(o.tlsCertFile ? { certFile: o.tlsCertFile } : {}),
        ...(o.tlsKeyFile ? { keyFile: o.tlsKeyFile } : {}),
      };
    }
    return opts;
  }

  /** Connects, retrying with backoff until NATS answers (it may start after the gateway) or `close()`. */
  async #connect(): Promise<void> {
    this.#opts.log('info', 'connecting to nats', { servers: this.#opts.servers });
    let nc: NatsConnection | undefined;
    for (let attempt = 0; nc === undefined; attempt++) {
      if (this.#closed) return;
      try {
        nc = await connect(this.#connectOptions());
      } catch (err) {
        const retryMs = Math.min(5_000, 250 * 2 ** Math.min(attempt, 5));
        this.#opts.log(attempt === 0 ? 'error' : 'warn', 'nats not reachable; retrying', {
          error: String(err),
          retryMs,
        });
        await this.#sleep(retryMs);
      }
    }
    if (this.#closed) return void (await nc.close());
    this.#nc = nc;
    this.#connected = true;
    this.#js = jetstream(nc);
    this.#jsm = await jetstreamManager(nc);
    this.#opts.log('info', 'connected to nats', { server: nc.getServer() });
    void this.#watchStatus(nc);
    // Survives reconnects: nats.js resubscribes by itself.
    nc.subscribe(CONTROL_SUBJECTS, {
      callback: (err, msg) => {
        if (err === null) for (const handler of this.#control) handler(msg.subject, msg.data);
      },
    });
    await this.#ensureStream();
    this.#refresh = this.#opts.clock.setInterval(
      () => void this.#refreshState(),
      this.#opts.refreshMs ?? 1000,
    );
  }

  async #watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.#connected = false;
        this.#opts.log('warn', 'nats disconnected; streams stay open, publishes are refused');
      } else if (s.type === 'reconnect') {
        this.#connected = true;
        this.#opts.log('info', 'nats reconnected');
        // The feed's consumer may be gone (server restarted) or unreachable (its node stopped);
        // a fresh one continues after the last event delivered.
        this.#interruptLive('nats reconnected');
      }
    }
  }

  /** Creates, updates or verifies the stream, retrying until it succeeds; then follows it. */
  async #ensureStream(): Promise<void> {
    if (this.#ensuring) return;
    this.#ensuring = true;
    try {
      await this.#ensureStreamOnce();
    } finally {
      this.#ensuring = false;
    }
  }

  async #ensureStreamOnce(): Promise<void> {
    const jsm = this.#jsm!;
    const { name, manage, replicas, maxEvents, maxAgeMs, maxBytes, dedupeWindowMs } = this.#opts.stream;
    const wanted: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [`${SUBJECT_PREFIX}>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      max_msgs: maxEvents,
      max_age: nanos(maxAgeMs),
      max_bytes: maxBytes,
      duplicate_window: nanos(dedupeWindowMs),
    };
    for (let attempt = 1; !this.#closed; attempt++) {
      try {
        let info: StreamInfo;
        if (manage) {
          info = await jsm.streams.info(name).then(
            () => jsm.streams.update(name, wanted),
            (err: unknown) => {
              if (isStreamNotFound(err)) return jsm.streams.add(wanted);
              throw err;
            },
          );
        } else {
          info = await jsm.streams.info(name);
          const problems = streamProblems(info.config);
          if (problems.length > 0) {
            throw new Error(
              `stream ${name} does not suit Herald: ${problems.join('; ')} (or set HERALD_STREAM_MANAGE=1)`,
            );
          }
        }
        this.#startLive(info);
        return;
      } catch (err) {
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        this.#opts.log('error', 'jetstream stream not usable; retrying', {
          stream: name,
          error: String(err),
          retryMs: delay,
        });
        await this.#sleep(delay);
      }
    }
  }

  #observe(info: StreamInfo): StreamState {
    const { first_seq, last_seq, messages } = info.state;
    // JetStream reports first 0 for a stream that never held anything; Herald's convention is last + 1.
    return { epoch: epochOf(info), first: messages === 0 ? last_seq + 1 : first_seq, last: last_seq };
  }

  /** (Re)starts the live feed at the stream's end, telling listeners the stream they now follow. */
  #startLive(info: StreamInfo): void {
    const gen = ++this.#liveGen;
    void this.#live?.close();
    this.#live = undefined;
    this.#state = this.#observe(info);
    this.#seen = this.#state.last;
    this.#streamOk = true;
    this.#opts.log('info', 'following stream', { stream: info.config.name, ...this.#state });
    for (const l of this.#listeners) l.reset(this.#state);
    void this.#followLoop(gen);
  }

  /** Ends the current live consumer; the feed loop starts a new one after the last event delivered. */
  #interruptLive(why: string): void {
    const live = this.#live;
    if (live === undefined) return;
    this.#live = undefined;
    this.#opts.log('warn', 'live feed restarting', { reason: why, after: this.#seen });
    void live.close();
  }

  /**
   * Keeps the live feed going for one incarnation of the stream: whenever its consumer ends
   * (lost, unreachable, or the connection came back), a new ordered consumer starts right after
   * the last sequence delivered, so listeners get every event once, in order — or a reset when
   * retention removed some in the meantime.
   */
  async #followLoop(gen: number): Promise<void> {
    for (let failures = 0; gen === this.#liveGen && !this.#closed; ) {
      const before = this.#seen;
      try {
        await this.#follow(gen);
      } catch (err) {
        if (gen === this.#liveGen && !this.#closed)
          this.#opts.log('warn', 'live feed interrupted', { after: this.#seen, error: String(err) });
      }
      if (gen !== this.#liveGen || this.#closed) return;
      failures = this.#seen > before ? 0 : failures + 1;
      const delay = failures === 0 ? 0 : Math.min(2_000, 50 * 2 ** failures);
      await this.#sleep(delay);
    }
  }

  async #follow(gen: number): Promise<void> {
    const { js } = this.#clients();
    const consumer = await js.consumers.get(this.#opts.stream.name, {
      filter_subjects: `${SUBJECT_PREFIX}>`,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.#seen + 1,
    });
    if (gen !== this.#liveGen || this.#closed) return void (await consumer.delete().catch(() => {}));
    const messages = await consumer.consume({
      idle_heartbeat: LIVE_HEARTBEAT_MS,
      // A vanished consumer ends the feed (and this loop starts a new one) instead of the
      // library recreating it behind our back.
      abort_on_missing_resource: true,
    });
    this.#live = messages;
    void (async () => {
      for await (const s of messages.status()) {
        // nats.js 3.4: after recreating an ordered consumer itself, it asks for too few messages
        // and stalls until heartbeats are missed; and a consumer on a stopped cluster node is
        // "offline", which it retries forever. Either way, start over with a new consumer.
        if (
          (s.type === 'heartbeats_missed' || s.type === 'ordered_consumer_recreated') &&
          this.#live === messages
        )
          this.#interruptLive(s.type);
      }
    })().catch(() => {});
    try {
      for await (const m of messages) {
        if (gen !== this.#liveGen) break;
        // Sequences are contiguous in a limits stream; a jump means events were removed (purged or
        // expired) before this gateway saw them, and clients must be told rather than skip them.
        if (m.seq > this.#seen + 1) {
          this.#opts.log('warn', 'events lost before delivery; resetting clients', {
            from: this.#seen + 1,
            to: m.seq - 1,
          });
          // Listeners start over after m.seq - 1; the state they read names m.seq as the oldest
          // event still held, so a reset's `oldest` points at the event that follows it.
          const first = Math.max(this.#state.first, m.seq);
          this.#state = { ...this.#state, first, last: Math.max(this.#state.last, m.seq) };
          for (const l of this.#listeners) l.reset({ ...this.#state, last: m.seq - 1 }, 'expired');
        }
        this.#seen = m.seq;
        if (m.seq > this.#state.last) this.#state = { ...this.#state, last: m.seq };
        const e = this.#toEvent(m.subject, m.seq, m.headers, m.data, m.timestampNanos);
        if (e !== undefined) for (const l of this.#listeners) l.event(e);
      }
    } finally {
      if (this.#live === messages) this.#live = undefined;
      void messages.close();
      // Ephemeral consumers expire on their own; deleting at once spares the server (best effort).
      void consumer.delete().catch(() => {});
    }
  }

  /** Reads the stream's state; a new incarnation restarts the live feed and resets every client. */
  async #refreshState(): Promise<void> {
    const jsm = this.#jsm;
    if (jsm === undefined || !this.#connected || this.#closed) return;
    try {
      const info = await jsm.streams.info(this.#opts.stream.name);
      const seen = this.#observe(info);
      if (seen.epoch !== this.#state.epoch) {
        this.#opts.log('warn', 'stream was recreated; resetting clients', { stream: info.config.name });
        this.#startLive(info);
      } else {
        this.#streamOk = true;
        this.#state = { ...this.#state, first: seen.first, last: Math.max(this.#state.last, seen.last) };
      }
    } catch (err) {
      if (this.#closed) return;
      if (this.#streamOk) this.#opts.log('error', 'stream unavailable', { error: String(err) });
      this.#streamOk = false;
      if (this.#opts.stream.manage && isStreamNotFound(err)) await this.#ensureStream();
    }
  }

  #toEvent(
    subject: string,
    seq: number,
    h: MsgHdrs | undefined,
    data: Uint8Array,
    ns: bigint,
  ): StoredEvent | undefined {
    const topic = subjectToTopic(subject);
    if (topic === undefined) return undefined;
    const event = h?.get(EVENT_HEADER);
    const traceparent = h?.get(TRACEPARENT_HEADER);
    // A type set by a plain NATS publisher is used only when it is one Herald could have accepted.
    const type =
      event !== undefined && event !== '' && isEventType(event) && !event.startsWith(RESERVED_EVENT_PREFIX)
        ? event
        : undefined;
    const time = Number(ns / 1_000_000n);
    const e: StoredEvent = { seq, topic, event: type, data: decoder.decode(data), time };
    return traceparent === undefined || traceparent === '' ? e : { ...e, traceparent };
  }
}
