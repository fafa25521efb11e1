/**
 * The pieces every Herald dashboard shares: its variables, Prometheus targets, the three panel
 * kinds with Herald's defaults, and links that open Tempo's Explore on the dashboard's time range.
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import {
  type Dashboard,
  DashboardBuilder,
  DashboardCursorSync,
  DashboardLinkBuilder,
  DashboardLinkType,
  type DataSourceRef,
  DatasourceVariableBuilder,
  MappingType,
  QueryVariableBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  type ValueMapping,
  VariableRefresh,
  VariableSort,
} from '@grafana/grafana-foundation-sdk/dashboard';
import * as heatmap from '@grafana/grafana-foundation-sdk/heatmap';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import { metric } from './promql.ts';

/** Tag on every Herald dashboard; the dashboards' link bar lists the others by it. */
export const TAG = 'herald';
/** The gateway's OpenTelemetry `service.name`, as its traces carry it. */
export const SERVICE_NAME = 'herald-gateway';

/** `${name}`: a Grafana variable reference, filled in by Grafana. */
export function variable(name: string): string {
  return `\${${name}}`;
}

export const PROMETHEUS: DataSourceRef = { type: 'prometheus', uid: variable('datasource') };
export const TEMPO: DataSourceRef = { type: 'tempo', uid: variable('tempo') };

/** `datasource`: the Prometheus that scrapes the gateways (the instance's default if unset). */
export function datasourceVariable(): DatasourceVariableBuilder {
  return new DatasourceVariableBuilder('datasource')
    .label('Prometheus')
    .type('prometheus')
    .description('The Prometheus data source that scrapes the Herald gateways.');
}

/** `release`: multi-select of the gateway release versions present in the data source. */
export function releaseVariable(): QueryVariableBuilder {
  return new QueryVariableBuilder('release')
    .label('Release')
    .description(
      'Gateway release versions (the `release` label every Herald series carries). Select the stable and the canary to compare them.',
    )
    .datasource(PROMETHEUS)
    .query({
      qryType: 1,
      query: `label_values(${metric('herald_connections')}, release)`,
      refId: 'PrometheusVariableQueryEditor-VariableQuery',
    })
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.NaturalAsc)
    .multi(true)
    .includeAll(true)
    .allValue('.*')
    .current({ text: ['All'], value: ['$__all'] });
}

/** `tempo`: the Tempo data source the trace links open (uid `tempo` unless chosen otherwise). */
export function tempoVariable(): DatasourceVariableBuilder {
  return new DatasourceVariableBuilder('tempo')
    .label('Tempo')
    .type('tempo')
    .description('The Tempo data source holding the gateway traces; the latency panels link to it.')
    .current({ text: 'tempo', value: 'tempo' });
}

/** A dashboard with Herald's defaults: the common variables, shared crosshair, links to the others. */
export function herald(uid: string, title: string, description: string): DashboardBuilder {
  return new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags([TAG])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-3h', to: 'now' })
    .refresh('30s')
    .withVariable(datasourceVariable())
    .withVariable(releaseVariable())
    .link(
      new DashboardLinkBuilder('Herald')
        .type(DashboardLinkType.Dashboards)
        .tags([TAG])
        .asDropdown(false)
        .includeVars(true)
        .keepTime(true),
    );
}

/** Gives every panel (rows included) a stable id in layout order, as Grafana expects. */
export function numbered(dashboard: Dashboard): Dashboard {
  let id = 1;
  for (const panel of dashboard.panels ?? []) {
    panel.id = id++;
    if ('panels' in panel) {
      for (const inner of panel.panels) inner.id = id++;
    }
  }
  return dashboard;
}

export interface Target {
  expr: string;
  legend: string;
  /** Ask Prometheus for exemplars (trace ids) with the samples; for latency histograms. */
  exemplar?: boolean;
  /** One value at the end of the range instead of a series (tables, stats over the range). */
  instant?: boolean;
  format?: prometheus.PromQueryFormat;
}

function targets(list: readonly Target[]): prometheus.DataqueryBuilder[] {
  return list.map((t, i) => {
    const query = new prometheus.DataqueryBuilder()
      .refId(String.fromCharCode(65 + i))
      .datasource(PROMETHEUS)
      .editorMode(prometheus.QueryEditorMode.Code)
      .expr(t.expr)
      .legendFormat(t.legend)
      .exemplar(t.exemplar ?? false);
    if (t.format !== undefined) query.format(t.format);
    return t.instant ? query.instant() : query.range();
  });
}

export interface PanelOptions {
  description?: string;
  unit: string;
  width?: number;
  height?: number;
  min?: number;
  links?: DashboardLinkBuilder[];
  /** Repeat the panel once per selected value of this variable, side by side. */
  repeat?: string;
}

export interface TimeseriesOptions extends PanelOptions {
  stack?: boolean;
  /** Series whose display name matches this regular expression go on a right-hand axis. */
  rightAxis?: string;
}

export function timeseriesPanel(
  title: string,
  options: TimeseriesOptions,
  list: readonly Target[],
): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder()
    .title(title)
    .datasource(PROMETHEUS)
    .targets(targets(list))
    .unit(options.unit)
    .span(options.width ?? 12)
    .height(options.height ?? 8)
    .fillOpacity(options.stack ? 35 : 10)
    .lineWidth(1)
    .showPoints(common.VisibilityMode.Never)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.Table)
        .placement(common.LegendPlacement.Bottom)
        .calcs(['mean', 'max', 'lastNotNull']),
    )
    .tooltip(
      new common.VizTooltipOptionsBuilder()
        .mode(common.TooltipDisplayMode.Multi)
        .sort(common.SortOrder.Descending),
    );
  if (options.description !== undefined) panel.description(options.description);
  if (options.min !== undefined) panel.min(options.min);
  if (options.stack) panel.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  if (options.rightAxis !== undefined) {
    panel.overrideByRegexp(options.rightAxis, [{ id: 'custom.axisPlacement', value: 'right' }]);
  }
  if (options.links !== undefined) panel.links(options.links).dataLinks(options.links);
  if (options.repeat !== undefined) panel.repeat(options.repeat).repeatDirection('h').maxPerRow(4);
  return panel;
}

export interface StatOptions extends PanelOptions {
  mappings?: ValueMapping[];
  /** Threshold steps above the base colour (green): `[[value, colour], …]`. */
  thresholds?: readonly (readonly [number, string])[];
}

export function statPanel(title: string, options: StatOptions, list: readonly Target[]): stat.PanelBuilder {
  const steps = [
    { value: null, color: 'green' },
    ...(options.thresholds ?? []).map(([value, color]) => ({ value, color })),
  ];
  const panel = new stat.PanelBuilder()
    .title(title)
    .datasource(PROMETHEUS)
    .targets(targets(list))
    .unit(options.unit)
    .span(options.width ?? 6)
    .height(options.height ?? 5)
    .graphMode(common.BigValueGraphMode.Area)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
    .thresholds(new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(steps));
  if (options.description !== undefined) panel.description(options.description);
  if (options.mappings !== undefined) panel.mappings(options.mappings);
  if (options.links !== undefined) panel.links(options.links);
  if (options.repeat !== undefined) panel.repeat(options.repeat).repeatDirection('h').maxPerRow(4);
  return panel;
}

export interface TableOptions extends PanelOptions {
  /** Pivot the instant result: one row per `rows` label value, one column per `columns` value. */
  pivot?: { rows: string; columns: string };
}

export function tablePanel(
  title: string,
  options: TableOptions,
  list: readonly Target[],
): table.PanelBuilder {
  const panel = new table.PanelBuilder()
    .title(title)
    .datasource(PROMETHEUS)
    .targets(targets(list.map((t) => ({ ...t, instant: true, format: prometheus.PromQueryFormat.Table }))))
    .unit(options.unit)
    .span(options.width ?? 12)
    .height(options.height ?? 8);
  if (options.description !== undefined) panel.description(options.description);
  if (options.pivot !== undefined) {
    panel.withTransformation({
      id: 'groupingToMatrix',
      options: { rowField: options.pivot.rows, columnField: options.pivot.columns, valueField: 'Value' },
    });
  }
  return panel;
}

export function heatmapPanel(
  title: string,
  options: PanelOptions,
  list: readonly Target[],
): heatmap.PanelBuilder {
  const panel = new heatmap.PanelBuilder()
    .title(title)
    .datasource(PROMETHEUS)
    .targets(targets(list.map((t) => ({ ...t, format: prometheus.PromQueryFormat.Heatmap }))))
    .span(options.width ?? 12)
    .height(options.height ?? 8)
    .calculate(false)
    .yAxis(new heatmap.YAxisConfigBuilder().unit(options.unit))
    .cellGap(1)
    .color(new heatmap.HeatmapColorOptionsBuilder().mode(heatmap.HeatmapColorMode.Scheme).scheme('Oranges'))
    .exemplarsColor('rgba(255,0,255,0.7)');
  if (options.description !== undefined) panel.description(options.description);
  if (options.links !== undefined) panel.links(options.links).dataLinks(options.links);
  return panel;
}

/** `herald_broker_connected`-style 0/1 gauges shown as words. */
export function upDown(up: string, down: string): ValueMapping[] {
  return [
    {
      type: MappingType.ValueToText,
      options: { '1': { text: up, color: 'green', index: 0 }, '0': { text: down, color: 'red', index: 1 } },
    },
  ];
}

/**
 * A link opening Grafana Explore on the `tempo` data source with a TraceQL search, over the
 * dashboard's time range. The panes JSON is URL-encoded except for the `${…}` variables, which
 * Grafana fills in when the link is followed.
 */
export function tempoLink(title: string, traceql: string): DashboardLinkBuilder {
  const panes = {
    traces: {
      datasource: variable('tempo'),
      queries: [
        {
          refId: 'A',
          datasource: TEMPO,
          queryType: 'traceql',
          query: traceql,
          limit: 20,
          tableType: 'traces',
        },
      ],
      range: { from: variable('__from'), to: variable('__to') },
    },
  };
  const encoded = encodeURIComponent(JSON.stringify(panes)).replace(/%24%7B(\w+)%7D/g, (_, name: string) =>
    variable(name),
  );
  return new DashboardLinkBuilder(title)
    .type(DashboardLinkType.Link)
    .url(`/explore?schemaVersion=1&orgId=1&panes=${encoded}`)
    .targetBlank(true)
    .icon('external link')
    .tooltip('Open the matching traces in Tempo (Explore), over this time range')
    .asDropdown(false)
    .includeVars(false)
    .keepTime(false)
    .tags([]);
}

/** TraceQL for the gateway's spans of one name. */
export function spans(name: 'sse.connect' | 'sse.disconnect' | 'sse.resume' | 'herald.publish'): string {
  return `{ name = "${name}" && resource.service.name = "${SERVICE_NAME}" }`;
}
