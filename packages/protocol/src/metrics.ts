/**
 * Every metric a gateway exports, as Prometheus sees it (DESIGN §6: prefix `herald_`, base units,
 * counters end in `_total`). Dashboards, alert rules and the test that compares this list with a
 * live `/metrics` all read it from here, so a renamed metric breaks a build, not a dashboard.
 */
export const Metrics = {
  herald_connections: {
    type: 'gauge',
    help: 'Open SSE streams.',
    labels: ['release'],
  },
  herald_connects_total: {
    type: 'counter',
    help: 'Stream requests by outcome: accepted, rejected (a problem+json answer), turned_away (draining or broker not reached).',
    labels: ['release', 'outcome'],
  },
  herald_disconnects_total: {
    type: 'counter',
    help: 'Streams ended, by reason: client, drain, shed, slow, token_expired, replay_failed, reset.',
    labels: ['release', 'reason'],
  },
  herald_rejections_total: {
    type: 'counter',
    help: 'Requests refused at the edge, by reason (pod_full, rate, ip_full, subject_full, topics, unauthenticated, forbidden, origin, auth_unavailable, broker_unavailable, invalid).',
    labels: ['release', 'reason'],
  },
  herald_slow_consumer_closes_total: {
    type: 'counter',
    help: 'Streams dropped because their client stopped reading (more than HERALD_MAX_QUEUED_BYTES unsent).',
    labels: ['release'],
  },
  herald_events_published_total: {
    type: 'counter',
    help: 'Events stored through this gateway’s publish API.',
    labels: ['release'],
  },
  herald_events_delivered_total: {
    type: 'counter',
    help: 'Events written to streams (one per event per stream).',
    labels: ['release'],
  },
  herald_delivery_latency_seconds: {
    type: 'histogram',
    help: 'Time from an event being stored to its frame being written to a stream.',
    labels: ['release'],
  },
  herald_resumes_total: {
    type: 'counter',
    help: 'Streams opened with a cursor, by where the missed events came from: ring, log, or reset.',
    labels: ['release', 'source'],
  },
  herald_replays_in_flight: {
    type: 'gauge',
    help: 'Replays from the broker’s log running now (at most 4).',
    labels: ['release'],
  },
  herald_broker_connected: {
    type: 'gauge',
    help: '1 while the broker is connected and its stream usable, else 0.',
    labels: ['release', 'broker'],
  },
  herald_broker_lag_events: {
    type: 'gauge',
    help: 'Events the stream holds that this gateway’s live feed has not delivered yet.',
    labels: ['release'],
  },
  herald_event_loop_delay_seconds: {
    type: 'gauge',
    help: 'Event loop delay over the last scrape interval, by quantile (0.5, 0.99, 1).',
    labels: ['release', 'quantile'],
  },
  herald_heap_used_bytes: {
    type: 'gauge',
    help: 'V8 heap in use.',
    labels: ['release'],
  },
  herald_resident_memory_bytes: {
    type: 'gauge',
    help: 'Resident set size of the gateway process.',
    labels: ['release'],
  },
} as const satisfies Record<
  string,
  {
    readonly type: 'counter' | 'gauge' | 'histogram';
    readonly help: string;
    readonly labels: readonly string[];
  }
>;

export type MetricName = keyof typeof Metrics;
