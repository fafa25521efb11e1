import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Broker } from './broker/broker.ts';
import { MemoryBroker } from './broker/memory-broker.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import { createHandler } from './http/server.ts';
import { Hub } from './hub.ts';
import { errorFields, type Logger } from './log.ts';

export interface GatewayDeps {
  readonly clock?: Clock;
  /** Float in [0, 1); jitter source. */
  readonly random?: () => number;
  readonly log?: Logger;
  /** Defaults to the broker `config.broker` names. */
  readonly broker?: Broker;
}

/** One gateway: broker, fan-out hub and HTTP server, wired together. */
export interface Gateway {
  readonly hub: Hub;
  readonly broker: Broker;
  readonly server: Server;
  /** Starts the broker and listens; resolves with the bound port. */
  listen(): Promise<number>;
  /**
   * Graceful shutdown: readiness fails and new streams are refused at once, open streams close
   * spread over `config.drainMs` with a jittered `retry:`, then the server and broker close.
   */
  shutdown(): Promise<void>;
}

const demoHtml = () => readFileSync(new URL('./demo/index.html', import.meta.url));

export function createGateway(config: Config, deps: GatewayDeps = {}): Gateway {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? (() => {});
  const onError = (err: unknown, context: string) => log('error', context, errorFields(err));
  const broker =
    deps.broker ??
    new MemoryBroker({
      clock,
      maxEvents: config.historyMaxEvents,
      maxAgeMs: config.historyMaxAgeMs,
      dedupeWindowMs: config.dedupeWindowMs,
    });
  const hub = new Hub(broker, {
    clock,
    random: deps.random ?? Math.random,
    heartbeatMs: config.heartbeatMs,
    retryMs: config.retryMs,
    ringSize: config.ringSize,
    releaseVersion: config.releaseVersion,
    onError,
  });
  const server = createServer(
    {
      // Streams outlive any request timeout; header and body limits still apply to publishes.
      requestTimeout: 0,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    },
    createHandler({
      hub,
      broker,
      stream: { releaseVersion: config.releaseVersion, maxTopics: config.maxTopics },
      publish: config,
      retryAfterSeconds: Math.max(1, Math.ceil(config.retryMs / 1000)),
      demoHtml: config.demo ? demoHtml() : undefined,
      onError,
    }),
  );
  server.on('clientError', (err, socket) => {
    // Malformed HTTP: answer 400 when the socket can still take it; never crash.
    if (socket.writable && (err as { code?: string }).code !== 'ECONNRESET') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    } else socket.destroy();
  });

  let shuttingDown: Promise<void> | undefined;
  return {
    hub,
    broker,
    server,
    async listen() {
      await broker.start();
      hub.start();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
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
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await broker.close();
        log('info', 'stopped');
      })();
      return shuttingDown;
    },
  };
}
