import assert from 'node:assert/strict';
import { after, before, type TestContext, test } from 'node:test';
import { createGateway, defaultConfig, type Gateway } from '@herald/gateway';
import { launchChromium, postJson } from '@herald/testkit';
import type { Browser, Page } from 'playwright-core';

/**
 * A real Chromium's own `EventSource` against the gateway: no client library, only what the
 * browser does by itself with `retry:` and `Last-Event-ID`.
 */

interface Received {
  type: string;
  id: string;
  data: string;
}
/** What the page keeps on `window` (the tsconfig has no DOM library, so it is spelt out here). */
interface Probe {
  got: Received[];
  opens: number;
  errors: number;
  close(): void;
}
interface BrowserGlobals {
  probe: Probe;
  EventSource: new (
    url: string,
  ) => {
    onopen: () => void;
    onerror: () => void;
    addEventListener(
      type: string,
      listener: (e: { type: string; lastEventId: string; data: string }) => void,
    ): void;
    close(): void;
  };
}

const config = { host: '127.0.0.1', demo: true, retryMs: 200, drainMs: 0 } as const;
let gw: Gateway;
let port: number;
let browser: Browser;

before(async () => {
  gw = createGateway(defaultConfig({ auth: 'none', metricsPort: 0, ...config, port: 0 }));
  port = await gw.listen();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await gw?.shutdown();
});

async function publish(topic: string, data: string): Promise<string> {
  const r = await postJson(`http://127.0.0.1:${port}/v1/publish`, { topic, data });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.id;
}

async function publishRange(topic: string, from: number, to: number): Promise<void> {
  // One after the other: the order of acknowledgements is the order of the stream.
  for (let i = from; i <= to; i++) await publish(topic, String(i));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

/** `<epoch>-<seq>`: the sequence, for ordering. */
const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('-') + 1));
const epochOf = (id: string) => id.slice(0, id.lastIndexOf('-'));

/**
 * A blank page on the gateway's origin with a bare EventSource on `path`, recording every
 * `message` and `herald.reset` into `window.probe`. Resolves once it is open: the stream is
 * registered before its response head reaches the browser, so nothing published from then on
 * can be missed. The page itself is served by the browser (no request reaches the gateway), so
 * the EventSource is the page's only connection to it.
 */
async function openProbe(t: TestContext, path: string): Promise<Page> {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const url = `http://127.0.0.1:${port}/probe.html`;
  await page.route(url, (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>probe</title>' }),
  );
  await page.goto(url);
  await page.evaluate((url) => {
    const w = globalThis as unknown as BrowserGlobals;
    const probe: Probe = { got: [], opens: 0, errors: 0, close: () => es.close() };
    const es = new w.EventSource(url);
    es.onopen = () => probe.opens++;
    es.onerror = () => probe.errors++;
    for (const type of ['message', 'herald.reset'])
      es.addEventListener(type, (e) => probe.got.push({ type: e.type, id: e.lastEventId, data: e.data }));
    w.probe = probe;
  }, path);
  await page.waitForFunction(() => (globalThis as unknown as BrowserGlobals).probe.opens === 1);
  return page;
}

const waitFor = (page: Page, what: 'got' | 'opens' | 'errors', atLeast: number) =>
  page.waitForFunction(
    ([w, n]) => {
      const p = (globalThis as unknown as BrowserGlobals).probe;
      return (w === 'got' ? p.got.length : p[w]) >= n;
    },
    [what, atLeast] as const,
  );

async function finish(page: Page): Promise<{ got: Received[]; opens: number; errors: number }> {
  return page.evaluate(() => {
    const p = (globalThis as unknown as BrowserGlobals).probe;
    p.close();
    return { got: p.got, opens: p.opens, errors: p.errors };
  });
}

test('browser - EventSource reconnects by itself after a server-side drop and receives exactly the missed events', async (t) => {
  const page = await openProbe(t, '/v1/stream?topic=browser.test');
  const N = 20;
  const M = 60;
  await publishRange('browser.test', 1, N);
  await waitFor(page, 'got', N);

  // Drop every connection, and publish at once: these events go out while the browser is away
  // (it waits `retry:` = 200 ms before it comes back with Last-Event-ID).
  gw.dropConnections();
  await publishRange('browser.test', N + 1, 40);
  await waitFor(page, 'errors', 1);
  await publishRange('browser.test', 41, 50);
  await waitFor(page, 'opens', 2);
  // And some live again on the resumed stream.
  await publishRange('browser.test', 51, M);
  await waitFor(page, 'got', M);

  const probe = await finish(page);
  assert.deepEqual(
    probe.got.map((e) => e.data),
    range(1, M),
    'every event exactly once, in order',
  );
  const seqs = probe.got.map((e) => seqOf(e.id));
  for (let i = 1; i < seqs.length; i++)
    assert.ok(seqs[i]! > seqs[i - 1]!, `ids increase: ${probe.got[i - 1]!.id} then ${probe.got[i]!.id}`);
  assert.equal(new Set(probe.got.map((e) => epochOf(e.id))).size, 1, 'one epoch');
  assert.ok(probe.opens >= 2, `reconnected (opens: ${probe.opens})`);
  assert.ok(probe.errors >= 1, `saw the drop (errors: ${probe.errors})`);
});

test('browser - an EventSource that saw no event yet still resumes after a drop, from the opening id line', async (t) => {
  await publish('browser.fresh', 'before the browser came');
  const page = await openProbe(t, '/v1/stream?topic=browser.fresh');
  gw.dropConnections();
  const away = await publish('browser.fresh', 'while away');
  await waitFor(page, 'opens', 2);
  const live = await publish('browser.fresh', 'live');
  await waitFor(page, 'got', 2);
  const probe = await finish(page);
  assert.deepEqual(probe.got, [
    { type: 'message', id: away, data: 'while away' },
    { type: 'message', id: live, data: 'live' },
  ]);
});

test('browser - after the gateway restarts on a new embedded broker, the EventSource comes back and gets herald.reset (epoch)', async (t) => {
  const page = await openProbe(t, '/v1/stream?topic=browser.restart');
  const before = await publish('browser.restart', 'from the first gateway');
  await waitFor(page, 'got', 1);

  // Same port, new process state: the embedded broker's history and epoch are gone.
  await gw.shutdown();
  gw = createGateway(defaultConfig({ auth: 'none', metricsPort: 0, ...config, port }));
  await gw.listen();
  await waitFor(page, 'opens', 2);
  await waitFor(page, 'got', 2);
  const live = await publish('browser.restart', 'from the second gateway');
  await waitFor(page, 'got', 3);

  const probe = await finish(page);
  const [first, reset, last] = probe.got;
  assert.deepEqual(first, { type: 'message', id: before, data: 'from the first gateway' });
  assert.equal(reset?.type, 'herald.reset');
  assert.deepEqual(JSON.parse(reset.data), { reason: 'epoch', from: before, oldest: null });
  assert.equal(epochOf(reset.id), epochOf(live), 'the reset moves the browser into the new epoch');
  assert.notEqual(epochOf(live), epochOf(before));
  assert.deepEqual(last, { type: 'message', id: live, data: 'from the second gateway' });
  assert.equal(probe.got.length, 3);
});
