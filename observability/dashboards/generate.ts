/**
 * Writes the dashboards' JSON to observability/dashboards/json/ (`make dashboards`).
 * `--check` writes nothing and fails, naming the file, when the committed JSON differs from what
 * the code generates or a JSON file there is no longer generated (CI runs this).
 * `--dir <path>` works on another directory (the tests use it).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dashboards, render } from './index.ts';

const args = process.argv.slice(2);
const at = args.indexOf('--dir');
const dir = at === -1 ? fileURLToPath(new URL('./json/', import.meta.url)) : args[at + 1];
if (dir === undefined || dir.startsWith('--')) {
  console.error('usage: generate.ts [--check] [--dir <path>]');
  process.exit(2);
}

const expected = new Map(dashboards.map((d) => [`${d.name}.json`, render(d.build())]));
const present = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
const orphans = present.filter((f) => !expected.has(f));

if (args.includes('--check')) {
  const stale: string[] = [];
  for (const [file, content] of expected) {
    const path = join(dir, file);
    if (!existsSync(path) || readFileSync(path, 'utf8') !== content) stale.push(path);
  }
  for (const file of orphans) stale.push(`${join(dir, file)} (no dashboard generates it)`);
  if (stale.length > 0) {
    for (const file of stale) console.error(`${relative(process.cwd(), file) || file} is stale`);
    console.error('Dashboard JSON is stale: run `make dashboards` and commit the result.');
    process.exit(1);
  }
} else {
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of expected) writeFileSync(join(dir, file), content);
  for (const file of orphans) rmSync(join(dir, file));
}
