import { createHash } from 'node:crypto';
import { isEventType, RESERVED_EVENT_PREFIX, SUBJECT_PREFIX, subjectToTopic } from '@herald/protocol';
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { type MsgHdrs, nanos } from '@nats-io/transport-node';
import type { StoredEvent, StreamState } from './broker.ts';

/**
 * What Herald's events look like in a JetStream stream: the stream's configuration, its
 * incarnation, and the mapping between stored messages and events. No connection here.
 */

/** The header that carries an event's type; plain NATS publishers may set it too. */
export const EVENT_HEADER = 'Herald-Event';
/** W3C trace context of the publish, so a delivery can link back to it. */
export const TRACEPARENT_HEADER = 'traceparent';

export interface StreamSettings {
  readonly name: string;
  /** Create or update the stream at start; otherwise only verify it. */
  readonly manage: boolean;
  readonly replicas: number;
  readonly maxEvents: number;
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly dedupeWindowMs: number;
}

/** The stream Herald creates (or updates to) when it manages it. */
export function streamConfig(s: StreamSettings): Partial<StreamConfig> & { name: string } {
  return {
    name: s.name,
    subjects: [`${SUBJECT_PREFIX}>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: s.replicas,
    max_msgs: s.maxEvents,
    max_age: nanos(s.maxAgeMs),
    max_bytes: s.maxBytes,
    duplicate_window: nanos(s.dedupeWindowMs),
  };
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

/** The stream's state in Herald's terms. */
export function stateOf(info: StreamInfo): StreamState {
  const { first_seq, last_seq, messages } = info.state;
  // JetStream reports first 0 for a stream that never held anything; Herald's convention is last + 1.
  return { epoch: epochOf(info), first: messages === 0 ? last_seq + 1 : first_seq, last: last_seq };
}

/** JetStream says the stream does not exist (by its API error code, not its message). */
export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

/** The stream was deleted and recreated while a publish was in flight: its cursors are unknown. */
export class StreamReplacedError extends Error {
  constructor(stream: string) {
    super(`stream ${stream} was replaced while publishing; retry (with the same idempotency key)`);
    this.name = 'StreamReplacedError';
  }
}

/** A stored message as it reaches Herald (a JsMsg has these fields). */
export interface StoredMessage {
  readonly subject: string;
  readonly seq: number;
  readonly headers?: MsgHdrs | undefined;
  readonly data: Uint8Array;
  readonly timestampNanos: bigint;
}

const decoder = new TextDecoder();

/** The event a stored message carries; undefined for a subject outside `herald.t.>`. */
export function eventOf(m: StoredMessage): StoredEvent | undefined {
  const topic = subjectToTopic(m.subject);
  if (topic === undefined) return undefined;
  const event = m.headers?.get(EVENT_HEADER);
  const traceparent = m.headers?.get(TRACEPARENT_HEADER);
  // A type set by a plain NATS publisher is used only when it is one Herald could have accepted.
  const type =
    event !== undefined && event !== '' && isEventType(event) && !event.startsWith(RESERVED_EVENT_PREFIX)
      ? event
      : undefined;
  const time = Number(m.timestampNanos / 1_000_000n);
  const e: StoredEvent = { seq: m.seq, topic: topic, event: type, data: decoder.decode(m.data), time };
  return traceparent === undefined || traceparent === '' ? e : { ...e, traceparent };
}
