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

/** The last `n` log lines, for an error message. */
export function tail(lines: readonly string[], n = 40): string {
  return lines.slice(-n).join('\n');
}
