/**
 * Where the ring's frames live: encoded back to back in large append-only segments. Frames of
 * consecutive events are adjacent bytes, so a resume covering a run of them is one slice of a
 * segment, not thousands of small Buffers to concatenate. A segment is never written twice: a
 * socket still holding a slice of it (its kernel buffer was full) sends exactly what was there,
 * and the garbage collector frees a segment once no frame or socket refers to it.
 */
export class FrameArena {
  readonly #segmentBytes: number;
  #segment: Buffer;
  #used = 0;

  /** `segmentBytes`: size of one segment; frames over a quarter of it get a Buffer of their own. */
  constructor(segmentBytes = 256 * 1024) {
    this.#segmentBytes = segmentBytes;
    this.#segment = Buffer.allocUnsafeSlow(0);
  }

  /** The UTF-8 bytes of `text`, as a slice of the current segment. */
  append(text: string): Buffer {
    const length = Buffer.byteLength(text);
    if (length > this.#segmentBytes / 4) return Buffer.from(text);
    if (this.#used + length > this.#segment.length) {
      this.#segment = Buffer.allocUnsafeSlow(this.#segmentBytes);
      this.#used = 0;
    }
    const start = this.#used;
    this.#used += this.#segment.write(text, start);
    return this.#segment.subarray(start, this.#used);
  }
}
