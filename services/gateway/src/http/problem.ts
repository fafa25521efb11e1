import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { HeraldError, toProblem } from '@herald/protocol';

const asHerald = (err: unknown): HeraldError =>
  err instanceof HeraldError ? err : new HeraldError('HERALD_INTERNAL', 'internal error', { cause: err });

/**
 * Answers a request read off a bare socket (the front's stream path) with problem+json, then
 * closes the connection: nothing else was read from it, so it cannot be reused.
 */
export function writeProblem(socket: Socket, err: unknown, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const e = asHerald(err);
  const body = JSON.stringify(toProblem(e));
  let head =
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\n` +
    'Content-Type: application/problem+json\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\n';
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(`${head}Connection: close\r\n\r\n${body}`);
}

/** Answers with `application/problem+json`; anything that is not a HeraldError is an opaque 500. */
export function sendProblem(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  const e = asHerald(err);
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
