import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type Tracer, trace } from '@opentelemetry/api';
import type { JwksFetch } from './auth/index.ts';
import type { Broker } from './broker/broker.ts';
import { createBroker } from './broker/create-broker.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import { followControl } from './control.ts';
import { createEdge, type Edge } from './edge.ts';
import { createInternalServer } from './http/internal-server.ts';
import { createPublicServer } from './http/public-server.ts';
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
  const internal = createInternalServer(metrics);
  const publicServer = createPublicServer(config, {
    hub,
    broker,
    edge,
    clock,
    tracing,
    releaseVersion: config.releaseVersion,
    maxTopics: config.maxTopics,
    publishLimits: config,
    demoHtml: config.demo ? demoHtml() : undefined,
    onError,
  });
  followControl(broker, hub, config.releaseVersion, log);

  let shuttingDown: Promise<void> | undefined;
  return {
    hub,
    broker,
    edge,
    metrics,
    metricsPort: () => internal.port(),
    async listen() {
      await edge.auth.start();
      await broker.start();
      if (metrics !== undefined) await internal.listen(config.metricsPort, config.host);
      hub.start();
      return publicServer.listen();
    },
    shutdown() {
      shuttingDown ??= (async () => {
        log('info', 'draining', { connections: hub.size, windowMs: config.drainMs });
        await hub.drain(config.drainMs);
        hub.stop();
        await publicServer.close();
        await broker.close();
        edge.auth.close();
        await internal.close();
        await metrics?.close();
        log('info', 'stopped');
      })();
      return shuttingDown;
    },
    dropConnections() {
      for (const c of hub.connections()) (c.sink as Socket).destroy();
      publicServer.dropConnections();
    },
  };
}
