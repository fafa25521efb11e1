/** *Herald — Fleet overview*: the whole fleet at a glance, per release and per pod. */
import { type Dashboard, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import * as units from '@grafana/grafana-foundation-sdk/units';
import { herald, numbered, statPanel, timeseriesPanel, upDown } from './panels.ts';
import { gauge, quantile, rate } from './promql.ts';

export function fleetOverview(): Dashboard {
  const dashboard = herald(
    'herald-fleet',
    'Herald — Fleet overview',
    'Every Herald gateway: connections, connect and disconnect traffic, event flow, delivery latency, resumes, the broker and the runtime.',
  )
    .withRow(new RowBuilder('Now'))
    .withPanel(
      statPanel('Open connections', { unit: units.Short }, [
        { expr: gauge('sum', 'herald_connections', []), legend: 'connections' },
      ]),
    )
    .withPanel(
      statPanel(
        'Delivery latency p99',
        {
          unit: units.Seconds,
          thresholds: [
            [0.25, 'orange'],
            [1, 'red'],
          ],
        },
        [{ expr: quantile(0.99, 'herald_delivery_latency_seconds', []), legend: 'p99' }],
      ),
    )
    .withPanel(
      statPanel('Events delivered/s', { unit: units.OpsPerSecond }, [
        { expr: rate('herald_events_delivered_total', []), legend: 'delivered/s' },
      ]),
    )
    .withPanel(
      statPanel(
        'Broker connected',
        {
          unit: units.Short,
          description: 'Per pod: 1 while its broker connection and stream are usable.',
          mappings: upDown('connected', 'disconnected'),
          thresholds: [],
        },
        [
          {
            expr: gauge('min', 'herald_broker_connected', ['pod', 'broker']),
            legend: '{{pod}} · {{broker}}',
          },
        ],
      ),
    )
    .withRow(new RowBuilder('Connections'))
    .withPanel(
      timeseriesPanel('Connections by release', { unit: units.Short, stack: true, min: 0 }, [
        { expr: gauge('sum', 'herald_connections', ['release']), legend: '{{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel('Connections per pod', { unit: units.Short, min: 0 }, [
        { expr: gauge('sum', 'herald_connections', ['pod', 'release']), legend: '{{pod}} · {{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Connects/s by outcome',
        {
          unit: units.OpsPerSecond,
          width: 8,
          description:
            'accepted, rejected (answered with problem+json), turned_away (draining or no broker).',
        },
        [
          {
            expr: rate('herald_connects_total', ['outcome', 'release']),
            legend: '{{outcome}} · {{release}}',
          },
        ],
      ),
    )
    .withPanel(
      timeseriesPanel('Disconnects/s by reason', { unit: units.OpsPerSecond, width: 8 }, [
        { expr: rate('herald_disconnects_total', ['reason', 'release']), legend: '{{reason}} · {{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Rejections/s by reason',
        { unit: units.OpsPerSecond, width: 8, description: 'Requests refused at the edge.' },
        [
          {
            expr: rate('herald_rejections_total', ['reason', 'release']),
            legend: '{{reason}} · {{release}}',
          },
        ],
      ),
    )
    .withRow(new RowBuilder('Events'))
    .withPanel(
      timeseriesPanel(
        'Events published/s and delivered/s',
        {
          unit: units.OpsPerSecond,
          rightAxis: '^published',
          description:
            'Published: stored through the gateways’ publish API (right axis). Delivered: written to streams, one per event per stream (left axis).',
        },
        [
          { expr: rate('herald_events_delivered_total', ['release']), legend: 'delivered · {{release}}' },
          { expr: rate('herald_events_published_total', ['release']), legend: 'published · {{release}}' },
        ],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Delivery latency p50 / p99',
        {
          unit: units.Seconds,
          description: 'From an event being stored to its frame being written to a stream.',
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
        ],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Resumes/s by source',
        {
          unit: units.OpsPerSecond,
          width: 8,
          description: 'Where a resumed stream’s missed events came from.',
        },
        [{ expr: rate('herald_resumes_total', ['source', 'release']), legend: '{{source}} · {{release}}' }],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Replays in flight',
        {
          unit: units.Short,
          width: 8,
          min: 0,
          description: 'Replays from the broker’s log (at most 4 per pod).',
        },
        [{ expr: gauge('sum', 'herald_replays_in_flight', ['pod']), legend: '{{pod}}' }],
      ),
    )
    .withPanel(
      timeseriesPanel(
        'Consumer lag (events)',
        {
          unit: units.Short,
          width: 8,
          min: 0,
          description: 'Events the stream holds that the pod’s live feed has not delivered yet.',
        },
        [{ expr: gauge('max', 'herald_broker_lag_events', ['pod']), legend: '{{pod}}' }],
      ),
    )
    .withRow(new RowBuilder('Broker and runtime'))
    .withPanel(
      timeseriesPanel(
        'Broker connection per pod',
        {
          unit: units.Short,
          width: 6,
          min: 0,
          description: '1 while the broker is connected and its stream usable.',
        },
        [
          {
            expr: gauge('min', 'herald_broker_connected', ['pod', 'broker']),
            legend: '{{pod}} · {{broker}}',
          },
        ],
      ),
    )
    .withPanel(
      timeseriesPanel('Event-loop delay p99', { unit: units.Seconds, width: 6, min: 0 }, [
        {
          expr: gauge('max', 'herald_event_loop_delay_seconds', ['pod'], { quantile: '0.99' }),
          legend: '{{pod}}',
        },
      ]),
    )
    .withPanel(
      timeseriesPanel('Heap used per pod', { unit: units.BytesIEC, width: 6, min: 0 }, [
        { expr: gauge('sum', 'herald_heap_used_bytes', ['pod']), legend: '{{pod}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel('Resident memory per pod', { unit: units.BytesIEC, width: 6, min: 0 }, [
        { expr: gauge('sum', 'herald_resident_memory_bytes', ['pod']), legend: '{{pod}}' },
      ]),
    )
    .build();
  return numbered(dashboard);
}
