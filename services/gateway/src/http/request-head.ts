/**
 * Just enough HTTP/1.1 request parsing to recognise a plain stream request before node:http sees
 * it. Anything unusual is `undefined`, and the caller hands the bytes to node:http, whose parser
 * answers it (400, 431, …) — so this parser only has to be right about what it accepts.
 */
export interface RequestHead {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly target: string;
  /** Lower-cased names; a header sent twice makes the whole head unusual. */
  readonly headers: ReadonlyMap<string, string>;
  /** Bytes of the head, including the blank line. */
  readonly length: number;
}

const REQUEST_LINE = /^([A-Z]+) (\/[\x21-\x7e]*) HTTP\/1\.[01]$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t\x80-\xff]*?)[ \t]*$/;

/** The offset just past the head's blank line, or -1 while the head is incomplete. */
export function headEnd(buf: Buffer): number {
  const i = buf.indexOf('\r\n\r\n');
  return i === -1 ? -1 : i + 4;
}

export function parseRequestHead(buf: Buffer): RequestHead | undefined {
  const end = headEnd(buf);
  if (end === -1) return undefined;
  const lines = buf.toString('latin1', 0, end - 4).split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (m === null) return undefined;
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const h = HEADER.exec(lines[i]!);
    if (h === null) return undefined;
    const name = h[1]!.toLowerCase();
    if (headers.has(name)) return undefined;
    headers.set(name, h[2]!);
  }
  return { method: m[1]!, target: m[2]!, headers, length: end };
}
