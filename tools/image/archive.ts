/**
 * One image as one tarball that is at once a `docker save` archive (manifest.json naming the
 * config and layer files) and an OCI image layout (oci-layout, index.json, blobs/sha256/…), the
 * shape `docker save` itself writes since Docker 25. Each loader reads the part it knows:
 * `docker load` (classic store) manifest.json; `ctr images import`, Docker's containerd store and
 * `podman load` the OCI layout, naming the image from index.json's `io.containerd.image.name`.
 *
 * Layers are uncompressed tars, so a layer's digest is also its diff ID; the config digest is the
 * image ID `docker images` shows. Everything is written with one fixed mtime (SOURCE_DATE_EPOCH,
 * else 0) and sorted, so the same inputs give the same digests.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Rootfs } from './rootfs.ts';
import { TarFile } from './tar.ts';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** The `config` object of an image config: what a runtime reads to start the container. */
export interface RunConfig {
  readonly User?: string;
  readonly ExposedPorts?: Record<string, Record<string, never>>;
  readonly Env: readonly string[];
  readonly Entrypoint: readonly string[];
  readonly Cmd?: readonly string[];
  readonly WorkingDir?: string;
  readonly Labels?: Record<string, string>;
  readonly StopSignal?: string;
}

export interface ImageSpec {
  /** Short name: the tarball is `<name>.tar`. */
  readonly name: string;
  /** Full reference the loaders tag it with, e.g. `ghcr.io/herald/gateway:0.1.0`. */
  readonly ref: string;
  readonly config: RunConfig;
  /** Bottom first; `createdBy` is the history line `docker history` shows for it. */
  readonly layers: readonly { readonly createdBy: string; readonly fs: Rootfs }[];
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** What was written, for images.json and the tests. */
export interface BuiltImage {
  readonly name: string;
  readonly ref: string;
  /** File name of the tarball, beside images.json. */
  readonly file: string;
  /** Size of the tarball in bytes. */
  readonly bytes: number;
  /** The image ID (`docker images`, `crictl images`): the config's digest. */
  readonly config: Descriptor;
  /** The OCI manifest's digest (what containerd shows as the image digest). */
  readonly manifest: Descriptor;
  readonly layers: readonly Descriptor[];
}

export interface WriteOptions {
  /** Seconds since the epoch for every mtime and the config's `created`. */
  readonly mtime: number;
  /** Called with a line of progress (stderr in the CLI). */
  readonly progress?: (line: string) => void;
}

/** The machine's architecture in OCI terms. */
export function ociArch(arch: string = process.arch): string {
  const known: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  const a = known[arch];
  if (a === undefined) throw new Error(`no OCI architecture name known for Node's ${arch}`);
  return a;
}

/** Writes `<outDir>/<spec.name>.tar`, replacing it only once the new one is complete. */
export function writeImage(spec: ImageSpec, outDir: string, opts: WriteOptions): BuiltImage {
  const say = opts.progress ?? (() => {});
  const work = join(outDir, `.work-${spec.name}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const blobs = new Map<string, { path: string } | { data: Buffer }>();
    const layers: Descriptor[] = [];
    for (const [i, layer] of spec.layers.entries()) {
      const path = join(work, `layer-${i}.tar`);
      say(
        `${spec.name}: layer ${i + 1}/${spec.layers.length} (${layer.createdBy}), ${mb(layer.fs.contentBytes)} of files`,
      );
      const { sha256, size } = layer.fs.write(path, opts.mtime);
      layers.push({ mediaType: MEDIA.layer, digest: `sha256:${sha256}`, size });
      blobs.set(sha256, { path });
    }
    const created = new Date(opts.mtime * 1000).toISOString().replace('.000Z', 'Z');
    const arch = ociArch();
    const configJson = json({
      architecture: arch,
      os: 'linux',
      config: spec.config,
      created,
      history: spec.layers.map((l) => ({ created, created_by: l.createdBy, comment: 'tools/image' })),
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    });
    const config = blob(blobs, MEDIA.config, configJson);
    const manifestJson = json({ schemaVersion: 2, mediaType: MEDIA.manifest, config, layers });
    const manifest = blob(blobs, MEDIA.manifest, manifestJson);
    const tag = spec.ref.slice(spec.ref.lastIndexOf(':') + 1);
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          ...manifest,
          platform: { architecture: arch, os: 'linux' },
          // containerd and Podman name the image from the first; the second is the OCI
          // convention (a tag), as `docker save` writes it.
          annotations: { 'io.containerd.image.name': spec.ref, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    });
    const dockerManifest = json([
      {
        Config: blobPath(config.digest),
        RepoTags: [spec.ref],
        Layers: layers.map((l) => blobPath(l.digest)),
      },
    ]);

    const file = `${spec.name}.tar`;
    const partial = join(work, file);
    const tar = new TarFile(partial);
    const head = { mode: 0o644, uid: 0, gid: 0, mtime: opts.mtime };
    try {
      tar.dir({ ...head, path: 'blobs', mode: 0o755 });
      tar.dir({ ...head, path: 'blobs/sha256', mode: 0o755 });
      for (const hex of [...blobs.keys()].sort()) {
        const b = blobs.get(hex)!;
        const path = `blobs/sha256/${hex}`;
        if ('data' in b) tar.data({ ...head, path }, b.data);
        else tar.copy({ ...head, path }, b.path, statSync(b.path).size);
      }
      tar.data({ ...head, path: 'index.json' }, index);
      tar.data({ ...head, path: 'manifest.json' }, dockerManifest);
      tar.data({ ...head, path: 'oci-layout' }, json({ imageLayoutVersion: '1.0.0' }));
      tar.close();
    } catch (error) {
      tar.abandon();
      throw error;
    }
    renameSync(partial, join(outDir, file));
    const bytes = statSync(join(outDir, file)).size;
    say(`${spec.name}: ${spec.ref} ${mb(bytes)}, image ID ${config.digest.slice(0, 19)}…`);
    return { name: spec.name, ref: spec.ref, file, bytes, config, manifest, layers };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function blob(
  blobs: Map<string, { path: string } | { data: Buffer }>,
  mediaType: string,
  data: Buffer,
): Descriptor {
  const hex = createHash('sha256').update(data).digest('hex');
  blobs.set(hex, { data });
  return { mediaType, digest: `sha256:${hex}`, size: data.length };
}

export function blobPath(digest: string): string {
  return `blobs/sha256/${digest.replace(/^sha256:/, '')}`;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
