import type { StoredEvent } from './broker/broker.ts';

/**
 * The most recent events this gateway has fanned out, so most resumes (a client that dropped a
 * moment ago) are served from memory without asking the broker. It holds every event with
 * `floor < seq <= head`; `floor` rises as old events are evicted.
 */
export class Ring {
  readonly #buf: (StoredEvent | undefined)[];
  #next = 0;
  #size = 0;
  #floor: number;

  /** `floor`: the stream's last sequence when following began; nothing at or before it is here. */
  constructor(capacity: number, floor: number) {
    this.#buf = new Array(capacity);
    this.#floor = floor;
  }

  get floor(): number {
    return this.#floor;
  }

  push(e: StoredEvent): void {
    const cap = this.#buf.length;
    if (this.#size === cap) this.#floor = this.#buf[this.#next]!.seq;
    else this.#size++;
    this.#buf[this.#next] = e;
    this.#next = (this.#next + 1) % cap;
  }

  /** Forgets everything: the stream was replaced. */
  clear(floor: number): void {
    this.#buf.fill(undefined);
    this.#size = 0;
    this.#next = 0;
    this.#floor = floor;
  }

  /** Events with `seq > after`, oldest first. */
  *since(after: number): Generator<StoredEvent> {
    const cap = this.#buf.length;
    const oldest = (this.#next - this.#size + cap) % cap;
    // Binary search over the logical order for the first event past `after`.
    let lo = 0;
    let hi = this.#size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#buf[(oldest + mid) % cap]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.#size; i++) yield this.#buf[(oldest + i) % cap]!;
  }
}
