import { connect } from 'node:net';

/**
 * HTTP/1.1 at the byte level, for hostile-input tests: requests that no well-behaved client
 * (fetch, node:http) would send — bare CR or LF, NUL, invalid UTF-8, repeated headers, malformed
 * request lines — and a reader that takes whatever comes back without trusting it.
 */

/** One response read off a socket, as far as it got. */
export interface RawResponse {
  /** The status code, or undefined when no status line arrived (or it was not HTTP/1.x). */
  readonly status: number | undefined;
  /** The whole head (status line and headers) as latin1, without the blank line. */
  readonly head: string;
  /** Header values by lower-case name; a repeated header's values are joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
  /** The body bytes received (de-chunked when the response was chunked and complete). */
  readonly body: Buffer;
  /** Every byte received. */
  readonly raw: Buffer;
  /** The server closed (or reset) the connection before the reader stopped. */
  readonly closed: boolean;
  /** Neither a complete response nor a close arrived within the time limit. */
  readonly timedOut: boolean;
  /** The code of the socket error that ended the exchange (`ECONNRESET`, `EPIPE`, …), if one did. */
  readonly error: string | undefined;
}

export interface RawOptions {
  /** Gives up after this long (ms); the result then has `timedOut`. Default 5000. */
  readonly timeoutMs?: number;
  /**
   * For responses without a length (an event stream): stop reading once this holds. Default:
   * an event stream stops after its first complete SSE frame; other unframed bodies run to close.
   */
  readonly until?: (partial: RawResponse) => boolean;
  /** The response has no body whatever its headers say (it answers HEAD). */
  readonly noBody?: boolean;
  /**
   * Reads nothing until every byte has been handed to the kernel, as a client that sends its
   * whole body before it looks at the answer (curl, most HTTP libraries). Default false.
   */
  readonly readAfterSent?: boolean;
}

/** A request as parts; the name and value bytes are sent exactly as given (latin1). */
export interface RawRequestParts {
  readonly method?: string;
  readonly target: string;
  readonly version?: string;
  /** Sent in order, repeats allowed. Default: Host, and Connection: close. */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: string | Buffer;
}

const latin1 = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : s);

/**
 * Builds request bytes. Strings are latin1, one byte per character (so `\x80`–`\xff` are sent as
 * single raw bytes and nothing is re-encoded); pass a Buffer for UTF-8 or arbitrary bytes.
 * Content-Length is added for a body unless a header already frames it.
 */
export function rawRequestBytes(parts: RawRequestParts): Buffer {
  const headers = parts.headers ?? [
    ['Host', '127.0.0.1'],
    ['Connection', 'close'],
  ];
  const body = parts.body === undefined ? undefined : latin1(parts.body);
  const framed = headers.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n));
  let head = `${parts.method ?? 'GET'} ${parts.target} ${parts.version ?? 'HTTP/1.1'}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  if (body !== undefined && !framed) head += `Content-Length: ${body.length}\r\n`;
  return Buffer.concat([latin1(`${head}\r\n`), body ?? Buffer.alloc(0)]);
}

interface Parsed {
  status: number | undefined;
  head: string;
  headers: Map<string, string>;
  body: Buffer;
  /** The response is complete by its own framing. */
  complete: boolean;
}

const HEAD_END = Buffer.from('\r\n\r\n');

function parse(raw: Buffer, noBody = false): Parsed {
  let start = 0;
  for (;;) {
    const end = raw.indexOf(HEAD_END, start);
    if (end === -1) {
      return {
        status: undefined,
        head: raw.toString('latin1', start),
        headers: new Map(),
        body: Buffer.alloc(0),
        complete: false,
      };
    }
    const head = raw.toString('latin1', start, end);
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]!);
    const status = m === null ? undefined : Number(m[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const prev = headers.get(name);
      headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
    }
    const rest = raw.subarray(end + 4);
    // Interim responses (100 Continue) precede the real one.
    if (status !== undefined && status >= 100 && status < 200) {
      start = end + 4;
      continue;
    }
    if (noBody) return { status, head, headers, body: rest, complete: true };
    const length = headers.get('content-length');
    if (length !== undefined && /^\d+$/.test(length)) {
      const n = Number(length);
      return { status, head, headers, body: rest.subarray(0, n), complete: rest.length >= n };
    }
    if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
      const chunks: Buffer[] = [];
      let at = 0;
      for (;;) {
        const eol = rest.indexOf('\r\n', at);
        if (eol === -1) break;
        const size = Number.parseInt(rest.toString('latin1', at, eol), 16);
        if (!Number.isFinite(size) || eol + 2 + size + 2 > rest.length) break;
        if (size === 0) return { status, head, headers, body: Buffer.concat(chunks), complete: true };
        chunks.push(rest.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
      return { status, head, headers, body: rest, complete: false };
    }
    // No length: the body runs to the close (an event stream, or a 1.0-style response).
    return { status, head, headers, body: rest, complete: status === 204 || status === 304 };
  }
}

const firstFrame = (r: RawResponse) =>
  /^text\/event-stream/.test(r.headers.get('content-type') ?? '') && r.body.includes('\n\n');

/**
 * Sends `bytes` on a new connection to `url`'s host and port (writing each part in turn, so a
 * request can arrive split) and reads the response: until it is complete by its framing, until
 * `until` holds for an unframed one, until the server closes, or until the time limit. Never
 * throws for what the server does; the connection is destroyed before resolving.
 */
export function rawExchange(
  url: string,
  bytes: Buffer | string | ReadonlyArray<Buffer | string>,
  opts: RawOptions = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  const parts = (Array.isArray(bytes) ? bytes : [bytes]).map(latin1);
  const until = opts.until ?? firstFrame;
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port), noDelay: true });
    let raw = Buffer.alloc(0);
    let settled = false;
    let error: string | undefined;
    const result = (closed: boolean, timedOut: boolean): RawResponse => {
      const p = parse(raw, opts.noBody);
      return {
        status: p.status,
        head: p.head,
        headers: p.headers,
        body: p.body,
        raw,
        closed,
        timedOut,
        error,
      };
    };
    const finish = (closed: boolean, timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result(closed, timedOut));
    };
    const timer = setTimeout(() => finish(false, true), opts.timeoutMs ?? 5000);
    socket.on('data', (chunk: Buffer) => {
      raw = Buffer.concat([raw, chunk]);
      const p = parse(raw, opts.noBody);
      if (p.complete || (p.status !== undefined && until(result(false, false)))) finish(false, false);
    });
    // A reset after the answer (the server closing on unread bytes) still ends the exchange.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
      finish(true, false);
    });
    socket.on('close', () => finish(true, false));
    if (opts.readAfterSent) socket.pause();
    socket.once('connect', () => {
      for (const part of parts) if (!socket.destroyed) socket.write(part);
      // The callback of the last write runs once everything is in the kernel's send buffer.
      if (opts.readAfterSent && !socket.destroyed)
        socket.write(Buffer.alloc(0), (err?: NodeJS.ErrnoException | null) => {
          // A failed send (the server reset the connection) is what such a client sees first.
          if (err) error ??= err.code ?? err.message;
          socket.resume();
        });
    });
  });
}
