import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A span as OTLP/JSON carries it, with its resource's attributes. */
export interface ReceivedSpan {
  readonly name: string;
  readonly traceId: string;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly resource: Readonly<Record<string, unknown>>;
}

/** A loopback OTLP/HTTP receiver for `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` exporters. */
export interface OtlpReceiver {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  /** Request paths, in arrival order. */
  readonly paths: readonly string[];
  /** Every span received so far. */
  spans(): ReceivedSpan[];
  close(): Promise<void>;
}

interface KeyValue {
  key: string;
  value: Record<string, unknown>;
}
interface ExportRequest {
  resourceSpans: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans: { spans: { name: string; traceId: string; attributes?: KeyValue[] }[] }[];
  }[];
}

// OTLP/JSON values are one-key objects: {stringValue: ...}, {intValue: ...}, {arrayValue: ...}.
const attributesOf = (kvs: KeyValue[] = []) =>
  Object.fromEntries(kvs.map((a) => [a.key, Object.values(a.value)[0]]));

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const paths: string[] = [];
  const bodies: ExportRequest[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      paths.push(req.url ?? '');
      bodies.push(JSON.parse(body) as ExportRequest);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paths,
    spans: () =>
      bodies.flatMap((b) =>
        b.resourceSpans.flatMap((r) => {
          const resource = attributesOf(r.resource?.attributes);
          return r.scopeSpans.flatMap((sc) =>
            sc.spans.map((s) => ({
              name: s.name,
              traceId: s.traceId,
              attributes: attributesOf(s.attributes),
              resource,
            })),
          );
        }),
      ),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
