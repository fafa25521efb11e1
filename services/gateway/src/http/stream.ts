import type { Socket } from 'node:net';
import { checkPattern, HeraldError } from '@herald/protocol';
import type { Hub } from '../hub.ts';
import type { RequestHead } from './request-head.ts';

export interface StreamOptions {
  readonly releaseVersion: string;
  readonly maxTopics: number;
}

/** Query parameters a stream accepts; anything else is refused, so a typo (`topics=`) is not silently ignored. */
const STREAM_PARAMS = new Set(['topic', 'lastEventId', 'release']);

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

/**
 * Starts a stream on a socket: the response head goes straight to the socket and the body is
 * delimited by closing the connection (no chunked framing), so the hub can write one shared
 * Buffer per event to every socket unchanged. Throws a HeraldError, having written nothing, when
 * the request is bad. A draining gateway answers with a jittered `retry:` and closes.
 */
export function openStream(
  socket: Socket,
  query: URLSearchParams,
  lastEventIdHeader: string | undefined,
  hub: Hub,
  opts: StreamOptions,
): void {
  const { topics, lastEventId } = parseStreamQuery(query, lastEventIdHeader, opts.maxTopics);
  socket.write(
    'HTTP/1.1 200 OK\r\n' +
      'Content-Type: text/event-stream; charset=utf-8\r\n' +
      'Cache-Control: no-cache, no-transform\r\n' +
      'X-Accel-Buffering: no\r\n' +
      `X-Release-Version: ${opts.releaseVersion}\r\n` +
      'Connection: close\r\n\r\n',
  );
  socket.setTimeout(0);
  if (hub.draining || !hub.live) {
    hub.turnAway(socket, hub.draining ? 'draining; reconnect' : 'broker not reached yet; reconnect');
    return;
  }
  const conn = hub.open(socket, { topics, lastEventId });
  socket.once('close', () => hub.remove(conn));
}

/**
 * The front's fast path: takes a plain, valid stream request. Anything else (another endpoint,
 * a body, a bad query) is left to node:http, which answers it properly.
 */
export function takeStream(socket: Socket, head: RequestHead, hub: Hub, opts: StreamOptions): boolean {
  if (head.method !== 'GET') return false;
  const { path, query } = splitTarget(head.target);
  if (path !== '/v1/stream') return false;
  const h = head.headers;
  if (h.has('transfer-encoding') || h.has('upgrade') || (h.get('content-length') ?? '0') !== '0')
    return false;
  try {
    openStream(socket, query, h.get('last-event-id'), hub, opts);
    return true;
  } catch {
    return false;
  }
}
