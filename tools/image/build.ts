/**
 * `make image`: writes the gateway, nats-server and pause images as tarballs that `docker load`,
 * `podman load` and `ctr images import` accept, with no container engine, plus images.json
 * listing each one's reference, file and digests (what a cluster harness imports).
 *
 *   node tools/image/build.ts [--out DIR] [--fresh-deps]
 *
 * --out        where the tarballs go (default .images/, git-ignored)
 * --fresh-deps install the gateway's production dependencies afresh in a temporary directory
 *              instead of the cached staging (the reproducibility test uses it)
 *
 * Expects `make build`'s output (the compiled gateway); the Makefile target runs it first.
 * Progress goes to stderr. The same inputs give the same bytes: see archive.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type BuiltImage, mb, writeImage } from './archive.ts';
import {
  buildPause,
  gatewayImage,
  type Inputs,
  natsServerImage,
  pauseImage,
  REPO,
  stageProductionDeps,
  toolPath,
} from './images.ts';

export interface BuildOptions {
  readonly out: string;
  readonly freshDeps?: boolean;
  readonly progress?: (line: string) => void;
}

/** What images.json holds: the images by name. */
export type ImagesIndex = Record<string, BuiltImage>;

export function mtimeFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['SOURCE_DATE_EPOCH'];
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw))
    throw new Error(`SOURCE_DATE_EPOCH must be whole seconds since the epoch, not ${raw}`);
  return Number(raw);
}

export function buildImages(opts: BuildOptions): ImagesIndex {
  const say = opts.progress ?? (() => {});
  const out = resolve(opts.out);
  mkdirSync(out, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), 'herald-image-'));
  try {
    const mtime = mtimeFromEnv();
    const inputs: Inputs = {
      node: join(toolPath('node.sh'), 'node'),
      natsServer: toolPath('nats-server.sh'),
      pause: buildPause(scratch),
      deps: stageProductionDeps({
        progress: say,
        ...(opts.freshDeps ? { into: join(scratch, 'deps') } : {}),
      }),
    };
    const index: ImagesIndex = {};
    for (const spec of [gatewayImage(inputs), natsServerImage(inputs), pauseImage(inputs)]) {
      index[spec.name] = writeImage(spec, out, { mtime, progress: say });
    }
    writeFileSync(join(out, 'images.json'), `${JSON.stringify(index, null, 2)}\n`);
    return index;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(REPO, '.images') },
      'fresh-deps': { type: 'boolean', default: false },
    },
  });
  const started = Date.now();
  try {
    const index = buildImages({
      out: values.out,
      freshDeps: values['fresh-deps'],
      progress: (line) => console.error(`herald: image ${line}`),
    });
    console.error(
      `herald: images written to ${values.out} in ${((Date.now() - started) / 1000).toFixed(1)} s:`,
    );
    for (const img of Object.values(index)) {
      console.error(
        `  ${img.file.padEnd(16)} ${img.ref.padEnd(40)} ${mb(img.bytes).padStart(9)}  ${img.config.digest}`,
      );
    }
  } catch (error) {
    console.error(`herald: make image failed: ${(error as Error).message}`);
    process.exit(1);
  }
}
