import type { Socket } from 'node:net';
import { checkPattern, HeraldError } from '@herald/protocol';
import { admissionError } from '../admission/index.ts';
import { credentialsOf, QUERY_TOKEN_PARAM } from '../auth/index.ts';
import type { Clock } from '../clock.ts';
import { countRejection, type Edge } from '../edge.ts';
import type { Hub } from '../hub/hub.ts';
import type { StreamTracing } from '../telemetry/tracing.ts';
import { lingerThenDestroy } from './close.ts';
import { retryHeaders, singleHeader, writeProblem } from './problem.ts';
import type { RequestHead } from './request-head.ts';

export interface StreamDeps {
  readonly hub: Hub;
  readonly edge: Edge;
  /** Times the graceful close after a refusal (see close.ts). */
  readonly clock: Clock;
  readonly tracing: StreamTracing;
  readonly releaseVersion: string;
  readonly maxTopics: number;
  readonly onError: (err: unknown, context: string) => void;
}

/**
 * Query parameters a stream accepts; anything else is refused, so a typo (`topics=`) is not silently
 * ignored. `access_token` is the auth module's to accept or refuse (it says why when it is off).
 */
const STREAM_PARAMS = new Set(['topic', 'lastEventId', 'release', QUERY_TOKEN_PARAM]);

/** Parses and checks `GET /v1/stream` parameters; throws a HeraldError naming the bad one. */
export function parseStreamQuery(
  query: URLSearchParams,
  lastEventIdHeader: string | undefined,
  maxTopics: number,
): { topics: string[]; lastEventId: string | undefined } {
  const seen = new Set<string>();
  for (const name of query.keys()) {
    if (!STREAM_PARAMS.has(name)) {
      throw new HeraldError(
        'HERALD_QUERY_INVALID',
        `unknown query parameter ${JSON.stringify(name.slice(0, 64))}`,
      );
    }
    if (name !== 'topic' && seen.has(name)) {
      throw new HeraldError('HERALD_QUERY_INVALID', `query parameter ${name} is repeated`);
    }
    seen.add(name);
  }
  const topics = [...new Set(query.getAll('topic'))];
  if (topics.length === 0) throw new HeraldError('HERALD_TOPIC_MISSING', 'add at least one ?topic=<topic>');
  if (topics.length > maxTopics) {
    throw new HeraldError(
      'HERALD_TOO_MANY_TOPICS',
      `${topics.length} topics exceeds the limit of ${maxTopics}`,
      {
        extra: { limit: maxTopics },
      },
    );
  }
  for (const topic of topics) {
    const r = checkPattern(topic);
    if (!r.ok) {
      throw new HeraldError(
        'HERALD_TOPIC_INVALID',
        `topic ${JSON.stringify(topic.slice(0, 200))} ${r.reason}`,
        {
          extra: { topic: topic.slice(0, 200) },
        },
      );
    }
  }
  // The header (sent by EventSource on reconnect) wins over the query (first connect after a reload).
  return { topics, lastEventId: lastEventIdHeader ?? query.get('lastEventId') ?? undefined };
}

/** Splits a request target into path and query. */
export function splitTarget(target: string): { path: string; query: URLSearchParams } {
  const q = target.indexOf('?');
  return q === -1
    ? { path: target, query: new URLSearchParams() }
    : { path: target.slice(0, q), query: new URLSearchParams(target.slice(q + 1)) };
}

/** A stream request, from whichever parser read it. Header names are lower case. */
export interface StreamRequest {
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

const header = (req: StreamRequest, name: string) => singleHeader(req.headers, name);

/**
 * Starts a stream on a socket once the request passed every check: query, CORS origin, token and
 * topic grants, then admission. The response head goes straight to the socket and the body is
 * delimited by closing the connection (no chunked framing), so the hub can write one shared
 * Buffer per event to every socket unchanged. A refusal is answered with problem+json on the
 * socket, never by serving the stream with less. A draining gateway answers with a jittered
 * `retry:` and closes.
 */
export async function acceptStream(socket: Socket, req: StreamRequest, deps: StreamDeps): Promise<void> {
  const { hub, edge } = deps;
  const cors = edge.cors({ method: 'GET', origin: header(req, 'origin'), host: header(req, 'host') });
  const span = deps.tracing.connect(req.headers, req.query.getAll('topic'));
  try {
    const { topics, lastEventId } = parseStreamQuery(req.query, header(req, 'last-event-id'), deps.maxTopics);
    if (cors.kind === 'forbidden') throw new HeraldError(cors.code, cors.detail);
    const principal = await edge.auth.authenticate(credentialsOf(req, edge.credentials));
    edge.auth.authorize(principal, 'subscribe', topics);
    if (socket.destroyed) {
      deps.tracing.abandoned(span);
      return;
    }
    if (hub.draining || !hub.live) {
      edge.stats.connects.turned_away++;
      deps.tracing.turnedAway(span);
      writeStreamHead(socket, deps.releaseVersion, cors.headers);
      hub.turnAway(socket, hub.draining ? 'draining; reconnect' : 'broker not reached yet; reconnect');
      return;
    }
    const decision = edge.admission.admit({
      ip: edge.clientAddress(socket.remoteAddress ?? '', header(req, 'x-forwarded-for')),
      subject: principal.via === 'none' ? undefined : principal.subject,
    });
    if (!decision.ok) {
      edge.stats.connects.rejected++;
      countRejection(edge.stats, undefined, decision.reason);
      const refusal = admissionError(decision);
      deps.tracing.refused(span, refusal);
      const retry = decision.retryAfterSeconds;
      writeProblem(socket, deps.clock, refusal, {
        ...cors.headers,
        ...(retry === undefined ? {} : { 'Retry-After': String(retry) }),
      });
      return;
    }
    edge.stats.connects.accepted++;
    writeStreamHead(socket, deps.releaseVersion, cors.headers);
    const conn = hub.open(socket, {
      topics,
      lastEventId,
      expiresAt: principal.expiresAt,
      expiryWarnMs: edge.tokenExpiryWarnMs,
      trace: span.context,
    });
    deps.tracing.accepted(span, conn, conn.resume ?? 'none');
    socket.once('close', () => {
      hub.remove(conn);
      decision.ticket.release();
    });
    // Ended by the hub (drain, shed, token expiry): the client gets a bounded moment to close too.
    socket.once('finish', () => lingerThenDestroy(socket, deps.clock));
  } catch (err) {
    if (!(err instanceof HeraldError)) deps.onError(err, 'stream');
    edge.stats.connects.rejected++;
    countRejection(edge.stats, err);
    deps.tracing.refused(span, err);
    writeProblem(socket, deps.clock, err, {
      ...cors.headers,
      ...retryHeaders(err, edge.retryAfterSeconds),
    });
  }
}

function writeStreamHead(socket: Socket, releaseVersion: string, extra: Record<string, string>): void {
  let head =
    'HTTP/1.1 200 OK\r\n' +
    'Content-Type: text/event-stream; charset=utf-8\r\n' +
    'Cache-Control: no-cache, no-transform\r\n' +
    'X-Accel-Buffering: no\r\n' +
    `X-Release-Version: ${releaseVersion}\r\n`;
  for (const [name, value] of Object.entries(extra)) head += `${name}: ${value}\r\n`;
  socket.write(`${head}Connection: close\r\n\r\n`);
  socket.setTimeout(0);
}

/**
 * The front's fast path: takes a plain stream request (and answers it, refusal or stream).
 * Anything else (another endpoint, a body, an upgrade) is left to node:http.
 */
export function takeStream(socket: Socket, head: RequestHead, deps: StreamDeps): boolean {
  if (head.method !== 'GET') return false;
  const { path, query } = splitTarget(head.target);
  if (path !== '/v1/stream') return false;
  const h = head.headers;
  if (h.has('transfer-encoding') || h.has('upgrade') || (h.get('content-length') ?? '0') !== '0')
    return false;
  void acceptStream(socket, { query, headers: Object.fromEntries(h) }, deps);
  return true;
}
