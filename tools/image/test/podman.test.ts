/**
 * Podman accepts the tarballs of `make image`: `podman load` (which reads the OCI layout) and its
 * docker-archive transport (which reads manifest.json, as `docker load` does), into storage of
 * their own in a temporary directory. Each must name the image with its reference and give it the
 * config digest images.json lists as its ID. The podman is Debian's (tools/image-podman.sh).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, removeTempDir } from '@herald/testkit';
import { builtImages, OUT, run, tool } from './built.ts';
import { requireRoot } from './run-image.ts';

const index = builtImages();
const images = Object.values(index);

describe('podman load', () => {
  let dir = '';
  let podman: (...args: string[]) => string;
  // Podman's blob-info cache has no setting of its own: for root it is always here.
  const cache = '/var/lib/containers';
  let cacheWasThere = true;
  before(async () => {
    requireRoot();
    const bin = tool('image-podman.sh');
    dir = await makeTempDir('herald-image-podman-');
    cacheWasThere = existsSync(cache);
    for (const d of ['root', 'run', 'tmp']) mkdirSync(join(dir, d));
    const store = [
      `--root=${join(dir, 'root')}`,
      `--runroot=${join(dir, 'run')}`,
      `--tmpdir=${join(dir, 'tmp')}`,
      // vfs: plain copies, no kernel feature needed; cgroupfs and a file for events: no systemd.
      '--storage-driver=vfs',
      '--cgroup-manager=cgroupfs',
      '--events-backend=file',
    ];
    podman = (...args) => run(bin, [...store, ...args]);
  });
  after(async () => {
    if (dir) await removeTempDir(dir);
    if (!cacheWasThere) rmSync(cache, { recursive: true, force: true });
  });

  const inspect = (ref: string) => JSON.parse(podman('image', 'inspect', ref))[0];

  test('podman - load (the OCI layout) names each image by its reference with the config digest as its ID', () => {
    for (const img of images) {
      const out = podman('load', '--quiet', '--input', join(OUT, img.file));
      assert.match(out, new RegExp(`Loaded image: ${img.ref.replaceAll('.', '\\.')}`), `${img.file}: ${out}`);
      const got = inspect(img.ref);
      assert.equal(`sha256:${got.Id}`, img.config.digest, `${img.ref}: image ID`);
    }
    const gw = inspect(index['gateway']!.ref);
    assert.equal(gw.Config.User, '1000:1000');
    assert.deepEqual(gw.Config.Entrypoint, ['node', 'services/gateway/dist/main.js']);
  });

  test('podman - the docker-archive transport (manifest.json, what docker load reads) gives the same images', () => {
    for (const img of images) {
      podman('rmi', '--force', img.ref);
      podman('pull', '--quiet', `docker-archive:${join(OUT, img.file)}`);
      assert.equal(`sha256:${inspect(img.ref).Id}`, img.config.digest, `${img.ref}: image ID`);
    }
  });
});
