/**
 * The one catalogue of Herald's error codes. Every rejection a client can see carries one of these
 * codes in an `application/problem+json` body (RFC 9457); codes are stable API, titles may change.
 */
export const ErrorCodes = {
  HERALD_NOT_FOUND: { status: 404, title: 'No such endpoint' },
  HERALD_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed on this endpoint' },
  HERALD_REQUEST_MALFORMED: { status: 400, title: 'The request is not well-formed HTTP/1.1' },
  HERALD_HEADERS_TOO_LARGE: { status: 431, title: 'The request head exceeds the size limit' },
  HERALD_REQUEST_TIMEOUT: { status: 408, title: 'The request did not arrive whole in time' },
  HERALD_EXPECTATION_FAILED: { status: 417, title: 'Only "Expect: 100-continue" is supported' },
  HERALD_TOPIC_MISSING: { status: 400, title: 'At least one topic is required' },
  HERALD_TOPIC_INVALID: { status: 400, title: 'Topic does not match the topic grammar' },
  HERALD_TOPIC_WILDCARD: {
    status: 400,
    title: 'Wildcards are allowed when subscribing, not when publishing',
  },
  HERALD_TOO_MANY_TOPICS: { status: 400, title: 'Too many topics on one connection' },
  HERALD_QUERY_INVALID: { status: 400, title: 'Unknown or repeated query parameter' },
  HERALD_CONTENT_TYPE: { status: 415, title: 'Publish bodies must be application/json' },
  HERALD_BODY_INVALID: { status: 400, title: 'Request body is not valid JSON of the expected shape' },
  HERALD_BODY_TOO_LARGE: { status: 413, title: 'Request body exceeds the size limit' },
  HERALD_BATCH_EMPTY: { status: 400, title: 'A batch must hold at least one message' },
  HERALD_BATCH_TOO_LARGE: { status: 413, title: 'Batch holds more messages than allowed' },
  HERALD_MESSAGE_TOO_LARGE: { status: 413, title: 'Message data exceeds the size limit' },
  HERALD_DATA_INVALID: { status: 400, title: 'Message data must be present and well-formed Unicode' },
  HERALD_EVENT_INVALID: { status: 400, title: 'Event type does not match the event grammar' },
  HERALD_IDEMPOTENCY_KEY_INVALID: { status: 400, title: 'Idempotency key does not match its grammar' },
  HERALD_UNAUTHENTICATED: { status: 401, title: 'Credentials are required' },
  HERALD_TOKEN_INVALID: {
    status: 401,
    title: 'The token is malformed, unsigned or not signed by a trusted key',
  },
  HERALD_TOKEN_EXPIRED: { status: 401, title: 'The token has expired' },
  HERALD_TOKEN_NOT_YET_VALID: { status: 401, title: 'The token is not valid yet' },
  HERALD_API_KEY_INVALID: { status: 401, title: 'The API key is not known' },
  HERALD_AUTH_UNAVAILABLE: { status: 503, title: 'Signing keys cannot be fetched; retry later' },
  HERALD_FORBIDDEN: { status: 403, title: 'The credentials do not grant access to this topic' },
  HERALD_ORIGIN_FORBIDDEN: { status: 403, title: 'The request origin is not allowed' },
  HERALD_OVERLOADED: { status: 503, title: 'This gateway is at capacity; retry later' },
  HERALD_RATE_LIMITED: { status: 429, title: 'Too many connection attempts; retry later' },
  HERALD_BROKER_UNAVAILABLE: { status: 503, title: 'The broker is unavailable; retry later' },
  HERALD_INTERNAL: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

/** An error a client may see: a stable `code`, its HTTP status, and a detail naming what was wrong. */
export class HeraldError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra members for the problem body (for example `topic` or `limit`); must be JSON-safe. */
  readonly extra: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { cause?: unknown; extra?: Record<string, unknown> } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HeraldError';
    this.code = code;
    this.status = ErrorCodes[code].status;
    this.extra = options.extra ?? {};
  }
}

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: ErrorCode;
  readonly detail: string;
  readonly [extra: string]: unknown;
}

/** The RFC 9457 body for an error; `type` is a URN so it never points at a host we do not run. */
export function toProblem(err: HeraldError): Problem {
  return {
    type: `urn:herald:error:${err.code}`,
    title: ErrorCodes[err.code].title,
    status: err.status,
    code: err.code,
    detail: err.message,
    ...err.extra,
  };
}
