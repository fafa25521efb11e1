import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { type PrometheusServer, startPrometheus, until } from '@herald/testkit';
import { parse } from 'yaml';

/**
 * Every PromQL expression Herald ships, run against a real Prometheus (Debian's) scraping a real
 * gateway under a short load: dashboard queries must return data (a panel that shows nothing is a
 * failure), and alert expressions must parse, with every series they select present.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARDS = join(ROOT, 'observability/dashboards/json');
const RULES = join(ROOT, 'observability/alerts/herald.rules.yaml');

interface Panel {
  readonly title?: string;
  readonly targets?: readonly { readonly expr?: string }[];
  readonly panels?: readonly Panel[];
}

function dashboardQueries(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const file of readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json'))) {
    const d = JSON.parse(readFileSync(join(DASHBOARDS, file), 'utf8')) as { title: string; panels: Panel[] };
    const walk = (panels: readonly Panel[]) => {
      for (const p of panels) {
        for (const t of p.targets ?? [])
          if (t.expr) out.push({ where: `${d.title} / ${p.title}`, expr: t.expr });
        walk(p.panels ?? []);
      }
    };
    walk(d.panels);
  }
  return out;
}

function ruleExprs(): { where: string; expr: string }[] {
  const doc = parse(readFileSync(RULES, 'utf8')) as {
    groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) =>
    g.rules.map((r) => ({ where: `${g.name} / ${r.alert ?? r.record}`, expr: r.expr })),
  );
}

/** Grafana's variables, as a dashboard with every release selected over a short range sends them. */
const grafana = (expr: string) =>
  expr.replaceAll('$__rate_interval', '5s').replaceAll('$__range', '30s').replaceAll('$release', '.*');

describe('observability - every shipped PromQL expression against a real Prometheus scraping a gateway', () => {
  let gw: TestGateway;
  let prom: PrometheusServer;
  let load: NodeJS.Timeout | undefined;

  before(async () => {
    gw = await startGateway({ releaseVersion: 'v-prom', maxConnections: 3, ringSize: 16 });
    prom = await startPrometheus({
      targets: [`127.0.0.1:${gw.gateway.metricsPort()}`],
      labels: { pod: 'herald-test-0' },
    });
    // A short, steady load: two streams, events every 50 ms, a resume and a refusal now and then.
    const a = await gw.stream({ topic: 'obs.a' });
    await gw.stream({ topic: 'obs.>' });
    let n = 0;
    load = setInterval(() => {
      n++;
      void gw.publish({ topic: 'obs.a', data: String(n) });
      if (n % 20 === 0) void gw.stream({ topic: 'obs..bad' });
      if (n % 20 === 10 && a.events.length > 0)
        void gw
          .stream({ topic: 'obs.a' }, { headers: { 'Last-Event-ID': a.events.at(-1)!.id! } })
          .then((c) => setTimeout(() => c.close(), 200));
    }, 50);
    // Rates need two samples inside their window: wait for five scrapes.
    await until(
      async () =>
        (await prom.query('count_over_time(herald_connections[5s])')).some((r) => Number(r.value[1]) >= 5),
      'five scrapes of the gateway',
      30_000,
    );
  });

  after(async () => {
    clearInterval(load);
    await prom?.stop();
    await gw?.close();
  });

  it('dashboards - every panel query returns data', async () => {
    const queries = dashboardQueries();
    assert.ok(queries.length > 20, `found ${queries.length} dashboard queries`);
    const empty: string[] = [];
    for (const { where, expr } of queries) {
      const result = await prom.query(grafana(expr));
      const shown = result.filter((r) => !Number.isNaN(Number(r.value[1])));
      if (shown.length === 0) empty.push(`${where}: ${expr}`);
    }
    assert.deepEqual(empty, [], 'panels that would show nothing');
  });

  it('alerts - every rule expression parses, and every series it selects exists', async () => {
    const rules = ruleExprs();
    assert.ok(rules.length >= 9, `found ${rules.length} rules`);
    const missing: string[] = [];
    for (const { where, expr } of rules) {
      await prom.query(expr); // throws with Prometheus's message when it does not parse
      for (const m of expr.matchAll(/\b((?:herald_\w+)|up)(\{[^}]*\})?/g)) {
        const selector = `${m[1]}${m[2] ?? ''}`;
        if ((await prom.query(selector)).length === 0) missing.push(`${where}: ${selector}`);
      }
    }
    assert.deepEqual(missing, [], 'selectors with no series');
  });
});
