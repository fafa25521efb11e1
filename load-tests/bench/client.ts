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
 * In a resume storm (the `storm` command) each connection instead counts its own events, reads
 * each event's sequence from its `id:` line (to catch duplicates and reordering), spots
 * `herald.reset`, and notes when it has every event after its cursor.
 *
 * Driven over IPC by run.ts (see the Command type). Standalone, for poking at a server by hand:
 *   node load-tests/bench/client.ts <port> <connections> [topic]   → a stats JSON line per second
 * (standalone there are no phases: events count as received when their data has `"p":0`).
 */
import { connect } from 'node:net';
import {
  BUCKETS,
  bucketOf,
  type Command,
  type Reply,
  type Report,
  type Stats,
  type StormReport,
  type StormStats,
} from './shared.ts';

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
  /** Index into the storm arrays; -1 outside a storm. */
  storm: number;
}

/** What connection bookkeeping needs; both Stats and StormStats have it. */
interface Counters {
  open: number;
  failed: number;
  closed: number;
  lastError: string;
}

// One read buffer shared by every socket (each read is parsed before the next one happens): reading
// without the stream machinery and a Buffer per read keeps the client cheaper than the servers it measures.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

const stats: Stats = { open: 0, failed: 0, closed: 0, received: 0, stale: 0, lastError: '' };
let phase = 0;
let firstAt = 0;
let lastAt = 0;
let histogram = new Float64Array(BUCKETS);

const storm: StormStats = {
  open: 0,
  failed: 0,
  closed: 0,
  done: 0,
  received: 0,
  resets: 0,
  disorder: 0,
  extra: 0,
  lastError: '',
};
let stormStart = 0;
// Per storm connection: cursor (then the last sequence seen), events expected and received, and
// when the head and the last expected event arrived (epoch ms, 0: not yet).
let lastSeq = new Float64Array(0);
let expected = new Float64Array(0);
let events = new Float64Array(0);
let headAt = new Float64Array(0);
let doneAt = new Float64Array(0);

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

/** One block of a storm connection's stream: Herald writes `id:` first, then `event:`, then `data:`. */
function stormBlock(i: number, text: string, start: number, end: number, now: number): void {
  // The first block also carries the opening lines (retry, a comment), and a heartbeat comment
  // may precede an event in the same block.
  let idAt = start;
  if (!text.startsWith('id: ', start)) {
    const line = text.indexOf('\nid: ', start);
    if (line === -1 || line >= end) return;
    idAt = line + 1;
  }
  const idEnd = text.indexOf('\n', idAt);
  if (idEnd >= end) return; // id-only: moves the cursor, dispatches nothing
  const seq = Number.parseInt(text.slice(text.lastIndexOf('-', idEnd) + 1, idEnd), 10);
  if (text.startsWith('event: herald.reset', idEnd + 1)) {
    storm.resets++;
    lastSeq[i] = seq;
    return;
  }
  stormEvent(i, seq, now);
}

/** One storm event of a connection. */
function stormEvent(i: number, seq: number, now: number): void {
  if (!(seq > lastSeq[i]!)) storm.disorder++;
  lastSeq[i] = seq;
  storm.received++;
  const n = ++events[i]!;
  if (n === expected[i]) {
    doneAt[i] = now;
    storm.done++;
  } else if (n > expected[i]!) storm.extra++;
}

const ID = 105; // 'i'
const NL = 10;
const DASH = 45;
const E = 101; // 'e'

/**
 * A storm connection's stream, fast path: a block that starts with `id: <epoch>-<seq>` is read
 * without slicing strings (the storm client reads millions of events a second and must not be the
 * bottleneck); anything else goes to `stormBlock`. Returns where the unparsed rest starts.
 */
function parseStorm(i: number, text: string, start: number, now: number): number {
  const length = text.length;
  while (start < length) {
    if (text.charCodeAt(start) === ID && text.charCodeAt(start + 3) === 32) {
      const p = text.indexOf('\n', start + 4);
      if (p === -1 || p + 1 >= length) break;
      let seq = 0;
      for (let k = p - 1, scale = 1; k > start; k--, scale *= 10) {
        const c = text.charCodeAt(k);
        if (c === DASH) break;
        seq += (c - 48) * scale;
      }
      if (text.charCodeAt(p + 1) === NL) {
        // id-only: moves the cursor, dispatches nothing
        start = p + 2;
        continue;
      }
      const end = text.indexOf('\n\n', p + 1);
      if (end === -1) break;
      if (text.charCodeAt(p + 1) === E && text.startsWith('event: herald.reset', p + 1)) {
        storm.resets++;
        lastSeq[i] = seq;
      } else stormEvent(i, seq, now);
      start = end + 2;
      continue;
    }
    const end = text.indexOf('\n\n', start);
    if (end === -1) break;
    stormBlock(i, text, start, end, now);
    start = end + 2;
  }
  return start;
}

/** Parses the complete blocks of `text` from `start`; returns where the unfinished rest starts. */
function parseBlocks(conn: Conn, text: string, start: number, now: number): number {
  if (conn.storm >= 0) return parseStorm(conn.storm, text, start, now);
  for (;;) {
    const end = text.indexOf('\n\n', start);
    if (end === -1) return start;
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
}

function parseSse(conn: Conn, body: string, now: number): void {
  let start = 0;
  const before = conn.pending;
  if (before !== '') {
    // Finish the block the previous read left open on its own, rather than prefixing this whole
    // read with it: a concatenated read would be copied once more to be searched.
    const seam = before.charCodeAt(before.length - 1) === NL && body.charCodeAt(0) === NL;
    const end = seam ? 1 : body.indexOf('\n\n') + 2;
    if (end === 1 && !seam) {
      conn.pending = before + body;
      if (conn.pending.length > MAX_PENDING)
        throw new Error('SSE block larger than 1 MiB: not an event stream?');
      return;
    }
    const block = before + body.slice(0, end);
    parseBlocks(conn, block, 0, now);
    start = end;
  }
  start = parseBlocks(conn, body, start, now);
  conn.pending = start === body.length ? '' : body.slice(start);
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

function openOne(
  host: string,
  port: number,
  topic: string,
  counters: Counters = stats,
  lastEventId?: string,
  stormIndex = -1,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn: Conn = {
      state: HEAD,
      head: '',
      chunked: false,
      sizeLine: '',
      chunkLeft: 0,
      pending: '',
      storm: stormIndex,
    };
    let opened = false;
    let settled = false;
    const settle = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === undefined) {
        opened = true;
        counters.open++;
        if (stormIndex >= 0) headAt[stormIndex] = performance.timeOrigin + performance.now();
        resolve();
      } else {
        counters.failed++;
        counters.lastError = error.message;
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
    const resume = lastEventId === undefined ? '' : `Last-Event-ID: ${lastEventId}\r\n`;
    socket.write(
      `GET /v1/stream?topic=${encodeURIComponent(topic)} HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
        `Accept: text/event-stream\r\n${resume}\r\n`,
    );
    socket.on('error', (error) => {
      counters.lastError = error.message;
      settle(error);
    });
    socket.on('close', () => {
      if (opened) {
        counters.open--;
        counters.closed++;
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

/**
 * Opens one stream per cursor, all at once in batches of `batch` (each batch as soon as the
 * previous one has its response heads: as fast as the server accepts them).
 */
async function openStorm(
  command: Extract<Command, { cmd: 'storm' }>,
  progress: (open: number) => void,
): Promise<void> {
  const n = command.cursors.length;
  lastSeq = Float64Array.from(command.cursors);
  expected = Float64Array.from(command.cursors, (c) => command.last - c);
  events = new Float64Array(n);
  headAt = new Float64Array(n);
  doneAt = new Float64Array(n);
  stormStart = performance.timeOrigin + performance.now();
  for (let started = 0; started < n; started += command.batch) {
    const opening: Promise<void>[] = [];
    for (let i = started; i < Math.min(n, started + command.batch); i++) {
      const cursor = `${command.epoch}-${command.cursors[i]}`;
      opening.push(openOne(command.host, command.port, command.topic, storm, cursor, i));
    }
    await Promise.allSettled(opening);
    progress(storm.open);
  }
}

function stormReport(): StormReport {
  const since = (at: number) => (at === 0 ? -1 : Math.round((at - stormStart) * 10) / 10);
  return {
    ...storm,
    startAt: stormStart,
    doneMs: Array.from(doneAt, since),
    headMs: Array.from(headAt, since),
    events: Array.from(events),
  };
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
    case 'storm':
      await openStorm(command, (open) =>
        send({ type: 'progress', open, failed: storm.failed, target: command.cursors.length }),
      );
      return send({ id: command.id, type: 'ok' });
    case 'stormStats':
      return send({ id: command.id, type: 'stormStats', ...storm });
    case 'stormReport':
      return send({ id: command.id, type: 'stormReport', ...stormReport() });
  }
}

if (process.send !== undefined) {
  const send = (reply: Reply): void => {
    process.send?.(reply);
  };
  process.on('message', (command: Command) => void handle(command, send));
  // The orchestrator owns us: if it goes away, so do we (and our sockets with us).
  process.on('disconnect', () => process.exit(0));
  // Exit normally on SIGTERM too, so `--cpu-prof` (in NODE_OPTIONS) gets to write its profile.
  process.on('SIGTERM', () => process.exit(0));
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
