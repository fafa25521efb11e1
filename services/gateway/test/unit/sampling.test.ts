import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DEFAULT_TRACE_RATIO, samplerDefaults } from '../../src/telemetry/sampling.ts';

it('sampling - with no sampler chosen, new traces are sampled parent-based at 10 %', () => {
  assert.equal(DEFAULT_TRACE_RATIO, 0.1);
  assert.deepEqual(samplerDefaults({}), {
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.1',
  });
  assert.deepEqual(samplerDefaults({ OTEL_TRACES_SAMPLER: '', OTEL_TRACES_SAMPLER_ARG: '' }), {
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.1',
  });
});

it('sampling - OTEL_TRACES_SAMPLER_ARG alone sets the ratio; an explicit OTEL_TRACES_SAMPLER is left alone', () => {
  assert.deepEqual(samplerDefaults({ OTEL_TRACES_SAMPLER_ARG: '0.5' }), {
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.5',
  });
  assert.deepEqual(samplerDefaults({ OTEL_TRACES_SAMPLER: 'parentbased_always_on' }), {});
  assert.deepEqual(
    samplerDefaults({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.2' }),
    {},
  );
});
