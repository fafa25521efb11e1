import { encodeFrame, encodeIdOnly, formatCursor } from '@herald/protocol';
import type { StoredEvent } from '../broker/broker.ts';
import { FrameArena } from './frame-arena.ts';

/**
 * The SSE bytes of events and cursors, with ids in the current epoch. Every event is encoded once
 * per gateway: live ones into the arena (the ring keeps them), replayed ones cached per event
 * object, however many clients a replay page goes to.
 */
export class Frames {
  /** The stream's incarnation the ids name; changes when the stream is replaced. */
  epoch: string;
  readonly #arena = new FrameArena();
  readonly #replayed = new WeakMap<StoredEvent, Buffer>();

  constructor(epoch: string) {
    this.epoch = epoch;
  }

  cursor(seq: number): string {
    return formatCursor({ epoch: this.epoch, seq });
  }

  /** A live (or ring-bound) event's frame: a slice of the arena, adjacent to the one before. */
  live(e: StoredEvent): Buffer {
    return this.#arena.append(this.#text(e));
  }

  /** A replayed event's frame, encoded once however many replays send it. */
  replayed(e: StoredEvent): Buffer {
    let frame = this.#replayed.get(e);
    if (frame === undefined) {
      frame = Buffer.from(this.#text(e));
      this.#replayed.set(e, frame);
    }
    return frame;
  }

  /** An id-only block: moves a client's cursor without an event. */
  idOnly(seq: number): Buffer {
    return Buffer.from(encodeIdOnly(this.cursor(seq)));
  }

  #text(e: StoredEvent): string {
    return encodeFrame({ id: this.cursor(e.seq), event: e.event, data: e.data });
  }
}
