import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HeraldError } from '@herald/protocol';
import { type Tracer, trace } from '@opentelemetry/api';
import type { JwksFetch } from './auth/index.ts';
import type { Broker } from './broker/broker.ts';
import { createBroker } from './broker/create-broker.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import { followControl } from './control.ts';
import { countRejection, createEdge, type Edge } from './edge.ts';
import { createFront } from './http/front.ts';
import { sendProblem, writeProblem } from './http/problem.ts';
import { serveHttp } from './http/server.ts';
import { splitTarget, takeStream } from './http/stream.ts';
import { Hub } from './hub/hub.ts';
import { errorFields, type Logger } from './log.ts';
import { createMetrics, type GatewayMetrics } from './telemetry/metrics.ts';
import { StreamTracing } from './telemetry/tracing.ts';

export interface GatewayDeps {
  readonly clock?: Clock;
  /** Float in [0, 1); jitter source. */
  readonly random?: () => number;
  readonly log?: Logger;
  /** Defaults to the broker `config.broker` names. */
  readonly broker?: Broker;
  /** Reads the files settings name (keys, secrets); default: UTF-8 from disk. */
  readonly readFile?: (path: string) => string;
  /** Fetches the JWKS; default `globalThis.fetch`. */
  readonly fetch?: JwksFetch;
  /** Where spans go; default the global tracer provider's (a no-op unless main.ts set one up). */
  readonly tracer?: Tracer;
}

/** Connections the kernel may hold for accept(); see listen() below. */
const LISTEN_BACKLOG = 4096;
/** How long ended streams may take to flush and close at shutdown before they are cut off (ms). */
const STREAM_LINGER_MS = 2000;

/** One gateway: broker, fan-out hub and HTTP server, wired together. */
export interface Gateway {
  readonly hub: Hub;
  readonly broker: Broker;
  readonly edge: Edge;
  /** Undefined when `HERALD_METRICS=0`. */
  readonly metrics: GatewayMetrics | undefined;
  /** Starts the broker and listens; resolves with the bound port. */
  listen(): Promise<number>;
  /** The internal port serving `/metrics`, once listening. */
  metricsPort(): number;
  /**
   * Graceful shutdown: readiness fails and new streams are refused at once, open streams close
   * spread over `config.drainMs` with a jittered `retry:`, then the server and broker close.
   */
  shutdown(): Promise<void>;
  /** Destroys every open connection abruptly, as a network failure would (for tests and drills). */
  dropConnections(): void;
}

const demoHtml = () => readFileSync(new URL('./demo/index.html', import.meta.url));

export function createGateway(config: Config, deps: GatewayDeps = {}): Gateway {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? (() => {});
  const onError = (err: unknown, context: string) => log('error', context, errorFields(err));
  const random = deps.random ?? Math.random;
  const readFile = deps.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  // Before anything starts: a bad key file or origin stops the process with its variable named.
  const edge = createEdge(config, {
    clock,
    random,
    readFile,
    ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
  });
  const broker = deps.broker ?? createBroker(config, { clock, log, readFile });
  const metrics = config.metrics
    ? createMetrics({ hub: () => hub, edge, broker, clock, releaseVersion: config.releaseVersion })
    : undefined;
  const tracing = new StreamTracing(deps.tracer ?? trace.getTracer('herald-gateway'), {
    releaseVersion: config.releaseVersion,
    pingRatio: Number(config.tracePingRatio),
    random,
  });
  const hub = new Hub(broker, {
    clock,
    random,
    heartbeatMs: config.heartbeatMs,
    retryMs: config.retryMs,
    ringSize: config.ringSize,
    ringMaxBytes: config.ringMaxBytes,
    releaseVersion: config.releaseVersion,
    // Gateways sharing a stream see it a few milliseconds apart; one process sees it whole.
    aheadGraceMs: config.broker === 'jetstream' ? 2000 : 0,
    maxQueuedBytes: config.maxQueuedBytes,
    onFanout: (e, streams) => {
      metrics?.onFanout(e, streams);
      tracing.delivered(e, streams);
    },
    onResumed: (c, source, events) => tracing.resumed(c, source, events),
    onHeartbeat: (c) => tracing.heartbeat(c),
    onClosed: (c, reason) => tracing.closed(c, reason, clock.now()),
    onError,
  });
  const internal = createServer((req, res) => {
    if (metrics !== undefined && req.method === 'GET' && splitTarget(req.url ?? '/').path === '/metrics')
      return metrics.handle(req, res);
    sendProblem(res, new HeraldError('HERALD_NOT_FOUND', 'the internal port serves GET /metrics only'));
  });
  const { retryAfterSeconds } = edge;
  const stream = {
    hub,
    edge,
    clock,
    tracing,
    releaseVersion: config.releaseVersion,
    maxTopics: config.maxTopics,
    retryAfterSeconds,
    onError,
  };
  const http = createServer({
    // node:http counts this from the start of a request to the end of its body; a stream's request
    // ends with its head, so streams are not cut by it (see the stream tests).
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: config.headersTimeoutMs,
    // node:http enforces both deadlines only when it checks its connections (every 30 s by
    // default): check often enough that a trickled second request on a kept-alive connection is
    // closed near its deadline.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(config.headersTimeoutMs / 4))),
    maxHeaderSize: config.maxHeaderBytes,
    keepAliveTimeout: 5_000,
    // The handler refuses a missing Host itself, with problem+json rather than an empty 400.
    requireHostHeader: false,
  });
  serveHttp(http, {
    hub,
    broker,
    edge,
    stream,
    publish: config,
    retryAfterSeconds,
    demoHtml: config.demo ? demoHtml() : undefined,
    onError,
    clock,
  });
  const headTimeout = new HeraldError(
    'HERALD_REQUEST_TIMEOUT',
    `the request head did not arrive whole within ${config.headersTimeoutMs} ms`,
  );
  const front = createFront({
    http,
    take: (socket, head) => takeStream(socket, head, stream),
    maxHeadBytes: config.maxHeaderBytes,
    headTimeoutMs: config.headersTimeoutMs,
    headTimedOut: (socket) => {
      countRejection(edge.stats, headTimeout);
      writeProblem(socket, clock, headTimeout);
    },
  });
  const server = front.server;
  // node:http sets up its connection tracking (closeAllConnections, headersTimeout checks) when it
  // starts listening; it never listens itself here, so it is told when the front does.
  server.on('listening', () => http.emit('listening'));

  followControl(broker, hub, config.releaseVersion, log);

  let shuttingDown: Promise<void> | undefined;
  return {
    hub,
    broker,
    edge,
    metrics,
    metricsPort: () => (internal.listening ? (internal.address() as AddressInfo).port : 0),
    async listen() {
      await edge.auth.start();
      await broker.start();
      if (metrics !== undefined) {
        await new Promise<void>((resolve, reject) => {
          internal.once('error', reject);
          internal.listen(config.metricsPort, config.host, () => {
            internal.off('error', reject);
            resolve();
          });
        });
      }
      hub.start();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // A reconnect storm arrives all at once: past a full accept queue (Node's default 511) the
        // kernel drops handshakes and clients wait out a SYN retransmit (1 s, then 3 s, …). The
        // kernel caps this at net.core.somaxconn.
        server.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    shutdown() {
      shuttingDown ??= (async () => {
        log('info', 'draining', { connections: hub.size, windowMs: config.drainMs });
        await hub.drain(config.drainMs);
        hub.stop();
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
        await broker.close();
        edge.auth.close();
        if (internal.listening) await new Promise<void>((resolve) => internal.close(() => resolve()));
        internal.closeAllConnections();
        await metrics?.close();
        log('info', 'stopped');
      })();
      return shuttingDown;
    },
    dropConnections() {
      for (const c of hub.connections()) (c.sink as Socket).destroy();
      front.destroyPending();
      http.closeAllConnections();
    },
  };
}
