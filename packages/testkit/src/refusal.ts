import type { SseClient } from './sse-client.ts';

/** A stream request the gateway refused, read whole. */
export interface Refusal {
  readonly status: number;
  readonly headers: SseClient['headers'];
  /** The `Content-Type` header. */
  readonly contentType: string;
  /** The body parsed as JSON; a body that is not JSON (for instance SSE bytes) throws instead. */
  // biome-ignore lint/suspicious/noExplicitAny: a problem+json body; tests assert on its members.
  readonly problem: any;
  /** The body as received. */
  readonly body: string;
}

/**
 * Waits for a refused stream's body to end and parses it. Throws when the answer was a stream
 * (200) or its body is not one JSON document, so no SSE byte can hide in a refusal.
 */
export async function refusalOf(c: SseClient, timeoutMs = 5000): Promise<Refusal> {
  if (c.status === 200) throw new Error(`expected a refusal, got 200 with:\n${c.raw().slice(0, 500)}`);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    c.ended,
    new Promise<never>((_, fail) => {
      timer = setTimeout(
        () => fail(new Error(`the ${c.status} answer did not end within ${timeoutMs} ms`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const body = c.body();
  let problem: unknown;
  try {
    problem = JSON.parse(body);
  } catch {
    throw new Error(`the ${c.status} body is not JSON:\n${body.slice(0, 500)}`);
  }
  const type = c.headers['content-type'];
  return {
    status: c.status,
    headers: c.headers,
    contentType: typeof type === 'string' ? type : '',
    problem,
    body,
  };
}
