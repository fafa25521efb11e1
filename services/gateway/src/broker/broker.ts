import type { CompiledPattern } from '@herald/protocol';

/**
 * The seam between the gateway and its event log. The embedded memory broker implements it now;
 * JetStream implements it next, so it speaks in stream sequences and epochs, as JetStream does.
 */

/** An event as stored in the log. */
export interface StoredEvent {
  /** Stream sequence: strictly increasing, global to the stream, possibly with gaps. */
  readonly seq: number;
  readonly topic: string;
  readonly event: string | undefined;
  readonly data: string;
  /** When the log stored it, ms since the Unix epoch. */
  readonly time: number;
  /** W3C `traceparent` of the publish that stored it, when that publish was traced. */
  readonly traceparent?: string | undefined;
}

export interface PublishMessage {
  readonly topic: string;
  readonly event: string | undefined;
  readonly data: string;
  /** Idempotency key: a repeat within the dedupe window is stored once (JetStream `Nats-Msg-Id`). */
  readonly key: string | undefined;
  /** W3C `traceparent` to store with it (a NATS header on JetStream), linking deliveries to the publish. */
  readonly traceparent?: string | undefined;
}

export interface PublishAck {
  /** The incarnation of the stream that stored it: the cursor is `<epoch>-<seq>`. */
  readonly epoch: string;
  readonly seq: number;
  /** True when the key was seen inside the dedupe window; `seq` is then the original event's. */
  readonly duplicate: boolean;
}

export interface StreamState {
  /** Names this incarnation of the stream. */
  readonly epoch: string;
  /** Oldest retained sequence; `last + 1` when the stream holds nothing. */
  readonly first: number;
  /** Newest stored sequence; 0 when nothing was ever stored. */
  readonly last: number;
}

export interface ReplayRequest {
  /** Replay events with `seq > after`… */
  readonly after: number;
  /** …and `seq <= through`. */
  readonly through: number;
  readonly patterns: readonly CompiledPattern[];
  /** At most this many events; the result says how far it got. */
  readonly limit: number;
}

export type ReplayResult =
  /** Matching events in order; `reached` is the sequence the replay covered up to, inclusive. */
  | { readonly kind: 'events'; readonly events: readonly StoredEvent[]; readonly reached: number }
  /** Events after `after` are no longer retained (or the epoch changed): the client needs a reset. */
  | { readonly kind: 'gone'; readonly state: StreamState };

/** Receives the live feed: every event, in sequence order, once. */
export interface BrokerListener {
  event(e: StoredEvent): void;
  /**
   * The feed starts over at `state.last + 1`: on first contact with the stream, when it was
   * replaced (`epoch`: a new incarnation, everything before is void), or when events were removed
   * before they could be delivered (`expired`).
   */
  reset(state: StreamState, reason?: 'epoch' | 'expired'): void;
}

export interface Broker {
  readonly kind: string;
  start(): Promise<void>;
  /** True while the broker can take publishes and serve replays. */
  readonly ready: boolean;
  /** The stream as last known; synchronous so resume decisions need no round trip. */
  state(): StreamState;
  /** Stores messages in order; resolves once every one is stored. */
  publish(messages: readonly PublishMessage[]): Promise<PublishAck[]>;
  /** Follows the live feed from the current end of the stream. Returns the unsubscribe function. */
  follow(listener: BrokerListener): () => void;
  replay(request: ReplayRequest): Promise<ReplayResult>;
  /**
   * Fleet commands (NATS subjects `herald.ctl.>`): who may publish them is the NATS server's
   * permissions' business. Brokers without a fleet (the embedded one) have none.
   */
  onControl?(handler: (subject: string, data: Uint8Array) => void): () => void;
  close(): Promise<void>;
}
