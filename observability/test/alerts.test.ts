import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type MetricName, Metrics } from '@herald/protocol';
import { parse } from 'yaml';

/**
 * The alert rules in observability/alerts, checked with Debian's promtool (installed by
 * tools/prometheus.sh) and against the metric catalogue in packages/protocol, so a renamed metric
 * or label breaks this test instead of silently disabling an alert.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const alertsDir = join(root, 'observability/alerts');
const runbooksDir = join(root, 'observability/runbooks');
const rulesFile = join(alertsDir, 'herald.rules.yaml');
const testsFile = join(alertsDir, 'herald.rules.test.yaml');

/** Where runbook_url points; observability/README.md documents it. */
const RUNBOOK_BASE = 'https://github.com/herald/herald/blob/main/observability/runbooks/';
const SEVERITIES = ['page', 'ticket', 'info'];
/** Labels Prometheus attaches to every scraped series (not exported by Herald). */
const TARGET_LABELS = ['job', 'instance', 'pod', 'namespace'];

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTestFile {
  tests: {
    name: string;
    input_series?: { series: string; values: string }[];
    alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: unknown[] | null }[];
  }[];
}

const rules = parse(readFileSync(rulesFile, 'utf8')) as RuleFile;
const ruleTests = parse(readFileSync(testsFile, 'utf8')) as RuleTestFile;
const allRules = rules.groups.flatMap((g) => g.rules);
const alerts = allRules.filter((r): r is Rule & { alert: string } => typeof r.alert === 'string');

function promtool(...args: string[]): { status: number | null; output: string } {
  const install = spawnSync('bash', [join(root, 'tools/prometheus.sh')], { cwd: root, encoding: 'utf8' });
  assert.equal(install.status, 0, `tools/prometheus.sh failed:\n${install.stderr}`);
  const bin = join(install.stdout.trim(), 'promtool');
  const run = spawnSync(bin, args, { cwd: alertsDir, encoding: 'utf8' });
  if (run.error) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** Metric name → the label names it may carry once scraped. */
function metricLabels(name: string): readonly string[] | undefined {
  if (name === 'up') return TARGET_LABELS;
  const hist = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (hist && Metrics[hist[1] as MetricName]?.type === 'histogram') {
    const labels = Metrics[hist[1] as MetricName].labels;
    return [...labels, ...TARGET_LABELS, ...(hist[2] === 'bucket' ? ['le'] : [])];
  }
  const m = Metrics[name as MetricName];
  return m ? [...m.labels, ...TARGET_LABELS] : undefined;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The series selectors of a PromQL expression: each metric name with the label names its matchers
 * use, plus the label names of `by`/`without`/`on`/`ignoring`/`group_*` clauses. Enough of the
 * lexical grammar for rule expressions: strings, matchers, ranges and grouping clauses are taken
 * out before the remaining identifiers not followed by `(` (functions, aggregations) are read as
 * metric names.
 */
function selectors(expr: string): { metrics: Map<string, Set<string>>; grouping: Set<string> } {
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  const metrics = new Map<string, Set<string>>();
  const grouping = new Set<string>();
  rest = rest.replace(
    /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_m, _kw: string, list: string) => {
      for (const l of list.split(',')) if (l.trim()) grouping.add(l.trim());
      return ' ';
    },
  );
  rest = rest.replace(/([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}/g, (_m, name: string | undefined, body: string) => {
    const labels = new Set([...body.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!));
    if (name !== undefined) metrics.set(name, new Set([...(metrics.get(name) ?? []), ...labels]));
    return ' ';
  });
  rest = rest.replace(/\[[^\]]*\]/g, ' ').replace(/\boffset\s+-?[\w]+/g, ' ');
  for (const m of rest.matchAll(/(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()/g)) {
    const name = m[1]!;
    if (!KEYWORDS.has(name.toLowerCase()) && !metrics.has(name)) metrics.set(name, new Set());
  }
  return { metrics, grouping };
}

describe('alert rules', () => {
  test('rules - promtool check rules accepts the file and counts every rule', () => {
    const { status, output } = promtool('check', 'rules', rulesFile);
    assert.equal(status, 0, output);
    assert.match(output, new RegExp(`SUCCESS: ${allRules.length} rules found`));
  });

  test('rules - every promtool unit test passes', () => {
    const { status, output } = promtool('test', 'rules', testsFile);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS/);
  });

  test('rules - the expression reader finds metric names and labels, not functions or keywords', () => {
    const { metrics, grouping } = selectors(
      'sum by (job, release) (rate(a_total{le=~"1|x{2}", source!="b"}[5m] offset 1h)) > 3 * b:c and on (job) absent(up{job="h"}) unless histogram_quantile(0.99, d_bucket) > 1e3',
    );
    assert.deepEqual(
      [...metrics].map(([n, l]) => [n, [...l].sort()]),
      [
        ['a_total', ['le', 'source']],
        ['up', ['job']],
        ['b:c', []],
        ['d_bucket', []],
      ],
    );
    assert.deepEqual([...grouping].sort(), ['job', 'release']);
  });

  test('rules - every metric and label an expression uses is in the catalogue', () => {
    for (const rule of allRules) {
      const name = rule.alert ?? rule.record;
      const { metrics, grouping } = selectors(rule.expr);
      assert.ok(metrics.size > 0, `${name}: no metric found in its expression`);
      const available = new Set<string>();
      for (const [metric, labels] of metrics) {
        const known = metricLabels(metric);
        assert.ok(known, `${name}: ${metric} is not in packages/protocol/src/metrics.ts`);
        for (const l of labels) assert.ok(known.includes(l), `${name}: ${metric} has no label ${l}`);
        for (const l of known) available.add(l);
      }
      for (const l of grouping) assert.ok(available.has(l), `${name}: groups by ${l}, which no metric has`);
    }
  });

  test('rules - every alert has a severity, summary, description and a runbook that exists', () => {
    assert.ok(alerts.length > 0);
    const names = alerts.map((a) => a.alert);
    assert.equal(new Set(names).size, names.length, 'alert names are unique');
    for (const a of alerts) {
      assert.ok(
        SEVERITIES.includes(a.labels?.severity ?? ''),
        `${a.alert}: severity is one of ${SEVERITIES}`,
      );
      assert.ok(a.annotations?.summary?.trim(), `${a.alert}: has a summary`);
      assert.ok(a.annotations?.description?.trim(), `${a.alert}: has a description`);
      assert.equal(a.annotations?.runbook_url, `${RUNBOOK_BASE}${a.alert}.md`, `${a.alert}: runbook_url`);
      const runbook = join(runbooksDir, `${a.alert}.md`);
      assert.ok(existsSync(runbook), `${a.alert}: observability/runbooks/${a.alert}.md exists`);
      assert.match(
        readFileSync(runbook, 'utf8'),
        new RegExp(`^# ${a.alert}\\n`),
        `${a.alert}: runbook title`,
      );
    }
    const orphans = readdirSync(runbooksDir).filter(
      (f) => f.endsWith('.md') && !names.includes(f.slice(0, -3)),
    );
    assert.deepEqual(orphans, [], 'every runbook belongs to an alert');
  });

  test('rules - every alert is unit-tested both firing and not firing', () => {
    const cases = ruleTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${a.alert}: a test where it fires`,
      );
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${a.alert}: a test where it does not`,
      );
    }
  });

  test('rules - the unit tests feed only catalogued metrics and labels', () => {
    for (const t of ruleTests.tests) {
      for (const { series } of t.input_series ?? []) {
        const { metrics } = selectors(series);
        for (const [metric, labels] of metrics) {
          const known = metricLabels(metric);
          assert.ok(known, `${t.name}: input ${metric} is not in the catalogue`);
          for (const l of labels) assert.ok(known.includes(l), `${t.name}: ${metric} has no label ${l}`);
        }
      }
    }
  });
});
