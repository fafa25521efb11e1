/**
 * Reads an image tarball back the way the loaders do, checking as it goes that every reference
 * holds: manifest.json's config and layers, index.json's manifest, the manifest's descriptors and
 * the config's diff IDs all name blobs whose sha256 and size match. Throws, saying which, if not.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { blobPath, type Descriptor, MEDIA, type RunConfig } from '../archive.ts';
import { type ReadEntry, readTar } from '../tar.ts';

export interface ImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly config: RunConfig;
  readonly created: string;
  readonly history: readonly { created_by: string }[];
  readonly rootfs: { readonly type: string; readonly diff_ids: readonly string[] };
}

export interface OpenedImage {
  /** Paths of the outer archive, in archive order. */
  readonly paths: readonly string[];
  readonly repoTags: readonly string[];
  /** `io.containerd.image.name` of index.json's one manifest. */
  readonly indexName: string;
  readonly config: ImageConfig;
  readonly configDigest: string;
  readonly manifestDigest: string;
  readonly layerDigests: readonly string[];
  /** Each layer's entries, bottom first. */
  readonly layers: readonly (readonly ReadEntry[])[];
  /** Each layer's bytes (to read a file's content at an entry's offset). */
  readonly layerBytes: readonly Buffer[];
  /** Every blob's sha256 (hex) is its name; blobs nothing references would show here. */
  readonly unreferencedBlobs: readonly string[];
  /** Outer entries with something other than root ownership, mode 0644/0755 or the build's mtime. */
  readonly oddEntries: readonly string[];
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export function openImage(file: string): OpenedImage {
  const buf = readFileSync(file);
  const entries = readTar(buf);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const content = (path: string): Buffer => {
    const e = byPath.get(path);
    if (e === undefined || e.type !== 'file') throw new Error(`${file} has no file ${path}`);
    return buf.subarray(e.offset, e.offset + e.size);
  };
  const referenced = new Set<string>();
  const blob = (d: Descriptor | string, what: string): Buffer => {
    const digest = typeof d === 'string' ? d : d.digest;
    const path = blobPath(digest);
    const data = content(path);
    if (sha256(data) !== digest) throw new Error(`${file}: ${what} ${path} does not hash to its name`);
    if (typeof d !== 'string' && data.length !== d.size) {
      throw new Error(`${file}: ${what} ${digest} is ${data.length} bytes, its descriptor says ${d.size}`);
    }
    referenced.add(path);
    return data;
  };

  const layout = JSON.parse(content('oci-layout').toString());
  if (layout.imageLayoutVersion !== '1.0.0') throw new Error(`${file}: oci-layout is not version 1.0.0`);
  const index = JSON.parse(content('index.json').toString());
  if (index.mediaType !== MEDIA.index || index.manifests?.length !== 1) {
    throw new Error(`${file}: index.json should be an OCI index of exactly one manifest`);
  }
  const mdesc = index.manifests[0] as Descriptor & { annotations?: Record<string, string> };
  if (mdesc.mediaType !== MEDIA.manifest)
    throw new Error(`${file}: index.json's manifest has media type ${mdesc.mediaType}`);
  const manifest = JSON.parse(blob(mdesc, 'manifest').toString());
  if (manifest.config.mediaType !== MEDIA.config)
    throw new Error(`${file}: manifest's config media type is wrong`);
  const configBytes = blob(manifest.config, 'config');
  const layerDescs = manifest.layers as Descriptor[];
  const layerBytes = layerDescs.map((l, i) => {
    if (l.mediaType !== MEDIA.layer) throw new Error(`${file}: layer ${i} has media type ${l.mediaType}`);
    return blob(l, `layer ${i}`);
  });

  const docker = JSON.parse(content('manifest.json').toString());
  if (!Array.isArray(docker) || docker.length !== 1)
    throw new Error(`${file}: manifest.json should list one image`);
  const d = docker[0];
  if (d.Config !== blobPath(manifest.config.digest)) {
    throw new Error(`${file}: manifest.json's Config ${d.Config} is not the OCI manifest's config`);
  }
  const dockerLayers = (d.Layers as string[]).join(' ');
  if (dockerLayers !== layerDescs.map((l) => blobPath(l.digest)).join(' ')) {
    throw new Error(`${file}: manifest.json's Layers differ from the OCI manifest's`);
  }

  const config = JSON.parse(configBytes.toString()) as ImageConfig;
  // docker load recomputes each layer's diff ID (the digest of the uncompressed tar) and refuses a mismatch.
  const diffIds = config.rootfs.diff_ids.join(' ');
  if (config.rootfs.type !== 'layers' || diffIds !== layerBytes.map(sha256).join(' ')) {
    throw new Error(`${file}: the config's rootfs.diff_ids are not the layers' digests`);
  }

  const created = Date.parse(config.created) / 1000;
  const oddEntries = entries
    .filter(
      (e) =>
        e.uid !== 0 || e.gid !== 0 || e.mtime !== created || e.mode !== (e.type === 'dir' ? 0o755 : 0o644),
    )
    .map((e) => e.path);
  const unreferenced = entries
    .filter((e) => e.type === 'file' && e.path.startsWith('blobs/') && !referenced.has(e.path))
    .map((e) => e.path);
  return {
    paths: entries.map((e) => e.path),
    repoTags: d.RepoTags,
    indexName: mdesc.annotations?.['io.containerd.image.name'] ?? '',
    config,
    configDigest: manifest.config.digest,
    manifestDigest: mdesc.digest,
    layerDigests: layerDescs.map((l) => l.digest),
    layers: layerBytes.map((b) => readTar(b)),
    layerBytes,
    unreferencedBlobs: unreferenced,
    oddEntries,
  };
}

/** The content of a file entry of layer `i`. */
export function fileContent(img: OpenedImage, i: number, e: ReadEntry): Buffer {
  return img.layerBytes[i]!.subarray(e.offset, e.offset + e.size);
}
