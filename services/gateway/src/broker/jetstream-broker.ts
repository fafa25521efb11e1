import { topicToSubject } from '@herald/protocol';
import {
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import type { Clock } from '../clock.ts';
import type {
  Broker,
  BrokerListener,
  PublishAck,
  PublishMessage,
  ReplayRequest,
  ReplayResult,
  StreamState,
} from './broker.ts';
import { LiveFeed } from './jetstream-feed.ts';
import { replayPage } from './jetstream-replay.ts';
import {
  EVENT_HEADER,
  epochOf,
  eventOf,
  isStreamNotFound,
  StreamReplacedError,
  type StreamSettings,
  stateOf,
  streamConfig,
  streamProblems,
  TRACEPARENT_HEADER,
} from './jetstream-stream.ts';
import { type NatsAccess, natsConnectOptions } from './nats-options.ts';

/** Fleet commands from the operator; see control.ts. */
export const CONTROL_SUBJECTS = 'herald.ctl.>';

export interface JetStreamBrokerOptions extends NatsAccess {
  readonly clock: Clock;
  readonly stream: StreamSettings;
  /** How often the stream's state (first sequence, incarnation) is read (ms). Default 1000. */
  readonly refreshMs?: number;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

const encoder = new TextEncoder();

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
  readonly #feed: LiveFeed;
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
    this.#feed = new LiveFeed({
      stream: opts.stream.name,
      js: () => this.#clients().js,
      sleep: (ms) => this.#sleep(ms),
      closed: () => this.#closed,
      log: opts.log,
      message: (m) => this.#message(m),
      lost: (from, to) => this.#lost(from, to),
    });
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
    const state = stateOf(info);
    if (state.epoch !== this.#state.epoch) return { kind: 'gone', state };
    this.#state = { ...this.#state, first: state.first, last: Math.max(this.#state.last, state.last) };
    if (req.after < state.first - 1) return { kind: 'gone', state };
    const through = Math.min(req.through, state.last);
    if (req.after >= through) return { kind: 'events', events: [], reached: through };
    return replayPage(js, this.#opts.stream.name, req, through);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of this.#sleepers) wake();
    this.#opts.clock.clearInterval(this.#refresh);
    this.#listeners.clear();
    await this.#feed.close();
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

  #clients(): { js: JetStreamClient; jsm: JetStreamManager } {
    if (this.#js === undefined || this.#jsm === undefined || !this.ready)
      throw new Error('not connected to JetStream');
    return { js: this.#js, jsm: this.#jsm };
  }

  /** Connects, retrying with backoff until NATS answers (it may start after the gateway) or `close()`. */
  async #connect(): Promise<void> {
    this.#opts.log('info', 'connecting to nats', { servers: this.#opts.servers });
    let nc: NatsConnection | undefined;
    for (let attempt = 0; nc === undefined; attempt++) {
      if (this.#closed) return;
      try {
        nc = await connect(natsConnectOptions(this.#opts));
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
        this.#feed.interrupt('nats reconnected');
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
    const { name, manage } = this.#opts.stream;
    const wanted = streamConfig(this.#opts.stream);
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

  /** (Re)starts the live feed at the stream's end, telling listeners the stream they now follow. */
  #startLive(info: StreamInfo): void {
    this.#state = stateOf(info);
    this.#streamOk = true;
    this.#opts.log('info', 'following stream', { stream: info.config.name, ...this.#state });
    for (const l of this.#listeners) l.reset(this.#state);
    this.#feed.start(this.#state.last);
  }

  /** Clients must be told of events removed before the feed read them, rather than skip them. */
  #lost(from: number, to: number): void {
    this.#opts.log('warn', 'events lost before delivery; resetting clients', { from, to });
    // Listeners start over after `to`; the state they read names `to + 1` as the oldest event
    // still held, so a reset's `oldest` points at the event that follows the gap.
    const first = Math.max(this.#state.first, to + 1);
    this.#state = { ...this.#state, first, last: Math.max(this.#state.last, to + 1) };
    for (const l of this.#listeners) l.reset({ ...this.#state, last: to }, 'expired');
  }

  #message(m: JsMsg): void {
    if (m.seq > this.#state.last) this.#state = { ...this.#state, last: m.seq };
    const e = eventOf(m);
    if (e !== undefined) for (const l of this.#listeners) l.event(e);
  }

  /** Reads the stream's state; a new incarnation restarts the live feed and resets every client. */
  async #refreshState(): Promise<void> {
    const jsm = this.#jsm;
    if (jsm === undefined || !this.#connected || this.#closed) return;
    try {
      const info = await jsm.streams.info(this.#opts.stream.name);
      const seen = stateOf(info);
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
}
