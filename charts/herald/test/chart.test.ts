import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { settings } from '@herald/gateway';
import { type ControlPlane, startControlPlane } from '@herald/testkit';
import { parseAllDocuments } from 'yaml';

/** `charts/herald`, tested through the pinned helm (tools/helm.sh) and a real kube-apiserver. */
const CHART = fileURLToPath(new URL('..', import.meta.url));
const ROOT = join(CHART, '..', '..');
const HELM = join(execFileSync('bash', [join(ROOT, 'tools/helm.sh')], { encoding: 'utf8' }).trim(), 'helm');
const PROFILES = {
  quickstart: 'ci/quickstart-values.yaml',
  production: 'ci/production-values.yaml',
} as const;
const run = promisify(execFile);

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form.
type Obj = Record<string, any>;

async function helm(args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(HELM, args, {
    cwd: CHART,
    env: {
      ...process.env,
      HELM_CACHE_HOME: '/tmp/herald-helm-cache',
      HELM_CONFIG_HOME: '/tmp/herald-helm-config',
      ...env,
    },
    maxBuffer: 64 << 20,
  });
  return stdout;
}

function parse(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null);
}

async function template(values?: string, extra: string[] = []): Promise<Obj[]> {
  return parse(
    await helm([
      'template',
      'herald',
      '.',
      '--namespace',
      'herald-test',
      ...(values ? ['-f', values] : []),
      ...extra,
    ]),
  );
}

const one = (objs: Obj[], kind: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && !o.metadata.annotations?.['helm.sh/hook']);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!;
};
const subset = (sel: Obj, labels: Obj, what: string) => {
  for (const [k, v] of Object.entries(sel))
    assert.equal(labels[k], v, `${what}: selector ${k}=${v} not on the pod`);
};

describe('chart files copied from observability/', () => {
  it('files/herald.rules.yaml equals observability/alerts/herald.rules.yaml', () => {
    assert.equal(
      readFileSync(join(CHART, 'files/herald.rules.yaml'), 'utf8'),
      readFileSync(join(ROOT, 'observability/alerts/herald.rules.yaml'), 'utf8'),
    );
  });
  it('files/dashboards/ equals observability/dashboards/json/', () => {
    const src = join(ROOT, 'observability/dashboards/json');
    const dst = join(CHART, 'files/dashboards');
    assert.deepEqual(readdirSync(dst).sort(), readdirSync(src).sort());
    for (const f of readdirSync(src))
      assert.equal(readFileSync(join(dst, f), 'utf8'), readFileSync(join(src, f), 'utf8'), f);
  });
});

describe('helm lint and template', () => {
  for (const [name, file] of Object.entries(PROFILES)) {
    it(`lint --strict: ${name}`, async () => {
      await helm(['lint', '--strict', '.', '-f', file]);
    });
  }

  for (const [name, file] of [['defaults', undefined], ...Object.entries(PROFILES)] as [
    string,
    string | undefined,
  ][]) {
    it(`template: ${name}: hardened, probed, drained, labels consistent`, async () => {
      const objs = await template(file);
      const dep = one(objs, 'Deployment');
      const pod = dep.spec.template.spec;
      const podLabels = dep.spec.template.metadata.labels;
      const c = pod.containers[0];
      assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      assert.deepEqual(c.securityContext.seccompProfile, { type: 'RuntimeDefault' });
      assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'http' });
      assert.ok(c.ports.some((p: Obj) => p.name === 'metrics' && p.containerPort === 9464));
      assert.ok(c.ports.some((p: Obj) => p.name === 'http' && p.containerPort === 8080));
      assert.deepEqual(dep.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: '25%' });
      assert.ok(pod.topologySpreadConstraints.length > 0);
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value]));
      const drainMs = Number(env.HERALD_DRAIN_MS);
      assert.ok(pod.terminationGracePeriodSeconds * 1000 > drainMs, 'grace period beyond the drain window');
      for (const name of Object.keys(env)) assert.match(name, /^HERALD_/);
      assert.equal(new Set(c.env.map((e: Obj) => e.name)).size, c.env.length, 'no duplicate env');

      subset(dep.spec.selector.matchLabels, podLabels, 'Deployment');
      subset(one(objs, 'Service').spec.selector, podLabels, 'Service');
      for (const spread of pod.topologySpreadConstraints)
        subset(spread.labelSelector.matchLabels, podLabels, 'spread');
      for (const kind of ['PodDisruptionBudget', 'ServiceMonitor']) {
        const o = objs.find((x) => x.kind === kind);
        if (o) subset(o.spec.selector.matchLabels, podLabels, kind);
      }
      const np = objs.find((x) => x.kind === 'NetworkPolicy');
      if (np) subset(np.spec.podSelector.matchLabels, podLabels, 'NetworkPolicy');
      const sm = objs.find((x) => x.kind === 'ServiceMonitor');
      if (sm)
        subset(
          sm.spec.selector.matchLabels,
          one(objs, 'Service').metadata.labels,
          'ServiceMonitor → Service',
        );
    });
  }

  it('production: HPA, HTTPRoute, rules, dashboards', async () => {
    const objs = await template(PROFILES.production);
    const hpa = one(objs, 'HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.equal(one(objs, 'Deployment').spec.replicas, undefined, 'the HPA owns replicas');
    assert.deepEqual(
      hpa.spec.metrics.map((m: Obj) => m.type),
      ['Pods', 'Resource'],
    );
    assert.equal(hpa.spec.metrics[0].pods.metric.name, 'herald_connections');
    assert.equal(hpa.spec.metrics[0].pods.target.type, 'AverageValue');
    assert.equal(hpa.spec.metrics[1].resource.name, 'cpu');
    const down = hpa.spec.behavior.scaleDown;
    assert.ok(down.stabilizationWindowSeconds >= 600);
    assert.deepEqual(down.policies, [{ type: 'Percent', value: 10, periodSeconds: 60 }]);

    const route = one(objs, 'HTTPRoute');
    const pins = route.spec.rules[0];
    assert.deepEqual(pins.matches[0].headers[0], { name: 'X-Release-Version', value: '0.1.0' });
    assert.deepEqual(pins.matches[1].queryParams[0], { name: 'release', value: '0.1.0' });
    assert.equal(pins.matches[2].headers[0].name, 'Cookie');
    const cookie = new RegExp(pins.matches[2].headers[0].value);
    assert.ok(cookie.test('a=b; herald-release=0.1.0; c=d') && cookie.test('herald-release=0.1.0'));
    assert.ok(!cookie.test('herald-release=0.1.01') && !cookie.test('herald-release=0x1y0'));
    for (const rule of route.spec.rules) assert.equal(rule.timeouts.request, '0s');

    const source = parse(readFileSync(join(ROOT, 'observability/alerts/herald.rules.yaml'), 'utf8'))[0]!;
    assert.deepEqual(one(objs, 'PrometheusRule').spec.groups, source.groups);
    const boards = objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1');
    assert.equal(boards.length, readdirSync(join(ROOT, 'observability/dashboards/json')).length);
    for (const b of boards) for (const v of Object.values(b.data)) JSON.parse(v as string);
  });

  it('the schema rejects a misspelled key, naming it', async () => {
    await assert.rejects(helm(['template', 'herald', '.', '--set', 'image.repostory=x']), /repostory/);
    await assert.rejects(
      helm(['template', 'herald', '.', '--set', 'config.HERALD_MAX_CONECTIONS=1']),
      /HERALD_MAX_CONECTIONS/,
    );
    await assert.rejects(helm(['template', 'herald', '.', '--set', 'hpa.enabld=true']), /enabld/);
  });

  it('refuses a fleet on the per-pod memory broker', async () => {
    await assert.rejects(helm(['template', 'herald', '.', '--set', 'replicas=3']), /needs nats\.url/);
  });
});

/** API path of an object, by its apiVersion and kind. */
function apiPath(o: Obj, ns: string): string {
  const plural: Record<string, string> = {
    Deployment: 'deployments',
    Service: 'services',
    Secret: 'secrets',
    ConfigMap: 'configmaps',
    Pod: 'pods',
    HorizontalPodAutoscaler: 'horizontalpodautoscalers',
    PodDisruptionBudget: 'poddisruptionbudgets',
    NetworkPolicy: 'networkpolicies',
    ServiceMonitor: 'servicemonitors',
    PrometheusRule: 'prometheusrules',
    HTTPRoute: 'httproutes',
  };
  const kind = plural[o.kind];
  assert.ok(kind, `no API path for ${o.kind}`);
  const group = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  return `${group}/namespaces/${ns}/${kind}`;
}

describe('helm install, upgrade, uninstall on a real kube-apiserver', { timeout: 120_000 }, () => {
  const NS = 'herald-test';
  let cp: ControlPlane;
  let env: Record<string, string>;
  before(async () => {
    cp = await startControlPlane();
    env = { KUBECONFIG: cp.kubeconfig };
  });
  after(async () => {
    await cp?.stop();
  });

  for (const [name, file] of Object.entries(PROFILES)) {
    it(`${name}: every object is accepted, upgraded, and gone after uninstall`, async () => {
      const rel = `herald-${name}`;
      await helm(['install', rel, '.', '-f', file, '--namespace', NS, '--create-namespace'], env);
      const objs = parse(await helm(['get', 'manifest', rel, '--namespace', NS], env));
      assert.deepEqual(
        objs
          .map((o) => o.kind)
          .filter((k) => k === 'Deployment' || k === 'Service')
          .sort(),
        ['Deployment', 'Service'],
      );
      for (const o of objs) {
        const res = await cp.request('GET', `${apiPath(o, NS)}/${o.metadata.name}`);
        assert.equal(res.status, 200, `${o.kind}/${o.metadata.name}: ${res.body}`);
      }
      if (name === 'production') {
        const kinds = new Set(objs.map((o) => o.kind));
        for (const k of [
          'HTTPRoute',
          'HorizontalPodAutoscaler',
          'PodDisruptionBudget',
          'NetworkPolicy',
          'ServiceMonitor',
          'PrometheusRule',
        ]) {
          assert.ok(kinds.has(k), k);
        }
      }

      // The helm test hook is only created by `helm test`, which needs a kubelet: have the API
      // server validate its objects (dry run) instead.
      const hooks = parse(await helm(['get', 'hooks', rel, '--namespace', NS], env));
      assert.deepEqual(hooks.map((h) => h.kind).sort(), ['ConfigMap', 'Pod']);
      for (const h of hooks) {
        const res = await cp.request('POST', `${apiPath(h, NS)}?dryRun=All`, h);
        assert.equal(res.status, 201, `${h.kind}: ${res.body}`);
      }

      await helm(['upgrade', rel, '.', '-f', file, '--namespace', NS, '--set', 'release.version=0.1.1'], env);
      const dep = objs.find((o) => o.kind === 'Deployment')!;
      const res = await cp.request('GET', `${apiPath(dep, NS)}/${dep.metadata.name}`);
      const labels = (res.json as Obj).spec.template.metadata.labels;
      assert.equal(labels['herald.dev/release'], '0.1.1');
      assert.equal((res.json as Obj).metadata.generation, 2);

      await helm(['uninstall', rel, '--namespace', NS], env);
      for (const o of objs) {
        const gone = await cp.request('GET', `${apiPath(o, NS)}/${o.metadata.name}`);
        assert.equal(gone.status, 404, `${o.kind}/${o.metadata.name} left behind`);
      }
    });
  }
});

it('chart - values.schema.json accepts exactly the gateway settings the chart does not set itself', () => {
  const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as {
    properties: { config: { properties: Record<string, unknown> } };
  };
  const allowed = new Set(Object.keys(schema.properties.config.properties));
  const deployment = readFileSync(join(CHART, 'templates', 'deployment.yaml'), 'utf8');
  const helpers = readFileSync(join(CHART, 'templates', '_helpers.tpl'), 'utf8');
  const setByChart = new Set([
    ...[...deployment.matchAll(/- name: (HERALD_[A-Z_]+)/g)].map((m) => m[1]!),
    // Key files mounted from the auth Secret, named in _helpers.tpl.
    ...[...helpers.matchAll(/"(HERALD_[A-Z_]+_FILE)"/g)].map((m) => m[1]!),
  ]);
  // Not offered by the chart yet: NATS token and TLS files need a mounted Secret of their own.
  const notYet = new Set([
    'HERALD_NATS_TOKEN_FILE',
    'HERALD_NATS_TLS_CA_FILE',
    'HERALD_NATS_TLS_CERT_FILE',
    'HERALD_NATS_TLS_KEY_FILE',
  ]);
  for (const name of allowed) assert.ok(name in settings, `${name} in the schema is a gateway setting`);
  for (const name of Object.keys(settings)) {
    if (notYet.has(name)) {
      assert.ok(!allowed.has(name) && !setByChart.has(name), `${name} is listed as not offered yet`);
      continue;
    }
    assert.ok(
      allowed.has(name) !== setByChart.has(name),
      `${name} is either set by the chart or settable through config, not ${allowed.has(name) ? 'both' : 'neither'}`,
    );
  }
});
