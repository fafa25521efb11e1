/**
 * A clock whose time moves only when a test says so. Structurally a gateway `Clock`, so tests
 * control heartbeats, drain windows and retention ages without sleeping.
 */
/** Node's longest timer delay; as in Node, a longer one fires after 1 ms (a bug this lets tests see). */
const TIMER_MAX_MS = 2 ** 31 - 1;
const asNode = (ms: number): number => (ms > TIMER_MAX_MS ? 1 : ms);

interface Timer {
  readonly id: number;
  at: number;
  readonly fn: () => void;
  readonly every: number | undefined;
}

export class FakeClock {
  #now: number;
  #ids = 0;
  readonly #timers = new Map<number, Timer>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.#add(fn, asNode(ms), undefined);
  }

  setInterval(fn: () => void, ms: number): unknown {
    return this.#add(fn, asNode(ms), Math.max(1, asNode(ms)));
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  clearInterval(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers still scheduled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due, in time order. */
  tick(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.#timers.values())
        if (t.at <= end && (next === undefined || t.at < next.at)) next = t;
      if (next === undefined) break;
      this.#now = next.at;
      if (next.every === undefined) this.#timers.delete(next.id);
      else next.at += next.every;
      next.fn();
    }
    this.#now = end;
  }

  #add(fn: () => void, ms: number, every: number | undefined): number {
    const id = ++this.#ids;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), fn, every });
    return id;
  }
}
