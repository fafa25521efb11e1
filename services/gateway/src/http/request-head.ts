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

const REQUEST_LINE = /^([A-Z]+) (\/[\x21-\x7e]*) HTTP\/1\.([01])$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t\x80-\xff]*?)[ \t]*$/;

/** The offset just past the head's blank line, or -1 while the head is incomplete. */
export function headEnd(buf: Buffer): number {
  const i = buf.indexOf('\r\n\r\n');
  return i === -1 ? -1 : i + 4;
}

/**
 * Whether the bytes of a head still arriving already rule out one `parseRequestHead` accepts: a
 * first byte that cannot start a method, a control character (other than HT), a bare LF or a CR
 * not followed by LF. The caller can then hand the bytes to node:http at once, which answers 400
 * instead of the connection waiting for a blank line that may never come. Scans from `from`, so
 * a head arriving in many pieces is scanned once.
 */
export function cannotBeHead(buf: Buffer, from = 0): boolean {
  if (buf.length > 0 && (buf[0]! < 0x41 || buf[0]! > 0x5a)) return true;
  for (let i = Math.max(from, 0); i < buf.length; i++) {
    const b = buf[i]!;
    if (b === 0x0a) {
      if (i === 0 || buf[i - 1] !== 0x0d) return true;
    } else if (b === 0x0d) {
      if (i + 1 < buf.length && buf[i + 1] !== 0x0a) return true;
    } else if ((b < 0x20 && b !== 0x09) || b === 0x7f) return true;
  }
  return false;
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
  // HTTP/1.1 requires Host (RFC 9112, 3.2); node:http's side refuses a request without one.
  if (m[3] === '1' && !headers.has('host')) return undefined;
  return { method: m[1]!, target: m[2]!, headers, length: end };
}
