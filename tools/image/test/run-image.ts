/**
 * Runs an image's rootfs the way a container runtime would, with nothing but util-linux: the
 * layers extracted in order (by GNU tar, from the paths manifest.json names, as `docker load`
 * reads them), then the config's entrypoint and arguments started in fresh mount and PID
 * namespaces, chrooted into a read-only bind of that tree (the chart sets
 * readOnlyRootFilesystem), with /proc and /dev mounted, in the config's working directory, as the
 * config's user and environment. The process is PID 1 of its namespace, as in a pod.
 *
 * The mounts live in the mount namespace, so they vanish with its last process: nothing to
 * unmount, also when a test is interrupted. Needs root (namespaces, chroot, setuid).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Supervised, startProcess } from '@herald/testkit';
import type { RunConfig } from '../archive.ts';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'make image-test runs each image with unshare and chroot, which need root; run it as root (CI does), or use `make image` alone to only build',
    );
  }
}

function tar(args: string[]): void {
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`tar ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
}

/** Extracts the image tarball's layers, bottom first, into `root` (via `work` for the outer archive). */
export function extractRootfs(tarball: string, work: string, root: string): void {
  mkdirSync(work, { recursive: true });
  mkdirSync(root, { recursive: true });
  tar(['-xf', tarball, '-C', work]);
  const [image] = JSON.parse(readFileSync(join(work, 'manifest.json'), 'utf8'));
  // As root, GNU tar keeps the archive's owners and modes, as a runtime's snapshotter does.
  for (const layer of image.Layers as string[]) tar(['-xf', join(work, layer), '-C', root]);
}

export interface Mount {
  readonly host: string;
  /** Absolute path inside the container. */
  readonly at: string;
  readonly readOnly?: boolean;
}

export interface RunOptions {
  /** How messages name it. */
  readonly name: string;
  /** Replaces the image's Cmd (a pod's `args`). */
  readonly args?: readonly string[];
  /** Replaces the image's Entrypoint and Cmd (a pod's `command`). */
  readonly command?: readonly string[];
  /** Added to (and overriding) the image's Env. */
  readonly env?: Record<string, string>;
  readonly mounts?: readonly Mount[];
}

/** A running container: `proc` is the `unshare` holding its namespaces, `init` the image's process. */
export interface Container {
  readonly proc: Supervised;
  /** Sends `signal` to the container's PID 1 (unshare itself blocks SIGTERM and SIGINT). */
  signal(signal: NodeJS.Signals): void;
  /** Host PID of the container's PID 1. */
  init(): number;
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function runContainer(root: string, config: RunConfig, opts: RunOptions): Container {
  const [uid, gid] = (config.User ?? '0:0').split(':');
  if (!/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? uid ?? '')) {
    throw new Error(`${opts.name}: user ${config.User} is not numeric uid:gid, which this runner needs`);
  }
  const argv = opts.command ?? [...config.Entrypoint, ...(opts.args ?? config.Cmd ?? [])];
  const env: Record<string, string> = {};
  for (const pair of config.Env) {
    const eq = pair.indexOf('=');
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  Object.assign(env, opts.env);
  const mounts = opts.mounts ?? [];
  // Mount points exist before the root becomes read-only, as a runtime creates them first.
  for (const dir of ['proc', 'dev', ...mounts.map((m) => m.at)])
    mkdirSync(join(root, dir), { recursive: true });
  const script = [
    'set -eu',
    `r=${q(root)}`,
    'mount --bind "$r" "$r"',
    'mount -t proc proc "$r/proc"',
    'mount --bind /dev "$r/dev"',
    ...mounts.flatMap((m) => [
      `mount --bind ${q(m.host)} "$r"${q(m.at)}`,
      ...(m.readOnly ? [`mount -o remount,bind,ro "$r"${q(m.at)}`] : []),
    ]),
    'mount -o remount,bind,ro "$r"',
    `exec unshare --root="$r" --wd=${q(config.WorkingDir || '/')} --setgid=${gid ?? uid} --setuid=${uid} -- ${argv.map(q).join(' ')}`,
  ].join('\n');
  const proc = startProcess({
    name: opts.name,
    program: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child',
      '--',
      'sh',
      '-c',
      script,
    ],
    env,
    fix: 'the image tests need util-linux (unshare, mount) and root',
  });
  const init = (): number => {
    if (proc.pid === undefined) throw new Error(`${opts.name} did not start`);
    const children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim();
    const pid = Number(children.split(' ')[0]);
    if (!(pid > 0)) throw new Error(`${opts.name}: unshare (pid ${proc.pid}) has no child yet`);
    return pid;
  };
  return { proc, init, signal: (signal) => process.kill(init(), signal) };
}
