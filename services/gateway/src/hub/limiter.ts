/**
 * Bounds how many async jobs run at once; the rest wait in FIFO order, except that jobs marked
 * `first` (the continuation of work already under way) wait ahead of the others.
 */
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #first: Array<() => void> = [];
  readonly #waiting: Array<() => void> = [];

  constructor(max: number) {
    this.#max = max;
  }

  get running(): number {
    return this.#running;
  }

  async run<T>(job: () => Promise<T>, first = false): Promise<T> {
    if (this.#running >= this.#max)
      await new Promise<void>((resolve) => (first ? this.#first : this.#waiting).push(resolve));
    else this.#running++;
    try {
      return await job();
    } finally {
      const next = this.#first.shift() ?? this.#waiting.shift();
      // A waiter inherits the slot, so `running` never dips and lets a newcomer jump the queue.
      if (next === undefined) this.#running--;
      else next();
    }
  }
}
