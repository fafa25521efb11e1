import { type Clock, systemClock } from '../clock.ts';

export interface TokenBucketOptions {
  /** Tokens added per second; fractions allowed (0.5 = one every 2 s). Must be > 0. */
  readonly ratePerSecond: number;
  /** Most tokens held at once, so the largest burst that passes at once. Whole number ≥ 1. */
  readonly burst: number;
  /** Time source; only `now()` is used. Default: the system clock. */
  readonly clock?: Pick<Clock, 'now'>;
}

export type TakeResult = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number };

// Slack for float error in the interval arithmetic: without it, waiting exactly the announced
// `retryAfterMs` could land a hair short of the token and be refused a second time.
const EPSILON_MS = 1e-6;

/**
 * A token bucket that starts full: a burst of up to `burst` takes passes at once, then one take
 * per `1 / ratePerSecond` seconds; a refused take says when the next token is due.
 *
 * Kept as a theoretical arrival time (GCRA) rather than a token count, so there is no refill step
 * and one number of state. Refusals consume nothing.
 */
export class TokenBucket {
  readonly #clock: Pick<Clock, 'now'>;
  /** Milliseconds per token. */
  readonly #interval: number;
  /** How far ahead of now the arrival time may run: the burst beyond the first token. */
  readonly #tolerance: number;
  #tat = Number.NEGATIVE_INFINITY;
  /** Monotonic time: the sum of the clock's forward steps since the first reading. */
  #mono = 0;
  #reading: number | undefined;

  constructor(options: TokenBucketOptions) {
    const { ratePerSecond, burst } = options;
    if (!(Number.isFinite(ratePerSecond) && ratePerSecond > 0)) {
      throw new RangeError(`ratePerSecond must be a finite number > 0, got ${ratePerSecond}`);
    }
    if (!(Number.isSafeInteger(burst) && burst >= 1)) {
      throw new RangeError(`burst must be a whole number >= 1, got ${burst}`);
    }
    this.#clock = options.clock ?? systemClock;
    this.#interval = 1000 / ratePerSecond;
    this.#tolerance = (burst - 1) * this.#interval;
  }

  /** Takes one token if one is available. */
  take(): TakeResult {
    const now = this.#now();
    const tat = Math.max(this.#tat, now);
    const wait = tat - now - this.#tolerance;
    if (wait > EPSILON_MS) return { ok: false, retryAfterMs: Math.ceil(wait) };
    this.#tat = tat + this.#interval;
    return { ok: true };
  }

  /** Whole tokens available right now (for gauges and tests; takes nothing). */
  get available(): number {
    const now = this.#now();
    const ahead = Math.max(this.#tat, now) - now;
    return Math.floor((this.#tolerance + this.#interval - ahead + EPSILON_MS) / this.#interval);
  }

  // Wall clocks step backwards (NTP). Counting only forward steps means a step back neither
  // refills the bucket nor freezes it until the clock catches up with its old reading.
  #now(): number {
    const reading = this.#clock.now();
    this.#mono = this.#reading === undefined ? reading : this.#mono + Math.max(0, reading - this.#reading);
    this.#reading = reading;
    return this.#mono;
  }
}
