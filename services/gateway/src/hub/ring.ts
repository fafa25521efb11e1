import type { StoredEvent } from '../broker/broker.ts';

/** What a resume from the ring sends: its frames as few chunks as possible, and how far they go. */
export interface RingSlice {
  /** The matching events' frames, adjacent frames merged into one chunk. */
  readonly chunks: Buffer[];
  /** The newest matching sequence, or undefined when nothing matched. */
  readonly last: number | undefined;
  /** How many events matched. */
  readonly count: number;
}

/**
 * The most recent events this gateway has seen, each with its encoded frame, so most resumes (a
 * client that dropped a moment ago, or came over from a pod that went away) are served from
 * memory without asking the broker. It holds every event with `floor < seq <= newest`; `floor`
 * rises as old events are evicted, to stay within `capacity` events and `maxBytes` of frames.
 *
 * A resume walks thousands of slots per client in a storm, so what the walk reads is kept in
 * typed arrays: a small id per topic (to ask "does this client want it" once per topic), each
 * frame's length, and whether its bytes directly follow the previous slot's frame in memory (so a
 * run of wanted events becomes one slice of an arena segment).
 */
export class Ring {
  readonly #events: (StoredEvent | undefined)[];
  readonly #frames: (Buffer | undefined)[];
  readonly #lengths: Int32Array;
  /** 1 when the slot's frame starts where the previous slot's frame ends, in the same memory. */
  readonly #adjacent: Uint8Array;
  readonly #topicIds: Int32Array;
  #topicIndex = new Map<string, number>();
  #topics: string[] = [];
  readonly #maxBytes: number;
  /** Index of the oldest held event. */
  #oldest = 0;
  #size = 0;
  #bytes = 0;
  #floor: number;

  /** `floor`: nothing at or before it is held (the stream's last sequence when following began). */
  constructor(capacity: number, maxBytes: number, floor: number) {
    this.#events = new Array(capacity);
    this.#frames = new Array(capacity);
    this.#lengths = new Int32Array(capacity);
    this.#adjacent = new Uint8Array(capacity);
    this.#topicIds = new Int32Array(capacity);
    this.#maxBytes = maxBytes;
    this.#floor = floor;
  }

  get floor(): number {
    return this.#floor;
  }

  /** Frame bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Adds the newest event, evicting the oldest ones it displaces. */
  push(e: StoredEvent, frame: Buffer): void {
    const cap = this.#events.length;
    while (this.#size > 0 && (this.#size === cap || this.#bytes + frame.length > this.#maxBytes))
      this.#evict();
    if (frame.length > this.#maxBytes) {
      // Too large to hold at all: resumes from before it go to the log.
      this.#floor = e.seq;
      return;
    }
    const i = (this.#oldest + this.#size) % cap;
    const previous = this.#size === 0 ? undefined : this.#frames[(i - 1 + cap) % cap];
    this.#put(i, e, frame);
    this.#adjacent[i] = previous !== undefined && follows(previous, frame) ? 1 : 0;
    this.#size++;
  }

  /**
   * Adds older events below the floor: `events` (oldest first) must be every event with
   * `after < seq <= floor`. Takes the newest of them that fit; returns how many it took.
   */
  prepend(after: number, events: readonly StoredEvent[], frames: readonly Buffer[]): number {
    const cap = this.#events.length;
    let taken = 0;
    for (let k = events.length - 1; k >= 0; k--) {
      const frame = frames[k]!;
      if (this.#size === cap || this.#bytes + frame.length > this.#maxBytes) {
        this.#floor = events[k]!.seq;
        return taken;
      }
      const next = this.#size === 0 ? undefined : this.#frames[this.#oldest];
      if (next !== undefined) this.#adjacent[this.#oldest] = follows(frame, next) ? 1 : 0;
      const slot = (this.#oldest - 1 + cap) % cap;
      this.#put(slot, events[k]!, frame);
      this.#adjacent[slot] = 0;
      this.#oldest = slot;
      this.#size++;
      taken++;
    }
    this.#floor = after;
    return taken;
  }

  /** Forgets everything: the stream was replaced. */
  clear(floor: number): void {
    this.#events.fill(undefined);
    this.#frames.fill(undefined);
    this.#topicIndex = new Map();
    this.#topics = [];
    this.#size = 0;
    this.#oldest = 0;
    this.#bytes = 0;
    this.#floor = floor;
  }

  /** Held events with `seq > after`, oldest first. */
  *since(after: number): Generator<StoredEvent> {
    const cap = this.#events.length;
    for (let i = this.#first(after); i < this.#size; i++) yield this.#events[(this.#oldest + i) % cap]!;
  }

  /**
   * The frames of held events with `seq > after` whose topic `wants` accepts, oldest first. Runs
   * of frames adjacent in memory (consecutive arena frames) come back as one chunk, so a resume
   * over thousands of events costs a few slices. `wants` is asked once per distinct topic.
   */
  collect(after: number, wants: (topic: string) => boolean): RingSlice {
    const cap = this.#events.length;
    const lengths = this.#lengths;
    const adjacent = this.#adjacent;
    const topicIds = this.#topicIds;
    // 0: not asked yet, 1: wanted, 2: not wanted.
    const verdicts = new Uint8Array(this.#topics.length);
    const chunks: Buffer[] = [];
    let lastAt = -1;
    let count = 0;
    let run: Buffer | undefined;
    let runLength = 0;
    let inRun = false;
    const skip = this.#first(after);
    let at = (this.#oldest + skip) % cap;
    for (let left = this.#size - skip; left > 0; left--, at = at + 1 === cap ? 0 : at + 1) {
      const id = topicIds[at]!;
      let verdict = verdicts[id]!;
      if (verdict === 0) {
        verdict = wants(this.#topics[id]!) ? 1 : 2;
        verdicts[id] = verdict;
      }
      if (verdict === 2) {
        inRun = false;
        continue;
      }
      lastAt = at;
      count++;
      if (inRun && adjacent[at] === 1) {
        runLength += lengths[at]!;
        continue;
      }
      if (run !== undefined) chunks.push(Buffer.from(run.buffer, run.byteOffset, runLength));
      run = this.#frames[at]!;
      runLength = run.length;
      inRun = true;
    }
    if (run !== undefined) chunks.push(Buffer.from(run.buffer, run.byteOffset, runLength));
    return { chunks, last: lastAt === -1 ? undefined : this.#events[lastAt]!.seq, count };
  }

  #put(i: number, e: StoredEvent, frame: Buffer): void {
    this.#events[i] = e;
    this.#frames[i] = frame;
    this.#lengths[i] = frame.length;
    this.#topicIds[i] = this.#topicId(e.topic);
    this.#bytes += frame.length;
  }

  /** A small id per topic. Ids of evicted topics are reclaimed by renumbering now and then. */
  #topicId(topic: string): number {
    let id = this.#topicIndex.get(topic);
    if (id !== undefined) return id;
    if (this.#topics.length >= 2 * this.#events.length + 64) {
      this.#topicIndex = new Map();
      this.#topics = [];
      const cap = this.#events.length;
      for (let k = 0; k < this.#size; k++) {
        const slot = (this.#oldest + k) % cap;
        this.#topicIds[slot] = this.#topicId(this.#events[slot]!.topic);
      }
    }
    id = this.#topics.length;
    this.#topics.push(topic);
    this.#topicIndex.set(topic, id);
    return id;
  }

  /** Logical index of the first held event past `after` (binary search: sequences increase). */
  #first(after: number): number {
    const cap = this.#events.length;
    let lo = 0;
    let hi = this.#size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#events[(this.#oldest + mid) % cap]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #evict(): void {
    const e = this.#events[this.#oldest]!;
    this.#bytes -= this.#lengths[this.#oldest]!;
    this.#events[this.#oldest] = undefined;
    this.#frames[this.#oldest] = undefined;
    this.#oldest = (this.#oldest + 1) % this.#events.length;
    this.#size--;
    this.#floor = e.seq;
  }
}

/** True when `b`'s bytes start right where `a`'s end, in the same memory. */
function follows(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset;
}
