import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { cannotBeHead, headEnd, parseRequestHead, type RequestHead } from './request-head.ts';

/**
 * The public listener. It reads each connection's first request head and offers it to `take`;
 * a stream request is served straight on the socket, everything else goes to node:http.
 *
 * Why: node:http keeps a parser, a request and a response alive for as long as a response is
 * open, about 12 KB per connection on Node 24. Streams are open for hours, so streams taken here
 * cost a bare socket (≈ 5 KB), and node:http still handles every other request and every bad one.
 */
export interface FrontOptions {
  readonly http: HttpServer;
  /** Offered each well-formed first request head; returns true when it took the socket. */
  readonly take: (socket: Socket, head: RequestHead) => boolean;
  /** A head larger than this goes to node:http, which answers 431. */
  readonly maxHeadBytes: number;
  /** A client that sends no complete head within this is disconnected (ms). */
  readonly headTimeoutMs: number;
  /**
   * Answers a connection whose head began but did not complete within `headTimeoutMs`, and
   * closes it. One that sent nothing made no request to answer, and is closed without a word.
   */
  readonly headTimedOut: (socket: Socket) => void;
}

export interface Front {
  readonly server: Server;
  /** Destroys connections still sending their first head (the rest belong to the hub or node:http). */
  destroyPending(): void;
  /**
   * Destroys every connection still open, whoever holds it: after a drain, a stream whose client
   * neither reads the rest nor closes its side would keep the listener from closing for ever.
   */
  destroyAll(): void;
}

/** Without a listener an ECONNRESET would be thrown; every error ends in 'close' anyway. */
function ignoreError(): void {}

export function createFront(opts: FrontOptions): Front {
  const pending = new Set<Socket>();
  const open = new Set<Socket>();
  // One listener for every socket (`this` is the socket), not a closure per connection.
  const forget = function (this: Socket) {
    open.delete(this);
  };

  const handOff = (socket: Socket, buf: Buffer) => {
    if (socket.destroyed) return;
    socket.pause();
    socket.unshift(buf);
    // node:http reads a socket's handle natively unless it is marked consumed; marked, it reads
    // through the stream, so the bytes read here (unshifted above) stay ahead of the rest.
    const handle = (socket as unknown as { _handle?: { _consumed?: boolean } })._handle;
    if (handle) handle._consumed = true;
    opts.http.emit('connection', socket);
    socket.resume();
  };

  // Closures made for a connection live as long as it does (hours, for a stream), and with them
  // everything their scope holds: so, once the head is in, nothing of this scope stays reachable
  // but what the error listener (made outside it) needs.
  const server = createServer({ noDelay: true }, (socket) => {
    pending.add(socket);
    open.add(socket);
    socket.once('close', forget);
    socket.on('error', ignoreError);
    // A deadline for the whole head, not an idle timeout: a client trickling a byte at a time
    // (slowloris) must not hold the socket for ever.
    const deadline = setTimeout(() => {
      done();
      if (buf === undefined) socket.destroy();
      else opts.headTimedOut(socket);
    }, opts.headTimeoutMs);
    const done = () => {
      clearTimeout(deadline);
      pending.delete(socket);
      socket.removeListener('close', done);
      socket.removeListener('data', onData);
    };
    socket.once('close', done);
    let buf: Buffer | undefined;
    const onData = (chunk: Buffer) => {
      const scanned = buf === undefined ? 0 : buf.length - 1;
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      const end = headEnd(buf);
      // Malformed bytes go to node:http at once, to be answered 400 rather than held to the deadline.
      if (end === -1 && buf.length <= opts.maxHeadBytes && !cannotBeHead(buf, scanned)) return;
      done();
      const head = end === -1 || end > opts.maxHeadBytes ? undefined : parseRequestHead(buf);
      if (head === undefined || !opts.take(socket, head)) handOff(socket, buf);
    };
    socket.on('data', onData);
  });

  return {
    server,
    destroyPending() {
      for (const s of pending) s.destroy();
    },
    destroyAll() {
      for (const s of open) s.destroy();
    },
  };
}
