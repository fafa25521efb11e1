import assert from 'node:assert/strict';
import { it } from 'node:test';
import { spawnGateway } from '@herald/gateway/testing';
import { connectSse, startOtlpReceiver, until } from '@herald/testkit';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SAMPLED = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

it('tracing - with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway process exports connection spans over OTLP/HTTP, sampled parent-based by default', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const gw = await spawnGateway({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    // Export batches quickly, so the test waits on the spans, not on the batch timer.
    OTEL_BSP_SCHEDULE_DELAY: '50',
    // No sampler named: Herald's parent-based default, here at ratio 0 so the outcome is certain.
    OTEL_TRACES_SAMPLER_ARG: '0',
    HERALD_RELEASE_VERSION: 'v-otlp',
  });
  t.after(() => gw.kill('SIGKILL'));
  const untraced = await connectSse(`${gw.url}/v1/stream?topic=otlp`);
  const traced = await connectSse(`${gw.url}/v1/stream?topic=otlp`, { headers: { traceparent: SAMPLED } });
  await untraced.waitFor((s) => s.ids.length === 1, 'the opening');
  await traced.waitFor((s) => s.ids.length === 1, 'the opening');
  untraced.close();
  traced.close();
  await until(
    () => receiver.spans().some((s) => s.name === 'sse.disconnect'),
    'the disconnect span at the receiver',
    15_000,
  );
  assert.ok(
    receiver.paths.every((p) => p === '/v1/traces'),
    'spans go to the OTLP traces path',
  );
  const spans = receiver.spans();
  assert.deepEqual(
    spans.map((s) => s.name).sort(),
    ['sse.connect', 'sse.disconnect'],
    'the traced stream only: the other one was a new trace, at ratio 0',
  );
  for (const s of spans) {
    assert.equal(s.traceId, TRACE_ID, `${s.name} joins the sampled traceparent`);
    assert.equal(s.resource['service.name'], 'herald-gateway');
  }
  assert.equal(spans.find((s) => s.name === 'sse.connect')?.attributes['herald.release'], 'v-otlp');
});
