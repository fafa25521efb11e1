import { minimalPatterns, topicMatcher, topicToSubject } from '@herald/protocol';
import { type Consumer, DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';
import type { ReplayRequest, StoredEvent } from './broker.ts';
import { eventOf } from './jetstream-stream.ts';

export type ReplayedEvents = {
  readonly kind: 'events';
  readonly events: StoredEvent[];
  readonly reached: number;
};

/**
 * One page of a replay from the log: the events matching `req.patterns` after `req.after`, up to
 * `through` (which the stream holds), read with a short-lived ordered consumer filtered
 * server-side. Ordered consumers are served by the stream leader, so a replay never reads a
 * lagging replica.
 */
export async function replayPage(
  js: JetStreamClient,
  stream: string,
  req: ReplayRequest,
  through: number,
): Promise<ReplayedEvents> {
  const consumer = await js.consumers.get(stream, {
    filter_subjects: minimalPatterns(req.patterns.map((p) => p.pattern)).map(topicToSubject),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: req.after + 1,
  });
  try {
    return await fetchThrough(consumer, req, through);
  } finally {
    await consumer.delete().catch(() => {});
  }
}

async function fetchThrough(
  consumer: Consumer,
  req: ReplayRequest,
  through: number,
): Promise<ReplayedEvents> {
  const events: StoredEvent[] = [];
  const wanted = topicMatcher(req.patterns);
  const pending = (await consumer.info(true)).num_pending;
  if (pending === 0) return { kind: 'events', events, reached: through };
  const batch = await consumer.fetch({ max_messages: Math.min(req.limit, pending), expires: 5000 });
  let read = req.after;
  for await (const m of batch) {
    if (m.seq > through) return { kind: 'events', events, reached: through };
    read = m.seq;
    const e = eventOf(m);
    if (e !== undefined && wanted(e.topic)) events.push(e);
    if (m.info.pending === 0) return { kind: 'events', events, reached: through };
    if (events.length >= req.limit) return { kind: 'events', events, reached: m.seq };
  }
  // The batch ended (its size reached, or it expired): it covered everything up to the last
  // message read, matching or not; the caller asks again from there.
  return { kind: 'events', events, reached: read };
}
