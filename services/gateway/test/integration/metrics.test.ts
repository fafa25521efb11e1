import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { Metrics } from '@herald/protocol';
import { until } from '@herald/testkit';

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** The Prometheus text format, as far as these assertions need it. */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (sample === null || line.startsWith('#')) continue;
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
    samples.push({ name: sample[1]!, labels, value: Number(sample[3]) });
  }
  return { types, samples };
}

async function scrape(gw: TestGateway) {
  const res = await fetch(`http://127.0.0.1:${gw.gateway.metricsPort()}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return parse(await res.text());
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);

it('metrics - every metric in the catalogue is exported on the internal port with its type and release label, and nothing else is', async (t) => {
  const gw = await startGateway({ releaseVersion: 'v9.1' });
  t.after(() => gw.close());
  const c = await gw.stream({ topic: 'm.a' });
  await gw.publish({ topic: 'm.a', data: 'x' });
  await c.waitFor((s) => s.events.length === 1, 'one event');
  const { types, samples } = await scrape(gw);
  types.delete('target_info');
  assert.deepEqual(
    [...types.keys()].sort(),
    Object.keys(Metrics).sort(),
    'exported families are exactly the catalogue',
  );
  for (const [name, spec] of Object.entries(Metrics)) {
    assert.equal(types.get(name), spec.type, `${name} is a ${spec.type}`);
    const own = samples.filter((s) => s.name === name || s.name.startsWith(`${name}_`));
    assert.ok(own.length > 0, `${name} has samples`);
    for (const s of own) {
      assert.equal(s.labels['release'], 'v9.1', `${s.name} carries the release`);
      for (const label of spec.labels) assert.ok(label in s.labels, `${s.name} has label ${label}`);
    }
  }
  const notFound = await fetch(`http://127.0.0.1:${gw.gateway.metricsPort()}/v1/stream?topic=a`);
  assert.equal(notFound.status, 404, 'the internal port serves metrics only');
});

it('metrics - counts follow what clients saw: connects by outcome, rejections by reason, deliveries, resumes by source, disconnects by reason', async (t) => {
  const gw = await startGateway({ maxConnections: 2 });
  t.after(() => gw.close());
  const a = await gw.stream({ topic: 'n.a' });
  const r = await gw.publish({ messages: [1, 2, 3].map((i) => ({ topic: 'n.a', data: String(i) })) });
  assert.equal(r.status, 200);
  await a.waitFor((s) => s.events.length === 3, 'three events');
  const resumed = await gw.stream({ topic: 'n.a' }, { headers: { 'Last-Event-ID': a.events[0]!.id! } });
  await resumed.waitFor((s) => s.events.length === 2, 'the two missed events');
  const full = await gw.stream({ topic: 'n.a' });
  assert.equal(full.status, 503);
  const bad = await gw.stream({ topic: 'n..a' });
  assert.equal(bad.status, 400);
  const reset = await gw.stream({ topic: 'n.a' }, { headers: { 'Last-Event-ID': 'other-1' } });
  assert.equal(reset.status, 503, 'still full: refused before any resume');
  resumed.close();
  await until(() => gw.gateway.hub.size === 1, 'the resumed stream to be gone');

  const { samples } = await scrape(gw);
  assert.equal(value(samples, 'herald_connections'), 1);
  assert.equal(value(samples, 'herald_connects_total', { outcome: 'accepted' }), 2);
  assert.equal(value(samples, 'herald_connects_total', { outcome: 'rejected' }), 3);
  assert.equal(value(samples, 'herald_rejections_total', { reason: 'pod_full' }), 2);
  assert.equal(value(samples, 'herald_rejections_total', { reason: 'invalid' }), 1);
  assert.equal(value(samples, 'herald_events_published_total'), 3);
  assert.equal(value(samples, 'herald_events_delivered_total'), 3, 'live deliveries to the one live stream');
  assert.equal(value(samples, 'herald_resumes_total', { source: 'ring' }), 1);
  assert.equal(value(samples, 'herald_disconnects_total', { reason: 'client' }), 1);
  assert.equal(
    value(samples, 'herald_delivery_latency_seconds_count'),
    3,
    'one latency sample per event fanned out',
  );
  assert.equal(value(samples, 'herald_broker_connected', { broker: 'memory' }), 1);
  assert.equal(value(samples, 'herald_broker_lag_events'), 0);
});
