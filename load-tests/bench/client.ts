/**
 * The benchmark's load client: many SSE connections in one process, run apart from the server (and
 * pinned to another core) so that the server's CPU and memory are measured alone.
 *
 * Connections are raw `net` sockets with a hand-written request, the cheapest client there is; the
 * parser does only what counting needs: it finds each blank-line-terminated block, counts the blocks
 * that carry `data:` (that is what makes a parser dispatch an event) and reads the publisher's send
 * timestamp `"t"` (ms since the epoch, from `performance.timeOrigin + performance.now()`) and phase
 * number `"p"` out of the JSON data. Lines end in LF, as Herald and the reference write them.
 *
 * Driven over IPC by run.ts (see the Command type). Standalone, for poking at a server by hand:
 *   node load-tests/bench/client.ts <port> <connections> [topic]   → a stats JSON line per second
 * (standalone there are no phases: events count as received when their data has `"p":0`).
 */
import { connect } from 'node:net';
import { BUCKETS, bucketOf, type Command, type Reply, type Report, type Stats } from './shared.ts';

const HEAD = 0;
const BODY = 1; // not chunked: the body is the stream as is
const SIZE = 2; // reading a chunk-size line
const DATA = 3; // inside a chunk
const CRLF = 4; // after a chunk's data
const MAX_PENDING = 1 << 20;

interface Conn {
  state: number;
  head: string;
  chunked: boolean;
  sizeLine: string;
  chunkLeft: number;
  /** SSE text after the last complete block. */
  pending: string;
}

// One read buffer shared by every socket (each read is parsed before the next one happens): reading
// without the stream machinery and a Buffer per read keeps the client cheaper than the servers it measures.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

const stats: Stats = { open: 0, failed: 0, closed: 0, received: 0, stale: 0, lastError: '' };
let phase = 0;
let firstAt = 0;
let lastAt = 0;
let histogram = new Float64Array(BUCKETS);

function resetPhase(next: number): void {
  phase = next;
  stats.received = 0;
  stats.stale = 0;
  firstAt = 0;
  lastAt = 0;
  histogram = new Float64Array(BUCKETS);
}

function countEvent(text: string, dataAt: number, end: number, now: number): void {
  const t = text.indexOf('"t":', dataAt);
  const p = text.indexOf('"p":', dataAt);
  if (t === -1 || t > end || p === -1 || p > end || Number.parseInt(text.slice(p + 4, end), 10) !== phase) {
    stats.stale++;
    return;
  }
  stats.received++;
  if (firstAt === 0) firstAt = now;
  lastAt = now;
  const latency = now - Number.parseFloat(text.slice(t + 4, end));
  // Both clocks are the same wall clock read in two processes; a tiny negative skew lands in bucket 0.
  histogram[bucketOf(latency)]!++;
}

function parseSse(conn: Conn, body: string, now: number): void {
  const text = conn.pending === '' ? body : conn.pending + body;
  let start = 0;
  for (;;) {
    const end = text.indexOf('\n\n', start);
    if (end === -1) break;
    // A block dispatches an event when one of its lines is a data field.
    let d = text.indexOf('data:', start);
    while (d !== -1 && d < end && d !== start && text.charCodeAt(d - 1) !== 10)
      d = text.indexOf('data:', d + 1);
    if (d !== -1 && d < end) {
      const lineEnd = text.indexOf('\n', d);
      countEvent(text, d, lineEnd, now);
    }
    start = end + 2;
  }
  conn.pending = start === text.length ? '' : text.slice(start);
  if (conn.pending.length > MAX_PENDING) throw new Error('SSE block larger than 1 MiB: not an event stream?');
}

/** Strips HTTP/1.1 chunked framing, which a server writing with `res.write` puts around the stream. */
function dechunk(conn: Conn, text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    if (conn.state === DATA) {
      const take = Math.min(conn.chunkLeft, text.length - i);
      out += text.slice(i, i + take);
      i += take;
      conn.chunkLeft -= take;
      if (conn.chunkLeft === 0) {
        conn.state = CRLF;
        conn.chunkLeft = 2;
      }
    } else if (conn.state === CRLF) {
      const take = Math.min(conn.chunkLeft, text.length - i);
      i += take;
      conn.chunkLeft -= take;
      if (conn.chunkLeft === 0) conn.state = SIZE;
    } else {
      const nl = text.indexOf('\n', i);
      if (nl === -1) {
        conn.sizeLine += text.slice(i);
        break;
      }
      const size = Number.parseInt(conn.sizeLine + text.slice(i, nl), 16);
      conn.sizeLine = '';
      i = nl + 1;
      if (!(size > 0)) throw new Error('stream ended (last chunk) or bad chunk size');
      conn.state = DATA;
      conn.chunkLeft = size;
    }
  }
  return out;
}

function onData(conn: Conn, chunk: Buffer, length: number, resolveOpen: (error?: Error) => void): void {
  // latin1 maps bytes one to one, so offsets stay byte offsets; the JSON we read is ASCII.
  let text = chunk.toString('latin1', 0, length);
  const now = performance.timeOrigin + performance.now();
  if (conn.state === HEAD) {
    conn.head += text;
    const end = conn.head.indexOf('\r\n\r\n');
    if (end === -1) {
      if (conn.head.length > 16_384) resolveOpen(new Error('response head too large'));
      return;
    }
    const head = conn.head.slice(0, end).toLowerCase();
    text = conn.head.slice(end + 4);
    conn.head = '';
    if (!head.startsWith('http/1.1 200')) {
      resolveOpen(new Error(head.split('\r\n', 1)[0]));
      return;
    }
    conn.chunked = /\r\ntransfer-encoding:[^\r]*chunked/.test(head);
    conn.state = conn.chunked ? SIZE : BODY;
    resolveOpen();
  }
  parseSse(conn, conn.chunked ? dechunk(conn, text) : text, now);
}

function openOne(host: string, port: number, topic: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn: Conn = { state: HEAD, head: '', chunked: false, sizeLine: '', chunkLeft: 0, pending: '' };
    let opened = false;
    let settled = false;
    const settle = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === undefined) {
        opened = true;
        stats.open++;
        resolve();
      } else {
        stats.failed++;
        stats.lastError = error.message;
        socket.destroy();
        reject(error);
      }
    };
    const timer = setTimeout(() => settle(new Error('no response head within 20 s')), 20_000);
    const socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (length) => {
          try {
            onData(conn, READ_BUFFER, length, settle);
          } catch (error) {
            socket.destroy(error as Error);
          }
          return true;
        },
      },
    });
    socket.write(
      `GET /v1/stream?topic=${encodeURIComponent(topic)} HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
        'Accept: text/event-stream\r\n\r\n',
    );
    socket.on('error', (error) => {
      stats.lastError = error.message;
      settle(error);
    });
    socket.on('close', () => {
      if (opened) {
        stats.open--;
        stats.closed++;
      } else settle(new Error('closed before the response head'));
    });
  });
}

/** Opens in batches, each after the previous one got its response heads, so the accept queue never overflows. */
async function openAll(
  host: string,
  port: number,
  topic: string,
  count: number,
  batch: number,
  progress: (open: number) => void,
): Promise<void> {
  for (let started = 0; started < count; started += batch) {
    const n = Math.min(batch, count - started);
    const opening: Promise<void>[] = [];
    for (let i = 0; i < n; i++) opening.push(openOne(host, port, topic));
    await Promise.allSettled(opening);
    progress(stats.open);
  }
}

function report(): Report {
  const pairs: [number, number][] = [];
  for (let b = 0; b < BUCKETS; b++) if (histogram[b]! > 0) pairs.push([b, histogram[b]!]);
  return { ...stats, phase, firstAt, lastAt, histogram: pairs };
}

async function handle(command: Command, send: (reply: Reply) => void): Promise<void> {
  switch (command.cmd) {
    case 'open':
      await openAll(command.host, command.port, command.topic, command.count, command.batch, (open) =>
        send({ type: 'progress', open, failed: stats.failed, target: command.count }),
      );
      return send({ id: command.id, type: 'ok' });
    case 'phase':
      resetPhase(command.phase);
      return send({ id: command.id, type: 'ok' });
    case 'stats':
      return send({ id: command.id, type: 'stats', ...stats });
    case 'report':
      return send({ id: command.id, type: 'report', ...report() });
  }
}

if (process.send !== undefined) {
  const send = (reply: Reply): void => {
    process.send?.(reply);
  };
  process.on('message', (command: Command) => void handle(command, send));
  // The orchestrator owns us: if it goes away, so do we (and our sockets with us).
  process.on('disconnect', () => process.exit(0));
} else {
  const port = Number(process.argv[2]);
  const count = Number(process.argv[3] ?? 100);
  if (!(port > 0)) {
    process.stderr.write('usage: node client.ts <port> <connections> [topic]\n');
    process.exit(2);
  }
  setInterval(() => process.stdout.write(JSON.stringify(stats) + '\n'), 1000).unref();
  await openAll('127.0.0.1', port, process.argv[4] ?? 'bench', count, 500, () => {});
}
