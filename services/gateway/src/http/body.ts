import type { IncomingMessage } from 'node:http';
import { HeraldError } from '@herald/protocol';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a JSON request body of at most `limit` bytes. A body announced or found to be larger is
 * refused without buffering the rest; invalid UTF-8 or JSON is refused, never guessed at.
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new HeraldError('HERALD_BODY_TOO_LARGE', `request body exceeds ${limit} bytes`, { extra: { limit } });
  const declared = Number(req.headers['content-length']);
  if (declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw tooLarge();
      chunks.push(chunk);
    }
  } catch (cause) {
    if (cause instanceof HeraldError) throw cause;
    // The client aborted or sent a malformed body (node:http has answered a framing error with 400):
    // its fault, not an internal error to log.
    throw new HeraldError('HERALD_BODY_INVALID', 'request body was not received completely', { cause });
  }
  let text: string;
  try {
    text = utf8.decode(Buffer.concat(chunks, size));
  } catch (cause) {
    throw new HeraldError('HERALD_BODY_INVALID', 'request body is not valid UTF-8', { cause });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HeraldError(
      'HERALD_BODY_INVALID',
      `request body is not valid JSON: ${(cause as Error).message}`,
      { cause },
    );
  }
}
