import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HeraldError } from '@herald/protocol';
import { countRejection } from '../edge.ts';
import { closeAfterAnswer, isClosing } from './close.ts';
import { retryHeaders, sendJson, sendProblem, singleHeader, writeProblem } from './problem.ts';
import { handlePublish, type PublishDeps } from './publish-handler.ts';
import { acceptStream, type StreamDeps, splitTarget } from './stream.ts';

/** Everything the public port's handlers use: one flat set; each handler takes the part it needs. */
export interface HttpDeps extends StreamDeps, PublishDeps {
  /** The demo page, when enabled. */
  readonly demoHtml: Buffer | undefined;
}

type Route = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void | Promise<void>;

/** Whether any of a request's body is announced and not all of it has arrived yet. */
function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Why node:http's parser gave up on a request, as the problem the client gets. */
function parserRefusal(err: Error & { code?: string; reason?: string }): HeraldError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new HeraldError('HERALD_HEADERS_TOO_LARGE', 'the request head exceeds HERALD_MAX_HEADER_BYTES');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HeraldError(
        'HERALD_REQUEST_TIMEOUT',
        'the request head or body did not arrive whole within the deadline (HERALD_HEADERS_TIMEOUT_MS, HERALD_REQUEST_TIMEOUT_MS)',
      );
    default:
      // llhttp's own words name the rule that was broken; the request's bytes are never echoed.
      return new HeraldError(
        'HERALD_REQUEST_MALFORMED',
        `the request is not valid HTTP/1.1${err.code?.startsWith('HPE_') ? ` (${err.code}: ${err.reason ?? err.message})` : ''}`,
      );
  }
}

/**
 * Serves the public port's node:http server: routes requests and turns every failure into
 * problem+json — its own, and the parser's (malformed requests, oversized heads, missed deadlines,
 * unsupported `Expect`). Answers must stay in request order on a connection (HTTP/1.1 pipelining):
 * a refusal from the parser is written only when it cannot be taken for the answer to an earlier
 * request on the same connection.
 */
export function serveHttp(server: Server, deps: HttpDeps): void {
  const { hub, broker, edge, clock } = deps;

  const routes: Record<string, Partial<Record<string, Route>>> = {
    '/v1/stream': {
      // Most streams are taken by the front before node:http sees them; these are the rest
      // (a stream requested on a kept-alive connection, or a bad request to answer).
      GET: (req, res, query) => {
        // Its answer is the stream, written to the socket as it is: no refusal can follow it.
        streams.add(res);
        const accept = () => acceptStream(req.socket, { query, headers: req.headers }, deps);
        // A pipelined request waits for the responses before it (node:http hands the socket to its
        // response then); written at once, the stream head would overtake them and they would land
        // inside the event stream.
        if (res.socket === null) res.once('socket', () => void accept());
        else return accept();
      },
    },
    '/v1/publish': { POST: (req, res, query) => handlePublish(req, res, query, deps) },
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

  /** Answers not yet written whole, per connection, in request order. */
  const unanswered = new WeakMap<Socket, Set<ServerResponse>>();
  /** Answers that are streams (see the stream route). */
  const streams = new WeakSet<ServerResponse>();
  /** A parser refusal waiting for the answers before it. */
  const queued = new WeakMap<Socket, HeraldError>();
  /** Connections whose client asked to close after a request it sent. */
  const lastRequested = new WeakSet<Socket>();

  /**
   * Whether a request is the connection's last by its client's word; nothing sent after it may be
   * processed (RFC 9112, 9.6), though node:http would hand it over (a publish would be stored).
   */
  const isLast = (req: IncomingMessage) => {
    const options = (singleHeader(req.headers, 'connection') ?? '').toLowerCase().split(/\s*,\s*/);
    return options.includes('close') || (req.httpVersion === '1.0' && !options.includes('keep-alive'));
  };

  /** Takes a request on: false when its connection is past its last request or answer. */
  const admit = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    // After a last answer nothing more is answered on its connection (RFC 9112, 9.6).
    if (isClosing(socket) || lastRequested.has(socket)) return false;
    if (isLast(req)) lastRequested.add(socket);
    track(socket, res);
    return true;
  };

  const track = (socket: Socket, res: ServerResponse) => {
    const open = unanswered.get(socket) ?? new Set<ServerResponse>();
    unanswered.set(socket, open);
    open.add(res);
    res.once('close', () => {
      open.delete(res);
      if (open.size > 0) return;
      unanswered.delete(socket);
      const refusal = queued.get(socket);
      queued.delete(socket);
      if (refusal !== undefined && !isClosing(socket)) writeProblem(socket, clock, refusal);
    });
  };

  /**
   * An answer given while the request's body is still arriving closes the connection rather than
   * wait for the rest (which may never come, or come a byte at a time), and it closes gracefully,
   * so the client still reads it (see close.ts).
   */
  const lastIfBodyPending = (req: IncomingMessage, res: ServerResponse) => {
    if (!bodyPending(req)) return;
    res.setHeader('Connection', 'close');
    closeAfterAnswer(req.socket, clock);
  };

  const refuse = (req: IncomingMessage, res: ServerResponse, err: unknown, context: string) => {
    if (!(err instanceof HeraldError)) deps.onError(err, context);
    // Answered already (by the parser's refusal, counted then): the request's own failure follows
    // from that one (its body was cut off).
    if (res.writableEnded) return;
    countRejection(edge.stats, err);
    lastIfBodyPending(req, res);
    sendProblem(res, err, retryHeaders(err, edge.retryAfterSeconds));
  };

  /**
   * Whether a request is answered without its body being read: every one but a publish, and a
   * stream, whose socket is taken as it is.
   */
  const leavesBody = (req: IncomingMessage, path: string) =>
    !(req.method === 'POST' && path === '/v1/publish') && !(req.method === 'GET' && path === '/v1/stream');

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!admit(req, res)) return;
    const { path, query } = splitTarget(req.url ?? '/');
    const fail = (err: unknown) => refuse(req, res, err, `${req.method} ${path}`);
    // node:http's own check answers with an empty 400 (requireHostHeader is off): RFC 9112, 3.2.
    if (req.httpVersion === '1.1' && req.headers.host === undefined)
      return fail(new HeraldError('HERALD_REQUEST_MALFORMED', 'an HTTP/1.1 request needs a Host header'));
    const methods = routes[path];
    const route = methods?.[req.method ?? ''];
    if (leavesBody(req, path)) lastIfBodyPending(req, res);
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
  });

  // Any Expect but 100-continue; without a listener node:http answers 417 with an empty body.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    if (!admit(req, res)) return;
    refuse(
      req,
      res,
      new HeraldError('HERALD_EXPECTATION_FAILED', 'the only expectation supported is "100-continue"'),
      'expect',
    );
  });

  // CONNECT is not a method Herald serves; without this node:http would close without a word.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const refusal = new HeraldError('HERALD_METHOD_NOT_ALLOWED', `${req.method} is not served here`);
    countRejection(edge.stats, refusal);
    writeProblem(socket as Socket, clock, refusal, { Allow: 'GET, POST, OPTIONS' });
  });

  // What node:http's parser refuses: malformed HTTP, an oversized head, a missed deadline.
  server.on('clientError', (err: Error & { code?: string }, duplex: Duplex) => {
    const socket = duplex as Socket;
    // Answered already, or to be answered once the answers before it are out: the parser fails
    // again on every further chunk, and the graceful close bounds what is still read.
    if (isClosing(socket) || queued.has(socket)) return;
    if (err.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
    const open = [...(unanswered.get(socket) ?? [])];
    // A stream is being written: the client takes every further byte as part of it.
    if (open.some((res) => streams.has(res))) return socket.destroy();
    const refusal = parserRefusal(err);
    const [res] = open;
    // The request at fault is the one being answered (its body broke off, or its deadline passed),
    // and nothing of its answer has been written: that answer is the refusal.
    if (open.length === 1 && res !== undefined && !res.headersSent && !res.req.complete) {
      countRejection(edge.stats, refusal);
      closeAfterAnswer(socket, clock);
      res.setHeader('Connection', 'close');
      return sendProblem(res, refusal);
    }
    // Bytes after the client's last request are no request: its answers go out, then it closes.
    if (lastRequested.has(socket)) return;
    countRejection(edge.stats, refusal);
    if (open.length === 0) return writeProblem(socket, clock, refusal);
    // Earlier requests are still being answered: the refusal follows their answers.
    queued.set(socket, refusal);
  });
}
