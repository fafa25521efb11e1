import type { ServerResponse } from 'node:http';
import { HeraldError, toProblem } from '@herald/protocol';

/** Answers with `application/problem+json`; anything that is not a HeraldError is an opaque 500. */
export function sendProblem(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  const e =
    err instanceof HeraldError ? err : new HeraldError('HERALD_INTERNAL', 'internal error', { cause: err });
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
