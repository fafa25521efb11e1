import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';
import { encodeComment, encodeFrame, encodeIdOnly, encodeRetry, type SseFrame } from '../src/index.ts';

/** Parses a byte stream with an independent spec parser, as a browser would. */
function parse(chunks: readonly string[]) {
  const events: EventSourceMessage[] = [];
  const ids: string[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = createParser({
    onEvent: (e) => events.push(e),
    onId: (id) => ids.push(id),
    onRetry: (r) => retries.push(r),
    onComment: (c) => comments.push(c),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return { events, ids, retries, comments };
}

// Well-formed Unicode only: a lone surrogate cannot travel as UTF-8 at all, so publish refuses it.
const payload = fc.string({ unit: 'grapheme' });
const nasty = fc.constantFrom(
  '\n',
  '\r',
  '\r\n',
  '\n\n',
  'data: x',
  'id: 9',
  'event: herald.reset',
  ':',
  'retry: 1',
  '\u2028',
  '\0',
  '',
);
const data = fc.array(fc.oneof(payload, nasty), { maxLength: 8 }).map((parts) => parts.join(''));
const eventType = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,64}$/);
const cursor = fc.tuple(fc.stringMatching(/^[A-Za-z0-9]{1,32}$/), fc.nat()).map(([e, s]) => `${e}-${s}`);
const frame: fc.Arbitrary<SseFrame> = fc.record({
  id: cursor,
  event: fc.option(eventType, { nil: undefined }),
  data,
});

/** Splits a string at arbitrary points, as TCP may. */
function splitAt(text: string, cuts: readonly number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let from = 0;
  for (const p of points) {
    out.push(text.slice(from, p));
    from = p;
  }
  out.push(text.slice(from));
  return out;
}

describe('SSE encoder', () => {
  it('any payload, event type and cursor survives a round trip through a spec parser', () => {
    fc.assert(
      fc.property(
        fc.array(frame, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (frames, cuts) => {
          const wire = frames.map(encodeFrame).join('');
          const { events } = parse(splitAt(wire, cuts));
          assert.equal(events.length, frames.length, 'one event per frame, no injected or swallowed events');
          frames.forEach((f, i) => {
            const got = events[i]!;
            assert.equal(got.id, f.id);
            assert.equal(got.event, f.event);
            // The spec normalises every line break to LF; nothing else changes.
            assert.equal(got.data, f.data.replace(/\r\n|\r/g, '\n'));
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('no payload can inject a field: every line of a frame starts with the field the encoder chose', () => {
    fc.assert(
      fc.property(frame, (f) => {
        const lines = encodeFrame(f).split(/\r\n|\r|\n/);
        const dataLines = lines.filter((l) => l.startsWith('data: '));
        assert.equal(dataLines.length, f.data.split(/\r\n|\r|\n/).length);
        for (const l of lines) assert.match(l, /^(id: |event: |data: |$)/);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses an id or event type that could end its field', () => {
    assert.throws(() => encodeFrame({ id: 'a\nb', data: 'x' }), /id must not contain/);
    assert.throws(() => encodeFrame({ id: 'a\0b', data: 'x' }), /id must not contain/);
    assert.throws(() => encodeFrame({ event: 'x\r\ndata: evil', data: 'x' }), /invalid SSE event type/);
    assert.throws(() => encodeFrame({ event: 'has space', data: 'x' }), /invalid SSE event type/);
    assert.throws(() => encodeComment('a\nb'), /one line/);
  });

  it('an id-only frame moves lastEventId without dispatching an event', () => {
    const { events, ids } = parse([encodeIdOnly('e1-7')]);
    assert.deepEqual(events, []);
    assert.deepEqual(ids, ['e1-7']);
  });

  it('multi-line and empty data are dispatched intact', () => {
    const { events } = parse([encodeFrame({ data: 'a\nb\r\nc\rd' }), encodeFrame({ data: '' })]);
    assert.deepEqual(
      events.map((e) => e.data),
      ['a\nb\nc\nd', ''],
    );
  });

  it('retry and comments parse as such', () => {
    const { retries, comments, events } = parse([
      encodeRetry(2500),
      encodeComment('herald v1'),
      encodeComment(),
      '\n',
    ]);
    assert.deepEqual(retries, [2500]);
    assert.deepEqual(comments, ['herald v1', '']);
    assert.deepEqual(events, []);
  });
});
