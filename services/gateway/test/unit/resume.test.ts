import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planResume } from '../../src/internal.ts';

describe('planResume', () => {
  const view = { epoch: 'ep1', first: 101, last: 500, ringFloor: 400 };

  it('no cursor (or an empty one) is a fresh start', () => {
    assert.deepEqual(planResume(undefined, view), { kind: 'fresh' });
    assert.deepEqual(planResume('', view), { kind: 'fresh' });
  });

  it('serves from the ring at and above its floor, from the log down to just before the oldest event', () => {
    assert.deepEqual(planResume('ep1-500', view), { kind: 'ring', after: 500 });
    assert.deepEqual(planResume('ep1-400', view), { kind: 'ring', after: 400 });
    assert.deepEqual(planResume('ep1-399', view), { kind: 'log', after: 399 });
    assert.deepEqual(planResume('ep1-100', view), { kind: 'log', after: 100 });
  });

  it('resets with the reason when the resume cannot be exact', () => {
    assert.deepEqual(planResume('ep1-99', view), {
      kind: 'reset',
      reason: 'expired',
      from: { epoch: 'ep1', seq: 99 },
    });
    assert.deepEqual(planResume('ep1-501', view), {
      kind: 'reset',
      reason: 'ahead',
      from: { epoch: 'ep1', seq: 501 },
    });
    assert.deepEqual(planResume('ep2-450', view), {
      kind: 'reset',
      reason: 'epoch',
      from: { epoch: 'ep2', seq: 450 },
    });
    assert.deepEqual(planResume('ep1-4x', view), { kind: 'reset', reason: 'malformed', from: undefined });
  });

  it('an empty stream resumes exactly from its start', () => {
    const empty = { epoch: 'e', first: 1, last: 0, ringFloor: 0 };
    assert.deepEqual(planResume('e-0', empty), { kind: 'ring', after: 0 });
  });
});
