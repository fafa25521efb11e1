/**
 * The Grafana dashboards as shipped (observability/dashboards/json): generated and current, built
 * only on catalogue metrics, every query scoped to the `release` variable, and the connection
 * lifecycle's latency panels linked to Tempo.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Metrics } from '@herald/protocol';
import { dashboards, NOTICE } from '../dashboards/index.ts';

interface Target {
  expr: string;
  legendFormat?: string;
  exemplar?: boolean;
  datasource?: { type?: string; uid?: string };
}
interface Link {
  title: string;
  url?: string;
}
interface Panel {
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
  links?: Link[];
  datasource?: { type?: string; uid?: string };
  fieldConfig?: { defaults?: { unit?: string; links?: Link[] } };
  options?: { yAxis?: { unit?: string } };
}
interface Variable {
  type: string;
  name: string;
  query?: unknown;
  datasource?: { type?: string; uid?: string };
  current?: { value?: unknown };
  multi?: boolean;
}
interface Model {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list?: Variable[] };
}

const dir = fileURLToPath(new URL('../dashboards/json/', import.meta.url));
const generator = fileURLToPath(new URL('../dashboards/generate.ts', import.meta.url));
const files = dashboards.map((d) => `${d.name}.json`);
const shipped = new Map(files.map((f) => [f, JSON.parse(readFileSync(join(dir, f), 'utf8')) as Model]));

function panelsOf(model: Model): Panel[] {
  return model.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
}

function targetsOf(model: Model): { panel: Panel; target: Target }[] {
  return panelsOf(model).flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })));
}

/** A Grafana variable reference as it appears in the JSON: `${name}`. */
function ref(name: string): string {
  return `\${${name}}`;
}

function generate(...args: string[]) {
  return spawnSync(process.execPath, ['--conditions=herald-source', generator, ...args], {
    encoding: 'utf8',
  });
}

/** The metric names an expression reads: `herald_…` identifiers outside string literals. */
function metricsIn(expr: string): string[] {
  const code = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...code.matchAll(/(?<![\w:])herald_[A-Za-z0-9_:]*/g)].map((m) => m[0]);
}

function inCatalogue(name: string): boolean {
  if (Object.hasOwn(Metrics, name)) return true;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return (
    base !== name &&
    Object.hasOwn(Metrics, base) &&
    Metrics[base as keyof typeof Metrics].type === 'histogram'
  );
}

describe('dashboards', () => {
  it('generated - the committed JSON is exactly what generate.ts produces', () => {
    assert.deepEqual(readdirSync(dir).sort(), [...files].sort());
    const run = generate('--check');
    assert.equal(run.status, 0, run.stderr);
  });

  it('generated - --check fails naming a stale file and a file no dashboard generates', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'herald-dashboards-'));
    try {
      cpSync(dir, tmp, { recursive: true });
      const stale = join(tmp, 'release-comparison.json');
      writeFileSync(stale, readFileSync(stale, 'utf8').replace('"Herald — ', '"Hand-edited — '));
      writeFileSync(join(tmp, 'old-dashboard.json'), '{}\n');
      const run = generate('--check', '--dir', tmp);
      assert.equal(run.status, 1);
      assert.match(run.stderr, /release-comparison\.json is stale/);
      assert.match(run.stderr, /old-dashboard\.json \(no dashboard generates it\) is stale/);
      assert.doesNotMatch(run.stderr, /fleet-overview|connection-lifecycle/);
      assert.match(run.stderr, /make dashboards/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('generated - every file says so on its first line', () => {
    for (const file of files) {
      const first = readFileSync(join(dir, file), 'utf8').split('\n')[0];
      assert.equal(first, `{"__generated": ${JSON.stringify(NOTICE)},`, file);
    }
  });

  it('metrics - every expression reads only metrics from the catalogue', () => {
    const used = new Set<string>();
    for (const [file, model] of shipped) {
      for (const { panel, target } of targetsOf(model)) {
        const names = metricsIn(target.expr);
        assert.ok(names.length > 0, `${file} "${panel.title}": ${target.expr} reads no Herald metric`);
        for (const name of names) {
          assert.ok(inCatalogue(name), `${file} "${panel.title}": ${name} is not in the metric catalogue`);
          used.add(name.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    }
    // Every catalogued metric shows up on some dashboard.
    assert.deepEqual([...used].sort(), Object.keys(Metrics).sort());
  });

  it('metrics - the parser rejects names outside the catalogue', () => {
    assert.deepEqual(metricsIn('sum(rate(herald_x_total{a="herald_y"}[1m])) / herald_z'), [
      'herald_x_total',
      'herald_z',
    ]);
    assert.equal(inCatalogue('herald_connections'), true);
    assert.equal(inCatalogue('herald_delivery_latency_seconds_bucket'), true);
    assert.equal(inCatalogue('herald_connections_bucket'), false);
    assert.equal(inCatalogue('herald_connection'), false);
  });

  it('release - every selector is scoped to the release variable', () => {
    for (const [file, model] of shipped) {
      for (const { panel, target } of targetsOf(model)) {
        const selectors = [...target.expr.matchAll(/herald_[A-Za-z0-9_:]*(\{[^}]*\})?/g)];
        for (const [selector, matchers] of selectors) {
          assert.ok(
            matchers?.includes('release=~"$release"'),
            `${file} "${panel.title}": ${selector} is not scoped to $release`,
          );
        }
      }
    }
  });

  it('variables - every dashboard has the Prometheus datasource and release variables', () => {
    for (const [file, model] of shipped) {
      const vars = new Map((model.templating.list ?? []).map((v) => [v.name, v]));
      const datasource = vars.get('datasource');
      assert.equal(datasource?.type, 'datasource', file);
      assert.equal(datasource?.query, 'prometheus', file);
      const release = vars.get('release');
      assert.equal(release?.type, 'query', file);
      assert.equal(release?.multi, true, file);
      assert.deepEqual(release?.datasource, { type: 'prometheus', uid: ref('datasource') }, file);
      assert.match(JSON.stringify(release?.query), /label_values\(herald_connections, release\)/, file);
      for (const { panel, target } of targetsOf(model)) {
        assert.deepEqual(panel.datasource, { type: 'prometheus', uid: ref('datasource') }, panel.title);
        assert.deepEqual(target.datasource, { type: 'prometheus', uid: ref('datasource') }, panel.title);
      }
    }
  });

  it('titles - dashboards, uids and the panels of each dashboard are unique', () => {
    const models = [...shipped.values()];
    assert.equal(new Set(models.map((m) => m.title)).size, models.length);
    assert.equal(new Set(models.map((m) => m.uid)).size, models.length);
    assert.deepEqual(models.map((m) => m.title).sort(), [
      'Herald — Connection lifecycle',
      'Herald — Fleet overview',
      'Herald — Release comparison',
    ]);
    for (const [file, model] of shipped) {
      const titles = panelsOf(model).map((p) => p.title);
      assert.deepEqual(
        titles.filter((t, i) => titles.indexOf(t) !== i),
        [],
        `${file} repeats panel titles`,
      );
    }
  });

  it('panels - every panel has a unit and every legend names the labels it groups by', () => {
    for (const [file, model] of shipped) {
      for (const panel of panelsOf(model)) {
        const unit = panel.fieldConfig?.defaults?.unit ?? panel.options?.yAxis?.unit;
        assert.ok(unit, `${file} "${panel.title}" has no unit`);
        for (const target of panel.targets ?? []) {
          for (const [, labels = ''] of target.expr.matchAll(/\bby \(([^)]*)\)/g)) {
            for (const label of labels.split(', ')) {
              if (label === 'le' && panel.type !== 'heatmap') continue;
              assert.ok(
                target.legendFormat?.includes(`{{${label}}}`),
                `${file} "${panel.title}": legend ${target.legendFormat} lacks {{${label}}}`,
              );
            }
          }
        }
      }
    }
  });

  it('traces - the lifecycle latency panels link to Tempo and ask for exemplars', () => {
    const model = shipped.get('connection-lifecycle.json')!;
    const tempo = model.templating.list?.find((v) => v.name === 'tempo');
    assert.equal(tempo?.type, 'datasource');
    assert.equal(tempo?.query, 'tempo');
    assert.equal(tempo?.current?.value, 'tempo');
    const latency = panelsOf(model).filter((p) => /latency/i.test(p.title));
    assert.ok(latency.length >= 2);
    for (const panel of latency) {
      for (const links of [panel.links, panel.fieldConfig?.defaults?.links]) {
        const urls = (links ?? []).map((l) => new URL(l.url ?? '', 'http://grafana'));
        const explore = urls.filter((u) => u.pathname === '/explore');
        assert.ok(explore.length > 0, `${panel.title} has no link to Explore`);
        const panes = JSON.parse(explore[0]!.searchParams.get('panes')!);
        const pane = Object.values(panes)[0] as {
          datasource: string;
          queries: { datasource: unknown; queryType: string; query: string }[];
          range: unknown;
        };
        assert.equal(pane.datasource, ref('tempo'));
        assert.deepEqual(pane.queries[0]?.datasource, { type: 'tempo', uid: ref('tempo') });
        assert.equal(pane.queries[0]?.queryType, 'traceql');
        assert.deepEqual(pane.range, { from: ref('__from'), to: ref('__to') });
        assert.ok(
          explore.some((u) =>
            u.searchParams
              .get('panes')!
              .includes('{ name = \\"sse.connect\\" && resource.service.name = \\"herald-gateway\\" }'),
          ),
          `${panel.title} does not search the sse.connect spans`,
        );
      }
      for (const target of panel.targets ?? []) {
        if (target.expr.includes('_bucket'))
          assert.equal(target.exemplar, true, `${panel.title}: ${target.expr}`);
      }
    }
  });
});
