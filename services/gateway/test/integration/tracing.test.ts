import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startGateway } from '@herald/gateway/testing';
import { FakeClock, until } from '@herald/testkit';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

function tracer() {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  return { tracer: provider.getTracer('test'), spans: () => exporter.getFinishedSpans() };
}

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
const traceOf = (s: ReadableSpan) => s.spanContext().traceId;
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const INCOMING = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

it('tracing - one trace per connection: connect (on the incoming traceparent), resume, sampled pings and disconnect share its trace id', async (t) => {
  const { tracer: tr, spans } = tracer();
  const clock = new FakeClock();
  const gw = await startGateway({ tracePingRatio: '1', heartbeatMs: 15_000 }, { tracer: tr, clock });
  t.after(() => gw.close());
  const first = await gw.stream({ topic: 't.a' });
  await gw.publish({ messages: [1, 2, 3].map((i) => ({ topic: 't.a', data: String(i) })) });
  await first.waitFor((c) => c.events.length === 3, 'three events');

  const resumed = await gw.stream(
    { topic: 't.a' },
    { headers: { 'Last-Event-ID': first.events[0]!.id!, traceparent: INCOMING } },
  );
  await resumed.waitFor((c) => c.events.length === 2, 'the two missed events');
  // The first tick finds the stream busy (it was just written to); the second sends a heartbeat.
  clock.tick(15_000);
  clock.tick(15_000);
  await resumed.waitFor((c) => c.comments.length >= 2, 'a heartbeat');
  resumed.close();
  await until(() => named(spans(), 'sse.disconnect').length === 1, 'the disconnect span');

  const connect = named(spans(), 'sse.connect').find((s) => s.attributes['herald.resume'] === 'ring')!;
  assert.ok(connect, 'the resumed stream has a connect span');
  assert.equal(traceOf(connect), '4bf92f3577b34da6a3ce929d0e0e4736', 'parented on the incoming traceparent');
  assert.equal(parentOf(connect), '00f067aa0ba902b7');
  assert.equal(connect.attributes['herald.outcome'], 'accepted');
  assert.deepEqual(connect.attributes['herald.topics'], ['t.a']);
  const id = connect.spanContext().spanId;
  const mine = spans().filter((s) => traceOf(s) === traceOf(connect) && s !== connect);
  const resume = named(mine, 'sse.resume');
  assert.equal(resume.length, 1);
  assert.equal(resume[0]!.attributes['herald.resume'], 'ring');
  assert.equal(resume[0]!.attributes['herald.events'], 2);
  assert.ok(named(mine, 'sse.ping').length >= 1, 'a sampled ping (ratio 1)');
  const [disconnect] = named(mine, 'sse.disconnect');
  assert.ok(disconnect, 'the disconnect is in the same trace');
  assert.equal(disconnect.attributes['herald.disconnect.reason'], 'client');
  assert.equal(disconnect.attributes['herald.events'], 2);
  assert.ok((disconnect.attributes['herald.bytes'] as number) > 0);
  assert.equal(disconnect.attributes['herald.duration_ms'], 30_000, 'fake time: two heartbeat intervals');
  for (const s of mine) assert.equal(parentOf(s), id, `${s.name} is a child of sse.connect`);
  // The first connection has its own trace, not the incoming one.
  const other = named(spans(), 'sse.connect').find((s) => s !== connect)!;
  assert.notEqual(traceOf(other), traceOf(connect));
});

it('tracing - disconnect spans name the server-side reason; refused streams end their connect span with the error code', async (t) => {
  const { tracer: tr, spans } = tracer();
  const gw = await startGateway({ tracePingRatio: '0' }, { tracer: tr });
  t.after(() => gw.close());
  const c = await gw.stream({ topic: 's.a' });
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  gw.gateway.hub.shed(1, 0);
  await c.ended;
  const bad = await gw.stream({ topic: 'a..b' });
  assert.equal(bad.status, 400);
  await until(() => named(spans(), 'sse.disconnect').length === 1, 'the disconnect span');
  assert.equal(named(spans(), 'sse.disconnect')[0]!.attributes['herald.disconnect.reason'], 'shed');
  const refused = named(spans(), 'sse.connect').find((s) => s.attributes['herald.outcome'] === 'rejected')!;
  assert.equal(refused.attributes['herald.error.code'], 'HERALD_TOPIC_INVALID');
  assert.equal(refused.status.code, 2, 'status ERROR');
  assert.equal(named(spans(), 'sse.ping').length, 0, 'ratio 0: no pings');
});

it('tracing - a sampled publish carries its context with the event, and its delivery is linked back to it', async (t) => {
  const { tracer: tr, spans } = tracer();
  const gw = await startGateway({}, { tracer: tr });
  t.after(() => gw.close());
  const c = await gw.stream({ topic: 'p.a' });
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  const r = await gw.publish({ topic: 'p.a', data: 'x' }, { traceparent: INCOMING });
  assert.equal(r.status, 200);
  await c.waitFor((s) => s.events.length === 1, 'the event');
  await until(() => named(spans(), 'sse.deliver').length === 1, 'the deliver span');
  const [publish] = named(spans(), 'herald.publish');
  assert.equal(traceOf(publish!), '4bf92f3577b34da6a3ce929d0e0e4736', 'the publish joins the caller’s trace');
  const [deliver] = named(spans(), 'sse.deliver');
  assert.equal(deliver!.links.length, 1);
  assert.equal(deliver!.links[0]!.context.spanId, publish!.spanContext().spanId, 'linked to its publish');
  assert.equal(deliver!.attributes['herald.streams'], 1);
});

it('tracing - a connection whose request is unsampled (traceparent flags 00) records no spans and keeps no trace state', async (t) => {
  const { tracer: tr, spans } = tracer();
  const clock = new FakeClock();
  const gw = await startGateway({ tracePingRatio: '1', heartbeatMs: 15_000 }, { tracer: tr, clock });
  t.after(() => gw.close());
  const unsampled = INCOMING.replace(/-01$/, '-00');
  const quiet = await gw.stream({ topic: 'u.a' }, { headers: { traceparent: unsampled } });
  const traced = await gw.stream({ topic: 'u.a' });
  await gw.publish({ topic: 'u.a', data: 'x' });
  await quiet.waitFor((c) => c.events.length === 1, 'the event');
  await traced.waitFor((c) => c.events.length === 1, 'the event');
  const traces = [...gw.gateway.hub.connections()].map((c) => c.trace);
  assert.equal(traces.filter((tc) => tc === undefined).length, 1, 'only the unsampled stream keeps nothing');
  clock.tick(15_000);
  clock.tick(15_000);
  await quiet.waitFor((c) => c.comments.length >= 2, 'a heartbeat');
  await traced.waitFor((c) => c.comments.length >= 2, 'a heartbeat');
  quiet.close();
  traced.close();
  await until(() => gw.gateway.hub.size === 0, 'both streams gone');
  await until(() => named(spans(), 'sse.disconnect').length === 1, 'the traced stream’s disconnect span');
  assert.deepEqual(
    spans()
      .filter((s) => traceOf(s) === '4bf92f3577b34da6a3ce929d0e0e4736')
      .map((s) => s.name),
    [],
    'nothing in the unsampled trace',
  );
  assert.equal(named(spans(), 'sse.connect').length, 1, 'one recorded connect: the traced stream');
  assert.ok(named(spans(), 'sse.ping').length >= 1, 'the traced stream’s pings');
});
