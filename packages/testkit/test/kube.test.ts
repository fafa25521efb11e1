import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import { startControlPlane } from '../src/kube.ts';

/** The Kubernetes version tools/kube.sh pins. */
const PINNED = /^kube_version=(v[\d.]+)/m.exec(
  readFileSync(new URL('../../../tools/kube.sh', import.meta.url), 'utf8'),
)?.[1];

/** True while a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Kubeconfig {
  clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { user: { 'client-certificate-data': string; 'client-key-data': string } }[];
}

/** A JSON request with only what the kubeconfig file says (server, CA, admin client certificate). */
function viaKubeconfig(path: string, method: string, url: string, body?: unknown) {
  const config = JSON.parse(readFileSync(path, 'utf8')) as Kubeconfig;
  const cluster = config.clusters[0]!.cluster;
  const user = config.users[0]!.user;
  const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
    const req = request(
      new URL(url, cluster.server),
      {
        method,
        ca: b64(cluster['certificate-authority-data']),
        cert: b64(user['client-certificate-data']),
        key: b64(user['client-key-data']),
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const route = (name: string, port: unknown) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name },
  spec: {
    parentRefs: [{ name: 'herald-gateway' }],
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'herald', port }] },
    ],
  },
});

describe('kube', () => {
  it('kube - a control plane starts, serves the pinned version, stores objects, validates CRD objects, and stops without leftovers', async (t) => {
    const started = Date.now();
    const cp = await startControlPlane();
    t.after(() => cp.stop());
    t.diagnostic(`control plane ready in ${Date.now() - started} ms at ${cp.server}`);
    const root = dirname(cp.kubeconfig);

    const version = await cp.request('GET', '/version');
    assert.equal(version.status, 200);
    assert.equal((version.json as { gitVersion: string }).gitVersion, PINNED);

    // A namespace and a ConfigMap, with the credentials from the kubeconfig file alone.
    const kc = cp.kubeconfig;
    const ns = await viaKubeconfig(kc, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'herald' },
    });
    assert.equal(ns.status, 201, JSON.stringify(ns.json));
    const cm = await viaKubeconfig(kc, 'POST', '/api/v1/namespaces/herald/configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'herald-config' },
      data: { HERALD_PORT: '8080' },
    });
    assert.equal(cm.status, 201, JSON.stringify(cm.json));
    const got = await viaKubeconfig(kc, 'GET', '/api/v1/namespaces/herald/configmaps/herald-config');
    assert.deepEqual(got.json['data'], { HERALD_PORT: '8080' });

    for (const crd of [
      'httproutes.gateway.networking.k8s.io',
      'servicemonitors.monitoring.coreos.com',
      'prometheusrules.monitoring.coreos.com',
    ]) {
      const res = await cp.request('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}`);
      assert.equal(res.status, 200, `${crd}: ${res.body}`);
      const conditions = (res.json as { status: { conditions: { type: string; status: string }[] } }).status
        .conditions;
      assert.ok(
        conditions.some((c) => c.type === 'Established' && c.status === 'True'),
        `${crd} is not Established`,
      );
    }

    const routes = '/apis/gateway.networking.k8s.io/v1/namespaces/herald/httproutes';
    const ok = await cp.request('POST', routes, route('herald', 8080));
    assert.equal(ok.status, 201, ok.body);
    const bad = await cp.request('POST', routes, route('herald-bad', 70000));
    assert.equal(bad.status, 422, bad.body);
    assert.match(bad.body, /port/);

    const { etcd, apiserver } = cp.pids;
    assert.ok(alive(etcd) && alive(apiserver));
    const stopping = Date.now();
    await cp.stop();
    t.diagnostic(`stopped in ${Date.now() - stopping} ms`);
    assert.ok(!alive(etcd), 'etcd still runs after stop()');
    assert.ok(!alive(apiserver), 'kube-apiserver still runs after stop()');
    assert.ok(!existsSync(root), `${root} still exists after stop()`);
    const leftovers = readdirSync('/proc').filter((pid) => {
      try {
        return /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(root);
      } catch {
        return false;
      }
    });
    assert.deepEqual(leftovers, [], `processes still using ${root}`);
  });
});
