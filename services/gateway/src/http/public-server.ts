import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeraldError } from '@herald/protocol';
import type { Config } from '../config.ts';
import { countRejection } from '../edge.ts';
import { createFront } from './front.ts';
import { writeProblem } from './problem.ts';
import { type HttpDeps, serveHttp } from './server.ts';
import { takeStream } from './stream.ts';

/** Connections the kernel may hold for accept(); see listen() below. */
const LISTEN_BACKLOG = 4096;
/** How long ended streams may take to flush and close at shutdown before they are cut off (ms). */
const STREAM_LINGER_MS = 2000;

export type PublicServerOptions = Pick<
  Config,
  'host' | 'port' | 'requestTimeoutMs' | 'headersTimeoutMs' | 'maxHeaderBytes'
>;

/** The public port: streams, publishes, probes (and the demo page). */
export interface PublicServer {
  /** Listens; resolves with the bound port. */
  listen(): Promise<number>;
  /**
   * Stops listening and closes what is left once the hub has ended its streams: connections that
   * sent nothing whole yet at once, the rest after a short linger for their last bytes.
   */
  close(): Promise<void>;
  /** Destroys the connections the hub does not hold (for `Gateway.dropConnections`). */
  dropConnections(): void;
}

/**
 * The front (a bare listener that serves streams straight on the socket) and node:http behind it
 * for everything else, with their deadlines and limits.
 */
export function createPublicServer(opts: PublicServerOptions, deps: HttpDeps): PublicServer {
  const { edge, clock } = deps;
  const http = createServer({
    // node:http counts this from the start of a request to the end of its body; a stream's request
    // ends with its head, so streams are not cut by it (see the stream tests).
    requestTimeout: opts.requestTimeoutMs,
    headersTimeout: opts.headersTimeoutMs,
    // node:http enforces both deadlines only when it checks its connections (every 30 s by
    // default): check often enough that a trickled second request on a kept-alive connection is
    // closed near its deadline.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(opts.headersTimeoutMs / 4))),
    maxHeaderSize: opts.maxHeaderBytes,
    keepAliveTimeout: 5_000,
    // The handler refuses a missing Host itself, with problem+json rather than an empty 400.
    requireHostHeader: false,
  });
  serveHttp(http, deps);
  const headTimeout = new HeraldError(
    'HERALD_REQUEST_TIMEOUT',
    `the request head did not arrive whole within ${opts.headersTimeoutMs} ms`,
  );
  const front = createFront({
    http,
    take: (socket, head) => takeStream(socket, head, deps),
    maxHeadBytes: opts.maxHeaderBytes,
    headTimeoutMs: opts.headersTimeoutMs,
    headTimedOut: (socket) => {
      countRejection(edge.stats, headTimeout);
      writeProblem(socket, clock, headTimeout);
    },
  });
  const server = front.server;
  // node:http sets up its connection tracking (closeAllConnections, headersTimeout checks) when it
  // starts listening; it never listens itself here, so it is told when the front does.
  server.on('listening', () => http.emit('listening'));

  return {
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        // A reconnect storm arrives all at once: past a full accept queue (Node's default 511) the
        // kernel drops handshakes and clients wait out a SYN retransmit (1 s, then 3 s, …). The
        // kernel caps this at net.core.somaxconn.
        server.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      front.destroyPending();
      http.closeAllConnections();
      // Stops node:http's connection checks; it answers "not running", which is expected.
      http.close(() => {});
      // Ended streams get a moment to deliver their last bytes (the retry: line); a client that
      // takes none of it, or never closes its side, is then cut off.
      const linger = clock.setTimeout(() => front.destroyAll(), STREAM_LINGER_MS);
      await closed;
      clock.clearTimeout(linger);
    },
    dropConnections() {
      front.destroyPending();
      http.closeAllConnections();
    },
  };
}
