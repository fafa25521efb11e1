import assert from 'node:assert/strict';
import { after, before, type TestContext, test } from 'node:test';
import { createGateway, defaultConfig, type Gateway } from '@herald/gateway';
import { launchChromium, postJson } from '@herald/testkit';
import type { Browser, Page } from 'playwright-core';

/**
 * The demo page (`HERALD_DEMO=1`, `make dev`) driven as a person would: type, click, read.
 *
 * The page keeps its resume position in sessionStorage under `herald.lastEventId` and passes it
 * as `?lastEventId=` when it connects (an EventSource's own reconnects send `Last-Event-ID`). The
 * reset tests plant a bogus position there before clicking Connect, exactly as a stale tab would
 * have one after the gateway's embedded broker restarted.
 */

let gw: Gateway;
let base: string;
let browser: Browser;

before(async () => {
  gw = createGateway(
    defaultConfig({
      auth: 'none',
      metricsPort: 0,
      host: '127.0.0.1',
      port: 0,
      demo: true,
      retryMs: 200,
      drainMs: 0,
    }),
  );
  base = `http://127.0.0.1:${await gw.listen()}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await gw?.shutdown();
});

/** A fresh tab (its own sessionStorage) on the demo page, closed when the test ends. */
async function openDemo(t: TestContext): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(5_000);
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(m.text());
  });
  t.after(() => assert.deepEqual(problems, [], 'no script errors or CSP violations on the page'));
  const res = await page.goto(`${base}/`);
  assert.equal(res?.status(), 200);
  return page;
}

/** The page's sessionStorage (the tsconfig has no DOM library). */
interface PageGlobals {
  sessionStorage: { getItem(key: string): string | null; setItem(key: string, value: string): void };
}
const setStoredId = (page: Page, id: string) =>
  page.evaluate(
    (v) => (globalThis as unknown as PageGlobals).sessionStorage.setItem('herald.lastEventId', v),
    id,
  );
const storedId = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('herald.lastEventId'));

/** Waits until the state badge reads exactly `state`. */
async function waitForState(page: Page, state: 'open' | 'closed' | 'reconnecting'): Promise<void> {
  await page
    .getByTestId('state')
    .filter({ hasText: new RegExp(`^${state}$`) })
    .waitFor();
}

async function connect(page: Page, topics: string): Promise<void> {
  await page.getByTestId('topics').fill(topics);
  await page.getByTestId('connect').click();
  await waitForState(page, 'open');
}

/** Publishes through the form; resolves with what the page shows as the outcome. */
async function publishFromForm(page: Page, topic: string, data: string, event = ''): Promise<string> {
  await page.getByTestId('pub-topic').fill(topic);
  await page.getByTestId('pub-event').fill(event);
  await page.getByTestId('pub-data').fill(data);
  const result = page.getByTestId('pub-result');
  await result.evaluate((el) => {
    el.textContent = '';
  });
  await page.getByTestId('publish').click();
  await result.filter({ hasText: /./ }).waitFor();
  return (await result.textContent()) ?? '';
}

async function publish(topic: string, data: string): Promise<string> {
  const r = await postJson(`${base}/v1/publish`, { topic, data });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.id;
}

/** The event row whose data is exactly `data`, once it is shown. */
async function row(page: Page, data: string) {
  const r = page.getByTestId('event').filter({
    has: page.getByTestId('event-data').getByText(data, { exact: true }),
  });
  await r.waitFor();
  return {
    id: await r.getByTestId('event-id').textContent(),
    type: await r.getByTestId('event-type').textContent(),
  };
}

async function shownData(page: Page): Promise<string[]> {
  return page.getByTestId('event-data').allTextContents();
}

test('demo page - publishing from the form shows the event with its id, type and data', async (t) => {
  const page = await openDemo(t);
  // Overlapping patterns: an event matching several is still shown once.
  await connect(page, 'browser.demo.>, browser.demo.one browser.demo.*,other.topic');

  const plain = await publishFromForm(page, 'browser.demo.one', 'hello from the form');
  const id = /^published (\S+)$/.exec(plain)?.[1];
  assert.ok(id !== undefined, `publish result: ${plain}`);
  assert.deepEqual(await row(page, 'hello from the form'), { id, type: 'message' });

  // A named event only reaches listeners for its type: the page adds one when the form sets it.
  const named = await publishFromForm(page, 'browser.demo.two', 'typed hello', 'greeting');
  assert.match(named, /^published \S+$/);
  assert.equal((await row(page, 'typed hello')).type, 'greeting');

  // Event data is text, never markup.
  await publishFromForm(page, 'other.topic', '<img src=x onerror="document.title=1">');
  await row(page, '<img src=x onerror="document.title=1">');
  assert.equal(await page.locator('[data-testid=events] img').count(), 0);

  assert.deepEqual(await shownData(page), [
    '<img src=x onerror="document.title=1">',
    'typed hello',
    'hello from the form',
  ]);
  assert.equal(await page.getByTestId('count').textContent(), '3');
  assert.equal(
    await page.getByTestId('last-id').textContent(),
    (await row(page, '<img src=x onerror="document.title=1">')).id,
  );
});

test('demo page - a bad publish shows the problem code and detail', async (t) => {
  const page = await openDemo(t);
  const bad = await publishFromForm(page, 'a..b', 'x');
  assert.match(bad, /^HERALD_TOPIC_INVALID: /);
  assert.match(bad, /empty token/);
  assert.equal(await page.getByTestId('pub-result').getAttribute('class'), 'result error');

  const reserved = await publishFromForm(page, 'browser.demo.x', 'x', 'herald.reset');
  assert.match(reserved, /^HERALD_EVENT_INVALID: /);
});

test('demo page - a refused subscription shows the problem code and stays closed', async (t) => {
  const page = await openDemo(t);
  await page.getByTestId('topics').fill('a..b');
  await page.getByTestId('connect').click();
  await page
    .getByTestId('sub-result')
    .filter({ hasText: /^HERALD_TOPIC_INVALID: / })
    .waitFor();
  assert.equal(await page.getByTestId('state').textContent(), 'closed');
});

test('demo page - a malformed stored position is answered with a highlighted herald.reset, then live events', async (t) => {
  const page = await openDemo(t);
  await setStoredId(page, 'not a cursor');
  await connect(page, 'browser.reset');

  const reset = page.locator('[data-testid=event][data-type="herald.reset"]');
  await reset.waitFor();
  assert.equal(await reset.getAttribute('class'), 'reset');
  const text = (await reset.getByTestId('event-data').textContent()) ?? '';
  const json = JSON.parse(text.slice(text.indexOf('\n') + 1)) as Record<string, unknown>;
  assert.equal(json['reason'], 'malformed');
  assert.equal(json['from'], null);
  assert.ok('oldest' in json);

  // The reset moved the position to the present: live events follow, and the tab stores their ids.
  const id = await publish('browser.reset', 'after the reset');
  assert.equal((await row(page, 'after the reset')).id, id);
  assert.equal(await storedId(page), id);
});

test('demo page - a position from another stream incarnation is answered with a reset of reason epoch', async (t) => {
  const page = await openDemo(t);
  await publish('browser.epoch', 'something retained');
  await setStoredId(page, 'otherepoch-1');
  await connect(page, 'browser.epoch');
  const reset = page.locator('[data-testid=event][data-type="herald.reset"]');
  await reset.waitFor();
  const text = (await reset.getByTestId('event-data').textContent()) ?? '';
  const json = JSON.parse(text.slice(text.indexOf('\n') + 1)) as Record<string, unknown>;
  assert.equal(json['reason'], 'epoch');
  assert.equal(json['from'], 'otherepoch-1');
  assert.equal(typeof json['oldest'], 'string');
  assert.deepEqual(await shownData(page), [text], 'nothing replayed from a foreign position');
});

test('demo page - after leaving and coming back, the tab reconnects by itself and shows exactly the missed events', async (t) => {
  const page = await openDemo(t);
  await connect(page, 'browser.reload');
  await publish('browser.reload', 'seen before leaving');
  await row(page, 'seen before leaving');

  // Leaving the page closes its EventSource; what is published meanwhile must come on return.
  await page.goto('about:blank');
  await publish('browser.reload', 'missed 1');
  await publish('browser.reload', 'missed 2');
  await page.goto(`${base}/`);
  await waitForState(page, 'open');
  await row(page, 'missed 2');
  const live = await publish('browser.reload', 'live again');
  await row(page, 'live again');
  assert.deepEqual(await shownData(page), ['live again', 'missed 2', 'missed 1']);
  assert.equal(await page.getByTestId('topics').inputValue(), 'browser.reload');
  assert.equal(await page.getByTestId('last-id').textContent(), live);
});

test('demo page - after a server-side drop the tab reconnects by itself, counts it, and resumes from its newest id', async (t) => {
  const page = await openDemo(t);
  // Connect with a stored position, so the stream URL carries ?lastEventId=; on the automatic
  // reconnect the newer Last-Event-ID header must win over that stale query parameter.
  const before = await publish('browser.drop', 'before connecting');
  await setStoredId(page, before);
  await connect(page, 'browser.drop');
  await publish('browser.drop', 'first live');
  await row(page, 'first live');
  assert.equal(await page.getByTestId('reconnects').textContent(), '0');

  gw.dropConnections();
  await publish('browser.drop', 'while away');
  await page.getByTestId('reconnects').filter({ hasText: /^1$/ }).waitFor();
  await row(page, 'while away');
  await publish('browser.drop', 'live again');
  await row(page, 'live again');
  assert.deepEqual(await shownData(page), ['live again', 'while away', 'first live']);
  assert.equal(await page.getByTestId('state').textContent(), 'open');
  const log = await page.getByTestId('log-entry').allTextContents();
  assert.ok(
    log.some((l) => l.endsWith('reconnecting')),
    log.join('\n'),
  );

  await page.getByTestId('disconnect').click();
  await waitForState(page, 'closed');
});
