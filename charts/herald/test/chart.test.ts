import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { authOptionsOf, parseConfig, settings } from '@herald/gateway/internal';
import { spawnGateway, startGateway, type TestGateway } from '@herald/gateway/testing';
import {
  type ControlPlane,
  natsServerPath,
  startControlPlane,
  startOtlpReceiver,
  until,
  untilReady,
} from '@herald/testkit';
import { parseAllDocuments, stringify } from 'yaml';
import { allowed, type Endpoint, podEndpoint } from './network-policy.ts';
import { type Exited, mountContainer, runToExit, type Secrets, type Started, startUntil } from './pods.ts';

/** `charts/herald`, tested through the pinned helm (tools/helm.sh) and a real kube-apiserver. */
const CHART = fileURLToPath(new URL('..', import.meta.url));
const ROOT = join(CHART, '..', '..');
const HELM = join(execFileSync('bash', [join(ROOT, 'tools/helm.sh')], { encoding: 'utf8' }).trim(), 'helm');
const PROFILES = {
  quickstart: 'ci/quickstart-values.yaml',
  production: 'ci/production-values.yaml',
} as const;
/** The default values and each profile, by name. */
const ALL: [string, string | undefined][] = [['defaults', undefined], ...Object.entries(PROFILES)];
const NS = 'herald-test';
/** The nats-server version the project's tests run (tools/nats-server.sh). */
const NATS_VERSION = /^version=v(\S+)/m.exec(readFileSync(join(ROOT, 'tools/nats-server.sh'), 'utf8'))![1]!;
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
    await helm(['template', 'herald', '.', '--namespace', NS, ...(values ? ['-f', values] : []), ...extra]),
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

const hooks = (objs: Obj[], kind: string): Obj[] =>
  objs.filter((o) => o.kind === kind && o.metadata.annotations?.['helm.sh/hook'] === 'test');
const named = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
};
const envOf = (container: Obj): Record<string, string> =>
  Object.fromEntries(
    (container.env ?? []).filter((e: Obj) => 'value' in e).map((e: Obj) => [e.name, e.value]),
  );
const selectsPod = (sel: Obj, labels: Obj) => Object.entries(sel).every(([k, v]) => labels[k] === v);
/** The container port a probe or Service targetPort names (by name or number). */
const containerPort = (container: Obj, port: string | number): number | undefined =>
  typeof port === 'number' ? port : container.ports.find((p: Obj) => p.name === port)?.containerPort;
/** `--set` arguments, from pairs. */
const set = (values: Record<string, string | number | boolean>): string[] =>
  Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);

const VALUES_DIR = mkdtempSync(join(tmpdir(), 'herald-values-'));
after(() => rmSync(VALUES_DIR, { recursive: true, force: true }));
let valuesFiles = 0;
/** A values file (for values `--set` cannot express, such as PEM blocks or `[{}]`). */
function valuesFile(values: Obj): string {
  const file = join(VALUES_DIR, `values-${++valuesFiles}.yaml`);
  writeFileSync(file, stringify(values));
  return file;
}

/** The gateway Deployment's Service (the bundled NATS brings Services of its own). */
const gatewayService = (objs: Obj[]): Obj => named(objs, 'Service', one(objs, 'Deployment').metadata.name);

/** Secrets the profiles name as existingSecret, with contents the gateway accepts. */
const USER_SECRETS: Secrets = {
  // Drawn per run: no credential lives in the repository.
  'herald-auth': { 'api-keys': `${randomBytes(24).toString('hex')}\n` },
  'herald-nats': { password: randomBytes(16).toString('hex') },
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
  for (const [name, file] of ALL) {
    it(`lint --strict: ${name}`, async () => {
      await helm(['lint', '--strict', '.', ...(file ? ['-f', file] : [])]);
    });
  }

  for (const [name, file] of ALL) {
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
      const env = envOf(c);
      const drainMs = Number(env.HERALD_DRAIN_MS);
      assert.ok(pod.terminationGracePeriodSeconds * 1000 > drainMs, 'grace period beyond the drain window');
      for (const name of Object.keys(env)) assert.match(name, /^(HERALD_|OTEL_|POD_NAME$)/);
      assert.equal(new Set(c.env.map((e: Obj) => e.name)).size, c.env.length, 'no duplicate env');

      const svc = gatewayService(objs);
      subset(dep.spec.selector.matchLabels, podLabels, 'Deployment');
      subset(svc.spec.selector, podLabels, 'Service');
      for (const spread of pod.topologySpreadConstraints)
        subset(spread.labelSelector.matchLabels, podLabels, 'spread');
      for (const kind of ['PodDisruptionBudget', 'ServiceMonitor']) {
        const o = objs.find((x) => x.kind === kind);
        if (o) subset(o.spec.selector.matchLabels, podLabels, kind);
      }
      const np = objs.find((x) => x.kind === 'NetworkPolicy' && x.metadata.name === dep.metadata.name);
      if (np) subset(np.spec.podSelector.matchLabels, podLabels, 'NetworkPolicy');
      const sm = objs.find((x) => x.kind === 'ServiceMonitor');
      if (sm) subset(sm.spec.selector.matchLabels, svc.metadata.labels, 'ServiceMonitor → Service');
    });

    it(`template: ${name}: the gateway accepts its environment and every file it names is mounted`, async () => {
      const objs = await template(file);
      const root = mkdtempSync(join(tmpdir(), 'herald-mount-'));
      try {
        const { env } = mountContainer(objs, one(objs, 'Deployment'), 'gateway', root, USER_SECRETS);
        const config = parseConfig(env);
        for (const [k, v] of Object.entries(env))
          if (k.endsWith('_FILE')) assert.ok(existsSync(v), `${k}=${v} is a mounted file`);
        // Reads and checks the key files as the gateway does at start (secret length, key format).
        authOptionsOf(config, (p) => readFileSync(p, 'utf8'));
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
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
    const refusals: [sets: string[], naming: RegExp][] = [
      [['image.repostory=x'], /repostory/],
      [['config.HERALD_MAX_CONECTIONS=1'], /HERALD_MAX_CONECTIONS/],
      [['hpa.enabld=true'], /enabld/],
      [['nats.bundled.persistense.size=1Gi'], /persistense/],
      [['networkPolicy.egress.nats[0].podSelectr.matchLabels.a=b'], /podSelectr/],
      [['networkPolicy.extraEgress[0].too[0].ipBlock.cidr=0.0.0.0/0'], /too/],
      // A size the chart cannot turn into JetStream's limit: the schema says which value.
      [
        ['nats.bundled.enabled=true', 'nats.bundled.persistence.size=2GB'],
        /nats\/bundled\/persistence\/size/,
      ],
    ];
    for (const [sets, naming] of refusals)
      await assert.rejects(helm(['template', 'herald', '.', ...sets.flatMap((v) => ['--set', v])]), naming);
  });

  it('refuses a fleet on the per-pod memory broker', async () => {
    await assert.rejects(helm(['template', 'herald', '.', '--set', 'replicas=3']), /needs nats\.url/);
    await assert.rejects(helm(['template', 'herald', '.', '--set', 'hpa.enabled=true']), /needs nats\.url/);
  });
});

describe('bundled NATS (nats.bundled)', () => {
  it('quickstart: one pinned JetStream server, hardened like the gateway, that the gateways find by themselves', async () => {
    const objs = await template(PROFILES.quickstart);
    const sts = one(objs, 'StatefulSet');
    const dep = one(objs, 'Deployment');
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(sts.spec.replicas, 1);
    assert.equal(c.image, `nats:${NATS_VERSION}-alpine`, 'the nats-server version the tests run');

    // The same hardening as the gateway, pod and container.
    const gw = dep.spec.template.spec;
    for (const k of ['runAsNonRoot', 'runAsUser', 'seccompProfile'])
      assert.deepEqual(pod.securityContext[k], gw.securityContext[k], `pod securityContext.${k}`);
    assert.deepEqual(c.securityContext, gw.containers[0].securityContext);
    assert.equal(pod.automountServiceAccountToken, false);

    // JetStream on, its store on the claim of the configured size.
    assert.ok(c.args.includes('--jetstream'));
    const storeDir = c.args[c.args.indexOf('--store_dir') + 1];
    const dataMount = c.volumeMounts.find((m: Obj) => m.mountPath === storeDir);
    assert.ok(dataMount, `--store_dir ${storeDir} is a mounted volume`);
    const claim = sts.spec.volumeClaimTemplates.find((t: Obj) => t.metadata.name === dataMount.name);
    assert.equal(claim.spec.resources.requests.storage, '2Gi');
    assert.equal(claim.spec.storageClassName, undefined, "the cluster's default class");
    assert.equal(
      sts.spec.persistentVolumeClaimRetentionPolicy.whenDeleted,
      'Delete',
      'quickstart: nothing left behind',
    );

    // Probed on the monitoring port: healthy once JetStream is.
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      assert.equal(c[probe].httpGet.path, '/healthz?js-enabled-only=true', probe);
      assert.equal(containerPort(c, c[probe].httpGet.port), 8222, probe);
    }

    // Services: a headless one for the StatefulSet, a client one on 4222 for the gateways.
    const podLabels = sts.spec.template.metadata.labels;
    subset(sts.spec.selector.matchLabels, podLabels, 'StatefulSet');
    const headless = named(objs, 'Service', sts.spec.serviceName);
    assert.equal(headless.spec.clusterIP, 'None');
    const client = named(objs, 'Service', sts.metadata.name);
    const natsPort = client.spec.ports.find((p: Obj) => p.port === 4222);
    assert.equal(containerPort(c, natsPort.targetPort), 4222);
    for (const svc of [headless, client])
      subset(svc.spec.selector, podLabels, `Service ${svc.metadata.name}`);
    // No selector mixes the gateways and NATS up.
    const gwLabels = dep.spec.template.metadata.labels;
    assert.ok(!selectsPod(client.spec.selector, gwLabels), 'the NATS Service does not select gateways');
    assert.ok(
      !selectsPod(gatewayService(objs).spec.selector, podLabels),
      'the gateway Service does not select NATS',
    );
    assert.ok(
      !selectsPod(dep.spec.selector.matchLabels, podLabels),
      'the Deployment does not adopt NATS pods',
    );

    const env = envOf(dep.spec.template.spec.containers[0]);
    assert.equal(env.HERALD_BROKER, 'jetstream');
    assert.equal(env.HERALD_NATS_URL, `nats://${client.metadata.name}.${NS}.svc:4222`);
  });

  it("JetStream gets 3/4 of the volume, and a volume that cannot hold the gateway's stream is refused", async () => {
    const config = (objs: Obj[]) => one(objs, 'ConfigMap').data['nats.conf'] as string;
    const objs = await template(
      undefined,
      set({ 'nats.bundled.enabled': true, 'nats.bundled.persistence.size': '4Gi' }),
    );
    assert.match(config(objs), new RegExp(`max_file_store: ${3 * 2 ** 30}\\b`));

    // At the gateway's own default stream size (services/gateway/src/config.ts): 1366Mi × 3/4 holds
    // 1 GiB, 1365Mi does not.
    const stream = settings.HERALD_STREAM_MAX_BYTES.default;
    const fits = Math.ceil((stream * 4) / 3 / 2 ** 20);
    await template(
      undefined,
      set({ 'nats.bundled.enabled': true, 'nats.bundled.persistence.size': `${fits}Mi` }),
    );
    await assert.rejects(
      template(
        undefined,
        set({ 'nats.bundled.enabled': true, 'nats.bundled.persistence.size': `${fits - 1}Mi` }),
      ),
      /persistence\.size \d+Mi leaves JetStream \d+ bytes .* HERALD_STREAM_MAX_BYTES/,
    );
    // A smaller stream fits a smaller volume.
    await template(
      undefined,
      set({
        'nats.bundled.enabled': true,
        'nats.bundled.persistence.size': '512Mi',
        'config.HERALD_STREAM_MAX_BYTES': 256 * 2 ** 20,
      }),
    );
  });

  it('persistence: the claim takes the storage class and keeps the data by default; off, an emptyDir of that size', async () => {
    let sts = one(
      await template(
        undefined,
        set({ 'nats.bundled.enabled': true, 'nats.bundled.persistence.storageClassName': 'fast' }),
      ),
      'StatefulSet',
    );
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.storageClassName, 'fast');
    assert.equal(sts.spec.persistentVolumeClaimRetentionPolicy.whenDeleted, 'Retain');

    sts = one(
      await template(
        undefined,
        set({
          'nats.bundled.enabled': true,
          'nats.bundled.persistence.enabled': false,
          'nats.bundled.persistence.size': '3Gi',
        }),
      ),
      'StatefulSet',
    );
    assert.equal(sts.spec.volumeClaimTemplates, undefined);
    assert.equal(sts.spec.persistentVolumeClaimRetentionPolicy, undefined);
    const c = sts.spec.template.spec.containers[0];
    const storeDir = c.args[c.args.indexOf('--store_dir') + 1];
    const mount = c.volumeMounts.find((m: Obj) => m.mountPath === storeDir);
    const vol = sts.spec.template.spec.volumes.find((v: Obj) => v.name === mount.name);
    assert.deepEqual(vol.emptyDir, { sizeLimit: '3Gi' });
  });

  it('upgrading the gateways (version, image, settings) leaves the NATS pod template as it is', async () => {
    const a = await template(PROFILES.quickstart);
    const b = await template(PROFILES.quickstart, [
      ...set({ 'release.version': '0.2.0', 'image.tag': '0.2.0', 'config.HERALD_HEARTBEAT_MS': 5000 }),
    ]);
    assert.notDeepEqual(one(a, 'Deployment').spec.template, one(b, 'Deployment').spec.template);
    assert.deepEqual(one(a, 'StatefulSet').spec.template, one(b, 'StatefulSet').spec.template);
  });

  it('a fleet (replicas > 1, HPA) may run on it', async () => {
    const objs = await template(PROFILES.quickstart, set({ replicas: 3 }));
    assert.equal(one(objs, 'Deployment').spec.replicas, 3);
    const hpa = one(
      await template(PROFILES.quickstart, set({ 'hpa.enabled': true })),
      'HorizontalPodAutoscaler',
    );
    assert.equal(hpa.spec.minReplicas, 3);
  });

  it('refusals say what to change', async () => {
    const bundled = { 'nats.bundled.enabled': true };
    await assert.rejects(
      template(undefined, set({ ...bundled, 'nats.url': 'nats://nats:4222' })),
      /nats\.url and nats\.bundled\.enabled are both set/,
    );
    await assert.rejects(
      template(undefined, set({ ...bundled, 'config.HERALD_STREAM_REPLICAS': 3 })),
      /single server: HERALD_STREAM_REPLICAS must be 1/,
    );
    await assert.rejects(
      template(undefined, set({ ...bundled, 'nats.user': 'gateway' })),
      /bundled NATS has no users, tokens or TLS/,
    );
  });
});

describe('NATS credentials from nats.existingSecret', () => {
  it('token and TLS files: each setting names the mounted key of the Secret', async () => {
    const secret = { token: 's3cret-token', 'ca.crt': 'CA PEM', 'tls.crt': 'CERT PEM', 'tls.key': 'KEY PEM' };
    const objs = await template(
      undefined,
      set({
        'nats.url': 'tls://nats.nats.svc:4222',
        'nats.existingSecret': 'herald-nats',
        'nats.tokenKey': 'token',
        'nats.tlsCaKey': 'ca.crt',
        'nats.tlsCertKey': 'tls.crt',
        'nats.tlsKeyKey': 'tls.key',
      }),
    );
    const root = mkdtempSync(join(tmpdir(), 'herald-mount-'));
    try {
      const { env } = mountContainer(objs, one(objs, 'Deployment'), 'gateway', root, {
        'herald-nats': secret,
      });
      const config = parseConfig(env);
      const read = (p: string) => readFileSync(p, 'utf8');
      assert.equal(read(config.natsTokenFile), secret.token);
      assert.equal(read(config.natsTlsCaFile), secret['ca.crt']);
      assert.equal(read(config.natsTlsCertFile), secret['tls.crt']);
      assert.equal(read(config.natsTlsKeyFile), secret['tls.key']);
      assert.equal(config.natsPasswordFile, '');
      assert.equal(config.natsCredsFile, '');
      assert.equal(config.natsUrl, 'tls://nats.nats.svc:4222');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refused: keys without the Secret, a client certificate without its key', async () => {
    await assert.rejects(
      template(
        undefined,
        set({ 'nats.url': 'nats://n:4222', 'nats.tokenKey': 'token', 'nats.tlsCaKey': 'ca' }),
      ),
      /nats\.tokenKey, nats\.tlsCaKey name keys of nats\.existingSecret, which is not set/,
    );
    await assert.rejects(
      template(
        undefined,
        set({ 'nats.url': 'nats://n:4222', 'nats.existingSecret': 's', 'nats.tlsCertKey': 'tls.crt' }),
      ),
      /nats\.tlsCertKey and nats\.tlsKeyKey go together/,
    );
  });
});

describe('tracing', () => {
  it('off by default: no OTEL_* setting reaches the gateway', async () => {
    const env = envOf(one(await template(), 'Deployment').spec.template.spec.containers[0]);
    assert.deepEqual(
      Object.keys(env).filter((k) => k.startsWith('OTEL_')),
      [],
    );
  });

  it('production: the rendered OTEL_* settings make the real gateway export spans naming its pod, at the sample ratio', async (t) => {
    const receiver = await startOtlpReceiver();
    t.after(() => receiver.close());
    const objs = await template(PROFILES.production, ['--set', 'tracing.sampleRatio=0']);
    const root = mkdtempSync(join(tmpdir(), 'herald-otel-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const dep = one(objs, 'Deployment');
    const { env } = mountContainer(objs, dep, 'gateway', root, USER_SECRETS);
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector.monitoring:4318');
    const otel = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('OTEL_')));
    const gw = await spawnGateway({
      ...otel,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    });
    t.after(() => gw.kill('SIGKILL'));
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const stream = (traceparent?: string) =>
      fetch(`${gw.url}/v1/stream?topic=otel`, traceparent ? { headers: { traceparent } } : {});
    for (const r of [await stream(), await stream(`00-${traceId}-b7ad6b7169203331-01`)]) {
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    await until(
      () => receiver.spans().some((s) => s.name === 'sse.disconnect'),
      'the disconnect span at the receiver',
      15_000,
    );
    const spans = receiver.spans();
    assert.deepEqual(
      new Set(spans.map((s) => s.traceId)),
      new Set([traceId]),
      'ratio 0: the sampled request only',
    );
    const resource = spans[0]!.resource;
    assert.equal(resource['k8s.pod.name'], dep.metadata.name, '$(POD_NAME), as the kubelet expands it');
    assert.equal(resource['k8s.namespace.name'], 'herald-test');
    assert.equal(resource['service.version'], '0.1.0');
  });

  it('refuses a ratio outside 0–1 and an endpoint that is not a URL', async () => {
    for (const [set, key] of [
      ['tracing.sampleRatio=1.5', 'sampleRatio'],
      ['tracing.otlpEndpoint=collector:4318', 'otlpEndpoint'],
    ] as const)
      await assert.rejects(template(undefined, ['--set', set]), new RegExp(key));
  });
});

describe('NetworkPolicy', () => {
  const NP = set({ 'networkPolicy.enabled': true });
  const pod = (namespace: string, labels: Record<string, string>): Endpoint => ({ namespace, labels });
  const outside = (ip: string): Endpoint => ({ ip });
  const kubeDns = pod('kube-system', { 'k8s-app': 'kube-dns' });
  const nodeLocalDns = outside('169.254.20.10');
  const prometheus = pod('monitoring', { 'app.kubernetes.io/name': 'prometheus' });
  const neighbour = pod(NS, { app: 'something-else' });
  const internet = outside('203.0.113.7');
  const policiesOf = (objs: Obj[]) => objs.filter((o) => o.kind === 'NetworkPolicy');

  it('bundled NATS: only this release’s gateways reach it; the gateways reach DNS and it, nothing else', async () => {
    const objs = await template(PROFILES.quickstart);
    const policies = policiesOf(objs);
    const gateway = podEndpoint(one(objs, 'Deployment'), NS);
    const nats = podEndpoint(one(objs, 'StatefulSet'), NS);
    const helmTest = podEndpoint(hooks(objs, 'Pod')[0]!, NS);
    const otherRelease = pod(NS, { ...gateway.labels, 'app.kubernetes.io/instance': 'other' });

    assert.ok(allowed(policies, gateway, nats, 4222), 'gateway → NATS');
    for (const [who, from] of [
      ['a neighbour', neighbour],
      ['the helm test pod', helmTest],
      ["another release's gateway", otherRelease],
      ['monitoring', prometheus],
    ] as const)
      assert.ok(!allowed(policies, from, nats, 4222), `${who} ↛ NATS clients port`);
    assert.ok(allowed(policies, prometheus, nats, 8222), 'monitoring → NATS monitor port');
    assert.ok(!allowed(policies, neighbour, nats, 8222));
    assert.ok(!allowed(policies, gateway, nats, 8222), 'gateways need the client port only');

    assert.ok(allowed(policies, helmTest, gateway, 8080), 'the helm test reaches the gateways');
    assert.ok(allowed(policies, neighbour, gateway, 8080));
    assert.ok(allowed(policies, prometheus, gateway, 9464));
    assert.ok(!allowed(policies, neighbour, gateway, 9464), 'metrics only from monitoring');

    for (const proto of ['UDP', 'TCP'] as const) {
      assert.ok(allowed(policies, gateway, kubeDns, 53, proto), `DNS/${proto} to kube-dns`);
      assert.ok(allowed(policies, gateway, nodeLocalDns, 53, proto), `DNS/${proto} to a node-local cache`);
    }
    assert.ok(!allowed(policies, gateway, internet, 443));
    assert.ok(!allowed(policies, gateway, pod('nats', { 'app.kubernetes.io/name': 'nats' }), 4222));
    assert.ok(!allowed(policies, nats, kubeDns, 53, 'UDP'), 'NATS opens nothing');
    assert.ok(!allowed(policies, nats, internet, 443), 'NATS opens nothing');
  });

  it('external NATS: only the configured peers on its port; extraEgress as given (production)', async () => {
    const objs = await template(PROFILES.production);
    const policies = policiesOf(objs);
    assert.equal(policies.length, 1, 'no NATS policy without the bundled NATS');
    const gateway = podEndpoint(one(objs, 'Deployment'), NS);
    const officialNats = { 'app.kubernetes.io/name': 'nats', 'app.kubernetes.io/instance': 'nats' };
    assert.ok(allowed(policies, gateway, pod('nats', officialNats), 4222));
    assert.ok(
      !allowed(policies, gateway, pod('default', officialNats), 4222),
      'not the same labels elsewhere',
    );
    assert.ok(!allowed(policies, gateway, pod('nats', officialNats), 6222), 'not its cluster port');
    assert.ok(allowed(policies, gateway, internet, 443), 'HTTPS out, for the JWKS');
    assert.ok(!allowed(policies, gateway, outside('10.1.2.3'), 443), 'not to private addresses');
    assert.ok(!allowed(policies, gateway, internet, 80));
    assert.ok(allowed(policies, gateway, kubeDns, 53, 'UDP'));
  });

  it('external NATS without peers: any address, on egress.natsPort only', async () => {
    const objs = await template(undefined, [
      ...NP,
      ...set({ 'nats.url': 'nats://nats.example.com:4333', 'networkPolicy.egress.natsPort': 4333 }),
    ]);
    const policies = policiesOf(objs);
    const gateway = podEndpoint(one(objs, 'Deployment'), NS);
    assert.ok(allowed(policies, gateway, internet, 4333));
    assert.ok(allowed(policies, gateway, pod('nats', {}), 4333));
    assert.ok(!allowed(policies, gateway, internet, 4222));
  });

  it('memory broker: DNS and extraEgress only; [{}] opens all egress', async () => {
    let objs = await template(undefined, NP);
    let gateway = podEndpoint(one(objs, 'Deployment'), NS);
    assert.ok(!allowed(policiesOf(objs), gateway, neighbour, 4222));
    assert.ok(!allowed(policiesOf(objs), gateway, internet, 4222));
    assert.ok(allowed(policiesOf(objs), gateway, kubeDns, 53, 'UDP'));
    objs = await template(valuesFile({ networkPolicy: { enabled: true, extraEgress: [{}] } }));
    gateway = podEndpoint(one(objs, 'Deployment'), NS);
    assert.ok(allowed(policiesOf(objs), gateway, internet, 12345));
  });
});

/** ES256 JWT, as an issuer with only public keys published would mint it. */
function es256Token(privateKey: KeyObject, claims: Obj): string {
  const b64 = (v: Obj) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const unsigned = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = sign('sha256', Buffer.from(unsigned), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${unsigned}.${sig.toString('base64url')}`;
}

/**
 * The bundled NATS as its StatefulSet runs it (the rendered arguments and config file), by the
 * pinned nats-server on loopback with free ports; resolves once its readiness probe passes.
 */
async function startBundledNats(
  objs: Obj[],
  sts: Obj,
  root: string,
): Promise<{ url: string; server: Started }> {
  const c = sts.spec.template.spec.containers[0];
  const { env, argv } = mountContainer(objs, sts, c.name, root);
  // The image's entrypoint runs nats-server with the arguments.
  const { started, captures } = await startUntil(
    [natsServerPath(), ...argv, '--addr', '127.0.0.1', '--port', '-1', '--http_port', '-1'],
    env,
    [/Listening for client connections on \S+:(\d+)/, /Starting http monitor on \S+:(\d+)/],
  );
  const [port, monitor] = captures;
  const probe = c.readinessProbe.httpGet;
  await until(
    async () =>
      (await fetch(`http://127.0.0.1:${monitor}${probe.path}`).catch(() => undefined))?.status === 200,
    `the NATS readiness probe ${probe.path}`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${started.log()}`);
  });
  return { url: `nats://127.0.0.1:${port}`, server: started };
}

interface StreamTestRun extends Exited {
  /** The rendered test Pod. */
  readonly pod: Obj;
}

/**
 * `helm test`, without a kubelet: the test Pod rendered from `podArgs` runs as it would in the
 * cluster (its ConfigMap's script, its environment, its mounted Secrets) against a gateway set up
 * as the Deployment rendered from `gatewayArgs` sets it up (its environment and files), on the
 * bundled NATS as its StatefulSet runs it when there is one. The Service's address becomes the
 * gateway's loopback address.
 */
async function runStreamTest(
  gatewayArgs: string[],
  podArgs: string[] = gatewayArgs,
  secrets: Secrets = {},
): Promise<StreamTestRun> {
  const root = mkdtempSync(join(tmpdir(), 'herald-helm-test-'));
  const stops: (() => Promise<void>)[] = [];
  const logs: string[] = [];
  try {
    const objs = await template(undefined, gatewayArgs);
    const gw = mountContainer(objs, one(objs, 'Deployment'), 'gateway', join(root, 'gateway'), secrets);
    const sts = objs.find((o) => o.kind === 'StatefulSet');
    if (sts) {
      const nats = await startBundledNats(objs, sts, join(root, 'nats'));
      stops.push(() => nats.server.stop());
      gw.env.HERALD_NATS_URL = nats.url;
    }
    const config = parseConfig(gw.env);
    const gateway: TestGateway = await startGateway(
      { ...config, host: '127.0.0.1', port: 0, metricsPort: 0, drainMs: 0 },
      { log: (level, msg, fields) => logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`) },
    );
    stops.push(() => gateway.close());
    await untilReady(gateway.url, 200, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${logs.join('\n')}`);
    });

    const podObjs = podArgs === gatewayArgs ? objs : await template(undefined, podArgs);
    const pod = hooks(podObjs, 'Pod')[0]!;
    const mounted = mountContainer(podObjs, pod, 'stream-test', join(root, 'pod'), secrets);
    const svc = gatewayService(podObjs);
    const http = svc.spec.ports.find((p: Obj) => p.name === 'http');
    assert.equal(
      mounted.env.HERALD_URL,
      `http://${svc.metadata.name}:${http.port}`,
      'the pod goes through the Service',
    );
    mounted.env.HERALD_URL = gateway.url;
    assert.equal(mounted.argv[0], 'node');
    const exited = await runToExit([process.execPath, ...mounted.argv.slice(1)], mounted.env);
    return { ...exited, pod };
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(root, { recursive: true, force: true });
  }
}

describe('helm test: files/stream-test.mjs, run as the test Pod against a real gateway', () => {
  const received = (r: Exited) => {
    assert.equal(r.code, 0, `exit code ${r.code}: ${r.stderr}`);
    assert.match(r.stdout, /^stream-test: received [0-9a-f-]{36} on helm-test\.[0-9a-f-]{36} through http:/m);
  };
  const refused = (r: Exited, why: RegExp) => {
    assert.equal(r.code, 1, `exit code ${r.code}: ${r.stdout}`);
    assert.match(r.stderr, why);
    assert.doesNotMatch(r.stdout, /received/);
  };
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

  it('default values: mints a token with the generated HMAC secret; the event arrives', async () => {
    const r = await runStreamTest([]);
    received(r);
    // The pod gets the HMAC secrets and nothing else of the auth Secret.
    const auth = r.pod.spec.volumes.find((v: Obj) => v.secret);
    assert.deepEqual(auth.secret.items, [{ key: 'jwt-secrets', path: 'jwt-secrets' }]);
  });

  it('HMAC secrets from values, with the issuer and audience the gateways require', async () => {
    received(
      await runStreamTest([
        ...set({
          'auth.jwtSecrets[0]': randomBytes(32).toString('hex'),
          'auth.apiKeys[0]': randomBytes(16).toString('hex'),
          'config.HERALD_JWT_ISSUER': 'https://issuer.example/',
          'config.HERALD_JWT_AUDIENCE': 'herald',
        }),
      ]),
    );
  });

  it('quickstart: no authentication, on the bundled NATS as its StatefulSet runs it', async () => {
    received(await runStreamTest(['-f', PROFILES.quickstart]));
  });

  it('public keys only: the token from test.existingSecret, and no signing secret in the pod', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = es256Token(privateKey, {
      sub: 'helm-test',
      iat: now,
      // A year: longer than one setTimeout can wait (~24.8 days), as such test tokens are.
      exp: now + 365 * 24 * 3600,
      herald: { subscribe: ['helm-test.>'], publish: ['helm-test.>'] },
    });
    const values = valuesFile({
      auth: { jwtKeys: publicPem },
      test: { existingSecret: 'herald-test-token' },
    });
    const r = await runStreamTest(['-f', values], undefined, {
      'herald-test-token': { token: `${token}\n` },
    });
    received(r);
    const secrets = r.pod.spec.volumes.filter((v: Obj) => v.secret).map((v: Obj) => v.secret.secretName);
    assert.deepEqual(secrets, ['herald-test-token']);
  });

  it('public keys only and no test token: fails, saying to set test.existingSecret', async () => {
    const r = await runStreamTest(['-f', valuesFile({ auth: { jwtKeys: publicPem } })]);
    refused(r, /no token to test with: .* test\.existingSecret/);
  });

  it('a secret the gateways do not hold: fails with the gateway’s 401', async () => {
    const r = await runStreamTest(
      set({ 'auth.jwtSecrets[0]': randomBytes(32).toString('hex') }),
      set({ 'auth.jwtSecrets[0]': randomBytes(32).toString('hex') }),
    );
    refused(r, /stream-test: stream: HTTP 401 .*HERALD_/);
  });

  it('no gateway behind the Service: fails, naming the address', async () => {
    const objs = await template();
    const root = mkdtempSync(join(tmpdir(), 'herald-helm-test-'));
    try {
      const mounted = mountContainer(objs, hooks(objs, 'Pod')[0]!, 'stream-test', root);
      // A port nobody listens on: bound, then released.
      const probe = createServer().listen(0, '127.0.0.1');
      await once(probe, 'listening');
      const { port } = probe.address() as AddressInfo;
      probe.close();
      mounted.env.HERALD_URL = `http://127.0.0.1:${port}`;
      refused(
        await runToExit([process.execPath, ...mounted.argv.slice(1)], mounted.env),
        new RegExp(
          `stream: http://127\\.0\\.0\\.1:${port}/v1/stream\\?topic=helm-test\\.\\S+: connect ECONNREFUSED`,
        ),
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

/** API path of an object, by its apiVersion and kind. */
function apiPath(o: Obj, ns: string): string {
  const plural: Record<string, string> = {
    Deployment: 'deployments',
    StatefulSet: 'statefulsets',
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

describe('helm install, upgrade, uninstall on a real kube-apiserver', { timeout: 180_000 }, () => {
  let cp: ControlPlane;
  let env: Record<string, string>;
  before(async () => {
    cp = await startControlPlane();
    env = { KUBECONFIG: cp.kubeconfig };
  });
  after(async () => {
    await cp?.stop();
  });

  const KINDS: Record<string, string[]> = {
    defaults: ['Deployment', 'Secret', 'Service'],
    quickstart: ['ConfigMap', 'Deployment', 'NetworkPolicy', 'Service', 'StatefulSet'],
    production: [
      'ConfigMap',
      'Deployment',
      'HTTPRoute',
      'HorizontalPodAutoscaler',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'PrometheusRule',
      'Service',
      'ServiceMonitor',
    ],
  };
  const NOTES: Record<string, RegExp> = {
    defaults: /sign HS256 JWTs with the generated secret/,
    quickstart: /the bundled JetStream server herald-quickstart-nats, one replica: a quick start, not HA/,
    production: /The test needs a token: .* Set test\.existingSecret/s,
  };

  for (const [name, file] of ALL) {
    it(`${name}: every object is accepted, upgraded, and gone after uninstall`, async () => {
      const rel = `herald-${name}`;
      const values = file ? ['-f', file] : [];
      const get = async (o: Obj) => cp.request('GET', `${apiPath(o, NS)}/${o.metadata.name}`);
      const out = await helm(['install', rel, '.', ...values, '--namespace', NS, '--create-namespace'], env);
      assert.match(out, NOTES[name]!);
      const objs = parse(await helm(['get', 'manifest', rel, '--namespace', NS], env));
      assert.deepEqual([...new Set(objs.map((o) => o.kind))].sort(), KINDS[name]);
      for (const o of objs) {
        const res = await get(o);
        assert.equal(res.status, 200, `${o.kind}/${o.metadata.name}: ${res.body}`);
      }

      // The helm test hook is only created by `helm test`, which needs a kubelet: have the API
      // server validate its objects (dry run) instead.
      const hookObjs = parse(await helm(['get', 'hooks', rel, '--namespace', NS], env));
      assert.deepEqual(hookObjs.map((h) => h.kind).sort(), ['ConfigMap', 'Pod']);
      for (const h of hookObjs) {
        const res = await cp.request('POST', `${apiPath(h, NS)}?dryRun=All`, h);
        assert.equal(res.status, 201, `${h.kind}: ${res.body}`);
      }

      const secret = objs.find((o) => o.kind === 'Secret');
      const before = secret && ((await get(secret)).json as Obj).data;
      const sts = objs.find((o) => o.kind === 'StatefulSet');
      await helm(['upgrade', rel, '.', ...values, '--namespace', NS, '--set', 'release.version=0.1.1'], env);
      const dep = (await get(one(objs, 'Deployment'))).json as Obj;
      assert.equal(dep.spec.template.metadata.labels['herald.dev/release'], '0.1.1');
      assert.equal(dep.metadata.generation, 2);
      if (secret) {
        // Tokens signed with the generated secret keep verifying after an upgrade.
        assert.deepEqual(((await get(secret)).json as Obj).data, before, 'the auth Secret is unchanged');
      }
      if (sts) {
        const live = (await get(sts)).json as Obj;
        assert.equal(live.metadata.generation, 1, 'a gateway upgrade does not roll NATS');
        assert.equal(live.spec.persistentVolumeClaimRetentionPolicy.whenDeleted, 'Delete');
      }

      await helm(['uninstall', rel, '--namespace', NS], env);
      for (const o of objs) {
        const gone = await get(o);
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
    // Key files mounted from the auth and NATS Secrets, named in _helpers.tpl.
    ...[...helpers.matchAll(/"(HERALD_[A-Z_]+_FILE)"/g)].map((m) => m[1]!),
  ]);
  for (const name of allowed) assert.ok(name in settings, `${name} in the schema is a gateway setting`);
  for (const name of Object.keys(settings)) {
    assert.ok(
      allowed.has(name) !== setByChart.has(name),
      `${name} is either set by the chart or settable through config, not ${allowed.has(name) ? 'both' : 'neither'}`,
    );
  }
});
