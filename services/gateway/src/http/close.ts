import type { Socket } from 'node:net';
import type { Clock } from '../clock.ts';

/**
 * Closing a connection after an answer its client may not have read yet.
 *
 * A socket closed while bytes it has received are still unread makes the kernel send a reset
 * instead of a FIN. The client's next send then fails (EPIPE, ECONNRESET), and a client that
 * sends its whole body before it reads (curl, most HTTP libraries) never reads the answer that
 * was already on its way: a refused publish saw a reset instead of its 413. So after an answer
 * given before the request's body was all received, the gateway ends its side (the FIN follows
 * the answer), reads on and discards what still arrives, and destroys the socket only when the
 * client has closed its side or a bound is reached.
 */

/**
 * Bytes discarded at most after the answer. 16 MiB is 16 times the default body limit
 * (HERALD_MAX_BODY_BYTES) and more than the socket buffers of both ends usually hold together
 * (Linux lets a receive buffer grow to 6 MiB and a send buffer to 4 MiB by default), so a client that
 * finishes sending a body several times too large still reads its answer; one sending more than
 * that is cut off, at the cost of a reset it asked for.
 */
export const DISCARD_MAX_BYTES = 16 * 1024 * 1024;

/**
 * How long (ms) the gateway waits for the client to stop sending and close after the answer. At
 * 5 s an honest client on a slow uplink has sent what it had in flight; until then the socket
 * counts against no limit, so the time is kept short.
 */
export const DISCARD_MAX_MS = 5_000;

/** Sockets that have had their last answer: requests and parser errors after it are ignored. */
const closing = new WeakSet<Socket>();

/** Whether the socket has been given its last answer (and is closing, or about to). */
export function isClosing(socket: Socket): boolean {
  return closing.has(socket);
}

/**
 * Ends the socket's write side after what was written, then discards what arrives until the
 * client closes its side, {@link DISCARD_MAX_BYTES} have arrived or {@link DISCARD_MAX_MS} have
 * passed, and destroys it. Idempotent.
 */
export function closeGracefully(socket: Socket, clock: Clock): void {
  if (socket.destroyed) return;
  closing.add(socket);
  if (socket.writableEnded) return;
  socket.end();
  lingerThenDestroy(socket, clock);
}

/**
 * For a socket whose write side the gateway has ended: discards what still arrives and destroys
 * it when the client has closed its side, {@link DISCARD_MAX_BYTES} have arrived or
 * {@link DISCARD_MAX_MS} have passed, whichever comes first. A stream the hub ends (drain, shed,
 * token expiry) goes this way too: a client that never closes its side would otherwise hold the
 * socket until shutdown.
 */
export function lingerThenDestroy(socket: Socket, clock: Clock): void {
  if (socket.destroyed) return;
  let discarded = 0;
  const timer = clock.setTimeout(() => socket.destroy(), DISCARD_MAX_MS);
  socket.once('close', () => clock.clearTimeout(timer));
  socket.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_MAX_BYTES) socket.destroy();
  });
  socket.resume();
}

/**
 * Marks the answer being written on a node:http connection as its last and has it closed
 * gracefully once written. node:http ends a `Connection: close` answer with `destroySoon()`,
 * which destroys the socket as soon as the answer is written, whatever the client is still
 * sending; the socket's own `destroySoon` is replaced, so that node:http's bookkeeping (the
 * answer written in order, the request's body dumped) stays as it is. The caller sends
 * `Connection: close`.
 */
export function closeAfterAnswer(socket: Socket, clock: Clock): void {
  if (closing.has(socket)) return;
  closing.add(socket);
  socket.destroySoon = () => closeGracefully(socket, clock);
}
