/**
 * The tar writer on what the images do not happen to contain today: names and link targets too
 * long for ustar's fields (a pax header then), non-ASCII names, a sticky bit. GNU tar must read
 * back what the reader reads, and the same entries must give the same bytes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeTempDir, removeTempDir } from '@herald/testkit';
import { readTar, TarFile } from '../tar.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await removeTempDir(d);
});

const deep = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(90)}`;
const longFile = `${deep}/${'g'.repeat(120)}.txt`;
const longLink = `/${'t'.repeat(150)}/target`;

function write(path: string): { sha256: string; size: number } {
  const tar = new TarFile(path);
  const h = { uid: 0, gid: 0, mtime: 1_700_000_000 };
  tar.dir({ ...h, path: 'd', mode: 0o755 });
  tar.dir({ ...h, path: 'tmp', mode: 0o1777 });
  tar.dir({ ...h, path: deep, mode: 0o755 });
  tar.data({ ...h, path: longFile, mode: 0o644 }, Buffer.from('long\n'));
  tar.data({ ...h, path: 'd/naïve-ünïcode.txt', mode: 0o600 }, Buffer.from('é\n'));
  tar.symlink({ ...h, path: 'd/link', mode: 0o777, linkname: longLink });
  return tar.close();
}

test('tar - long names and link targets (pax), non-ASCII names and modes survive GNU tar and the reader; same entries, same bytes', async () => {
  const dir = await makeTempDir('herald-tar-');
  dirs.push(dir);
  const a = write(join(dir, 'a.tar'));
  const b = write(join(dir, 'b.tar'));
  assert.deepEqual(a, b, 'two writes of the same entries');

  const entries = readTar(readFileSync(join(dir, 'a.tar')));
  assert.deepEqual(
    entries.map((e) => [e.path, e.type, e.mode.toString(8)]),
    [
      ['d', 'dir', '755'],
      ['tmp', 'dir', '1777'],
      [deep, 'dir', '755'],
      [longFile, 'file', '644'],
      ['d/naïve-ünïcode.txt', 'file', '600'],
      ['d/link', 'symlink', '777'],
    ],
  );
  assert.equal(entries.at(-1)!.linkname, longLink);

  const out = join(dir, 'x');
  const r = spawnSync('sh', ['-c', `mkdir "$1" && tar -xf "$2" -C "$1"`, 'sh', out, join(dir, 'a.tar')], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `GNU tar refused the archive: ${r.stderr}`);
  assert.equal(readFileSync(join(out, longFile), 'utf8'), 'long\n');
  assert.equal(readFileSync(join(out, 'd/naïve-ünïcode.txt'), 'utf8'), 'é\n');
  assert.equal(readlinkSync(join(out, 'd/link')), longLink);
  assert.equal(lstatSync(join(out, 'tmp')).mode & 0o7777, 0o1777);
});
