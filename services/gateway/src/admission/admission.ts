import { type ErrorCodes, HeraldError } from '@herald/protocol';
import type { Clock } from '../clock.ts';
import { TokenBucket } from './token-bucket.ts';

/** Why a stream was refused; metrics label rejections with it. */
export const ADMISSION_REASONS = ['pod-full', 'rate', 'ip-full', 'subject-full'] as const;
export type AdmissionReason = (typeof ADMISSION_REASONS)[number];

/** A new stream connection, as far as admission cares. */
export interface ConnectionAttempt {
  /**
   * The key for the per-address cap: the peer address, or the client address from a trusted
   * proxy header. The caller picks it (and may fold IPv6 to its /64); it is compared verbatim.
   */
  readonly ip: string;
  /** The authenticated user, when there is one; anonymous streams skip the per-subject cap. */
  readonly subject?: string | undefined;
}

/** An admitted stream's slots; release them when the stream ends. */
export interface AdmissionTicket {
  /** Frees the pod, address and subject slots. Idempotent: later calls do nothing. */
  release(): void;
  readonly released: boolean;
}

interface RefusalBase {
  readonly ok: false;
  /** For the problem body's `detail`; names the limit, never the address or subject. */
  readonly detail: string;
  /**
   * The limit that was hit: streams per pod, per address or per subject, or for `rate` new streams
   * per second. For the problem body's `limit`.
   */
  readonly limit: number;
}

type Status<C extends keyof typeof ErrorCodes> = (typeof ErrorCodes)[C]['status'];

/**
 * A refusal carries everything the HTTP layer needs to answer: problem code and status, detail,
 * and for retryable refusals the `Retry-After` value in whole seconds.
 *
 * Per-address and per-subject caps answer 429 HERALD_RATE_LIMITED, not 503: the client itself is
 * over its share, and this pod is not full, so telling a balancer or client "pod unavailable"
 * would be false, and a retry elsewhere would just be refused again. No new catalogue code is
 * added; `reason` tells the two 429s (and the rate limit) apart for logs and metrics.
 */
export type AdmissionRefusal =
  | (RefusalBase & {
      readonly reason: 'pod-full';
      readonly code: 'HERALD_OVERLOADED';
      readonly status: Status<'HERALD_OVERLOADED'>;
      readonly retryAfterSeconds: number;
    })
  | (RefusalBase & {
      readonly reason: 'rate' | 'ip-full' | 'subject-full';
      readonly code: 'HERALD_RATE_LIMITED';
      readonly status: Status<'HERALD_RATE_LIMITED'>;
      readonly retryAfterSeconds: number;
    });

export type AdmissionDecision = { readonly ok: true; readonly ticket: AdmissionTicket } | AdmissionRefusal;

/**
 * Admission's limits as the config gives them (`HERALD_MAX_CONNECTIONS`, `HERALD_CONNECT_RATE`,
 * ...): every one set and already within its bounds, which `config.ts` owns with the defaults.
 */
export interface AdmissionOptions {
  /** Streams this pod holds at most; 0 = unlimited. */
  readonly maxConnections: number;
  /** New streams admitted per second, pod-wide (fractions allowed); 0 = unlimited. */
  readonly connectRate: number;
  /** New streams admitted at once before `connectRate` applies; a whole number ≥ 1. */
  readonly connectBurst: number;
  /** Streams one address holds at most; 0 = unlimited. */
  readonly maxPerIp: number;
  /** Streams one authenticated subject holds at most; 0 = unlimited. */
  readonly maxPerSubject: number;
  /** Base of the jittered `Retry-After`, whole seconds ≥ 1: answers spread over [base, 2·base]. */
  readonly retryAfterSeconds: number;
  /** Time source for the rate limit; only `now()` is used. Default: the system clock. */
  readonly clock?: Pick<Clock, 'now'>;
  /** Uniform in [0, 1), for the jitter. Default `Math.random`. */
  readonly random?: () => number;
}

/**
 * A whole number of seconds spread uniformly over [base, 2·base], so clients refused together
 * do not all come back in the same second and refuse each other again.
 */
export function jitterSeconds(base: number, random: () => number = Math.random): number {
  // min() guards a `random` that returns 1 despite its contract.
  return base + Math.min(base, Math.floor(random() * (base + 1)));
}

/** The problem-body error for a refusal; `Retry-After` itself is the HTTP layer's to set. */
export function admissionError(refusal: AdmissionRefusal): HeraldError {
  return new HeraldError(refusal.code, refusal.detail, {
    extra: { limit: refusal.limit, retryAfter: refusal.retryAfterSeconds },
  });
}

/**
 * Decides whether a new stream may open on this pod, and tracks the slots admitted streams hold.
 *
 * Checks run cheapest and least retryable first, and the rate token is taken last, so an attempt
 * refused for a cap never burns a token that an admissible attempt could have used:
 * pod cap (503, another pod may take it) → per-address cap (429) → per-subject cap (429) →
 * connect rate (429). The topic count is the request parser's to refuse (400), before this.
 *
 * Memory is bounded by open streams: the per-address and per-subject maps drop a key when its
 * count reaches zero.
 */
export class Admission {
  readonly #maxConnections: number;
  readonly #maxPerIp: number;
  readonly #maxPerSubject: number;
  readonly #connectRate: number;
  readonly #connectBurst: number;
  readonly #retryAfterSeconds: number;
  readonly #random: () => number;
  readonly #bucket: TokenBucket | undefined;
  #open = 0;
  readonly #perIp = new Map<string, number>();
  readonly #perSubject = new Map<string, number>();
  readonly #counts: Record<AdmissionReason, number> = {
    'pod-full': 0,
    rate: 0,
    'ip-full': 0,
    'subject-full': 0,
  };

  constructor(options: AdmissionOptions) {
    this.#maxConnections = options.maxConnections;
    this.#maxPerIp = options.maxPerIp;
    this.#maxPerSubject = options.maxPerSubject;
    this.#retryAfterSeconds = options.retryAfterSeconds;
    this.#random = options.random ?? Math.random;
    this.#connectRate = options.connectRate;
    this.#connectBurst = options.connectBurst;
    this.#bucket =
      options.connectRate === 0
        ? undefined
        : new TokenBucket({
            ratePerSecond: options.connectRate,
            burst: options.connectBurst,
            ...(options.clock === undefined ? {} : { clock: options.clock }),
          });
  }

  /** Admits the attempt and takes its slots, or says why not. Never throws. */
  admit(attempt: ConnectionAttempt): AdmissionDecision {
    const { ip, subject } = attempt;
    if (this.#maxConnections > 0 && this.#open >= this.#maxConnections) {
      return this.#refuse({
        ok: false,
        reason: 'pod-full',
        code: 'HERALD_OVERLOADED',
        status: 503,
        detail: `this gateway holds its limit of ${this.#maxConnections} streams; retry later`,
        limit: this.#maxConnections,
        retryAfterSeconds: this.#jitter(),
      });
    }
    const held =
      this.#capped('ip-full', 'address', this.#perIp, ip, this.#maxPerIp) ??
      (subject === undefined
        ? undefined
        : this.#capped('subject-full', 'user', this.#perSubject, subject, this.#maxPerSubject));
    if (held !== undefined) return this.#refuse(held);
    const token = this.#bucket?.take() ?? { ok: true };
    if (!token.ok) {
      return this.#refuse({
        ok: false,
        reason: 'rate',
        code: 'HERALD_RATE_LIMITED',
        status: 429,
        detail: `more than ${this.#connectRate} new streams per second (burst ${this.#connectBurst}); retry later`,
        limit: this.#connectRate,
        // Never earlier than the token is due; the jitter spreads a storm beyond that.
        retryAfterSeconds: Math.max(Math.ceil(token.retryAfterMs / 1000), this.#jitter()),
      });
    }
    return { ok: true, ticket: this.#take(ip, subject) };
  }

  /** Streams admitted and not yet released. */
  get open(): number {
    return this.#open;
  }

  /** Distinct addresses holding at least one stream. */
  get perIp(): number {
    return this.#perIp.size;
  }

  /** Distinct subjects holding at least one stream. */
  get perSubject(): number {
    return this.#perSubject.size;
  }

  /** Streams `ip` holds now. */
  openForIp(ip: string): number {
    return this.#perIp.get(ip) ?? 0;
  }

  /** Streams `subject` holds now. */
  openForSubject(subject: string): number {
    return this.#perSubject.get(subject) ?? 0;
  }

  /** Refusals since construction, by reason (a snapshot). */
  counts(): Readonly<Record<AdmissionReason, number>> {
    return Object.freeze({ ...this.#counts });
  }

  #refuse(refusal: AdmissionRefusal): AdmissionRefusal {
    this.#counts[refusal.reason]++;
    return refusal;
  }

  /** The refusal when `key` already holds `max` streams of `map` (0 = no cap), else undefined. */
  #capped(
    reason: 'ip-full' | 'subject-full',
    who: string,
    map: Map<string, number>,
    key: string,
    max: number,
  ): AdmissionRefusal | undefined {
    if (max === 0 || (map.get(key) ?? 0) < max) return undefined;
    return {
      ok: false,
      reason,
      code: 'HERALD_RATE_LIMITED',
      status: 429,
      detail: `this ${who} holds its limit of ${max} streams; close one or retry later`,
      limit: max,
      retryAfterSeconds: this.#jitter(),
    };
  }

  #jitter(): number {
    return jitterSeconds(this.#retryAfterSeconds, this.#random);
  }

  #take(ip: string, subject: string | undefined): AdmissionTicket {
    this.#open++;
    increment(this.#perIp, ip);
    if (subject !== undefined) increment(this.#perSubject, subject);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#open--;
        decrement(this.#perIp, ip);
        if (subject !== undefined) decrement(this.#perSubject, subject);
      },
      get released() {
        return released;
      },
    };
  }
}

function increment(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
