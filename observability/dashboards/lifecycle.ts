/**
 * *Herald — Connection lifecycle*: how streams open, resume, deliver and end. Its latency panels
 * carry exemplars and links into Tempo, where one connection's whole life is one trace.
 */
import { type Dashboard, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import * as units from '@grafana/grafana-foundation-sdk/units';
import {
  heatmapPanel,
  herald,
  numbered,
  spans,
  statPanel,
  tempoLink,
  tempoVariable,
  timeseriesPanel,
} from './panels.ts';
import { gauge, histogramRate, mean, quantile, rate } from './promql.ts';

/** The links every latency panel carries: the traces behind the numbers, over the same range. */
function traceLinks() {
  return [
    tempoLink('Connection traces in Tempo (sse.connect)', spans('sse.connect')),
    tempoLink('Publish traces in Tempo (herald.publish)', spans('herald.publish')),
  ];
}

const resumeShare = `${rate('herald_resumes_total', ['release'])} / ${rate('herald_connects_total', ['release'], { outcome: 'accepted' })}`;
const disconnectShare = `${rate('herald_disconnects_total', ['release', 'reason'])} / ignoring(reason) group_left ${rate('herald_disconnects_total', ['release'])}`;
/** Little's law: mean time in the system = streams open / streams ending per second. */
const meanLifetime = `${gauge('sum', 'herald_connections', ['release'])} / ${rate('herald_disconnects_total', ['release'])}`;

export function connectionLifecycle(): Dashboard {
  const dashboard = herald(
    'herald-lifecycle',
    'Herald — Connection lifecycle',
    'Streams from connect to disconnect: outcomes, resumes, delivery latency with links to the traces in Tempo, and why streams end.',
  )
    .withVariable(tempoVariable())
    .link(tempoLink('Connection traces (Tempo)', spans('sse.connect')))
    .withRow(new RowBuilder('Connect and resume'))
    .withPanel(
      timeseriesPanel('Connects/s by outcome', { unit: units.OpsPerSecond, width: 8, stack: true, min: 0 }, [
        { expr: rate('herald_connects_total', ['outcome', 'release']), legend: '{{outcome}} · {{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel('Resumes/s by source', { unit: units.OpsPerSecond, width: 8, stack: true, min: 0 }, [
        { expr: rate('herald_resumes_total', ['source', 'release']), legend: '{{source}} · {{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Resumes as a share of accepted connects',
        {
          unit: units.PercentUnit,
          width: 8,
          min: 0,
          description: 'Streams opened with a cursor (a reconnect or reload) over all accepted streams.',
        },
        [{ expr: resumeShare, legend: '{{release}}' }],
      ),
    )
    .withRow(new RowBuilder('Delivery latency (exemplars and links to traces)'))
    .withPanel(
      timeseriesPanel(
        'Delivery latency p50 / p99 / mean',
        {
          unit: units.Seconds,
          min: 0,
          links: traceLinks(),
          description:
            'From an event being stored to its frame being written to a stream. Exemplar dots open their trace; the panel links search Tempo over this range.',
        },
        [
          {
            expr: quantile(0.5, 'herald_delivery_latency_seconds', ['release']),
            legend: 'p50 · {{release}}',
            exemplar: true,
          },
          {
            expr: quantile(0.99, 'herald_delivery_latency_seconds', ['release']),
            legend: 'p99 · {{release}}',
            exemplar: true,
          },
          { expr: mean('herald_delivery_latency_seconds', ['release']), legend: 'mean · {{release}}' },
        ],
      ),
    )
    .withPanel(
      heatmapPanel(
        'Delivery latency distribution',
        {
          unit: units.Seconds,
          links: traceLinks(),
          description: 'Deliveries per latency bucket, all selected releases; exemplars overlaid.',
        },
        [
          {
            expr: histogramRate('herald_delivery_latency_seconds', '_bucket', ['le']),
            legend: '{{le}}',
            exemplar: true,
          },
        ],
      ),
    )
    .withRow(new RowBuilder('Disconnect'))
    .withPanel(
      timeseriesPanel(
        'Disconnects/s by reason',
        { unit: units.OpsPerSecond, width: 8, stack: true, min: 0 },
        [
          {
            expr: rate('herald_disconnects_total', ['reason', 'release']),
            legend: '{{reason}} · {{release}}',
          },
        ],
      ),
    )
    .withPanel(
      timeseriesPanel('Disconnect reasons (share)', { unit: units.PercentUnit, width: 8, min: 0 }, [
        { expr: disconnectShare, legend: '{{reason}} · {{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Mean connection lifetime',
        {
          unit: units.Seconds,
          width: 8,
          min: 0,
          links: [tempoLink('Disconnect traces in Tempo (sse.disconnect)', spans('sse.disconnect'))],
          description:
            'Estimated by Little’s law: open streams divided by streams ending per second. Exact per-stream durations are on the sse.disconnect spans.',
        },
        [{ expr: meanLifetime, legend: '{{release}}' }],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Slow-consumer closes/s',
        {
          unit: units.OpsPerSecond,
          width: 8,
          min: 0,
          description: 'Streams dropped because their client stopped reading.',
        },
        [{ expr: rate('herald_slow_consumer_closes_total', ['release']), legend: '{{release}}' }],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Token expiry closes/s',
        {
          unit: units.OpsPerSecond,
          width: 8,
          min: 0,
          description: 'Streams closed when their token expired; the client reconnects with a fresh one.',
        },
        [
          {
            expr: rate('herald_disconnects_total', ['release'], { reason: 'token_expired' }),
            legend: '{{release}}',
          },
        ],
      ),
    )
    .withPanel(
      statPanel('Open connections', { unit: units.Short, width: 8, height: 8 }, [
        { expr: gauge('sum', 'herald_connections', ['release']), legend: '{{release}}' },
      ]),
    )
    .build();
  return numbered(dashboard);
}
