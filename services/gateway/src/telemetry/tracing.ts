import { HeraldError } from '@herald/protocol';
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { StoredEvent } from '../broker/broker.ts';
import { CLOSE_LABELS, type CloseReason, type Connection, type ResumeSource } from '../hub/connection.ts';

/**
 * One trace per connection: `sse.connect` (parented on the request's `traceparent` when it has
 * one) and, as its children, `sse.resume`, sampled `sse.ping`s and `sse.disconnect`. A stream
 * lives for hours, so no span stays open for its life: each is short, and they share the connect
 * span's trace. `herald.publish` spans travel with their events (a `traceparent` stored with the
 * message), and the fan-out of a sampled event is an `sse.deliver` span linked to its publish.
 * With no tracer provider registered every call is a no-op.
 */
export interface StreamTracingOptions {
  readonly releaseVersion: string;
  /** Share of heartbeats that get an `sse.ping` span (0–1); a span per heartbeat per stream is costly. */
  readonly pingRatio: number;
  readonly random: () => number;
}

type Carrier = Record<string, string | string[] | undefined>;
const getter: TextMapGetter<Carrier> = {
  keys: (c) => Object.keys(c),
  get: (c, key) => c[key],
};
const setter: TextMapSetter<Record<string, string>> = {
  set: (c, key, value) => {
    c[key] = value;
  },
};
const propagator = new W3CTraceContextPropagator();

/** The `sse.connect` span of a stream request, until it is accepted or refused. */
export interface ConnectSpan {
  readonly span: Span;
  /**
   * What the connection keeps for its later spans: the connect span's identity alone, and only
   * when it is sampled (its later spans follow that decision, as a parent-based sampler's would).
   * A Context (a Map) or the span itself (attributes, resource, timings), held for the life of
   * every stream, would cost hundreds of bytes to kilobytes per connection.
   */
  readonly context: SpanContext | undefined;
}

export class StreamTracing {
  readonly #tracer: Tracer;
  readonly #opts: StreamTracingOptions;

  constructor(tracer: Tracer, opts: StreamTracingOptions) {
    this.#tracer = tracer;
    this.#opts = opts;
  }

  /** Starts `sse.connect`, a child of the request's `traceparent` when it carries one. */
  connect(headers: Carrier, topics: readonly string[]): ConnectSpan {
    const parent = propagator.extract(ROOT_CONTEXT, headers, getter);
    const span = this.#tracer.startSpan(
      'sse.connect',
      {
        kind: SpanKind.SERVER,
        attributes: { 'herald.topics': [...topics], 'herald.release': this.#opts.releaseVersion },
      },
      parent,
    );
    const context = span.spanContext();
    return { span, context: context.traceFlags & TraceFlags.SAMPLED ? context : undefined };
  }

  accepted(cs: ConnectSpan, c: Connection, resume: ResumeSource | 'none'): void {
    cs.span.setAttributes({
      'herald.outcome': 'accepted',
      'herald.resume': resume,
      'herald.connection': c.id,
    });
    cs.span.end();
  }

  refused(cs: ConnectSpan, err: unknown): void {
    const code = err instanceof HeraldError ? err.code : 'HERALD_INTERNAL';
    cs.span.setAttributes({ 'herald.outcome': 'rejected', 'herald.error.code': code });
    cs.span.setStatus({ code: SpanStatusCode.ERROR, message: code });
    cs.span.end();
  }

  turnedAway(cs: ConnectSpan): void {
    cs.span.setAttribute('herald.outcome', 'turned_away');
    cs.span.end();
  }

  /** The client went away while its request was being checked. */
  abandoned(cs: ConnectSpan): void {
    cs.span.setAttribute('herald.outcome', 'abandoned');
    cs.span.end();
  }

  resumed(c: Connection, source: ResumeSource, events: number): void {
    if (c.trace === undefined) return;
    const span = this.#tracer.startSpan(
      'sse.resume',
      { startTime: c.openedAt, attributes: { 'herald.resume': source, 'herald.events': events } },
      this.#context(c),
    );
    span.end();
  }

  heartbeat(c: Connection): void {
    if (c.trace === undefined || this.#opts.random() >= this.#opts.pingRatio) return;
    this.#tracer.startSpan('sse.ping', {}, this.#context(c)).end();
  }

  closed(c: Connection, reason: CloseReason | 'client', now: number): void {
    if (c.trace === undefined) return;
    const span = this.#tracer.startSpan(
      'sse.disconnect',
      {
        attributes: {
          'herald.disconnect.reason': CLOSE_LABELS[reason],
          'herald.duration_ms': now - c.openedAt,
          'herald.events': c.events,
          'herald.bytes': c.bytes,
          'herald.connection': c.id,
        },
      },
      this.#context(c),
    );
    span.end();
  }

  /**
   * Starts `herald.publish` (a child of the request's `traceparent`); `traceparent` is what to
   * store with the messages, undefined when the span is not sampled.
   */
  publish(headers: Carrier, messages: number): { span: Span; traceparent: string | undefined } {
    const parent = propagator.extract(ROOT_CONTEXT, headers, getter);
    const span = this.#tracer.startSpan(
      'herald.publish',
      { kind: SpanKind.PRODUCER, attributes: { 'herald.messages': messages } },
      parent,
    );
    const carrier: Record<string, string> = {};
    if (span.isRecording()) propagator.inject(trace.setSpan(parent, span), carrier, setter);
    return { span, traceparent: carrier['traceparent'] };
  }

  /** An `sse.deliver` span linked to the event's publish, for events whose publish was sampled. */
  delivered(e: StoredEvent, streams: number): void {
    if (e.traceparent === undefined || !e.traceparent.endsWith('-01')) return;
    const published = trace.getSpanContext(
      propagator.extract(ROOT_CONTEXT, { traceparent: e.traceparent }, getter),
    );
    if (published === undefined) return;
    this.#tracer
      .startSpan('sse.deliver', {
        kind: SpanKind.CONSUMER,
        links: [{ context: published }],
        attributes: { 'herald.topic': e.topic, 'herald.seq': e.seq, 'herald.streams': streams },
      })
      .end();
  }

  /** The context of a sampled connection's later spans. */
  #context(c: Connection): Context {
    return trace.setSpanContext(ROOT_CONTEXT, c.trace as SpanContext);
  }
}
