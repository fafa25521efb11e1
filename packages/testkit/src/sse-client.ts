import { request } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/**
 * A test SSE client over raw node:http, parsing with `eventsource-parser` (an independent
 * implementation of the spec), so tests see the stream the way a browser would.
 */
export interface SseClient {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Dispatched events, in order. */
  readonly events: EventSourceMessage[];
  /** Every id the parser recorded, including id-only frames (what EventSource keeps as `lastEventId`). */
  readonly ids: string[];
  readonly comments: string[];
  readonly retries: number[];
  /** Everything received, as text. */
  readonly raw: () => string;
  /** The id a reconnecting EventSource would send as `Last-Event-ID`. */
  readonly lastEventId: () => string;
  /** The response body, when the status was not 200. */
  readonly body: () => string;
  /** Resolves when `predicate` holds after some chunk; rejects after `timeoutMs` with what was seen. */
  waitFor(predicate: (c: SseClient) => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export interface SseOptions {
  readonly headers?: Record<string, string>;
}

export function connectSse(url: string, opts: SseOptions = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Accept: 'text/event-stream', ...opts.headers } });
    req.once('error', reject);
    req.once('response', (res) => {
      const events: EventSourceMessage[] = [];
      const ids: string[] = [];
      const comments: string[] = [];
      const retries: number[] = [];
      let raw = '';
      const waiters = new Set<() => void>();
      const parser = createParser({
        onEvent: (e) => events.push(e),
        onId: (id) => ids.push(id),
        onComment: (c) => comments.push(c),
        onRetry: (r) => retries.push(r),
      });
      let endedResolve: () => void = () => {};
      const ended = new Promise<void>((r) => {
        endedResolve = r;
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        raw += chunk;
        if (res.statusCode === 200) parser.feed(chunk);
        for (const w of waiters) w();
      });
      let done = false;
      const finish = () => {
        done = true;
        endedResolve();
        for (const w of waiters) w();
      };
      res.once('end', finish);
      res.once('close', finish);
      res.once('error', finish);
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        ids,
        comments,
        retries,
        raw: () => raw,
        body: () => raw,
        lastEventId: () => ids.at(-1) ?? '',
        ended,
        waitFor(predicate, what, timeoutMs = 5000) {
          if (predicate(client)) return Promise.resolve();
          return new Promise<void>((ok, fail) => {
            const check = () => {
              if (predicate(client)) {
                cleanup();
                ok();
              } else if (done) {
                cleanup();
                fail(new Error(`stream ended while waiting for ${what}; received:\n${raw}`));
              }
            };
            const timer = setTimeout(() => {
              cleanup();
              fail(
                new Error(
                  `timed out after ${timeoutMs} ms waiting for ${what}; received:\n${raw.slice(-2000)}`,
                ),
              );
            }, timeoutMs);
            const cleanup = () => {
              clearTimeout(timer);
              waiters.delete(check);
            };
            waiters.add(check);
          });
        },
        close: () => {
          req.destroy();
        },
      };
      resolve(client);
    });
    req.end();
  });
}
