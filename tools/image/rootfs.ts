/**
 * The file tree of one image layer, gathered from the host and written as a reproducible tar.
 *
 * Ownership is root's (uid/gid 0) unless a path says otherwise, as after a Dockerfile COPY without
 * --chown. Modes are normalised to 0755 (directories and anything executable) or 0644, so the
 * umask of whoever ran `npm install` does not reach the digest. Entries are written sorted, each
 * directory before what it holds, with one fixed mtime.
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { TarFile } from './tar.ts';

type Owner = { readonly uid: number; readonly gid: number };
type Node =
  | ({ readonly kind: 'dir'; readonly mode: number } & Owner)
  | ({ readonly kind: 'file'; readonly mode: number; readonly source: string; readonly size: number } & Owner)
  | ({ readonly kind: 'data'; readonly mode: number; readonly data: Buffer } & Owner)
  | { readonly kind: 'symlink'; readonly target: string };

export interface PathOptions {
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

const ROOT: Owner = { uid: 0, gid: 0 };

export class Rootfs {
  readonly #nodes = new Map<string, Node>();

  /** Paths in the tree, without a leading `/`, sorted. */
  get paths(): string[] {
    return [...this.#nodes.keys()].sort(byteOrder);
  }

  dir(path: string, opts: PathOptions = {}): this {
    return this.#put(path, { kind: 'dir', mode: opts.mode ?? 0o755, ...owner(opts) });
  }

  /** A file with the given content (configuration files the image needs, e.g. /etc/passwd). */
  text(path: string, content: string | Buffer, opts: PathOptions = {}): this {
    const data = typeof content === 'string' ? Buffer.from(content) : content;
    return this.#put(path, { kind: 'data', mode: opts.mode ?? 0o644, data, ...owner(opts) });
  }

  /** The host file `source` (followed if a symlink) at `path`. */
  file(path: string, source: string, opts: PathOptions = {}): this {
    const st = statSync(source);
    if (!st.isFile()) throw new Error(`${source} is not a regular file`);
    const mode = opts.mode ?? (st.mode & 0o111 ? 0o755 : 0o644);
    return this.#put(path, { kind: 'file', mode, source, size: st.size, ...owner(opts) });
  }

  symlink(path: string, target: string): this {
    return this.#put(path, { kind: 'symlink', target });
  }

  /** The host directory `source` and everything under it at `path`; symlinks stay symlinks. */
  tree(path: string, source: string): this {
    const st = lstatSync(source);
    if (!st.isDirectory()) throw new Error(`${source} is not a directory`);
    this.dir(path);
    for (const name of readdirSync(source).sort(byteOrder)) {
      const from = posix.join(source, name);
      const to = posix.join(path, name);
      const entry = lstatSync(from);
      if (entry.isSymbolicLink()) this.symlink(to, readlinkSync(from));
      else if (entry.isDirectory()) this.tree(to, from);
      else if (entry.isFile()) this.file(to, from);
      else
        throw new Error(`${from} is neither a file, a directory nor a symlink; it cannot go into an image`);
    }
    return this;
  }

  /**
   * The host path `hostPath` at the same place in the image, with every symlink met on the way
   * (Debian's /lib → usr/lib, /lib64/ld-linux-x86-64.so.2 → /lib/x86_64-linux-gnu/…), so the
   * paths `ldd` prints and the ones the dynamic loader searches both exist in the image.
   */
  hostPath(hostPath: string, depth = 0): this {
    if (depth > 16) throw new Error(`too many symlinks resolving ${hostPath}`);
    const parts = hostPath.split('/').filter((p) => p !== '');
    let real = '/';
    for (const [i, part] of parts.entries()) {
      const here = posix.join(real, part);
      const st = lstatSync(here);
      if (st.isSymbolicLink()) {
        const target = readlinkSync(here);
        this.symlink(here, target);
        const resolved = posix.resolve(real, target);
        return this.hostPath(posix.join(resolved, ...parts.slice(i + 1)), depth + 1);
      }
      real = here;
    }
    return this.file(real, real);
  }

  /** An executable at `path` and every shared library `ldd` says it loads, the dynamic loader included. */
  executable(path: string, source: string): this {
    this.file(path, source, { mode: 0o755 });
    for (const lib of sharedLibraries(source)) this.hostPath(lib);
    return this;
  }

  /** Writes the tree as a tar at `tarPath`; returns the tar's sha256 (hex) and size. */
  write(tarPath: string, mtime: number): { sha256: string; size: number } {
    const nodes = new Map(this.#nodes);
    // Parents that were not added explicitly, as plain root-owned directories.
    for (const path of this.#nodes.keys()) {
      for (let p = posix.dirname(path); p !== '.'; p = posix.dirname(p)) {
        const parent = nodes.get(p);
        if (parent === undefined) nodes.set(p, { kind: 'dir', mode: 0o755, ...ROOT });
        else if (parent.kind !== 'dir')
          throw new Error(`/${path} lies under /${p}, which is not a directory`);
      }
    }
    const tar = new TarFile(tarPath);
    try {
      for (const path of [...nodes.keys()].sort(byteOrder)) {
        const n = nodes.get(path)!;
        if (n.kind === 'symlink') tar.symlink({ path, linkname: n.target, mode: 0o777, ...ROOT, mtime });
        else if (n.kind === 'dir') tar.dir({ path, mode: n.mode, uid: n.uid, gid: n.gid, mtime });
        else if (n.kind === 'data') tar.data({ path, mode: n.mode, uid: n.uid, gid: n.gid, mtime }, n.data);
        else tar.copy({ path, mode: n.mode, uid: n.uid, gid: n.gid, mtime }, n.source, n.size);
      }
      return tar.close();
    } catch (error) {
      tar.abandon();
      throw error;
    }
  }

  /** Bytes of file content in the tree. */
  get contentBytes(): number {
    let sum = 0;
    for (const n of this.#nodes.values()) {
      if (n.kind === 'file') sum += n.size;
      else if (n.kind === 'data') sum += n.data.length;
    }
    return sum;
  }

  #put(path: string, node: Node): this {
    const key = posix.normalize(path).replace(/^\/+/, '').replace(/\/+$/, '');
    if (key === '' || key === '.' || key.startsWith('..')) throw new Error(`bad image path ${path}`);
    const had = this.#nodes.get(key);
    // The same library reached twice (two binaries need libc) is fine; two different things are not.
    if (had !== undefined && !same(had, node))
      throw new Error(`/${key} is added twice with different content`);
    this.#nodes.set(key, node);
    return this;
  }
}

function owner(opts: PathOptions): Owner {
  return { uid: opts.uid ?? 0, gid: opts.gid ?? opts.uid ?? 0 };
}

function same(a: Node, b: Node): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'symlink' && b.kind === 'symlink') return a.target === b.target;
  if (a.kind === 'file' && b.kind === 'file') return a.source === b.source && a.mode === b.mode;
  if (a.kind === 'dir' && b.kind === 'dir') return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid;
  return false;
}

/** Byte order of the UTF-8 names, which is what "sorted" means to tar and to a reader of one. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The absolute paths of the shared libraries and loader `ldd` lists for `binary`; [] for a static one. */
export function sharedLibraries(binary: string): string[] {
  const r = spawnSync('ldd', [binary], { encoding: 'utf8' });
  if (r.error) throw new Error(`could not run ldd (${r.error.message}); it comes with libc-bin on Debian`);
  const out = `${r.stdout}${r.stderr}`;
  if (/not a dynamic executable|statically linked/.test(out)) return [];
  if (r.status !== 0) throw new Error(`ldd ${binary} failed (exit ${r.status}):\n${out}`);
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing) throw new Error(`${binary} needs ${missing[1]}, which ldd cannot find on this machine`);
    const m = /^\s*(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)/.exec(line);
    if (m) libs.push(m[1]!);
  }
  if (libs.length === 0) throw new Error(`ldd ${binary} listed no libraries:\n${out}`);
  return libs;
}
