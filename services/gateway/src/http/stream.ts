import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { checkPattern, HeraldError } from '@herald/protocol';
import type { Hub } from '../hub.ts';

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
    if (name !== 'topic' && seen.has(name))
      throw new HeraldError('HERALD_QUERY_INVALID', `query parameter ${name} is repeated`);
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

/**
 * Takes the socket over from node:http and hands it to the hub. The response head is written
 * straight to the socket and the body is delimited by closing the connection (no chunked
 * framing), so the hub can write one shared Buffer per event to every socket unchanged.
 */
export function openStream(
  req: IncomingMessage,
  _res: ServerResponse,
  hub: Hub,
  opts: StreamOptions,
  query: URLSearchParams,
): void {
  const lastEventIdHeader = req.headers['last-event-id'];
  const { topics, lastEventId } = parseStreamQuery(
    query,
    typeof lastEventIdHeader === 'string' ? lastEventIdHeader : undefined,
    opts.maxTopics,
  );
  const socket: Socket = req.socket;
  socket.write(
    'HTTP/1.1 200 OK\r\n' +
      'Content-Type: text/event-stream; charset=utf-8\r\n' +
      'Cache-Control: no-cache, no-transform\r\n' +
      'X-Accel-Buffering: no\r\n' +
      `X-Release-Version: ${opts.releaseVersion}\r\n` +
      'Connection: close\r\n\r\n',
  );
  socket.setTimeout(0);
  const conn = hub.open(socket, { topics, lastEventId });
  socket.once('close', () => hub.remove(conn));
}
