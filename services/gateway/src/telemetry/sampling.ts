/** Share of new traces (connections, publishes) recorded when OTEL_TRACES_SAMPLER is not set. */
export const DEFAULT_TRACE_RATIO = 0.1;

/**
 * The sampler variables the OpenTelemetry SDK should see: Herald's default filled in where the
 * operator chose none. OpenTelemetry's own default records every new trace; a gateway taking
 * thousands of connects a second in a reconnect storm would queue a span for each, and the SDK's
 * batch processor keeps 2,048 and drops the rest, so whole traces would be lost at random (and
 * the V8 heap grows with the garbage: docs/benchmarks.md). Herald's default
 * is `parentbased_traceidratio` at {@link DEFAULT_TRACE_RATIO} (or `OTEL_TRACES_SAMPLER_ARG`):
 * a request whose `traceparent` is sampled is always traced, as an edge proxy's decision should
 * be, and a connection's later spans follow its connect span. An explicit `OTEL_TRACES_SAMPLER`
 * (e.g. `parentbased_always_on`, to trace every connection) is left alone.
 */
export function samplerDefaults(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  if ((env['OTEL_TRACES_SAMPLER'] ?? '') !== '') return {};
  const arg = env['OTEL_TRACES_SAMPLER_ARG'] ?? '';
  return {
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: arg === '' ? String(DEFAULT_TRACE_RATIO) : arg,
  };
}
