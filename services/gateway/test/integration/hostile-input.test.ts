import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Config, defaultConfig } from '@herald/gateway';
import { DISCARD_MAX_MS } from '@herald/gateway/internal';
import { startGateway, type TestGateway } from '@herald/gateway/testing';
import { ErrorCodes } from '@herald/protocol';
import {
  FakeClock,
  type PublishResponse,
  type RawResponse,
  rawExchange,
  rawRequestBytes,
  type SseClient,
  seededRandom,
  until,
} from '@herald/testkit';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';

/**
 * Hostile input: fuzzed and crafted values in every field a client or publisher controls, bodies
 * and request heads no client library would send, bodies that come slowly or far too large,
 * limits overrun. Each case must end in a clear answer (problem+json with a stable HERALD_ code —
 * also for HTTP the parser refuses, which then closes — or success for input that is valid),
 * never a 500; what is accepted must arrive exactly, and no frame field can be injected.
 * Meanwhile a canary stream must see a numbered sequence intact.
 *
 * Seeds are fixed and printed in the test names; rerun one by changing nothing.
 */

const SEED = 0x4e7a1d;
const CANARY_EVENTS = 60;

// ---------------------------------------------------------------------------------------------
// The contract, written out independently of the gateway's own validators.

const TOPIC_TOKEN = /^[A-Za-z0-9_-]+$/;
const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,64}$/;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
const CURSOR = /^([A-Za-z0-9]{1,32})-(0|[1-9][0-9]{0,15})$/;
const MESSAGE_FIELDS = ['topic', 'data', 'event', 'key'];
const STREAM_PARAMS = ['topic', 'lastEventId', 'release'];

type Code = keyof typeof ErrorCodes;
type Verdict = 'ok' | Code;

function validTopic(t: string, wildcards: boolean): boolean {
  if (t.length === 0 || t.length > 128) return false;
  const tokens = t.split('.');
  return tokens.every(
    (tok, i) =>
      TOPIC_TOKEN.test(tok) || (wildcards && (tok === '*' || (tok === '>' && i === tokens.length - 1))),
  );
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a subscriber's `data` is for a published `data`: strings as is, anything else as JSON text. */
function dataText(data: unknown): string | undefined {
  try {
    return typeof data === 'string' ? data : JSON.stringify(data);
  } catch {
    return undefined; // nested beyond what can be re-encoded
  }
}

/** SSE carries line breaks as separate `data:` lines; a parser restores each CRLF, CR or LF as LF. */
const overSse = (s: string) => s.replace(/\r\n|\r/g, '\n');

interface Limits {
  readonly maxBodyBytes: number;
  readonly maxMessageBytes: number;
  readonly maxBatch: number;
  readonly maxTopics: number;
}

function messageVerdict(m: unknown, limits: Limits): Verdict {
  if (!isObject(m)) return 'HERALD_BODY_INVALID';
  if (Object.keys(m).some((k) => !MESSAGE_FIELDS.includes(k))) return 'HERALD_BODY_INVALID';
  const { topic, data, event, key } = m;
  if (typeof topic !== 'string') return 'HERALD_TOPIC_INVALID';
  if (!validTopic(topic, false))
    return validTopic(topic, true) ? 'HERALD_TOPIC_WILDCARD' : 'HERALD_TOPIC_INVALID';
  if (data === undefined) return 'HERALD_DATA_INVALID';
  const text = dataText(data);
  if (text === undefined || !text.isWellFormed()) return 'HERALD_DATA_INVALID';
  if (Buffer.byteLength(text) > limits.maxMessageBytes) return 'HERALD_MESSAGE_TOO_LARGE';
  if (
    event !== undefined &&
    (typeof event !== 'string' || !EVENT_TYPE.test(event) || event.startsWith('herald.'))
  )
    return 'HERALD_EVENT_INVALID';
  if (key !== undefined && (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)))
    return 'HERALD_IDEMPOTENCY_KEY_INVALID';
  return 'ok';
}

/** The verdict on a publish whose Content-Type is fine, from the body bytes and the key header. */
function publishVerdict(body: Buffer, headerKey: string | undefined, limits: Limits): Verdict {
  if (body.length > limits.maxBodyBytes) return 'HERALD_BODY_TOO_LARGE';
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    return 'HERALD_BODY_INVALID';
  }
  if (headerKey !== undefined && !IDEMPOTENCY_KEY.test(headerKey)) return 'HERALD_IDEMPOTENCY_KEY_INVALID';
  if (!isObject(parsed)) return 'HERALD_BODY_INVALID';
  if (!('messages' in parsed)) return messageVerdict(parsed, limits);
  if (Object.keys(parsed).length !== 1) return 'HERALD_BODY_INVALID';
  const { messages } = parsed;
  if (!Array.isArray(messages)) return 'HERALD_BODY_INVALID';
  if (messages.length === 0) return 'HERALD_BATCH_EMPTY';
  if (messages.length > limits.maxBatch) return 'HERALD_BATCH_TOO_LARGE';
  for (const m of messages) {
    const v = messageVerdict(m, limits);
    if (v !== 'ok') return v;
  }
  return 'ok';
}

function streamVerdict(query: URLSearchParams, maxTopics: number): Verdict {
  const seen = new Set<string>();
  for (const name of query.keys()) {
    if (!STREAM_PARAMS.includes(name)) return 'HERALD_QUERY_INVALID';
    if (name !== 'topic' && seen.has(name)) return 'HERALD_QUERY_INVALID';
    seen.add(name);
  }
  const topics = new Set(query.getAll('topic'));
  if (topics.size === 0) return 'HERALD_TOPIC_MISSING';
  if (topics.size > maxTopics) return 'HERALD_TOO_MANY_TOPICS';
  for (const t of topics) if (!validTopic(t, true)) return 'HERALD_TOPIC_INVALID';
  return 'ok';
}

const queryOf = (target: string) => {
  const q = target.indexOf('?');
  return new URLSearchParams(q === -1 ? '' : target.slice(q + 1));
};

/** Bytes no HTTP/1.1 parser takes in a header value (HT and obs-text are fine). */
const HEADER_CTL = {
  test: (s: string) => [...s].some((c) => (c < ' ' && c !== '\t') || c === '\x7f'),
};
/** What a server reads for a header value sent as these bytes: latin1, optional whitespace trimmed. */
const headerSeen = (bytes: string) => bytes.replace(/^[ \t]+|[ \t]+$/g, '');
/** A JS string as the latin1 string of its UTF-8 bytes, so rawRequestBytes sends it as UTF-8. */
const utf8Bytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

// ---------------------------------------------------------------------------------------------
// Answers.

interface Answer {
  readonly status: number | undefined;
  readonly contentType: string;
  readonly connection: string;
  readonly text: string;
  /** The answer to HEAD: headers only. */
  readonly bodiless?: boolean;
}

const fromFetch = (r: PublishResponse): Answer => ({
  status: r.status,
  contentType: r.headers.get('content-type') ?? '',
  connection: r.headers.get('connection') ?? '',
  text: typeof r.body === 'string' ? r.body : JSON.stringify(r.body),
});

const fromRaw = (r: RawResponse, bodiless = false): Answer => ({
  bodiless,
  status: r.status,
  contentType: r.headers.get('content-type') ?? '',
  connection: r.headers.get('connection') ?? '',
  text: r.body.toString('utf8'),
});

/** Answers by kind in the running describe (one gateway at a time), for the diagnostic. */
let tally = new Map<string, number>();

type Outcome =
  | { readonly kind: 'ok'; readonly status: number }
  | { readonly kind: 'problem'; readonly code: Code }
  | { readonly kind: 'parser'; readonly code: Code };

/** Refusals of what node:http's parser could not take: not HTTP, too large a head, too late. */
const PARSER_CODES: ReadonlySet<Code> = new Set([
  'HERALD_REQUEST_MALFORMED',
  'HERALD_HEADERS_TOO_LARGE',
  'HERALD_REQUEST_TIMEOUT',
  'HERALD_EXPECTATION_FAILED',
]);

/**
 * Checks that an answer is one of the clear kinds and says which: a success, or a problem+json
 * with a catalogued HERALD_ code (never HERALD_INTERNAL) and a bounded body — also for HTTP that
 * node:http's parser refuses (the `parser` kind), which then closes the connection. There is no
 * third kind: an empty 400 is not a clear answer.
 */
function classify(a: Answer, what: string): Outcome {
  const ctx = () => `${what}\n→ ${a.status} ${a.contentType}\n${a.text.slice(0, 600)}`;
  assert.ok(a.status !== undefined, `no HTTP answer: ${ctx()}`);
  assert.notEqual(a.status, 500, `500: ${ctx()}`);
  if (a.status >= 200 && a.status < 300) return { kind: 'ok', status: a.status };
  assert.equal(a.contentType, 'application/problem+json', `not a clear answer: ${ctx()}`);
  if (a.bodiless) {
    assert.ok(a.status >= 400 && a.status < 500, ctx());
    return { kind: 'problem', code: 'HERALD_METHOD_NOT_ALLOWED' };
  }
  const p = JSON.parse(a.text) as { code?: unknown; status?: unknown; type?: unknown };
  assert.equal(typeof p.code, 'string', ctx());
  const code = p.code as string;
  assert.match(code, /^HERALD_[A-Z_]+$/, ctx());
  assert.notEqual(code, 'HERALD_INTERNAL', ctx());
  assert.ok(code in ErrorCodes, `uncatalogued code: ${ctx()}`);
  assert.equal(a.status, ErrorCodes[code as Code].status, ctx());
  assert.equal(p.status, a.status, ctx());
  assert.equal(p.type, `urn:herald:error:${code}`, ctx());
  assert.ok(a.text.length < 8192, `a problem body echoes too much (${a.text.length} bytes): ${ctx()}`);
  if (!PARSER_CODES.has(code as Code)) return { kind: 'problem', code: code as Code };
  // What follows a request the parser gave up on cannot be read as a request.
  if (code !== 'HERALD_EXPECTATION_FAILED') assert.equal(a.connection.toLowerCase(), 'close', ctx());
  return { kind: 'parser', code: code as Code };
}

function outcome(a: Answer, what: string): Outcome {
  const o = classify(a, what);
  const kind = o.kind === 'ok' ? `ok ${o.status}` : o.code;
  tally.set(kind, (tally.get(kind) ?? 0) + 1);
  return o;
}

function expectVerdict(a: Answer, verdict: Verdict | 'parser', what: string): Outcome {
  const o = outcome(a, what);
  const got = o.kind === 'ok' ? 'ok' : o.kind === 'parser' && verdict === 'parser' ? 'parser' : o.code;
  assert.equal(got, verdict, `${what}\n→ ${a.status} ${a.text.slice(0, 600)}`);
  return o;
}

/** Every line a Herald stream may hold; anything else is a corrupted or injected frame. */
const SSE_LINE =
  /^(?:|retry: \d+|:(?: [^\r\n]*)?|id: [A-Za-z0-9]{1,32}-\d+|event: [A-Za-z0-9_.:-]{1,64}|data: [^\r\n]*)$/;

/** Parses SSE text with an independent parser, failing on any line outside the grammar. */
function parseSse(text: string, what: string): { events: EventSourceMessage[]; ids: string[] } {
  assert.ok(!text.includes('\r'), `${what}: CR in a stream`);
  for (const line of text.split('\n'))
    assert.match(line, SSE_LINE, `${what}: malformed SSE line ${JSON.stringify(line.slice(0, 200))}`);
  const events: EventSourceMessage[] = [];
  const ids: string[] = [];
  const errors: unknown[] = [];
  const parser = createParser({
    onEvent: (e) => events.push(e),
    onId: (id) => ids.push(id),
    onError: (e) => errors.push(e),
  });
  parser.feed(text);
  assert.deepEqual(errors, [], what);
  return { events, ids };
}

/** The frames of a 200 stream answer read raw (up to the first complete frame, or more). */
function streamOpening(r: RawResponse, what: string) {
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8', what);
  const text = r.body.toString('utf8');
  const complete = text.slice(0, text.lastIndexOf('\n\n') + 2);
  assert.ok(complete.length > 0, `${what}: no complete frame in ${JSON.stringify(text)}`);
  return parseSse(complete, what);
}

// ---------------------------------------------------------------------------------------------
// The harness: a gateway, a canary that must stay intact, and a sink that sees every event.

interface Expected {
  readonly event: string | undefined;
  readonly data: string;
}

class Sink {
  readonly expected = new Map<string, Expected>();
  readonly client: SseClient;
  constructor(client: SseClient) {
    this.client = client;
  }

  /** Waits for the event with this id and checks it is exactly what was published. */
  async receives(id: string, want: Expected, what: string): Promise<void> {
    assert.ok(!this.expected.has(id), `${what}: id ${id} answered twice as new`);
    this.expected.set(id, want);
    await this.client.waitFor((s) => s.events.some((e) => e.id === id), `event ${id} (${what})`);
    const got = this.client.events.find((e) => e.id === id)!;
    assert.deepEqual(
      { id: got.id, event: got.event, data: got.data },
      { id, event: want.event, data: want.data },
      what,
    );
  }
}

class Canary {
  readonly ids: string[] = [];
  #ticks = 0;
  #finishing = false;
  #wake: (() => void) | undefined;
  readonly #loop: Promise<void>;

  readonly gw: TestGateway;
  readonly client: SseClient;
  readonly casesPerEvent: number;

  constructor(gw: TestGateway, client: SseClient, casesPerEvent: number) {
    this.gw = gw;
    this.client = client;
    this.casesPerEvent = casesPerEvent;
    this.#loop = this.#run();
    this.#loop.catch(() => {}); // surfaced by finish()
  }

  /** The attack made progress: the canary publishes one event every `casesPerEvent` cases. */
  tick(): void {
    this.#ticks++;
    this.#wake?.();
  }

  async #run(): Promise<void> {
    for (let n = 1; n <= CANARY_EVENTS; n++) {
      // The last one goes out after the attack, so anything it injected would arrive before it.
      while (!this.#finishing && (n === CANARY_EVENTS || this.#ticks < n * this.casesPerEvent)) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
      const r = await this.gw.publish({ topic: 'canary', event: 'canary', data: `canary ${n}` });
      assert.equal(r.status, 200, `canary ${n}: ${JSON.stringify(r.body)}`);
      this.ids.push(r.body.id);
    }
  }

  async finish(): Promise<void> {
    this.#finishing = true;
    this.#wake?.();
    await this.#loop;
    await this.client.waitFor((s) => s.events.length >= CANARY_EVENTS, `${CANARY_EVENTS} canary events`);
    const want = this.ids.map((id, i) => ({ id, event: 'canary', data: `canary ${i + 1}` }));
    assert.deepEqual(this.client.events, want, 'the canary saw exactly 1..N, in order');
    const reparsed = parseSse(this.client.raw(), 'canary stream');
    assert.deepEqual(reparsed.events, want);
    const seqs = reparsed.ids.map((id) => Number(id.split('-')[1]));
    for (let i = 1; i < seqs.length; i++)
      assert.ok(seqs[i]! > seqs[i - 1]!, `canary ids increase: ${reparsed.ids}`);
    assert.equal(this.client.events.length, CANARY_EVENTS, 'nothing else reached the canary');
  }
}

interface Harness {
  readonly gw: TestGateway;
  readonly limits: Limits;
  readonly sink: Sink;
  readonly canary: Canary;
  /** Idempotency keys stored so far, with the cursor each was stored at. */
  readonly keys: Map<string, string>;
  /** The epoch of this gateway's stream. */
  epoch: string;
  /** Cases run; each one ticks the canary. */
  cases: number;
  /** Error log lines: each is an unexpected failure inside the gateway. */
  readonly errors: unknown[];
}

async function startHarness(
  overrides: Partial<Config>,
  casesPerEvent: number,
  clock?: FakeClock,
): Promise<Harness> {
  const errors: unknown[] = [];
  tally = new Map();
  const gw = await startGateway(overrides, {
    ...(clock === undefined ? {} : { clock }),
    random: seededRandom(SEED),
    log: (level, msg, fields) => {
      if (level === 'error') errors.push({ msg, ...fields });
    },
  });
  const config = defaultConfig({ auth: 'none', ...overrides });
  const limits: Limits = {
    maxBodyBytes: config.maxBodyBytes,
    maxMessageBytes: config.maxMessageBytes,
    maxBatch: config.maxBatch,
    maxTopics: config.maxTopics,
  };
  const canaryClient = await gw.stream({ topic: 'canary' });
  const sinkClient = await gw.stream({ topic: '>' });
  assert.equal(canaryClient.status, 200);
  assert.equal(sinkClient.status, 200);
  await sinkClient.waitFor((s) => s.ids.length > 0, 'the opening id');
  const epoch = sinkClient.ids[0]!.split('-')[0]!;
  const h: Harness = {
    gw,
    limits,
    sink: new Sink(sinkClient),
    canary: new Canary(gw, canaryClient, casesPerEvent),
    keys: new Map(),
    epoch,
    cases: 0,
    errors,
  };
  return h;
}

/** After the attack: the canary intact, the sink holding exactly what was accepted, the process healthy. */
async function finishHarness(h: Harness): Promise<void> {
  await h.canary.finish();
  const lastCanary = h.canary.ids.at(-1)!;
  await h.sink.client.waitFor(
    (s) => s.events.some((e) => e.id === lastCanary),
    'the last canary in the sink',
  );
  const sink = parseSse(h.sink.client.raw(), 'sink stream');
  const canaryIds = new Set(h.canary.ids);
  const others = sink.events.filter((e) => !canaryIds.has(e.id!));
  assert.equal(others.length, h.sink.expected.size, 'the sink saw exactly the accepted events');
  for (const e of others) {
    const want = h.sink.expected.get(e.id!);
    assert.ok(want !== undefined, `unexpected event ${JSON.stringify(e).slice(0, 300)}`);
    assert.deepEqual({ event: e.event, data: e.data }, want);
  }
  assert.ok(!sink.events.some((e) => e.event?.startsWith('herald.')), 'no herald.* event was injected');
  const health = await fetch(`${h.gw.url}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
  assert.deepEqual(h.errors, [], 'the gateway logged no internal error');
}

async function check<T>(
  h: Harness,
  seed: number,
  numRuns: number,
  arb: fc.Arbitrary<T>,
  body: (v: T) => Promise<void>,
): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      await body(v);
      h.cases++;
      h.canary.tick();
    }),
    { seed, numRuns },
  );
}

/** Runs crafted cases in order; each ticks the canary. */
async function table<T>(h: Harness, cases: readonly T[], body: (c: T) => Promise<void>): Promise<void> {
  for (const c of cases) {
    await body(c);
    h.cases++;
    h.canary.tick();
  }
}

// ---------------------------------------------------------------------------------------------
// Publishing, checked end to end.

interface PublishCase {
  readonly body: Buffer;
  readonly headerKey?: string | undefined;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly what: string;
}

/**
 * Publishes raw bytes and checks the answer against the contract: on success every message is
 * stored once (or reported a duplicate of the cursor its key was stored at) and reaches the sink
 * exactly; on refusal the code is the one the contract names.
 */
async function publishChecked(h: Harness, c: PublishCase, verdict?: Verdict | 'parser'): Promise<Outcome> {
  const headers: Array<readonly [string, string]> = [
    ['Host', '127.0.0.1'],
    ['Connection', 'close'],
    ['Content-Type', 'application/json'],
    ...(c.headerKey === undefined ? [] : [['Idempotency-Key', c.headerKey] as const]),
    ...(c.headers ?? []),
  ];
  const r = await rawExchange(
    h.gw.url,
    rawRequestBytes({ method: 'POST', target: '/v1/publish', headers, body: c.body }),
  );
  const headerKey = c.headerKey === undefined ? undefined : headerSeen(c.headerKey);
  const expected = verdict ?? publishVerdict(c.body, headerKey, h.limits);
  const o = expectVerdict(fromRaw(r), expected, c.what);
  if (o.kind === 'ok') await accepted(h, { ...c, headerKey }, JSON.parse(r.body.toString('utf8')));
  return o;
}

const decodeBody = (body: Buffer) => new TextDecoder('utf-8', { fatal: true }).decode(body);

/** Checks a 200 publish answer (`headerKey` as the server read it) and that each new message arrives. */
// biome-ignore lint/suspicious/noExplicitAny: the publish answer, checked field by field.
async function accepted(h: Harness, c: PublishCase, answer: any): Promise<void> {
  const parsed = JSON.parse(decodeBody(c.body)) as Record<string, unknown>;
  const batch = 'messages' in parsed;
  const messages = (batch ? parsed['messages'] : [parsed]) as Array<Record<string, unknown>>;
  const results = (batch ? answer.results : [answer]) as Array<{ id: string; duplicate: boolean }>;
  assert.equal(results.length, messages.length, c.what);
  for (const [i, m] of messages.entries()) {
    const res = results[i]!;
    assert.ok(res !== undefined && typeof res.id === 'string', `${c.what}: ${JSON.stringify(answer)}`);
    assert.match(res.id, CURSOR, c.what);
    const key =
      typeof m['key'] === 'string'
        ? m['key']
        : c.headerKey === undefined
          ? undefined
          : batch
            ? `${c.headerKey}:${i}`
            : c.headerKey;
    const stored = key === undefined ? undefined : h.keys.get(key);
    if (stored !== undefined) {
      assert.deepEqual(res, { id: stored, duplicate: true }, `${c.what}: a repeated key answers its cursor`);
      continue;
    }
    assert.equal(res.duplicate, false, c.what);
    if (key !== undefined) h.keys.set(key, res.id);
    const event = typeof m['event'] === 'string' ? m['event'] : undefined;
    await h.sink.receives(res.id, { event, data: overSse(dataText(m['data'])!) }, c.what);
  }
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const NASTY = [
  '\r',
  '\n',
  '\r\n',
  '\0',
  '\ud800',
  '\udfff',
  '\ud83d\ude00',
  'é',
  '\u2028',
  '\ufeff',
  '\u0085',
  '\uffff',
  '\ufffd',
  ':',
  ' ',
  '\t',
  '\x7f',
  '\x1b',
  'ÿ',
  '"',
  '\\',
  '%',
  '%0A',
  '%00',
  '&',
  '=',
  '+',
  '#',
  '?',
  '/',
  '.',
  '*',
  '>',
  'a',
  'Z',
  '0',
  '-',
  '_',
  'data: ',
  'event: ',
  'id: ',
  'retry: ',
  'herald.reset',
];

const INJECTIONS = [
  'x\nevent: herald.reset\nid: 1-1\n\ndata: evil',
  'x\r\nevent: herald.reset\r\nid: 1-1\r\n\r\ndata: evil',
  'x\revent: herald.reset\rid: 1-1\r\rdata: evil',
  '\n\nevent: herald.token-expiring\ndata: {}\n\n',
  'id: 0-0',
  'retry: 1',
  ':comment\n\n',
  '\n',
  '\r',
  '',
  ' ',
  '\0',
  'data: x\n\ndata: y',
  '\ufeffdata: bom',
];

const nastyChar = fc.constantFrom(...NASTY);

/** Strings aimed at parsers: nasty characters, any code point, graphemes, very long runs, injections. */
const fuzzString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: nastyChar, maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 2, arbitrary: fc.constantFrom(...INJECTIONS) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('a', 'é', '\n', '😀', '.', '\0'), fc.integer({ min: 100, max: 40_000 }))
      .map(([c, n]) => c.repeat(n)),
  },
);

const validTopicArb = fc
  .array(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 4 })
  .map((tokens) => tokens.join('.'));

const jsonish = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.double(),
  fc.integer(),
  fuzzString,
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
);

// ---------------------------------------------------------------------------------------------

describe('hostile input: every field a client or publisher controls', () => {
  let h: Harness;
  const limits = {
    maxBodyBytes: 192 * 1024,
    maxMessageBytes: 24 * 1024,
    maxBatch: 8,
    maxHeaderBytes: 64 * 1024,
  };
  before(async () => {
    h = await startHarness({ ...limits, corsOrigins: 'https://app.example.com' }, 60);
  });
  after(() => h.gw.close());

  it(`publish topic - only grammar topics are stored, and on exactly that topic (seed ${SEED + 1})`, async () => {
    const topicArb = fc.oneof(
      { weight: 3, arbitrary: validTopicArb },
      { weight: 3, arbitrary: fuzzString },
      {
        weight: 1,
        arbitrary: fc.constantFrom('a.*', '>', 'a.>', 'a..b', '.a', 'a.', 'x'.repeat(129), 'é', ' a'),
      },
      { weight: 1, arbitrary: jsonish },
    );
    let n = 0;
    await check(h, SEED + 1, 350, topicArb, async (topic) => {
      if (topic === 'canary' || (typeof topic === 'string' && topic.startsWith('canary.'))) return;
      const what = `topic ${JSON.stringify(topic)?.slice(0, 200)}`;
      const data = `t${++n}`;
      const verdict = publishVerdict(json({ topic, data }), undefined, h.limits);
      // A subscriber on exactly that topic must get it.
      const exact = verdict === 'ok' ? await h.gw.stream({ topic: topic as string }) : undefined;
      try {
        await publishChecked(h, { body: json({ topic, data }), what });
        if (exact !== undefined) {
          await exact.waitFor((s) => s.events.length === 1, `${what} on its own stream`);
          assert.equal(exact.events[0]!.data, data, what);
        }
      } finally {
        exact?.close();
      }
    });
  });

  it(`publish event - only short tokens outside herald.* are accepted; none can add a field (seed ${SEED + 2})`, async () => {
    const eventArb = fc.oneof(
      { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.:-]{1,70}$/) },
      { weight: 3, arbitrary: fuzzString },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'herald.reset',
          'herald.token-expiring',
          'herald.',
          'Herald.reset',
          'message',
          'x'.repeat(64),
          'x'.repeat(65),
          'a\nevent: herald.reset',
          'a b',
        ),
      },
      { weight: 1, arbitrary: jsonish },
    );
    let n = 0;
    await check(h, SEED + 2, 350, eventArb, async (event) => {
      await publishChecked(h, {
        body: json({ topic: 'fuzz.event', event, data: `e${++n}` }),
        what: `event ${JSON.stringify(event)?.slice(0, 200)}`,
      });
    });
  });

  it(`publish data string - accepted text arrives exactly (line breaks as LF), injections stay data (seed ${SEED + 3})`, async () => {
    await check(h, SEED + 3, 450, fuzzString, async (data) => {
      await publishChecked(h, {
        body: json({ topic: 'fuzz.data', data }),
        what: `data ${JSON.stringify(data).slice(0, 200)} (${data.length} chars)`,
      });
    });
  });

  it(`publish data JSON - any JSON value arrives as its JSON text (seed ${SEED + 4})`, async () => {
    const valueArb = fc.oneof(
      { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
      { weight: 1, arbitrary: fc.array(fuzzString, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.dictionary(fuzzString, fuzzString, { maxKeys: 3 }) },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 1, max: 6000 }).map((n) => Array.from({ length: n }, (_, i) => i)),
      },
    );
    await check(h, SEED + 4, 300, valueArb, async (data) => {
      const body = Buffer.from(`{"topic":"fuzz.json","data":${JSON.stringify(data)}}`, 'utf8');
      await publishChecked(h, { body, what: `data ${JSON.stringify(data).slice(0, 200)}` });
    });
  });

  it(`Idempotency-Key header - printable ASCII keys dedupe, everything else is refused (seed ${SEED + 5})`, async () => {
    const keyArb = fc.oneof(
      { weight: 3, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,130}$/) },
      { weight: 2, arbitrary: fc.constantFrom('k-1', 'k-2', 'order-42', 'x'.repeat(128), 'x'.repeat(129)) },
      { weight: 3, arbitrary: fuzzString.filter((s) => !/[\r\n]/.test(s) && s.length < 2000) },
    );
    let n = 0;
    await check(h, SEED + 5, 300, fc.tuple(keyArb, fc.boolean()), async ([key, twice]) => {
      const wire = utf8Bytes(key);
      const seen = headerSeen(wire);
      const body = json({ topic: 'fuzz.key', data: `k${++n}` });
      const what = `Idempotency-Key ${JSON.stringify(key).slice(0, 200)}`;
      const verdict = HEADER_CTL.test(wire) ? 'parser' : publishVerdict(body, seen, h.limits);
      for (let i = 0; i < (twice ? 2 : 1); i++)
        await publishChecked(h, { body, headerKey: wire, what }, verdict).then((o) => {
          if (verdict === 'parser') assert.equal(o.kind, 'parser');
        });
    });
  });

  it(`per-message key - keys dedupe per message, batches derive <header>:<i> (seed ${SEED + 6})`, async () => {
    const msgKey = fc.option(
      fc.oneof(fc.constantFrom('m-1', 'm-2', 'dup'), fc.stringMatching(/^[\x21-\x7e]{1,130}$/), jsonish),
      { nil: undefined },
    );
    const headerKey = fc.option(fc.constantFrom('h-1', 'h-2', 'h-3', 'bad key', ''), { nil: undefined });
    let n = 0;
    await check(
      h,
      SEED + 6,
      300,
      fc.tuple(fc.array(msgKey, { minLength: 0, maxLength: 10 }), headerKey, fc.boolean()),
      async ([keys, header, single]) => {
        const messages = keys.map((key) => ({ topic: 'fuzz.mkey', data: `m${++n}`, key }));
        const body = single && messages.length > 0 ? json(messages[0]) : json({ messages });
        await publishChecked(h, {
          body,
          headerKey: header,
          what: `keys ${JSON.stringify(keys)} header ${header}`,
        });
      },
    );
  });

  it(`Content-Type - only application/json (any case, with parameters) is read (seed ${SEED + 7})`, async () => {
    const typeArb = fc.oneof(
      fc.constantFrom(
        'application/json',
        'APPLICATION/JSON',
        'application/json; charset=utf-8',
        'application/json;',
        'application/json ; x=y',
        'application/jsonx',
        'application/json-patch+json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        '',
        ' application/json',
      ),
      fuzzString.filter((s) => !/[\r\n]/.test(s) && s.length < 1000),
    );
    let n = 0;
    await check(h, SEED + 7, 200, typeArb, async (type) => {
      const wire = utf8Bytes(type);
      const seen = headerSeen(wire);
      const body = json({ topic: 'fuzz.ctype', data: `c${++n}` });
      const verdict = HEADER_CTL.test(wire)
        ? 'parser'
        : /^application\/json\s*(;|$)/i.test(seen)
          ? publishVerdict(body, undefined, h.limits)
          : 'HERALD_CONTENT_TYPE';
      const r = await rawExchange(
        h.gw.url,
        rawRequestBytes({
          method: 'POST',
          target: '/v1/publish',
          headers: [
            ['Host', '127.0.0.1'],
            ['Connection', 'close'],
            ['Content-Type', wire],
          ],
          body,
        }),
      );
      const what = `Content-Type ${JSON.stringify(type).slice(0, 200)}`;
      if (expectVerdict(fromRaw(r), verdict, what).kind === 'ok')
        await accepted(h, { body, what }, JSON.parse(r.body.toString('utf8')));
    });
  });

  /** Sends a stream request, via the front's fast path or (a repeated header) node:http. */
  const streamRaw = (
    target: string,
    viaNodeHttp: boolean,
    extra: ReadonlyArray<readonly [string, string]> = [],
  ) =>
    rawExchange(
      h.gw.url,
      rawRequestBytes({
        target,
        headers: [
          ['Host', '127.0.0.1'],
          ['Accept', 'text/event-stream'],
          ...(viaNodeHttp
            ? ([
                ['X-Fuzz', '1'],
                ['X-Fuzz', '2'],
              ] as const)
            : []),
          ...extra,
        ],
      }),
    );

  it(`stream topics - grammar patterns open a stream, anything else is refused by name (seed ${SEED + 8})`, async () => {
    const topicParam = fc.oneof(
      { weight: 3, arbitrary: validTopicArb },
      {
        weight: 1,
        arbitrary: fc.constantFrom('*', '>', 'a.*', 'a.>', 'a.>.b', '*.*', 'a.**', '', 'x'.repeat(129)),
      },
      { weight: 3, arbitrary: fuzzString.filter((s) => s.length < 3000) },
    );
    await check(
      h,
      SEED + 8,
      400,
      fc.tuple(fc.array(topicParam, { minLength: 0, maxLength: 40 }), fc.boolean()),
      async ([topics, viaNodeHttp]) => {
        const q = new URLSearchParams();
        for (const t of topics) q.append('topic', t);
        const target = `/v1/stream?${q}`;
        const what = `stream ${target.slice(0, 300)} via ${viaNodeHttp ? 'node:http' : 'front'}`;
        const r = await streamRaw(target, viaNodeHttp);
        if (
          expectVerdict(fromRaw(r), streamVerdict(queryOf(target), h.limits.maxTopics), what).kind === 'ok'
        ) {
          const { events, ids } = streamOpening(r, what);
          assert.deepEqual(events, [], `${what}: a fresh stream starts with no event`);
          assert.match(ids[0] ?? '', CURSOR, what);
        }
      },
    );
  });

  it(`stream query - unknown, repeated and percent-encoded junk parameters are refused, never ignored (seed ${SEED + 9})`, async () => {
    const piece = fc.oneof(
      fc.constantFrom(
        'topic=a',
        'topic=q.b',
        'topic=',
        'topic',
        'lastEventId=x',
        'lastEventId=',
        'release=v2',
        'release=%0A',
        'topics=a',
        'Topic=a',
        'topic%3Da',
        'topic=a%26topic=b',
        '%74opic=a',
        '=a',
        '&',
        '&&',
        '=',
        '%',
        '%%',
        '%zz',
        '%ED%A0%80',
        '%FF%FE',
        '%C0%AF',
        '%00',
        '%0D%0A',
        '+',
        'topic=a+b',
        'topic=a%2Eb',
        '__proto__=1',
        'constructor=x',
        'topic=%2A',
        'topic=%3E',
        ';',
        '#',
      ),
      fc.stringMatching(/^[\x21-\x7e]{0,12}$/),
    );
    await check(
      h,
      SEED + 9,
      400,
      fc.tuple(fc.array(piece, { minLength: 0, maxLength: 8 }), fc.constantFrom('&', '', ';'), fc.boolean()),
      async ([pieces, sep, viaNodeHttp]) => {
        const target = `/v1/stream?${pieces.join(sep)}`;
        const what = `stream ${target} via ${viaNodeHttp ? 'node:http' : 'front'}`;
        const r = await streamRaw(target, viaNodeHttp);
        if (
          expectVerdict(fromRaw(r), streamVerdict(queryOf(target), h.limits.maxTopics), what).kind === 'ok'
        ) {
          const { events } = streamOpening(r, what);
          for (const e of events) assert.equal(e.event, 'herald.reset', what);
        }
      },
    );
  });

  it(`resume cursor - Last-Event-ID and lastEventId are parsed strictly, answered with herald.reset, never echoed (seed ${SEED + 10})`, async () => {
    // Some history, so that cursors of this epoch can be valid.
    for (let i = 0; i < 3; i++)
      await publishChecked(h, { body: json({ topic: 'fuzz.resume', data: `r${i}` }), what: 'history' });
    const last = Number(h.sink.client.events.at(-1)!.id!.split('-')[1]);
    const cursorArb = fc.oneof(
      { weight: 2, arbitrary: fc.integer({ min: 0, max: last }).map((s) => `${h.epoch}-${s}`) },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          `${h.epoch}-${last + 1_000_000}`,
          `${h.epoch}-01`,
          `${h.epoch}-+1`,
          `${h.epoch}-1.0`,
          `${h.epoch}-99999999999999999`,
          `${h.epoch}-9007199254740993`,
          `${h.epoch.toUpperCase()}x-1`,
          'other-1',
          '-1',
          '1-',
          `${h.epoch}--1`,
          ` ${h.epoch}-0 `,
          `${h.epoch}-0\tx`,
          '',
          'x'.repeat(33) + '-1',
        ),
      },
      { weight: 4, arbitrary: fuzzString.filter((s) => s.length < 5000) },
    );
    const via = fc.constantFrom('header', 'query', 'both', 'header-twice');
    await check(
      h,
      SEED + 10,
      400,
      fc.tuple(cursorArb, via, fc.boolean()),
      async ([cursor, where, viaNodeHttp]) => {
        if (where !== 'query' && /[\r\n]/.test(cursor)) return; // would end the header: the head-level tests do that
        const q = new URLSearchParams({ topic: 'fuzz.resume.none' });
        if (where === 'query' || where === 'both') q.set('lastEventId', `${cursor}`);
        const wire = utf8Bytes(cursor);
        const headers: Array<readonly [string, string]> = [];
        if (where === 'header' || where === 'both' || where === 'header-twice')
          headers.push(['Last-Event-ID', wire]);
        if (where === 'header-twice') headers.push(['Last-Event-ID', wire]);
        const target = `/v1/stream?${q}`;
        const what = `cursor ${JSON.stringify(cursor).slice(0, 200)} in ${where} via ${viaNodeHttp ? 'node:http' : 'front'}`;
        const r = await streamRaw(target, viaNodeHttp, headers);
        if (where !== 'query' && HEADER_CTL.test(wire)) {
          expectVerdict(fromRaw(r), 'parser', what);
          return;
        }
        expectVerdict(fromRaw(r), 'ok', what);
        // The header wins over the query; a repeated header is one value joined with ", ".
        const seen =
          where === 'query'
            ? queryOf(target).get('lastEventId')!
            : where === 'header-twice'
              ? `${headerSeen(wire)}, ${headerSeen(wire)}`
              : headerSeen(wire);
        const m = CURSOR.exec(seen);
        const seq = m === null ? Number.NaN : Number(m[2]);
        const reset =
          seen === ''
            ? undefined
            : m === null || !Number.isSafeInteger(seq)
              ? { reason: 'malformed', from: null }
              : m[1] !== h.epoch
                ? { reason: 'epoch', from: seen }
                : seq > last + 100_000
                  ? { reason: 'ahead', from: seen }
                  : undefined;
        const { events, ids } = streamOpening(r, what);
        assert.match(ids[0] ?? '', CURSOR, what);
        if (reset === undefined) {
          assert.ok(!events.some((e) => e.event === 'herald.reset'), `${what}: no reset expected`);
        } else {
          assert.equal(events[0]?.event, 'herald.reset', what);
          const data = JSON.parse(events[0]!.data) as { reason: string; from: string | null };
          assert.deepEqual({ reason: data.reason, from: data.from }, reset, what);
        }
        // Never echoed: a reset carries exactly these members, cursors re-encoded from the parse.
        if (reset !== undefined) {
          const data = JSON.parse(events[0]!.data) as Record<string, unknown>;
          assert.deepEqual(Object.keys(data), ['reason', 'from', 'oldest'], what);
          assert.ok(data['oldest'] === null || CURSOR.test(String(data['oldest'])), what);
        }
      },
    );
  });

  it(`other headers - Origin, Authorization, Cookie, X-Release-Version and unknown ones never break a request (seed ${SEED + 11})`, async () => {
    const name = fc.oneof(
      fc.constantFrom(
        'Origin',
        'Authorization',
        'Cookie',
        'X-Release-Version',
        'Accept',
        'Accept-Encoding',
        'Access-Control-Request-Method',
        'User-Agent',
        'Referer',
        'X-Forwarded-For',
        'Forwarded',
        'Range',
        'If-None-Match',
        'Cache-Control',
        'Upgrade',
        'TE',
        'Via',
      ),
      fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,30}$/),
    );
    const value = fc.oneof(
      fc.constantFrom(
        'https://app.example.com',
        'https://evil.example.com',
        'null',
        'http://127.0.0.1',
        'Bearer x.y.z',
        'Bearer',
        'ApiKey k',
        'Basic YTpi',
        'websocket',
        'bytes=0-1',
        '',
      ),
      fuzzString.filter((s) => !/[\r\n]/.test(s) && s.length < 4000),
    );
    const headersArb = fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 6 });
    let n = 0;
    await check(h, SEED + 11, 300, fc.tuple(headersArb, fc.boolean()), async ([pairs, stream]) => {
      const framing =
        /^(content-length|transfer-encoding|expect|connection|host|idempotency-key|content-type|last-event-id)$/i;
      const extra = pairs.filter(([k]) => !framing.test(k)).map(([k, v]) => [k, utf8Bytes(v)] as const);
      const what = `${stream ? 'stream' : 'publish'} with ${JSON.stringify(extra).slice(0, 400)}`;
      const ctl = extra.some(([, v]) => HEADER_CTL.test(v));
      if (stream) {
        const r = await streamRaw('/v1/stream?topic=fuzz.hdr', false, extra);
        const o = outcome(fromRaw(r), what);
        if (ctl) assert.equal(o.kind, 'parser', what);
        if (o.kind === 'ok') {
          const { events } = streamOpening(r, what);
          assert.deepEqual(events, [], what);
        }
      } else {
        const body = json({ topic: 'fuzz.hdr', data: `h${++n}` });
        const r = await rawExchange(
          h.gw.url,
          rawRequestBytes({
            method: 'POST',
            target: '/v1/publish',
            headers: [
              ['Host', '127.0.0.1'],
              ['Connection', 'close'],
              ['Content-Type', 'application/json'],
              ...extra,
            ],
            body,
          }),
        );
        const o = outcome(fromRaw(r), what);
        if (ctl) assert.equal(o.kind, 'parser', what);
        if (o.kind === 'ok') await accepted(h, { body, what }, JSON.parse(r.body.toString('utf8')));
      }
    });
  });

  it('canary - a stream on another topic saw exactly its numbered events, and the gateway is healthy', async (t) => {
    await finishHarness(h);
    t.diagnostic(`${h.cases} hostile cases; answers: ${[...tally].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  });
});

describe('hostile input: publish bodies and limits', () => {
  let h: Harness;
  const limits = { maxBodyBytes: 320 * 1024, maxMessageBytes: 8 * 1024, maxBatch: 10 };
  before(async () => {
    h = await startHarness(limits, 25);
  });
  after(() => h.gw.close());

  it(`body text - invalid JSON and truncations are refused as HERALD_BODY_INVALID (seed ${SEED + 21})`, async () => {
    const valid = JSON.stringify({ topic: 'body.t', data: 'x', event: 'e' });
    const textArb = fc.oneof(
      fc.integer({ min: 0, max: valid.length }).map((i) => valid.slice(0, i)),
      fc.string({
        unit: fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '\\', 'u', '0', 'e', '-', ' ', 'n', 't'),
      }),
      fuzzString.filter((s) => s.length < 5000),
      fc.constantFrom(
        '',
        ' ',
        'null',
        'true',
        '0',
        '""',
        '[]',
        '{}',
        '{"topic":"body.t","data":"x",}',
        "{'topic':'body.t','data':'x'}",
        '{"topic":"body.t","data":"x"}garbage',
        '{"topic":"body.t","data":"x"}{"topic":"body.t","data":"y"}',
        '{"topic":"body.t","data":NaN}',
        '{"topic":"body.t","data":Infinity}',
        '{"topic":"body.t","data":1e999}',
        '{"topic":"body.t","data":-0}',
        '{"topic":"body.t","data":"\\ud800"}',
        '{"topic":"body.t","data":"\\u0000"}',
        '{"topic":"body.t","data":"a\\r\\nb\\rc\\nd"}',
        '{"topic":"body.t","topic":"body.u","data":"dup keys: last wins"}',
        '{"__proto__":{"topic":"body.t"},"data":"x"}',
        '{"topic":"body.t","data":{"__proto__":{"polluted":1}}}',
        '{"topic":"body.t","data":"x","constructor":{"prototype":{"p":1}}}',
        '\ufeff{"topic":"body.t","data":"bom"}',
        '/*c*/{"topic":"body.t","data":"x"}',
      ),
    );
    await check(h, SEED + 21, 400, textArb, async (text) => {
      await publishChecked(h, {
        body: Buffer.from(text, 'utf8'),
        what: `body ${JSON.stringify(text).slice(0, 300)}`,
      });
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');
    });
  });

  it(`body shape - wrong shapes, types and batch sizes are refused with the field's code (seed ${SEED + 22})`, async () => {
    const value = fc.oneof(
      { weight: 2, arbitrary: jsonish },
      { weight: 2, arbitrary: validTopicArb },
      { weight: 1, arbitrary: fc.constantFrom('body.s', 'body.*', 'e', 'k') },
    );
    const message = fc.dictionary(
      fc.constantFrom('topic', 'data', 'event', 'key', 'extra', 'Topic', 'messages'),
      value,
      {
        maxKeys: 5,
      },
    );
    const wellFormed = fc.record(
      {
        topic: fc.constantFrom('body.s', 'body.s.t'),
        data: fc.oneof(fc.string({ maxLength: 20 }), fc.jsonValue({ maxDepth: 2 })),
        event: fc.constantFrom('e', 'x.y', 'herald.no'),
        key: fc.stringMatching(/^[\x21-\x7e]{1,10}$/),
      },
      { requiredKeys: ['topic', 'data'] },
    );
    const anyMessage = fc.oneof(
      { weight: 4, arbitrary: wellFormed },
      { weight: 2, arbitrary: message },
      { weight: 1, arbitrary: jsonish },
    );
    const bodyArb = fc.oneof(
      anyMessage,
      fc.record({ messages: fc.array(anyMessage, { maxLength: 13 }) }),
      fc.record({ messages: fc.array(wellFormed, { minLength: 1, maxLength: 12 }) }),
      fc.record({ messages: fc.oneof(jsonish, fc.array(wellFormed, { maxLength: 2 })), extra: jsonish }),
    );
    await check(h, SEED + 22, 600, bodyArb, async (body) => {
      await publishChecked(h, { body: json(body), what: `body ${JSON.stringify(body).slice(0, 300)}` });
    });
  });

  it(`body bytes - invalid UTF-8 is refused, never replaced (seed ${SEED + 23})`, async () => {
    const invalid = [
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xff],
      [0xfe, 0xff],
      [0xf4, 0x90, 0x80, 0x80],
      [0x80],
      [0xf0, 0x9f, 0x98],
    ];
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
      fc.constantFrom(...invalid).map((b) => Buffer.from(b)),
      fc
        .array(
          fc.oneof(
            fc.constantFrom(...invalid),
            fc.array(fc.integer({ min: 0x20, max: 0x7e }), { maxLength: 3 }),
          ),
          {
            maxLength: 6,
          },
        )
        .map((parts) => Buffer.from(parts.flat())),
    );
    await check(
      h,
      SEED + 23,
      300,
      fc.tuple(bytesArb, fc.constantFrom('data', 'topic', 'event', 'whole')),
      async ([bytes, where]) => {
        const body =
          where === 'whole'
            ? bytes
            : Buffer.concat([
                Buffer.from(where === 'topic' ? '{"data":"x","topic":"' : `{"topic":"body.b","${where}":"`),
                bytes,
                Buffer.from(where === 'data' ? '"}' : '","data":"x"}'),
              ]);
        // A JSON string holds only escaped control characters; the oracle decides on the same bytes.
        await publishChecked(h, { body, what: `body bytes ${body.toString('hex').slice(0, 300)}` });
      },
    );
  });

  it('deep nesting - 100,000 levels anywhere in a body is a clear 400, not a stack overflow', async () => {
    const deepArray = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const deepObject = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const cases: Array<[string, string, Verdict]> = [
      ['array body', deepArray(100_000), 'HERALD_BODY_INVALID'],
      ['unclosed', '['.repeat(150_000), 'HERALD_BODY_INVALID'],
      ['data array', `{"topic":"deep.a","data":${deepArray(100_000)}}`, 'HERALD_DATA_INVALID'],
      ['data object', `{"topic":"deep.a","data":${deepObject(50_000)}}`, 'HERALD_DATA_INVALID'],
      ['topic', `{"topic":${deepArray(100_000)},"data":"x"}`, 'HERALD_TOPIC_INVALID'],
      ['event', `{"topic":"deep.a","data":"x","event":${deepArray(100_000)}}`, 'HERALD_EVENT_INVALID'],
      ['key', `{"topic":"deep.a","data":"x","key":${deepArray(100_000)}}`, 'HERALD_IDEMPOTENCY_KEY_INVALID'],
      ['unknown field', `{"topic":"deep.a","data":"x","z":${deepArray(100_000)}}`, 'HERALD_BODY_INVALID'],
      ['messages', `{"messages":${deepArray(100_000)}}`, 'HERALD_BODY_INVALID'],
      ['message', `{"messages":[${deepArray(100_000)}]}`, 'HERALD_BODY_INVALID'],
      ['batch data', `{"messages":[{"topic":"deep.a","data":${deepArray(100_000)}}]}`, 'HERALD_DATA_INVALID'],
      // Nesting the limits allow to re-encode is data like any other.
      ['data 1,000 deep', `{"topic":"deep.a","data":${deepArray(1000)}}`, 'ok'],
    ];
    await table(h, cases, async ([name, text, verdict]) => {
      await publishChecked(h, { body: Buffer.from(text), what: `deep ${name}` }, verdict);
    });
  });

  it('size limits - bodies, messages and batches at and over each limit, by declared and actual length', async () => {
    const { maxBodyBytes, maxMessageBytes, maxBatch } = h.limits;
    const padTo = (bytes: number, topic: string) => {
      const shell = Buffer.byteLength(JSON.stringify({ topic, data: '' }));
      return { topic, data: 'p'.repeat(bytes - shell) };
    };
    const msg = (data: string) => ({ topic: 'size.m', data });
    const cases: Array<[string, Buffer, Verdict, Array<readonly [string, string]>?]> = [
      [
        'body at the limit (data over the message limit)',
        json(padTo(maxBodyBytes, 'size.b')),
        'HERALD_MESSAGE_TOO_LARGE',
      ],
      ['body one over', json(padTo(maxBodyBytes + 1, 'size.b')), 'HERALD_BODY_TOO_LARGE'],
      ['body 4x over', json(padTo(4 * maxBodyBytes, 'size.b')), 'HERALD_BODY_TOO_LARGE'],
      ['message at the limit', json(msg('m'.repeat(maxMessageBytes))), 'ok'],
      ['message one over', json(msg('m'.repeat(maxMessageBytes + 1))), 'HERALD_MESSAGE_TOO_LARGE'],
      ['message at the limit in 2-byte chars', json(msg('é'.repeat(maxMessageBytes / 2))), 'ok'],
      [
        'message over in 4-byte chars',
        json(msg('😀'.repeat(maxMessageBytes / 4 + 1))),
        'HERALD_MESSAGE_TOO_LARGE',
      ],
      ['message of lines at the limit', json(msg('\n'.repeat(maxMessageBytes))), 'ok'],
      [
        'JSON data over as text',
        json({ topic: 'size.m', data: Array(maxMessageBytes).fill(0) }),
        'HERALD_MESSAGE_TOO_LARGE',
      ],
      [
        'batch at the limit',
        json({ messages: Array.from({ length: maxBatch }, (_, i) => msg(`b${i}`)) }),
        'ok',
      ],
      [
        'batch one over',
        json({ messages: Array.from({ length: maxBatch + 1 }, (_, i) => msg(`b${i}`)) }),
        'HERALD_BATCH_TOO_LARGE',
      ],
      [
        'batch of 100,000 empties',
        Buffer.from(`{"messages":[${Array(100_000).fill('{}').join(',')}]}`),
        'HERALD_BATCH_TOO_LARGE',
      ],
      [
        'batch of 60,000 nulls',
        Buffer.from(`{"messages":[${Array(60_000).fill('null').join(',')}]}`),
        'HERALD_BATCH_TOO_LARGE',
      ],
      ['array body of 100,000', Buffer.from(`[${Array(100_000).fill(0).join(',')}]`), 'HERALD_BODY_INVALID'],
      ['empty batch', json({ messages: [] }), 'HERALD_BATCH_EMPTY'],
      [
        'batch with one big message',
        json({ messages: [msg('x'), msg('y'.repeat(maxMessageBytes + 1))] }),
        'HERALD_MESSAGE_TOO_LARGE',
      ],
      [
        'declared over the limit, little sent',
        Buffer.from('{}'),
        'HERALD_BODY_TOO_LARGE',
        [['Content-Length', String(maxBodyBytes + 1)]],
      ],
      ['declared 2^53', Buffer.from('{}'), 'HERALD_BODY_TOO_LARGE', [['Content-Length', '9007199254740993']]],
    ];
    await table(h, cases, async ([name, body, verdict, headers]) => {
      await publishChecked(h, { body, what: `limit: ${name}`, ...(headers ? { headers } : {}) }, verdict);
    });
    // The same over fetch, whose client keeps sending while the gateway refuses.
    for (const size of [maxBodyBytes + 1, 3 * maxBodyBytes]) {
      const r = await h.gw.publish(JSON.stringify(padTo(size, 'size.f')));
      expectVerdict(fromFetch(r), 'HERALD_BODY_TOO_LARGE', `fetch body of ${size} bytes`);
      h.canary.tick();
    }
  });

  it('canary - a stream on another topic saw exactly its numbered events, and the gateway is healthy', async (t) => {
    await finishHarness(h);
    t.diagnostic(`${h.cases} hostile cases; answers: ${[...tally].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  });
});

describe('hostile input: request heads and HTTP framing', () => {
  let h: Harness;
  const maxHeaderBytes = 256 * 1024;
  before(async () => {
    // Head timeout at its default: a malformed request must be answered long before it.
    h = await startHarness({ maxHeaderBytes, maxBodyBytes: 64 * 1024 }, 15);
  });
  after(() => h.gw.close());

  /** Answered within 3 s, well inside the 10 s head deadline, and clearly. */
  const exchange = async (bytes: Buffer | string | Array<Buffer | string>, what: string, noBody = false) => {
    const r = await rawExchange(h.gw.url, bytes, { timeoutMs: 3000, noBody });
    assert.ok(
      !r.timedOut,
      `${what}: no answer within 3 s; got ${JSON.stringify(r.raw.toString('latin1').slice(0, 300))}`,
    );
    return r;
  };

  it(`request line - fuzzed methods, targets and versions get a clear answer at once (seed ${SEED + 31})`, async () => {
    // Weighted towards well-formed parts, so that most lines reach the gateway's own routing.
    const method = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('GET', 'GET', 'POST', 'HEAD', 'OPTIONS', 'PUT', 'DELETE') },
      fc.constantFrom(
        'GET',
        'POST',
        'HEAD',
        'OPTIONS',
        'PUT',
        'DELETE',
        'PATCH',
        'TRACE',
        'CONNECT',
        'get',
        'G ET',
        'GET\t',
        'PRI',
        'M-SEARCH',
        '',
      ),
      fc.stringMatching(/^[A-Z]{1,10}$/),
      fc.string({ unit: 'binary-ascii', maxLength: 8 }),
    );
    const target = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constantFrom('/healthz', '/readyz', '/v1/stream?topic=line.a', '/v1/publish'),
      },
      fc.constantFrom(
        '/healthz',
        '/readyz',
        '/v1/stream?topic=line.a',
        '/v1/publish',
        '/',
        '*',
        '',
        '//v1/stream?topic=a',
        '/v1/stream/?topic=a',
        '/v1/stream%3Ftopic=a',
        '/v1/%73tream?topic=a',
        '/../v1/stream?topic=a',
        '/V1/STREAM?topic=a',
        '/v1/stream;x?topic=a',
        'http://127.0.0.1/healthz',
        'http://evil/v1/stream?topic=a',
        '127.0.0.1:80',
        '/healthz#frag',
        '/healthz?',
        `/${'a'.repeat(100_000)}`,
      ),
      fc.stringMatching(/^\/[\x21-\x7e]{0,40}$/),
      fc.string({ unit: 'binary', maxLength: 30 }).map((s) => `/${utf8Bytes(s)}`),
      fc.string({ unit: nastyChar, maxLength: 10 }).map((s) => `/v1/stream?topic=${utf8Bytes(s)}`),
    );
    const version = fc.constantFrom(
      'HTTP/1.1',
      'HTTP/1.1',
      'HTTP/1.1',
      'HTTP/1.1',
      'HTTP/1.1',
      'HTTP/1.0',
      'HTTP/2.0',
      'HTTP/1.2',
      'HTTP/0.9',
      'http/1.1',
      'HTTP/11',
      'HTTP/1.1 x',
      '',
    );
    const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r');
    await check(h, SEED + 31, 500, fc.tuple(method, target, version, eol), async ([m, t, v, nl]) => {
      const line = v === '' ? `${m} ${t}` : `${m} ${t} ${v}`;
      const bytes = `${line}${nl}Host: 127.0.0.1${nl}Connection: close${nl}${nl}`;
      const what = `request ${JSON.stringify(bytes.slice(0, 300))}`;
      const r = await exchange(bytes, what, m === 'HEAD');
      assert.ok(r.status !== undefined, `${what}: closed without an answer`);
      const o = outcome(fromRaw(r, m === 'HEAD'), what);
      if (o.kind === 'ok' && r.headers.get('content-type')?.startsWith('text/event-stream')) {
        const { events } = streamOpening(r, what);
        assert.deepEqual(events, [], what);
      }
    });
  });

  it(`header block - fuzzed names, values, repeats, folding and counts get a clear answer at once (seed ${SEED + 32})`, async () => {
    const name = fc.oneof(
      fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/),
      fc.constantFrom(
        'Host',
        'Last-Event-ID',
        'Origin',
        'Authorization',
        'X-A',
        'x-a',
        'X A',
        'X:A',
        '',
        ' X',
        'X ',
        'Ä',
      ),
      fc.string({ unit: 'binary-ascii', maxLength: 6 }),
    );
    const value = fc.oneof(
      fc.string({ unit: nastyChar, maxLength: 12 }).map(utf8Bytes),
      fc.string({ unit: 'binary-ascii', maxLength: 12 }),
      fc.integer({ min: 1000, max: 60_000 }).map((n) => 'v'.repeat(n)),
      fc.constantFrom(
        '',
        ' ',
        '\t',
        'a\r\n b',
        'a\r\n\tb',
        'a\nb',
        'a\rb',
        'x\r\nLast-Event-ID: evil',
        'x\r\n\r\nGET /healthz HTTP/1.1',
      ),
    );
    const header = fc.tuple(name, value, fc.constantFrom(': ', ':', ' : ', ':\t'));
    const many = fc.integer({ min: 0, max: 3000 });
    const framing = /^(content-length|transfer-encoding|expect|connection|idempotency-key)$/i;
    let n = 0;
    await check(
      h,
      SEED + 32,
      400,
      fc.tuple(fc.array(header, { maxLength: 8 }), many, fc.boolean()),
      async ([headers, count, publish]) => {
        const data = `b${++n}`;
        const body = publish ? JSON.stringify({ topic: 'block.a', data }) : '';
        let head = publish
          ? `POST /v1/publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n`
          : 'GET /v1/stream?topic=block.a HTTP/1.1\r\n';
        head += 'Host: 127.0.0.1\r\nConnection: close\r\n';
        for (const [name, v, sep] of headers) if (!framing.test(name.trim())) head += `${name}${sep}${v}\r\n`;
        if (count > 2500) for (let i = 0; i < count; i++) head += `X-Many-${i}: ${i}\r\n`;
        const bytes = `${head}\r\n${body}`;
        const what = `head ${JSON.stringify(bytes.slice(0, 400))} (${bytes.length} bytes)`;
        const r = await exchange(bytes, what);
        const o = outcome(fromRaw(r), what);
        if (o.kind === 'ok' && !publish) {
          const { events } = streamOpening(r, what);
          for (const e of events) assert.equal(e.event, 'herald.reset', what);
        }
        if (o.kind === 'ok' && publish)
          await accepted(h, { body: Buffer.from(body), what }, JSON.parse(r.body.toString('utf8')));
      },
    );
  });

  it('framing - smuggling shapes, broken chunking, Expect and pipelining get a clear answer and log no error', async () => {
    // Every publish carries the case's idempotency key, so a retry afterwards tells whether it was stored.
    let key = '';
    const pub = (headers: string, body: string, close = true) =>
      'POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Idempotency-Key: ${key}\r\n${close ? 'Connection: close\r\n' : ''}${headers}\r\n${body}`;
    const chunked = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`;
    const stream = 'GET /v1/stream?topic=frame.a HTTP/1.1\r\nHost: x\r\n';
    type Expect = 'ok' | 'refused' | 'any';
    /** Each case gets a valid body of its own (`ok`), so what it stored can be told apart. */
    const cases: Array<[string, (ok: string) => string | string[], Expect]> = [
      ['CL and TE', () => pub('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), 'refused'],
      ['two CLs', () => pub('Content-Length: 2\r\nContent-Length: 3\r\n', '{}'), 'refused'],
      ['negative CL', () => pub('Content-Length: -1\r\n', '{}'), 'refused'],
      ['CL not a number', () => pub('Content-Length: abc\r\n', '{}'), 'refused'],
      ['CL with a sign', () => pub('Content-Length: +2\r\n', '{}'), 'refused'],
      ['CL 1e3', () => pub('Content-Length: 1e3\r\n', '{}'), 'refused'],
      ['TE gzip', () => pub('Transfer-Encoding: gzip\r\n', '{}'), 'refused'],
      ['TE chunked, chunked', (ok) => pub('Transfer-Encoding: chunked, chunked\r\n', chunked(ok)), 'any'],
      [
        'TE twice',
        (ok) => pub('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', chunked(ok)),
        'any',
      ],
      [
        'bad chunk size',
        (ok) => pub('Transfer-Encoding: chunked\r\n', `zz\r\n${ok}\r\n0\r\n\r\n`),
        'refused',
      ],
      [
        'chunk size overflow',
        () => pub('Transfer-Encoding: chunked\r\n', 'ffffffffffffffffff\r\nx\r\n'),
        'refused',
      ],
      [
        'chunk without CRLF',
        (ok) => pub('Transfer-Encoding: chunked\r\n', `${ok.length.toString(16)}\r\n${ok}0\r\n\r\n`),
        'refused',
      ],
      [
        'chunk extension',
        (ok) => pub('Transfer-Encoding: chunked\r\n', `${ok.length.toString(16)};a=b\r\n${ok}\r\n0\r\n\r\n`),
        'ok',
      ],
      [
        'trailer',
        (ok) =>
          pub('Transfer-Encoding: chunked\r\n', `${ok.length.toString(16)}\r\n${ok}\r\n0\r\nX-T: 1\r\n\r\n`),
        'ok',
      ],
      [
        'chunked one byte a write',
        (ok) => [pub('Transfer-Encoding: chunked\r\n', ''), ...chunked(ok).split('')],
        'ok',
      ],
      [
        'chunked over the body limit',
        () =>
          pub(
            'Transfer-Encoding: chunked\r\n',
            `${(70_000).toString(16)}\r\n${'x'.repeat(70_000)}\r\n0\r\n\r\n`,
          ),
        'refused',
      ],
      [
        'Expect 100-continue',
        (ok) => pub(`Expect: 100-continue\r\nContent-Length: ${ok.length}\r\n`, ok),
        'ok',
      ],
      ['Expect junk', () => pub('Expect: nope\r\nContent-Length: 2\r\n', '{}'), 'refused'],
      [
        'HTTP/1.0 body to close',
        (ok) => `POST /v1/publish HTTP/1.0\r\nContent-Type: application/json\r\n\r\n${ok}`,
        'refused',
      ],
      ['no Host', () => 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 'refused'],
      ['two Hosts', () => 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n', 'any'],
      [
        'pipelined: publish, then a stream',
        (ok) => pub(`Content-Length: ${ok.length}\r\n`, `${ok}${stream}\r\n`, false),
        'ok',
      ],
      [
        'pipelined: a stream, then a publish',
        (ok) => `${stream}\r\n${pub(`Content-Length: ${ok.length}\r\n`, ok)}`,
        'ok',
      ],
      // Served, though node:http refuses the bytes after it (see the report on clientError).
      [
        'bytes after Connection: close',
        (ok) => pub(`Content-Length: ${ok.length}\r\n`, `${ok}GET / HTTP/1.1\r\n\r\n`),
        'any',
      ],
      ['a stream with a body', () => `${stream}Content-Length: 3\r\n\r\nabc`, 'ok'],
      ['a stream with chunked', () => `${stream}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 'ok'],
      [
        'a stream asking to upgrade',
        () => `${stream}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
        'ok',
      ],
      ['a split head', () => ['GET /v1/str', 'eam?topic=frame.a HT', 'TP/1.1\r\nHost: x\r', '\n\r\n'], 'ok'],
      // Heads that never end in CRLF CRLF: node:http answers them at once, and so must the gateway.
      ['bare LF head', () => 'GET /v1/stream?topic=frame.a HTTP/1.1\nHost: x\n\n', 'refused'],
      ['bare LF after CRLF', () => 'GET /healthz HTTP/1.1\r\nHost: x\nConnection: close\n\n', 'refused'],
      ['bare CR head', () => 'GET /healthz HTTP/1.1\rHost: x\r\r', 'refused'],
      ['NUL in an unfinished head', () => 'GET /v1/stream?topic=a HTTP/1.1\r\nX: \0', 'refused'],
      ['TLS ClientHello', () => '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'refused'],
      ['HTTP/2 preface', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'refused'],
      ['NULs', () => '\0'.repeat(64), 'refused'],
      [
        'a head over the limit',
        () => `GET /v1/stream?topic=a HTTP/1.1\r\nX: ${'v'.repeat(maxHeaderBytes)}\r\n\r\n`,
        'refused',
      ],
    ];
    let n = 0;
    await table(h, cases, async ([name, bytes, expect]) => {
      key = `frame-${++n}`;
      const ok = JSON.stringify({ topic: 'frame.a', data: name });
      const sent = bytes(ok);
      const r = await exchange(sent, name);
      const o = outcome(fromRaw(r), name);
      if (expect === 'ok') assert.equal(o.kind, 'ok', name);
      if (expect === 'refused') assert.notEqual(o.kind, 'ok', name);
      if (o.kind === 'ok' && r.headers.get('content-type') === 'text/event-stream; charset=utf-8') {
        assert.deepEqual(streamOpening(r, name).events, [], name);
      }
      if (!String(sent).includes('POST /v1/publish')) return;
      if (o.kind === 'ok' && r.headers.get('content-type') === 'application/json') {
        await accepted(
          h,
          { body: Buffer.from(ok), headerKey: key, what: name },
          JSON.parse(r.body.toString('utf8')),
        );
        return;
      }
      // Not answered 200: the retry shows whether it was stored all the same (duplicate), once.
      const retry = await h.gw.publish(ok, { 'Idempotency-Key': key });
      assert.equal(retry.status, 200, name);
      if (expect === 'refused')
        assert.equal(retry.body.duplicate, false, `${name}: a refused publish stored nothing`);
      h.keys.set(key, retry.body.id);
      await h.sink.receives(retry.body.id, { event: undefined, data: name }, `${name}: stored once`);
    });
  });

  it('10,000 topics and very long query strings - refused by count or size, or served deduplicated', async () => {
    const many = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join('&');
    const cases: Array<[string, string, Verdict | 'parser', boolean?]> = [
      ['10,000 distinct topics', many(10_000, (i) => `topic=t${i}`), 'HERALD_TOO_MANY_TOPICS'],
      [
        '10,000 distinct topics via node:http',
        many(10_000, (i) => `topic=t${i}`),
        'HERALD_TOO_MANY_TOPICS',
        true,
      ],
      ['10,000 invalid topics', many(10_000, (i) => `topic=%00bad${i}`), 'HERALD_TOO_MANY_TOPICS'],
      ['10,000 copies of one topic', many(10_000, () => 'topic=same.one'), 'ok'],
      ['10,000 copies of one topic via node:http', many(10_000, () => 'topic=same.one'), 'ok', true],
      ['10,000 empty topics', many(10_000, () => 'topic='), 'HERALD_TOPIC_INVALID'],
      ['10,000 lastEventIds', `topic=a&${many(10_000, () => 'lastEventId=x')}`, 'HERALD_QUERY_INVALID'],
      ['10,000 unknown parameters', `topic=a&${many(10_000, (i) => `p${i}=1`)}`, 'HERALD_QUERY_INVALID'],
      ['32 topics', many(32, (i) => `topic=t${i}`), 'ok'],
      ['33 topics', many(33, (i) => `topic=t${i}`), 'HERALD_TOO_MANY_TOPICS'],
      ['10,000 topics over the head limit', many(10_000, (i) => `topic=${'t'.repeat(30)}${i}`), 'parser'],
      ['a 200 KB topic', `topic=${'a'.repeat(200_000)}`, 'HERALD_TOPIC_INVALID'],
      ['a 200 KB encoded NUL topic', `topic=${'%00'.repeat(60_000)}`, 'HERALD_TOPIC_INVALID'],
      ['200 KB of &', '&'.repeat(200_000), 'HERALD_TOPIC_MISSING'],
      ['200 KB of %', '%'.repeat(200_000), 'HERALD_QUERY_INVALID'],
      ['a 200 KB cursor', `topic=a&lastEventId=${'x'.repeat(200_000)}`, 'ok'],
      ['a 200 KB release', `topic=a&release=${'r'.repeat(200_000)}`, 'ok'],
      ['a 200 KB unknown name', `topic=a&${'n'.repeat(200_000)}=1`, 'HERALD_QUERY_INVALID'],
    ];
    await table(h, cases, async ([name, query, verdict, viaNodeHttp]) => {
      const bytes = rawRequestBytes({
        target: `/v1/stream?${query}`,
        headers: [
          ['Host', '127.0.0.1'],
          ...(viaNodeHttp
            ? ([
                ['X-Fuzz', '1'],
                ['X-Fuzz', '2'],
              ] as const)
            : []),
        ],
      });
      const r = await exchange(bytes, name);
      expectVerdict(fromRaw(r), verdict, name);
      if (verdict === 'ok') {
        const { events } = streamOpening(r, name);
        for (const e of events) {
          assert.equal(e.event, 'herald.reset', name);
          assert.deepEqual(
            Object.entries(JSON.parse(e.data)).slice(0, 2),
            [
              ['reason', 'malformed'],
              ['from', null],
            ],
            name,
          );
        }
        assert.equal(r.headers.get('x-release-version'), 'dev', 'the release parameter is not echoed');
      }
    });
    // A very long path and a long publish query are answered too.
    expectVerdict(
      fromRaw(await exchange(rawRequestBytes({ target: `/${'p'.repeat(200_000)}` }), 'long path')),
      'HERALD_NOT_FOUND',
      'long path',
    );
    h.canary.tick();
  });

  it('canary - a stream on another topic saw exactly its numbered events, and the gateway is healthy', async (t) => {
    await finishHarness(h);
    t.diagnostic(`${h.cases} hostile cases; answers: ${[...tally].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Bodies that come slowly, are left unread, or are far too large.

/** A client sending a head at once and then its body a byte every 20 ms, reading as it goes. */
interface Trickler {
  readonly socket: Socket;
  /** Everything received. */
  received: Buffer;
  /** Body bytes sent so far. */
  sent: number;
  /** The gateway closed its side (FIN). */
  ended: boolean;
  stop(): void;
}

function trickler(url: string, head: string, body: string): Trickler {
  const { hostname, port } = new URL(url);
  // The client keeps its side open, and sending, after the gateway closes its own.
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true, noDelay: true });
  const t: Trickler = { socket, received: Buffer.alloc(0), sent: 0, ended: false, stop: () => {} };
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    t.received = Buffer.concat([t.received, chunk]);
  });
  socket.on('end', () => {
    t.ended = true;
  });
  socket.write(head);
  const timer = setInterval(() => {
    if (!socket.writable) return clearInterval(timer);
    socket.write(body[t.sent++ % body.length]!);
  }, 20);
  t.stop = () => clearInterval(timer);
  socket.once('close', t.stop);
  return t;
}

/** The first whole answer a trickler received (after any 100 Continue), or undefined. */
function answerOf(t: Trickler): Answer | undefined {
  let text = t.received.toString('latin1');
  while (/^HTTP\/1\.1 1\d\d /.test(text) && text.includes('\r\n\r\n'))
    text = text.slice(text.indexOf('\r\n\r\n') + 4);
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const head = text.slice(0, end);
  const header = (name: string) => new RegExp(`\r\n${name}: ([^\r]*)`, 'i').exec(head)?.[1] ?? '';
  const length = Number(header('content-length'));
  if (text.length < end + 4 + length) return undefined;
  return {
    status: Number(head.slice(9, 12)),
    contentType: header('content-type'),
    connection: header('connection'),
    text: Buffer.from(text.slice(end + 4, end + 4 + length), 'latin1').toString('utf8'),
  };
}

describe('hostile input: slow, unread and oversized bodies', () => {
  let h: Harness;
  const clock = new FakeClock();
  const HEAD_DEADLINE_MS = 300;
  const REQUEST_DEADLINE_MS = 600;
  const maxBodyBytes = 64 * 1024;
  before(async () => {
    h = await startHarness(
      { headersTimeoutMs: HEAD_DEADLINE_MS, requestTimeoutMs: REQUEST_DEADLINE_MS, maxBodyBytes },
      2,
      clock,
    );
  });
  after(() => h.gw.close());

  it('trickled and unread bodies - a body still arriving at the request deadline is refused 408 and stores nothing; any answer given before the body is in closes the connection, gracefully and within a bound', async () => {
    const publish = (headers: string, method = 'POST', path = '/v1/publish') =>
      `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`;
    const json = 'Content-Type: application/json\r\n';
    const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`;
    /** [case, head, body (its key makes a retry tell whether it was stored), the refusal] */
    const cases: Array<[string, (body: string) => string, (body: string) => string, Verdict]> = [
      [
        'a publish body',
        (b) => publish(`${json}Content-Length: ${b.length}\r\n`),
        (b) => b,
        'HERALD_REQUEST_TIMEOUT',
      ],
      [
        'a chunked publish body',
        () => publish(`${json}Transfer-Encoding: chunked\r\n`),
        (b) => chunk(b),
        'HERALD_REQUEST_TIMEOUT',
      ],
      [
        'a publish body after 100-continue',
        (b) => publish(`${json}Expect: 100-continue\r\nContent-Length: ${b.length}\r\n`),
        (b) => b,
        'HERALD_REQUEST_TIMEOUT',
      ],
      [
        'a publish of the wrong type',
        (b) => publish(`Content-Type: text/plain\r\nContent-Length: ${b.length}\r\n`),
        (b) => b,
        'HERALD_CONTENT_TYPE',
      ],
      [
        'an announced body over the limit',
        () => publish(`${json}Content-Length: ${maxBodyBytes + 1}\r\n`),
        (b) => b,
        'HERALD_BODY_TOO_LARGE',
      ],
      [
        'a body to an unknown path',
        (b) => publish(`Content-Length: ${b.length}\r\n`, 'POST', '/nope'),
        (b) => b,
        'HERALD_NOT_FOUND',
      ],
      [
        'a body with the wrong method',
        (b) => publish(`Content-Length: ${b.length}\r\n`, 'PUT'),
        (b) => b,
        'HERALD_METHOD_NOT_ALLOWED',
      ],
      [
        'a body to /healthz',
        (b) => publish(`Content-Length: ${b.length}\r\n`, 'GET', '/healthz'),
        (b) => b,
        'ok',
      ],
    ];
    const open: Trickler[] = [];
    let n = 0;
    await table(h, cases, async ([name, head, body, verdict]) => {
      const key = `slow-${++n}`;
      const data = JSON.stringify({ topic: 'slow.a', data: name, key });
      const t = trickler(h.gw.url, head(data), body(data));
      open.push(t);
      // Refusals other than the deadline come at once; the deadline comes at the deadline.
      await until(() => answerOf(t) !== undefined, `${name}: an answer`, REQUEST_DEADLINE_MS + 3000);
      const a = answerOf(t)!;
      expectVerdict(a, verdict, name);
      assert.equal(a.connection.toLowerCase(), 'close', `${name}: the answer closes the connection`);
      await until(() => t.ended, `${name}: the gateway's FIN after the answer`);
      assert.ok(!t.socket.closed, `${name}: a graceful close, not a reset, while the client sends`);
      if (verdict !== 'HERALD_REQUEST_TIMEOUT') return;
      // The client completes its body after the refusal: still nothing is stored.
      t.stop();
      t.socket.write(body(data).slice(t.sent));
      const retry = await h.gw.publish(data);
      assert.equal(retry.status, 200, name);
      assert.equal(retry.body.duplicate, false, `${name}: the refused publish stored nothing`);
      h.keys.set(key, retry.body.id);
      await h.sink.receives(retry.body.id, { event: undefined, data: name }, `${name}: stored once`);
    });
    // Whoever keeps sending is cut off at the close bound; what it sends then is answered with a
    // reset, which a client sees on its next send.
    clock.tick(DISCARD_MAX_MS);
    await until(
      () =>
        open.every((t) => {
          if (!t.socket.closed) t.socket.write('x');
          return t.socket.closed;
        }),
      () => `every connection to be closed (${open.filter((t) => !t.socket.closed).length} open)`,
    );
  });

  it('oversized bodies - a client that sends its whole body before reading gets the whole 413, every time, however the body is framed', async () => {
    const head = (framing: string) =>
      `POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${framing}\r\n\r\n`;
    const pieces = (size: number) =>
      Array.from({ length: Math.ceil(size / 65_536) }, (_, i) =>
        Buffer.alloc(Math.min(65_536, size - i * 65_536), 'x'),
      );
    const cases: Array<[string, Array<Buffer | string>]> = [];
    // Past the limit, past the socket buffers, and near the bound of what is discarded.
    for (const size of [maxBodyBytes + 1, 8 * 1024 * 1024, 12 * 1024 * 1024]) {
      for (let i = 1; i <= 3; i++) {
        cases.push([`Content-Length ${size}, try ${i}`, [head(`Content-Length: ${size}`), ...pieces(size)]]);
        cases.push([
          `chunked ${size}, try ${i}`,
          [head('Transfer-Encoding: chunked'), `${size.toString(16)}\r\n`, ...pieces(size), '\r\n0\r\n\r\n'],
        ]);
      }
    }
    await table(h, cases, async ([name, parts]) => {
      const r = await rawExchange(h.gw.url, parts, { readAfterSent: true, timeoutMs: 30_000 });
      assert.equal(r.error, undefined, `${name}: the client sent everything and read without an error`);
      // Closing or not depends on whether the whole body had arrived when it was refused.
      expectVerdict(fromRaw(r), 'HERALD_BODY_TOO_LARGE', name);
    });
  });

  it('canary - a stream on another topic saw exactly its numbered events, and the gateway is healthy', async (t) => {
    await finishHarness(h);
    t.diagnostic(`${h.cases} hostile cases; answers: ${[...tally].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  });
});
