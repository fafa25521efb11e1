import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeraldError } from '@herald/protocol';
import type { GatewayMetrics } from '../telemetry/metrics.ts';
import { sendProblem } from './problem.ts';
import { splitTarget } from './stream.ts';

/** The internal port: Prometheus metrics, kept off the public network. */
export interface InternalServer {
  listen(port: number, host: string): Promise<void>;
  /** The bound port; 0 before listening. */
  port(): number;
  close(): Promise<void>;
}

export function createInternalServer(metrics: GatewayMetrics | undefined): InternalServer {
  const server = createServer((req, res) => {
    if (metrics !== undefined && req.method === 'GET' && splitTarget(req.url ?? '/').path === '/metrics')
      return metrics.handle(req, res);
    sendProblem(res, new HeraldError('HERALD_NOT_FOUND', 'the internal port serves GET /metrics only'));
  });
  return {
    listen: (port, host) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      }),
    port: () => (server.listening ? (server.address() as AddressInfo).port : 0),
    async close() {
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}
