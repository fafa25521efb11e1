/**
 * The Server-Sent Events wire format (WHATWG HTML, "Server-sent events") as pure functions.
 * Every frame Herald writes is built here, so field injection is impossible by construction:
 * `id` and `event` values that could end a field are refused, and `data` is split on every line
 * break the parser recognises (CRLF, CR, LF), each line becoming its own `data:` field.
 */

/** Event types: a short token, so no value can carry CR/LF or spaces into the `event:` field. */
export const EVENT_TYPE_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Event types beginning with this prefix are Herald's own (`herald.reset`, …); publishers may not use it. */
export const RESERVED_EVENT_PREFIX = 'herald.';

export const SystemEvents = {
  /** Resume could not be served exactly; data `{reason, from, oldest}`. The client must reload its state. */
  reset: 'herald.reset',
  /** The stream's token expires soon; data `{expiresAt}` (ISO 8601). Reconnect with a fresh token. */
  tokenExpiring: 'herald.token-expiring',
} as const;

export interface SseFrame {
  /** Becomes the client's `lastEventId`; must not contain CR, LF or NUL. */
  readonly id?: string | undefined;
  /** The `event:` type; absent means the default `message`. */
  readonly event?: string | undefined;
  /** Any string; line breaks become separate `data:` lines and are restored by the parser as LF. */
  readonly data: string;
}

// NUL is refused in ids too, because the spec tells parsers to ignore an id containing it.
const ID_FORBIDDEN = /[\r\n\0]/;
const LINE_BREAK = /\r\n|\r|\n/;

export function isEventType(value: string): boolean {
  return EVENT_TYPE_PATTERN.test(value);
}

/** Encodes one event frame, ending with the blank line that dispatches it. */
export function encodeFrame(frame: SseFrame): string {
  let out = '';
  if (frame.id !== undefined) {
    if (ID_FORBIDDEN.test(frame.id)) throw new TypeError('SSE id must not contain CR, LF or NUL');
    out += `id: ${frame.id}\n`;
  }
  if (frame.event !== undefined) {
    if (!isEventType(frame.event))
      throw new TypeError(`invalid SSE event type ${JSON.stringify(frame.event)}`);
    out += `event: ${frame.event}\n`;
  }
  const { data } = frame;
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `${out}data: ${data}\n\n`;
  for (const line of data.split(LINE_BREAK)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/**
 * A frame that only moves the client's `lastEventId`: the parser records the id but dispatches no
 * event, because the data buffer is empty. Herald sends one on connect so that even a client that
 * receives nothing before it drops resumes from the right place.
 */
export function encodeIdOnly(id: string): string {
  if (ID_FORBIDDEN.test(id)) throw new TypeError('SSE id must not contain CR, LF or NUL');
  return `id: ${id}\n\n`;
}

/** A comment line; ignored by parsers, used for the opening line and heartbeats. */
export function encodeComment(text = ''): string {
  if (text.indexOf('\n') !== -1 || text.indexOf('\r') !== -1)
    throw new TypeError('SSE comment must be one line');
  return text === '' ? ':\n' : `: ${text}\n`;
}

/** Sets the client's reconnection delay, in milliseconds. */
export function encodeRetry(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new TypeError(`invalid SSE retry ${ms}`);
  return `retry: ${ms}\n`;
}

/** Why a resume could not be served exactly. */
export type ResetReason =
  /** The cursor is not `<epoch>-<seq>`. */
  | 'malformed'
  /** The cursor names another incarnation of the stream (deleted and recreated, or a restarted embedded broker). */
  | 'epoch'
  /** Events after the cursor are no longer retained. */
  | 'expired'
  /** The cursor is beyond the newest event the stream holds (the stream lost events it had acknowledged). */
  | 'ahead';

/** Data of a `herald.reset` event (JSON). Cursors are re-encoded from the parse, never echoed. */
export interface ResetData {
  readonly reason: ResetReason;
  /** The cursor the client asked to resume from; null when it was malformed. */
  readonly from: string | null;
  /** The oldest event still retained, as a cursor; null when the stream holds none. */
  readonly oldest: string | null;
}
