import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type MetricName, Metrics } from '@herald/protocol';
import type { Attributes } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { Broker, StoredEvent } from '../broker/broker.ts';
import type { Clock } from '../clock.ts';
import { type Edge, REJECTION_REASONS } from '../edge.ts';
import { CLOSE_LABELS, type CloseReason } from '../hub/connection.ts';
import type { Hub } from '../hub/hub.ts';

/**
 * The gateway's metrics, named as `packages/protocol/src/metrics.ts` lists them, exported in the
 * Prometheus text format by OpenTelemetry's Prometheus exporter. Most are read from the hub's and
 * the edge's own counts when scraped, so the hot paths pay nothing; only the delivery-latency
 * histogram is recorded as events are fanned out, once per event.
 */
export interface GatewayMetrics {
  /** Feed this the hub's fan-outs (HubOptions.onFanout). */
  readonly onFanout: (e: StoredEvent, streams: number) => void;
  /** Answers `GET /metrics`. */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  readonly close: () => Promise<void>;
}

export interface MetricsSources {
  readonly hub: () => Hub;
  readonly edge: Edge;
  readonly broker: Broker;
  readonly clock: Clock;
  readonly releaseVersion: string;
}

/** Seconds; from "instant" to the point where an alert has long fired. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics(src: MetricsSources): GatewayMetrics {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': 'herald-gateway' }),
    readers: [exporter],
  });
  const meter = provider.getMeter('herald');
  const release = { release: src.releaseVersion };
  const describe = (name: MetricName) => ({ description: Metrics[name].help });
  const observe = (
    name: MetricName,
    kind: 'counter' | 'gauge',
    read: (emit: (value: number, extra?: Attributes) => void) => void,
  ) => {
    const instrument =
      kind === 'counter'
        ? meter.createObservableCounter(name, describe(name))
        : meter.createObservableGauge(name, describe(name));
    instrument.addCallback((result) =>
      read((value, extra) => result.observe(value, { ...release, ...extra })),
    );
  };

  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const latency = meter.createHistogram('herald_delivery_latency_seconds', {
    ...describe('herald_delivery_latency_seconds'),
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS },
  });

  observe('herald_connections', 'gauge', (emit) => emit(src.hub().size));
  observe('herald_connects_total', 'counter', (emit) => {
    for (const [outcome, n] of Object.entries(src.edge.stats.connects)) emit(n, { outcome });
  });
  observe('herald_disconnects_total', 'counter', (emit) => {
    for (const [reason, n] of Object.entries(src.hub().closes))
      emit(n, { reason: CLOSE_LABELS[reason as CloseReason | 'client'] });
  });
  observe('herald_rejections_total', 'counter', (emit) => {
    for (const reason of REJECTION_REASONS) emit(src.edge.stats.rejections[reason], { reason });
  });
  observe('herald_slow_consumer_closes_total', 'counter', (emit) => emit(src.hub().closes.slow));
  observe('herald_events_published_total', 'counter', (emit) => emit(src.edge.stats.published));
  observe('herald_events_delivered_total', 'counter', (emit) => emit(src.hub().delivered));
  observe('herald_resumes_total', 'counter', (emit) => {
    for (const [source, n] of Object.entries(src.hub().resumes)) emit(n, { source });
  });
  observe('herald_replays_in_flight', 'gauge', (emit) => emit(src.hub().replaying));
  observe('herald_broker_connected', 'gauge', (emit) =>
    emit(src.broker.ready ? 1 : 0, { broker: src.broker.kind }),
  );
  observe('herald_broker_lag_events', 'gauge', (emit) =>
    emit(Math.max(0, src.broker.state().last - src.hub().head)),
  );
  observe('herald_event_loop_delay_seconds', 'gauge', (emit) => {
    // Over the interval since the last scrape; nanoseconds in, seconds out.
    emit(loop.percentile(50) / 1e9, { quantile: '0.5' });
    emit(loop.percentile(99) / 1e9, { quantile: '0.99' });
    emit(loop.max / 1e9, { quantile: '1' });
    loop.reset();
  });
  observe('herald_heap_used_bytes', 'gauge', (emit) => emit(process.memoryUsage().heapUsed));
  observe('herald_resident_memory_bytes', 'gauge', (emit) => emit(process.memoryUsage.rss()));

  return {
    onFanout(e, streams) {
      if (streams > 0) latency.record(Math.max(0, src.clock.now() - e.time) / 1000, release);
    },
    handle: (req, res) => exporter.getMetricsRequestHandler(req, res),
    async close() {
      loop.disable();
      await provider.shutdown();
    },
  };
}
