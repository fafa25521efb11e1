import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseControl, SHED_SUBJECT } from '../../src/internal.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

it('control - a well-formed shed command parses, with or without a version', () => {
  assert.deepEqual(parseControl(SHED_SUBJECT, bytes('{"fraction":0.25,"windowMs":30000,"version":"v2.1"}')), {
    ok: true,
    command: { kind: 'shed', fraction: 0.25, windowMs: 30000, version: 'v2.1' },
  });
  assert.deepEqual(parseControl(SHED_SUBJECT, bytes('{"fraction":1,"windowMs":0}')), {
    ok: true,
    command: { kind: 'shed', fraction: 1, windowMs: 0, version: undefined },
  });
});

it('control - malformed commands are refused with a reason, never half-applied', () => {
  const bad: Array<[string, Uint8Array, RegExp]> = [
    ['herald.ctl.other', bytes('{}'), /unknown control subject/],
    [SHED_SUBJECT, bytes('not json'), /not UTF-8 JSON/],
    [SHED_SUBJECT, new Uint8Array([0x7b, 0xff, 0x7d]), /not UTF-8 JSON/],
    [SHED_SUBJECT, bytes('[1]'), /JSON object/],
    [SHED_SUBJECT, bytes('{"fraction":0,"windowMs":1}'), /fraction/],
    [SHED_SUBJECT, bytes('{"fraction":1.5,"windowMs":1}'), /fraction/],
    [SHED_SUBJECT, bytes('{"fraction":"0.5","windowMs":1}'), /fraction/],
    [SHED_SUBJECT, bytes('{"fraction":0.5,"windowMs":-1}'), /windowMs/],
    [SHED_SUBJECT, bytes('{"fraction":0.5,"windowMs":1.5}'), /windowMs/],
    [SHED_SUBJECT, bytes('{"fraction":0.5,"windowMs":1,"version":"a b"}'), /version/],
    [SHED_SUBJECT, bytes('{"fraction":0.5,"windowMs":1,"fractoin":1}'), /unknown member/],
  ];
  for (const [subject, data, reason] of bad) {
    const r = parseControl(subject, data);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.error, reason);
  }
});
