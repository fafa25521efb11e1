/**
 * PromQL built from the metric catalogue in `@herald/protocol`. Every metric name and label a
 * dashboard uses goes through these helpers, whose types come from `Metrics`: renaming a metric,
 * changing its type or dropping a label breaks `tsc`, not a dashboard in production.
 *
 * Every selector is scoped to the dashboard's `$release` variable, and rates use Grafana's
 * `$__rate_interval`; both are replaced by Grafana (and by the test that runs these expressions
 * against a real Prometheus) before the expression reaches Prometheus.
 */
import { type MetricName, Metrics } from '@herald/protocol';

type Spec<N extends MetricName> = (typeof Metrics)[N];
type OfType<T extends string> = { [N in MetricName]: Spec<N>['type'] extends T ? N : never }[MetricName];

export type Counter = OfType<'counter'>;
export type Gauge = OfType<'gauge'>;
export type Histogram = OfType<'histogram'>;

/** Labels Prometheus attaches to every series it scrapes from a gateway pod. */
export type TargetLabel = 'pod' | 'instance' | 'job';
/** A label of metric `N`: one the catalogue lists for it, or one Prometheus adds. */
export type Label<N extends MetricName> = Spec<N>['labels'][number] | TargetLabel;
/** Exact-match label filters on top of the `release` scope. */
export type Matchers<N extends MetricName> = Partial<Record<Exclude<Label<N>, 'release'>, string>>;

/** The window of every rate: Grafana's `$__rate_interval` (at least four scrape intervals). */
export const RATE = '$__rate_interval';
/** The dashboard's whole time range, for totals over it. */
export const RANGE = '$__range';

/** A catalogue metric's name; a name the catalogue lacks does not type-check. */
export function metric<N extends MetricName>(name: N): N {
  if (!Object.hasOwn(Metrics, name)) throw new Error(`${name} is not in the metric catalogue`);
  return name;
}

/** `name{release=~"$release", k="v", …}`. */
export function selector<N extends MetricName>(name: N, matchers: Matchers<N> = {}, suffix = ''): string {
  const filters = ['release=~"$release"'];
  for (const [label, value] of Object.entries(matchers)) {
    filters.push(`${label}=${JSON.stringify(value)}`);
  }
  return `${metric(name)}${suffix}{${filters.join(', ')}}`;
}

export type Aggregation = 'sum' | 'max' | 'min' | 'avg' | 'count';

/** `op by (labels) (inner)`, or `op(inner)` without labels. */
export function aggregate(op: Aggregation, by: readonly string[], inner: string): string {
  return by.length === 0 ? `${op}(${inner})` : `${op} by (${by.join(', ')}) (${inner})`;
}

/** A gauge aggregated over pods. */
export function gauge<N extends Gauge>(
  op: Aggregation,
  name: N,
  by: readonly Label<N>[],
  matchers: Matchers<N> = {},
): string {
  return aggregate(op, by, selector(name, matchers));
}

/** Per-second rate of a counter, summed over pods. */
export function rate<N extends Counter>(
  name: N,
  by: readonly Label<N>[],
  matchers: Matchers<N> = {},
): string {
  return aggregate('sum', by, `rate(${selector(name, matchers)}[${RATE}])`);
}

/** A counter's increase over the dashboard's time range, summed over pods. */
export function increase<N extends Counter>(
  name: N,
  by: readonly Label<N>[],
  matchers: Matchers<N> = {},
): string {
  return aggregate('sum', by, `increase(${selector(name, matchers)}[${RANGE}])`);
}

/** Per-second rate of one of a histogram's series (`_bucket`, `_sum`, `_count`), summed. */
export function histogramRate<N extends Histogram>(
  name: N,
  series: '_bucket' | '_sum' | '_count',
  by: readonly (Label<N> | 'le')[],
  matchers: Matchers<N> = {},
): string {
  return aggregate('sum', by, `rate(${selector(name, matchers, series)}[${RATE}])`);
}

/** `histogram_quantile(q, …)` over the rate of a histogram's buckets. */
export function quantile<N extends Histogram>(
  q: number,
  name: N,
  by: readonly Label<N>[],
  matchers: Matchers<N> = {},
): string {
  return `histogram_quantile(${q}, ${histogramRate(name, '_bucket', ['le', ...by], matchers)})`;
}

/** Mean of a histogram's observations: rate of `_sum` over rate of `_count`. */
export function mean<N extends Histogram>(
  name: N,
  by: readonly Label<N>[],
  matchers: Matchers<N> = {},
): string {
  return `${histogramRate(name, '_sum', by, matchers)} / ${histogramRate(name, '_count', by, matchers)}`;
}
