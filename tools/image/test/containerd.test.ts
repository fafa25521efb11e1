/**
 * `ctr images import` accepts the tarballs of `make image`, into a containerd (Debian's, from
 * tools/containerd.sh) started here with its own root, state and socket in a temporary directory,
 * as a cluster's containerd would get them: each image is named by its reference, has the manifest
 * digest images.json lists, and is unpacked into the snapshotter.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, removeTempDir, type Supervised, startProcess } from '@herald/testkit';
import { builtImages, OUT, run, tool } from './built.ts';
import { requireRoot } from './run-image.ts';

const index = builtImages();
const images = Object.values(index);

describe('ctr images import', () => {
  let dir = '';
  let containerd: Supervised | undefined;
  let ctr: (...args: string[]) => string;
  before(async () => {
    requireRoot();
    const bin = tool('containerd.sh');
    dir = await makeTempDir('herald-image-containerd-');
    const socket = join(dir, 'containerd.sock');
    // No CRI (no kubelet here) and nothing outside `dir`: /opt/containerd is the default of
    // the opt plugin, and the debug socket would be under /run.
    writeFileSync(
      join(dir, 'config.toml'),
      [
        'version = 2',
        `root = ${JSON.stringify(join(dir, 'root'))}`,
        `state = ${JSON.stringify(join(dir, 'state'))}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = ${JSON.stringify(socket)}`,
        '[ttrpc]',
        `  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
        '[debug]',
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = ${JSON.stringify(join(dir, 'opt'))}`,
        '',
      ].join('\n'),
    );
    containerd = startProcess({
      name: 'containerd',
      program: join(bin, 'containerd'),
      args: ['--config', join(dir, 'config.toml')],
      fix: 'run `bash tools/containerd.sh`',
    });
    ctr = (...args) => run(join(bin, 'ctr'), ['--address', socket, '--namespace', 'k8s.io', ...args]);
    await containerd.waitUntil(
      () => {
        ctr('version');
        return true;
      },
      { within: 20_000, what: `ctr version on ${socket}` },
    );
  });
  after(async () => {
    await containerd?.stop();
    if (dir) await removeTempDir(dir);
  });

  test('ctr - imports and unpacks every image under its reference, with the manifest digest images.json lists', () => {
    for (const img of images) ctr('images', 'import', join(OUT, img.file));
    const listed = ctr('images', 'check')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim() !== '')
      .map((l) => l.split(/\s+/));
    for (const img of images) {
      const row = listed.find((r) => r[0] === img.ref);
      assert.ok(row, `ctr lists no ${img.ref}:\n${listed.map((r) => r.join(' ')).join('\n')}`);
      assert.equal(row[2], img.manifest.digest, `${img.ref}: manifest digest`);
      assert.equal(row[3], 'complete', `${img.ref}: every blob present`);
      assert.equal(row.at(-1), 'true', `${img.ref}: unpacked into the snapshotter`);
    }
  });
});
