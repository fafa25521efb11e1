import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatCursor, HeraldError } from '@herald/protocol';
import { SpanStatusCode } from '@opentelemetry/api';
import { credentialsOf } from '../auth/index.ts';
import type { Broker, PublishAck } from '../broker/broker.ts';
import type { Edge } from '../edge.ts';
import { type PublishLimits, parsePublish } from '../publish.ts';
import type { StreamTracing } from '../telemetry/tracing.ts';
import { readJson } from './body.ts';
import { sendJson } from './problem.ts';

export interface PublishDeps {
  readonly broker: Broker;
  readonly edge: Edge;
  readonly tracing: StreamTracing;
  readonly publishLimits: PublishLimits & { readonly maxBodyBytes: number };
}

/**
 * `POST /v1/publish`: authenticate, read and check the body, authorize its topics, store, answer
 * each message's cursor. Throws a HeraldError for the caller to answer as problem+json.
 */
export async function handlePublish(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  deps: PublishDeps,
): Promise<void> {
  const { broker, edge } = deps;
  // Who is asking comes first: an unauthenticated body is never read.
  const principal = await edge.auth.authenticate(
    credentialsOf({ headers: req.headers, query }, edge.credentials),
  );
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new HeraldError(
      'HERALD_CONTENT_TYPE',
      `Content-Type is ${JSON.stringify(type)}; send application/json`,
    );
  const body = await readJson(req, deps.publishLimits.maxBodyBytes);
  const key = req.headers['idempotency-key'];
  const parsed = parsePublish(body, typeof key === 'string' ? key : undefined, deps.publishLimits);
  edge.auth.authorize(
    principal,
    'publish',
    parsed.messages.map((m) => m.topic),
  );
  // Answered meanwhile (its deadline passed while the body arrived): nothing may be stored.
  if (res.headersSent) return;
  const unavailable = (detail: string, cause?: unknown) =>
    new HeraldError('HERALD_BROKER_UNAVAILABLE', detail, {
      cause,
      extra: { retryAfter: edge.retryAfterSeconds },
    });
  if (!broker.ready) throw unavailable('the broker is not connected; retry later');
  const { span, traceparent } = deps.tracing.publish(req.headers, parsed.messages.length);
  let acks: PublishAck[];
  try {
    acks = await broker.publish(
      traceparent === undefined ? parsed.messages : parsed.messages.map((m) => ({ ...m, traceparent })),
    );
  } catch (cause) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'HERALD_BROKER_UNAVAILABLE' });
    throw unavailable(
      'the broker did not confirm the messages; retry, with the same Idempotency-Key so that none is stored twice',
      cause,
    );
  } finally {
    span.end();
  }
  edge.stats.published += acks.filter((a) => !a.duplicate).length;
  const results = acks.map((a) => ({
    id: formatCursor({ epoch: a.epoch, seq: a.seq }),
    duplicate: a.duplicate,
  }));
  sendJson(res, 200, parsed.batch ? { results } : results[0]);
}
