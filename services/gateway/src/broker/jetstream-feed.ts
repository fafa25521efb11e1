import { SUBJECT_PREFIX } from '@herald/protocol';
import { type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';

/**
 * Heartbeat asked of the server while the live feed waits for events (ms). Two missed in a row
 * mean the feed's consumer is gone (e.g. the cluster node holding it stopped) and the feed is
 * restarted; the client library alone would wait for that node to come back.
 */
const LIVE_HEARTBEAT_MS = 1_000;

export interface LiveFeedOptions {
  readonly stream: string;
  /** The connected client; throws while there is none. */
  readonly js: () => JetStreamClient;
  /** Waits `ms`, or less when the broker closes. */
  readonly sleep: (ms: number) => Promise<void>;
  readonly closed: () => boolean;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Every stored message after the start, once and in sequence order. */
  readonly message: (m: JsMsg) => void;
  /** Messages `from`–`to` were removed (purged, expired) before the feed read them; `m` follows. */
  readonly lost: (from: number, to: number) => void;
}

/**
 * The gateway's one ordered consumer on the whole stream. Whenever that consumer ends (lost,
 * unreachable, or the connection came back), a new one starts right after the last sequence
 * delivered, so every message arrives once, in order — or `lost` says which ones cannot.
 */
export class LiveFeed {
  readonly #opts: LiveFeedOptions;
  #messages: ConsumerMessages | undefined;
  /** Bumped when the feed starts over (on a new stream); older loops stop. */
  #gen = 0;
  /** The last sequence delivered: a restarted consumer continues after it. */
  #seen = 0;

  constructor(opts: LiveFeedOptions) {
    this.#opts = opts;
  }

  /** Follows the stream from after `after`, ending whatever followed it before. */
  start(after: number): void {
    const gen = ++this.#gen;
    void this.#messages?.close();
    this.#messages = undefined;
    this.#seen = after;
    void this.#loop(gen);
  }

  /** Ends the current consumer; the loop starts a new one after the last message delivered. */
  interrupt(why: string): void {
    const messages = this.#messages;
    if (messages === undefined) return;
    this.#messages = undefined;
    this.#opts.log('warn', 'live feed restarting', { reason: why, after: this.#seen });
    void messages.close();
  }

  async close(): Promise<void> {
    this.#gen++;
    await this.#messages?.close();
  }

  async #loop(gen: number): Promise<void> {
    const current = () => gen === this.#gen && !this.#opts.closed();
    for (let failures = 0; current(); ) {
      const before = this.#seen;
      try {
        await this.#follow(gen);
      } catch (err) {
        if (current())
          this.#opts.log('warn', 'live feed interrupted', { after: this.#seen, error: String(err) });
      }
      if (!current()) return;
      failures = this.#seen > before ? 0 : failures + 1;
      await this.#opts.sleep(failures === 0 ? 0 : Math.min(2_000, 50 * 2 ** failures));
    }
  }

  async #follow(gen: number): Promise<void> {
    const consumer = await this.#opts.js().consumers.get(this.#opts.stream, {
      filter_subjects: `${SUBJECT_PREFIX}>`,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.#seen + 1,
    });
    if (gen !== this.#gen || this.#opts.closed()) return void (await consumer.delete().catch(() => {}));
    const messages = await consumer.consume({
      idle_heartbeat: LIVE_HEARTBEAT_MS,
      // A vanished consumer ends the feed (and the loop starts a new one) instead of the
      // library recreating it behind our back.
      abort_on_missing_resource: true,
    });
    this.#messages = messages;
    void (async () => {
      for await (const s of messages.status()) {
        // nats.js 3.4: after recreating an ordered consumer itself, it asks for too few messages
        // and stalls until heartbeats are missed; and a consumer on a stopped cluster node is
        // "offline", which it retries forever. Either way, start over with a new consumer.
        if (
          (s.type === 'heartbeats_missed' || s.type === 'ordered_consumer_recreated') &&
          this.#messages === messages
        )
          this.interrupt(s.type);
      }
    })().catch(() => {});
    try {
      for await (const m of messages) {
        if (gen !== this.#gen) break;
        // Sequences are contiguous in a limits stream; a jump means messages were removed
        // (purged or expired) before this gateway saw them.
        if (m.seq > this.#seen + 1) this.#opts.lost(this.#seen + 1, m.seq - 1);
        this.#seen = m.seq;
        this.#opts.message(m);
      }
    } finally {
      if (this.#messages === messages) this.#messages = undefined;
      void messages.close();
      // Ephemeral consumers expire on their own; deleting at once spares the server (best effort).
      void consumer.delete().catch(() => {});
    }
  }
}
