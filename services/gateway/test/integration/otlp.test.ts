import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { connectSse, spawnGateway, until } from '@herald/testkit';

it('tracing - with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway process exports its connection spans over OTLP/HTTP', async (t) => {
  const bodies: string[] = [];
  const paths: string[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      paths.push(req.url ?? '');
      bodies.push(body);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.after(() => receiver.close());
  const port = (receiver.address() as AddressInfo).port;
  const gw = await spawnGateway({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    // Export batches quickly, so the test waits on the spans, not on the batch timer.
    OTEL_BSP_SCHEDULE_DELAY: '50',
    HERALD_RELEASE_VERSION: 'v-otlp',
  });
  t.after(() => gw.kill('SIGKILL'));
  const c = await connectSse(`${gw.url}/v1/stream?topic=otlp`);
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  c.close();
  const seen = () => bodies.join('\n');
  await until(() => seen().includes('"sse.disconnect"'), 'the disconnect span at the receiver', 15_000);
  assert.ok(
    paths.every((p) => p === '/v1/traces'),
    'spans go to the OTLP traces path',
  );
  assert.match(seen(), /"sse\.connect"/);
  assert.match(seen(), /herald-gateway/, 'the service name');
  assert.match(seen(), /v-otlp/, 'the release version');
});
