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
  const { chunks, size } = await new Promise<{ chunks: Buffer[]; size: number }>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    // The client aborted or sent a malformed body (node:http has answered a framing error): its
    // fault, not an internal error to log.
    const onError = (cause: unknown) => {
      stop();
      reject(new HeraldError('HERALD_BODY_INVALID', 'request body was not received completely', { cause }));
    };
    const onClose = () => onError(new Error('the connection closed before the body ended'));
    const onEnd = () => {
      stop();
      resolve({ chunks, size });
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      // Not destroyed: that would destroy the socket, and the refusal with it. The rest flows on
      // into nothing until the refusal closes the connection (see close.ts).
      stop();
      reject(tooLarge());
    };
    if (req.destroyed) return onClose();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
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
