/** Bounds how many async jobs run at once; the rest wait in FIFO order. */
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(max: number) {
    this.#max = max;
  }

  get running(): number {
    return this.#running;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await job();
    } finally {
      const next = this.#waiting.shift();
      // A waiter inherits the slot, so `running` never dips and lets a newcomer jump the queue.
      if (next === undefined) this.#running--;
      else next();
    }
  }
}
