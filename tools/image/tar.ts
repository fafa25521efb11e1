/**
 * A tar writer whose output depends only on what is put in: every header field that a plain
 * `tar` takes from the machine (mtime, owner names, device numbers) is fixed, so two builds of the
 * same files give the same bytes, hence the same image digests. POSIX ustar, with a pax extended
 * header only for a path or link target too long for ustar's fields (GNU tar, Go's archive/tar,
 * containerd, Docker and Podman all read both).
 *
 * Also a reader, for the tests and for checking an archive: ustar and pax `path`/`linkpath` only,
 * which is all this writer and `docker save` produce.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

const BLOCK = 512;
const COPY_CHUNK = 1 << 20;

export type EntryType = 'file' | 'dir' | 'symlink';

export interface EntryHeader {
  /** Relative, without a leading `/` or `./`; a directory's without its trailing `/`. */
  readonly path: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  /** Symlinks only. */
  readonly linkname?: string;
}

/** Writes a tar file and its sha256 as it goes (the digest of an uncompressed layer is its diff ID). */
export class TarFile {
  readonly #fd: number;
  readonly #hash: Hash = createHash('sha256');
  #size = 0;
  #closed = false;

  constructor(path: string) {
    this.#fd = openSync(path, 'w', 0o644);
  }

  dir(h: Omit<EntryHeader, 'type'>): void {
    this.#header({ ...h, type: 'dir' }, 0);
  }

  symlink(h: Omit<EntryHeader, 'type'> & { linkname: string }): void {
    this.#header({ ...h, type: 'symlink' }, 0);
  }

  /** A regular file with `data` as its content. */
  data(h: Omit<EntryHeader, 'type'>, data: Uint8Array): void {
    this.#header({ ...h, type: 'file' }, data.length);
    this.#write(data);
    this.#pad(data.length);
  }

  /** A regular file with the content of the file at `source` (read in chunks: Node is 120 MB). */
  copy(h: Omit<EntryHeader, 'type'>, source: string, size: number): void {
    this.#header({ ...h, type: 'file' }, size);
    const fd = openSync(source, 'r');
    try {
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, buf, 0, Math.min(COPY_CHUNK, size - done), done);
        if (n === 0) throw new Error(`${source} shrank while it was being archived; rebuild`);
        this.#write(buf.subarray(0, n));
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    this.#pad(size);
  }

  /** Ends the archive (two zero blocks) and returns its sha256 (hex) and size in bytes. */
  close(): { sha256: string; size: number } {
    if (this.#closed) throw new Error('tar file already closed');
    this.#write(Buffer.alloc(BLOCK * 2));
    closeSync(this.#fd);
    this.#closed = true;
    return { sha256: this.#hash.digest('hex'), size: this.#size };
  }

  /** Closes the file without finishing it (after an error). */
  abandon(): void {
    if (!this.#closed) closeSync(this.#fd);
    this.#closed = true;
  }

  #header(h: EntryHeader, size: number): void {
    const name = h.type === 'dir' ? `${h.path}/` : h.path;
    const split = splitUstarName(name);
    const link = h.linkname ?? '';
    const pax: [string, string][] = [];
    if (split === undefined) pax.push(['path', name]);
    if (Buffer.byteLength(link) > 100) pax.push(['linkpath', link]);
    if (pax.length > 0) {
      const body = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(''));
      // The pax header's own name is conventional, not read by anyone: keep it short and fixed.
      const block = ustarHeader({ ...h, type: 'file', linkname: '' }, 'PaxHeader', '', body.length, 'x');
      this.#write(block);
      this.#write(body);
      this.#pad(body.length);
    }
    const [prefix, base] = split ?? ['', name.slice(0, 99)];
    const linkField = Buffer.byteLength(link) > 100 ? '' : link;
    const type = h.type === 'dir' ? '5' : h.type === 'symlink' ? '2' : '0';
    this.#write(ustarHeader({ ...h, linkname: linkField }, base, prefix, size, type));
  }

  #pad(size: number): void {
    const rest = size % BLOCK;
    if (rest !== 0) this.#write(Buffer.alloc(BLOCK - rest));
  }

  #write(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) off += writeSync(this.#fd, bytes, off, bytes.length - off);
    this.#hash.update(bytes);
    this.#size += bytes.length;
  }
}

/** ustar splits a long name at a `/` into prefix (≤ 155 bytes) and name (≤ 100); undefined if it cannot. */
function splitUstarName(name: string): [string, string] | undefined {
  if (Buffer.byteLength(name) <= 100) return ['', name];
  // A directory's trailing slash must stay in the name part, so search before it.
  for (let i = name.length - 2; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100) return [prefix, rest];
    if (Buffer.byteLength(rest) > 100) return undefined;
  }
  return undefined;
}

/** `<length> <key>=<value>\n`, where the length counts itself. */
function paxRecord(key: string, value: string): string {
  const bodyLen = Buffer.byteLength(` ${key}=${value}\n`);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len} ${key}=${value}\n`;
}

function octal(value: number, width: number): string {
  const digits = value.toString(8);
  if (digits.length > width - 1) throw new Error(`${value} does not fit a ${width}-byte tar field`);
  return `${digits.padStart(width - 1, '0')}\0`;
}

function ustarHeader(h: EntryHeader, name: string, prefix: string, size: number, type: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  b.write(octal(h.mode & 0o7777, 8), 100, 'ascii');
  b.write(octal(h.uid, 8), 108, 'ascii');
  b.write(octal(h.gid, 8), 116, 'ascii');
  b.write(octal(size, 12), 124, 'ascii');
  b.write(octal(h.mtime, 12), 136, 'ascii');
  b.write('        ', 148, 'ascii');
  b.write(type, 156, 'ascii');
  b.write(h.linkname ?? '', 157, 100, 'utf8');
  b.write('ustar\0', 257, 'ascii');
  b.write('00', 263, 'ascii');
  // Owner names stay empty: numeric IDs are what a container runtime uses.
  b.write(octal(0, 8), 329, 'ascii');
  b.write(octal(0, 8), 337, 'ascii');
  b.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return b;
}

/** One entry read back: its header fields and where its content lies in the archive. */
export interface ReadEntry extends EntryHeader {
  readonly size: number;
  readonly offset: number;
  /** The type flag as written, e.g. `0`, `5`, `2` (`1`, hard links, are never written here). */
  readonly flag: string;
}

/** Every entry of a tar held in memory; throws on a bad checksum or a truncated archive. */
export function readTar(buf: Buffer): ReadEntry[] {
  const entries: ReadEntry[] = [];
  let off = 0;
  let pax: Record<string, string> = {};
  while (off + BLOCK <= buf.length) {
    const block = buf.subarray(off, off + BLOCK);
    if (block.every((x) => x === 0)) return entries;
    const field = (start: number, len: number) =>
      block
        .subarray(start, start + len)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const num = (start: number, len: number) => Number.parseInt(field(start, len).trim() || '0', 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
    if (sum !== num(148, 8)) throw new Error(`tar header at byte ${off} has a bad checksum`);
    const size = num(124, 12);
    const flag = field(156, 1) || '0';
    const dataAt = off + BLOCK;
    if (dataAt + size > buf.length) throw new Error(`tar entry at byte ${off} is truncated`);
    off = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'x') {
      pax = parsePax(buf.subarray(dataAt, dataAt + size));
      continue;
    }
    const prefix = field(345, 155);
    const rawName = pax['path'] ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const type: EntryType = flag === '5' ? 'dir' : flag === '2' ? 'symlink' : 'file';
    entries.push({
      path: rawName.replace(/\/$/, ''),
      type,
      flag,
      mode: num(100, 8),
      uid: num(108, 8),
      gid: num(116, 8),
      mtime: num(136, 12),
      linkname: pax['linkpath'] ?? field(157, 100),
      size,
      offset: dataAt,
    });
    pax = {};
  }
  throw new Error('tar archive ends without its two zero blocks (truncated?)');
}

function parsePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < buf.length) {
    const space = buf.indexOf(0x20, off);
    const len = Number.parseInt(buf.subarray(off, space).toString('ascii'), 10);
    if (space === -1 || !(len > 0)) throw new Error('malformed pax extended header');
    // Without the record's trailing newline.
    const record = buf.subarray(space + 1, off + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    out[record.slice(0, eq)] = record.slice(eq + 1);
    off += len;
  }
  return out;
}
