import {
  checkPattern,
  checkTopic,
  type ErrorCode,
  HeraldError,
  isEventType,
  RESERVED_EVENT_PREFIX,
} from '@herald/protocol';
import type { PublishMessage } from './broker/broker.ts';

/**
 * The publish request body, validated whole before anything is stored: a batch with one bad
 * message stores none of them, and the error names the message and the field.
 *
 * Body: `{ "topic", "data", "event"?, "key"? }` or `{ "messages": [ … ] }`. `data` that is not a
 * string is sent as its JSON text. The `Idempotency-Key` header is the key of a single message;
 * on a batch, message `i` without its own `key` gets `<header>:<i>`.
 */
export interface PublishLimits {
  readonly maxMessageBytes: number;
  readonly maxBatch: number;
}

export interface ParsedPublish {
  readonly batch: boolean;
  readonly messages: readonly PublishMessage[];
}

/** Printable ASCII without spaces: safe as a NATS header value and in logs. */
const KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;
const MESSAGE_FIELDS = new Set(['topic', 'data', 'event', 'key']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKey(key: string, where: string): string {
  if (!KEY_PATTERN.test(key)) {
    throw new HeraldError(
      'HERALD_IDEMPOTENCY_KEY_INVALID',
      `${where} must be 1–128 printable ASCII characters without spaces`,
    );
  }
  return key;
}

function parseMessage(
  m: unknown,
  index: number | undefined,
  limits: PublishLimits,
  defaultKey: string | undefined,
): PublishMessage {
  const at = index === undefined ? '' : `messages[${index}].`;
  // `pointer` (RFC 6901) lets a client find the bad field without parsing `detail`.
  const fail = (code: ErrorCode, field: string, detail: string) =>
    new HeraldError(code, `${at}${field}: ${detail}`, {
      extra: { pointer: `${index === undefined ? '' : `/messages/${index}`}/${field}` },
    });
  if (!isObject(m))
    throw new HeraldError(
      'HERALD_BODY_INVALID',
      `${index === undefined ? 'body' : `messages[${index}]`} must be a JSON object`,
    );
  for (const field of Object.keys(m)) {
    if (!MESSAGE_FIELDS.has(field))
      throw fail('HERALD_BODY_INVALID', field, 'unknown field (expected topic, data, event, key)');
  }
  const { topic, data, event, key } = m;
  if (typeof topic !== 'string') throw fail('HERALD_TOPIC_INVALID', 'topic', 'must be a string');
  const t = checkTopic(topic);
  if (!t.ok && checkPattern(topic).ok) {
    throw fail(
      'HERALD_TOPIC_WILDCARD',
      'topic',
      `${JSON.stringify(topic)} is a pattern; publish to a concrete topic`,
    );
  }
  if (!t.ok)
    throw fail('HERALD_TOPIC_INVALID', 'topic', `${JSON.stringify(topic.slice(0, 200))} ${t.reason}`);
  if (data === undefined) throw fail('HERALD_DATA_INVALID', 'data', 'is required');
  let text: string;
  try {
    text = typeof data === 'string' ? data : JSON.stringify(data);
  } catch (cause) {
    // JSON.parse takes any depth the body limit allows; JSON.stringify recurses and runs out of stack.
    if (!(cause instanceof RangeError)) throw cause;
    throw fail('HERALD_DATA_INVALID', 'data', 'is nested too deeply to re-encode');
  }
  if (!text.isWellFormed())
    throw fail('HERALD_DATA_INVALID', 'data', 'contains a lone surrogate, which UTF-8 cannot carry');
  const bytes = Buffer.byteLength(text);
  if (bytes > limits.maxMessageBytes) {
    throw fail(
      'HERALD_MESSAGE_TOO_LARGE',
      'data',
      `${bytes} bytes exceeds the limit of ${limits.maxMessageBytes}`,
    );
  }
  if (event !== undefined) {
    if (typeof event !== 'string' || !isEventType(event)) {
      throw fail('HERALD_EVENT_INVALID', 'event', 'must be 1–64 characters of [A-Za-z0-9_.:-]');
    }
    if (event.startsWith(RESERVED_EVENT_PREFIX)) {
      throw fail(
        'HERALD_EVENT_INVALID',
        'event',
        `the prefix ${RESERVED_EVENT_PREFIX} is reserved for Herald's own events`,
      );
    }
  }
  if (key !== undefined && typeof key !== 'string')
    throw fail('HERALD_IDEMPOTENCY_KEY_INVALID', 'key', 'must be a string');
  return {
    topic,
    data: text,
    event,
    key: key === undefined ? defaultKey : checkKey(key, `${at}key`),
  };
}

export function parsePublish(
  body: unknown,
  headerKey: string | undefined,
  limits: PublishLimits,
): ParsedPublish {
  if (headerKey !== undefined) checkKey(headerKey, 'Idempotency-Key');
  if (!isObject(body)) throw new HeraldError('HERALD_BODY_INVALID', 'body must be a JSON object');
  if (!('messages' in body))
    return { batch: false, messages: [parseMessage(body, undefined, limits, headerKey)] };
  const { messages, ...rest } = body;
  const extra = Object.keys(rest);
  if (extra.length > 0) {
    throw new HeraldError(
      'HERALD_BODY_INVALID',
      `a batch body holds only "messages", not ${JSON.stringify(extra[0])}`,
    );
  }
  if (!Array.isArray(messages)) throw new HeraldError('HERALD_BODY_INVALID', 'messages must be an array');
  if (messages.length === 0) throw new HeraldError('HERALD_BATCH_EMPTY', 'messages is empty');
  if (messages.length > limits.maxBatch) {
    throw new HeraldError(
      'HERALD_BATCH_TOO_LARGE',
      `${messages.length} messages exceeds the limit of ${limits.maxBatch}`,
      {
        extra: { limit: limits.maxBatch },
      },
    );
  }
  return {
    batch: true,
    messages: messages.map((m, i) =>
      parseMessage(m, i, limits, headerKey === undefined ? undefined : `${headerKey}:${i}`),
    ),
  };
}
