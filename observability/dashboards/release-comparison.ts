/**
 * *Herald — Release comparison*: a canary next to the stable release, keyed by the `release` label.
 *
 * One multi-select variable, `release`, rather than a `stable` and a `canary` variable: select
 * the two (or more) versions to compare. The first row repeats each panel once per selected
 * release, side by side; the rows below overlay every selected release on the same axes, and a
 * table gives each release's share of disconnect reasons over the time range.
 */
import { type Dashboard, RowBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
import * as units from '@grafana/grafana-foundation-sdk/units';
import { herald, numbered, statPanel, tablePanel, timeseriesPanel } from './panels.ts';
import { gauge, increase, quantile, rate } from './promql.ts';

/** Rejected stream requests as a share of all stream requests, per release. */
const connectErrorRatio = `${rate('herald_connects_total', ['release'], { outcome: 'rejected' })} / ${rate('herald_connects_total', ['release'])}`;
const resets = rate('herald_resumes_total', ['release'], { source: 'reset' });
const resetShare = `${resets} / ${rate('herald_resumes_total', ['release'])}`;
const disconnectShare = `${increase('herald_disconnects_total', ['release', 'reason'])} / ignoring(reason) group_left ${increase('herald_disconnects_total', ['release'])}`;

const SIDE = { width: 24, height: 5, repeat: 'release' } as const;

export function releaseComparison(): Dashboard {
  const dashboard = herald(
    'herald-release',
    'Herald — Release comparison',
    'Stable and canary gateway releases side by side: select both in the release variable.',
  )
    .withRow(new RowBuilder('Side by side: one column per selected release'))
    .withPanel(
      statPanel('Connections — $release', { ...SIDE, unit: units.Short }, [
        { expr: gauge('sum', 'herald_connections', ['release']), legend: '{{release}}' },
      ]),
    )
    .withPanel(
      statPanel(
        'Connect error ratio — $release',
        {
          ...SIDE,
          unit: units.PercentUnit,
          thresholds: [
            [0.01, 'orange'],
            [0.05, 'red'],
          ],
          description: 'Rejected stream requests over all stream requests.',
        },
        [{ expr: connectErrorRatio, legend: '{{release}}' }],
      ),
    )
    .withPanel(
      statPanel(
        'Delivery latency p99 — $release',
        {
          ...SIDE,
          unit: units.Seconds,
          thresholds: [
            [0.25, 'orange'],
            [1, 'red'],
          ],
        },
        [{ expr: quantile(0.99, 'herald_delivery_latency_seconds', ['release']), legend: '{{release}}' }],
      ),
    )
    .withPanel(
      statPanel(
        'Resets/s — $release',
        { ...SIDE, unit: units.OpsPerSecond, description: 'Resumes answered with herald.reset.' },
        [{ expr: resets, legend: '{{release}}' }],
      ),
    )
    .withRow(new RowBuilder('Overlaid: every selected release on the same axes'))
    .withPanel(
      timeseriesPanel('Pods per release', { unit: units.Short, width: 8, min: 0 }, [
        { expr: gauge('count', 'herald_connections', ['release']), legend: '{{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel('Connections by release', { unit: units.Short, width: 8, min: 0 }, [
        { expr: gauge('sum', 'herald_connections', ['release']), legend: '{{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Connect error ratio by release',
        { unit: units.PercentUnit, width: 8, min: 0, description: 'Rejected stream requests over all.' },
        [{ expr: connectErrorRatio, legend: '{{release}}' }],
      ),
    )
    .withPanel(
      timeseriesPanel('Delivery latency p99 by release', { unit: units.Seconds, width: 8, min: 0 }, [
        {
          expr: quantile(0.99, 'herald_delivery_latency_seconds', ['release']),
          legend: '{{release}}',
          exemplar: true,
        },
      ]),
    )
    .withPanel(
      timeseriesPanel('Resets/s by release', { unit: units.OpsPerSecond, width: 8, min: 0 }, [
        { expr: resets, legend: '{{release}}' },
      ]),
    )
    .withPanel(
      timeseriesPanel(
        'Reset share of resumes by release',
        {
          unit: units.PercentUnit,
          width: 8,
          min: 0,
          description: 'Resumes that could not be served exactly and got herald.reset.',
        },
        [{ expr: resetShare, legend: '{{release}}' }],
      ),
    )
    .withRow(new RowBuilder('Disconnect reasons'))
    .withPanel(
      timeseriesPanel('Disconnects/s by reason and release', { unit: units.OpsPerSecond, min: 0 }, [
        { expr: rate('herald_disconnects_total', ['release', 'reason']), legend: '{{reason}} · {{release}}' },
      ]),
    )
    .withPanel(
      tablePanel(
        'Disconnect reasons: share of each release’s disconnects over the range',
        {
          unit: units.PercentUnit,
          pivot: { rows: 'reason', columns: 'release' },
          description: 'One row per reason, one column per release; each column sums to 100%.',
        },
        [{ expr: disconnectShare, legend: '{{reason}} · {{release}}' }],
      ),
    )
    .build();
  return numbered(dashboard);
}
