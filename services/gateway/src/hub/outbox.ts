import type { Connection, Sink } from './connection.ts';

/** A flush writes a connection's chunks separately (corked) rather than copying them together above this. */
const COPY_LIMIT = 16 * 1024;

/**
 * Write coalescing: everything due to one connection in one turn of the event loop leaves in one
 * write, on the next turn. A connection whose socket still holds more than `maxQueuedBytes`
 * unsent when more is due is a slow consumer: it is destroyed and handed to `onSlow`.
 */
export class Outbox {
  readonly #maxQueuedBytes: number;
  readonly #onSlow: (c: Connection) => void;
  #dirty: Connection[] = [];
  #flushScheduled = false;

  constructor(maxQueuedBytes: number, onSlow: (c: Connection) => void) {
    this.#maxQueuedBytes = maxQueuedBytes;
    this.#onSlow = onSlow;
  }

  enqueue(c: Connection, chunk: Buffer): void {
    c.wrote = true;
    const q = c.queue;
    if (q === undefined) {
      c.queue = chunk;
      this.#dirty.push(c);
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    } else if (Array.isArray(q)) q.push(chunk);
    else c.queue = [q, chunk];
  }

  /** Ends the connection's sink with what is still queued for it, then `last`. */
  end(c: Connection, last: Buffer): void {
    const q = c.queue;
    c.queue = undefined;
    c.sink.end(q === undefined ? last : Buffer.concat([...(Array.isArray(q) ? q : [q]), last]));
  }

  #flush(): void {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (const c of dirty) {
      const q = c.queue;
      if (q === undefined || c.closed) continue;
      c.queue = undefined;
      const sink = c.sink;
      if (sink.destroy !== undefined && (sink.writableLength ?? 0) > this.#maxQueuedBytes) {
        // It has not read what it was sent; more would only pile up here.
        sink.destroy();
        this.#onSlow(c);
        continue;
      }
      if (!Array.isArray(q)) {
        c.bytes += q.length;
        sink.write(q);
      } else c.bytes += writeAll(sink, q);
    }
  }
}

/**
 * Small chunks are copied into one write; large ones (slices of the ring) leave uncopied,
 * corked. Returns the bytes written.
 */
function writeAll(sink: Sink, chunks: Buffer[]): number {
  let bytes = 0;
  for (const chunk of chunks) bytes += chunk.length;
  if (bytes <= COPY_LIMIT || sink.cork === undefined) {
    sink.write(Buffer.concat(chunks, bytes));
    return bytes;
  }
  sink.cork();
  for (const chunk of chunks) sink.write(chunk);
  sink.uncork?.();
  return bytes;
}
