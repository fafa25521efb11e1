import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { HeraldError, toProblem } from '@herald/protocol';
import type { Clock } from '../clock.ts';
import { closeGracefully } from './close.ts';

const asHerald = (err: unknown): HeraldError =>
  err instanceof HeraldError ? err : new HeraldError('HERALD_INTERNAL', 'internal error', { cause: err });

/** `Retry-After` for an error that is worth retrying (503); none for the rest. */
export function retryHeaders(err: unknown, seconds: number): Record<string, string> {
  return err instanceof HeraldError && err.status === 503 ? { 'Retry-After': String(seconds) } : {};
}

/** A header that came once (a repeated one is not trusted for any of the uses here). */
export function singleHeader(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  name: string,
): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Answers on a bare socket with problem+json (a request the front read, one node:http could not
 * parse, a CONNECT), then closes the connection gracefully (see close.ts): what else the client
 * sent was not read, so the connection cannot be reused.
 */
export function writeProblem(
  socket: Socket,
  clock: Clock,
  err: unknown,
  headers: Record<string, string> = {},
): void {
  if (socket.destroyed || !socket.writable) return;
  const e = asHerald(err);
  const body = JSON.stringify(toProblem(e));
  let head =
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\n` +
    'Content-Type: application/problem+json\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\n';
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.write(`${head}Connection: close\r\n\r\n${body}`);
  closeGracefully(socket, clock);
}

/** Answers with `application/problem+json`; anything that is not a HeraldError is an opaque 500. */
export function sendProblem(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  const e = asHerald(err);
  // Answered already (a deadline or a parse error came first): there is nothing more to say.
  if (res.writableEnded) return;
  // Failed halfway through an answer: only cutting the connection tells the client.
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(toProblem(e));
  res.writeHead(e.status, {
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}
