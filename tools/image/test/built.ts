/** What the image tests share: the images `make image` wrote, and running the tools they check them with. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImagesIndex } from '../build.ts';
import { REPO } from '../images.ts';

export const OUT = join(REPO, '.images');

/** .images/images.json: every image's reference, file and digests. */
export function builtImages(): ImagesIndex {
  const file = join(OUT, 'images.json');
  if (!existsSync(file))
    throw new Error(`${file} is missing: run \`make image\` first (make image-test does)`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** The path a tools/*.sh installer prints; its progress (a first install) goes straight to the terminal. */
export function tool(script: string): string {
  return execFileSync('bash', [join(REPO, 'tools', script)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** Runs a program to completion and returns its stdout; an error quotes what it said. */
export function run(program: string, args: readonly string[]): string {
  try {
    return execFileSync(program, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${program} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}
