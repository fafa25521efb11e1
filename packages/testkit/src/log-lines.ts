import type { Readable } from 'node:stream';

/** Calls `onLine` for each line of a child's output, the last one even without a newline. */
export function readLines(stream: Readable, onLine: (line: string) => void): void {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    let nl = buffered.indexOf('\n');
    while (nl !== -1) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf('\n');
    }
  });
  stream.on('end', () => {
    if (buffered !== '') onLine(buffered);
    buffered = '';
  });
}

/**
 * The last `n` log lines, for an error message; earlier lines matching `keep` (the process's own
 * complaints, which can scroll out of the tail) go first.
 */
export function tail(lines: readonly string[], n = 40, keep?: RegExp): string {
  const kept =
    keep === undefined
      ? []
      : lines
          .slice(0, -n)
          .filter((l) => keep.test(l))
          .slice(-10);
  return [...kept, ...(kept.length > 0 ? ['…'] : []), ...lines.slice(-n)].join('\n');
}

/** The last `max` lines a process (or several) wrote: a chatty server cannot grow a test's memory without bound. */
export class LineLog {
  readonly #max: number;
  #lines: string[] = [];

  constructor(max = 10_000) {
    this.#max = max;
  }

  push(line: string): void {
    this.#lines.push(line);
    // Trimmed in batches: dropping the oldest line on every push would copy the whole log each time.
    if (this.#lines.length >= 2 * this.#max) this.#lines = this.#lines.slice(-this.#max);
  }

  get lines(): readonly string[] {
    return this.#lines.length > this.#max ? this.#lines.slice(-this.#max) : this.#lines;
  }

  /** See `tail()`. */
  tail(n = 40, keep?: RegExp): string {
    return tail(this.lines, n, keep);
  }

  text(): string {
    return this.lines.join('\n');
  }
}
