import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { formatCursor, HeraldError } from '@herald/protocol';
import { SpanStatusCode } from '@opentelemetry/api';
import { credentialsOf } from '../auth/index.ts';
import type { Broker } from '../broker/broker.ts';
import { countRejection, type Edge } from '../edge.ts';
import type { Hub } from '../hub/hub.ts';
import { type PublishLimits, parsePublish } from '../publish.ts';
import { readJson } from './body.ts';
import { retryHeaders, sendJson, sendProblem, singleHeader } from './problem.ts';
import { acceptStream, type StreamDeps, splitTarget } from './stream.ts';

export interface HandlerDeps {
  readonly hub: Hub;
  readonly broker: Broker;
  readonly edge: Edge;
  readonly stream: StreamDeps;
  readonly publish: PublishLimits & { readonly maxBodyBytes: number };
  /** Retry-After for 503s, in seconds. */
  readonly retryAfterSeconds: number;
  /** The demo page, when enabled. */
  readonly demoHtml: Buffer | undefined;
  readonly onError: (err: unknown, context: string) => void;
}

type Route = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void | Promise<void>;

/** The public port's request handler: routes, then turns every failure into problem+json. */
export function createHandler(deps: HandlerDeps): RequestListener {
  const { hub, broker, edge } = deps;
  const unavailable = (detail: string, cause?: unknown) =>
    new HeraldError('HERALD_BROKER_UNAVAILABLE', detail, {
      cause,
      extra: { retryAfter: deps.retryAfterSeconds },
    });

  const routes: Record<string, Partial<Record<string, Route>>> = {
    '/v1/stream': {
      // Most streams are taken by the front before node:http sees them; these are the rest
      // (a stream requested on a kept-alive connection, or a bad request to answer).
      GET: (req, res, query) => {
        const accept = () => acceptStream(req.socket, { query, headers: req.headers }, deps.stream);
        // A pipelined request waits for the responses before it (node:http hands the socket to its
        // response then); written at once, the stream head would overtake them and they would land
        // inside the event stream.
        if (res.socket === null) res.once('socket', () => void accept());
        else return accept();
      },
    },
    '/v1/publish': {
      POST: async (req, res, query) => {
        // Who is asking comes first: an unauthenticated body is never read.
        const principal = await edge.auth.authenticate(
          credentialsOf({ headers: req.headers, query }, edge.credentials),
        );
        const type = req.headers['content-type'] ?? '';
        if (!/^application\/json\s*(;|$)/i.test(type)) {
          throw new HeraldError(
            'HERALD_CONTENT_TYPE',
            `Content-Type is ${JSON.stringify(type)}; send application/json`,
          );
        }
        const body = await readJson(req, deps.publish.maxBodyBytes);
        const key = req.headers['idempotency-key'];
        const parsed = parsePublish(body, typeof key === 'string' ? key : undefined, deps.publish);
        edge.auth.authorize(
          principal,
          'publish',
          parsed.messages.map((m) => m.topic),
        );
        if (!broker.ready) throw unavailable('the broker is not connected; retry later');
        const { span, traceparent } = deps.stream.tracing.publish(req.headers, parsed.messages.length);
        let acks: Awaited<ReturnType<Broker['publish']>>;
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
      },
    },
    '/healthz': { GET: (_req, res) => sendJson(res, 200, { status: 'ok' }) },
    '/readyz': {
      GET: (_req, res) => {
        const ready = broker.ready && !hub.draining && !hub.warming;
        sendJson(res, ready ? 200 : 503, {
          status: ready ? 'ready' : 'not-ready',
          broker: broker.ready ? 'connected' : 'disconnected',
          draining: hub.draining,
          warming: hub.warming,
        });
      },
    },
  };
  if (deps.demoHtml !== undefined) {
    const html = deps.demoHtml;
    routes['/'] = {
      GET: (_req, res) => {
        res.writeHead(200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Content-Length': html.length,
          'Cache-Control': 'no-cache',
          'Content-Security-Policy':
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        });
        res.end(html);
      },
    };
  }

  return (req, res) => {
    const { path, query } = splitTarget(req.url ?? '/');
    const methods = routes[path];
    const route = methods?.[req.method ?? ''];
    const fail = (err: unknown) => {
      if (!(err instanceof HeraldError)) deps.onError(err, `${req.method} ${path}`);
      countRejection(edge.stats, err);
      const headers = retryHeaders(err, deps.retryAfterSeconds);
      // A refused body may still be arriving; close rather than read it all.
      if (err instanceof HeraldError && err.status === 413) headers['Connection'] = 'close';
      sendProblem(res, err, headers);
    };
    if (methods === undefined)
      return fail(new HeraldError('HERALD_NOT_FOUND', `no endpoint at ${path.slice(0, 200)}`));
    const one = (name: string) => singleHeader(req.headers, name);
    const cors = edge.cors({
      method: req.method ?? '',
      origin: one('origin'),
      requestMethod: one('access-control-request-method'),
      host: one('host'),
    });
    for (const [name, value] of Object.entries(cors.headers)) res.setHeader(name, value);
    if (cors.kind === 'forbidden') return fail(new HeraldError(cors.code, cors.detail));
    if (cors.kind === 'preflight') {
      res.writeHead(204, { 'Content-Length': 0 });
      return res.end();
    }
    if (route === undefined) {
      res.setHeader('Allow', Object.keys(methods).join(', '));
      return fail(new HeraldError('HERALD_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${path}`));
    }
    try {
      const done = route(req, res, query);
      if (done instanceof Promise) done.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
}
