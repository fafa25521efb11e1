/**
 * The benchmark's reference: the plainest SSE fan-out an experienced Node developer would write on
 * `node:http`. Each event becomes one pre-built Buffer, written once per subscribed socket, one write
 * per event per socket (no coalescing, no backpressure handling), so it measures what Herald has to beat.
 *
 *   node load-tests/bench/reference-server.ts [port]     (or REFERENCE_PORT; default 0 = any free port)
 *
 * Prints `{"listening":<port>}` on stdout once it accepts connections.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const MAX_BODY = 1 << 20;

const subscribers = new Map<string, Set<Socket>>();
let nextId = 0;

function subscribe(req: IncomingMessage, res: ServerResponse, topic: string): void {
  // Without chunked framing the raw socket writes below are the body as is (it ends when the socket closes).
  res.useChunkedEncodingByDefault = false;
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache, no-transform',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  const socket = req.socket;
  socket.setNoDelay(true);
  let set = subscribers.get(topic);
  if (set === undefined) {
    set = new Set();
    subscribers.set(topic, set);
  }
  set.add(socket);
  socket.once('close', () => {
    set.delete(socket);
  });
}

function deliver(topic: string, data: string): string {
  const id = `ref-${++nextId}`;
  // Benchmark data has no line breaks, so one `data:` line is the whole frame.
  const frame = Buffer.from(`id: ${id}\ndata: ${data}\n\n`);
  const set = subscribers.get(topic);
  if (set !== undefined) for (const socket of set) socket.write(frame);
  return id;
}

interface Message {
  topic: string;
  data: string;
}

function isMessage(value: unknown): value is Message {
  const m = value as Partial<Message> | null;
  return typeof m === 'object' && m !== null && typeof m.topic === 'string' && typeof m.data === 'string';
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function publish(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      reply(res, 413, { error: 'body too large' });
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on('end', () => {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(res, 400, { error: 'invalid JSON' });
    }
    const batch = (body as { messages?: unknown }).messages;
    const messages = Array.isArray(batch) ? batch : [body];
    if (!messages.every(isMessage)) return reply(res, 400, { error: 'expected {topic, data} messages' });
    const ids = messages.map((m) => deliver(m.topic, m.data));
    reply(res, 200, Array.isArray(batch) ? { ids } : { id: ids[0] });
  });
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/v1/stream') {
    const topic = url.searchParams.get('topic');
    if (topic === null || topic === '') return reply(res, 400, { error: 'topic required' });
    return subscribe(req, res, topic);
  }
  if (req.method === 'POST' && url.pathname === '/v1/publish') return publish(req, res);
  if (req.method === 'GET' && (url.pathname === '/readyz' || url.pathname === '/healthz')) {
    return reply(res, 200, { ok: true });
  }
  reply(res, 404, { error: 'not found' });
});
// Idle streams must not be reaped by node:http's defaults while the benchmark holds them.
server.requestTimeout = 0;
server.headersTimeout = 10_000;
server.keepAliveTimeout = 60_000;

const port = Number(process.argv[2] ?? process.env['REFERENCE_PORT'] ?? 0);
server.listen({ port, host: process.env['REFERENCE_HOST'] ?? '127.0.0.1', backlog: 4096 }, () => {
  const address = server.address();
  if (address !== null && typeof address === 'object') {
    process.stdout.write(JSON.stringify({ listening: address.port }) + '\n');
  }
});

process.on('SIGTERM', () => process.exit(0));
