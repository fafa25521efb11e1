/**
 * The images Herald builds without a container engine, and where their contents come from:
 *
 * - gateway: what services/gateway/Dockerfile produces (the test in tools/image/test keeps the
 *   two from drifting), on the pinned Node 24 and exactly the shared libraries `ldd` lists for it
 *   instead of node:24-bookworm-slim. No shell, no npm: the gateway and the chart's `helm test`
 *   script (`node /test/stream-test.mjs`, run in this image) need neither.
 * - nats-server: the binary tools/nats-server.sh builds, with its libraries, for the chart's
 *   bundled StatefulSet (which passes arguments only, so the entrypoint is nats-server).
 * - pause: the sandbox image a containerd of the test cluster names as `sandbox_image`.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { ImageSpec } from './archive.ts';
import { Rootfs } from './rootfs.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The official Node images' PATH; the gateway's entrypoint and the helm test's command name `node` through it. */
export const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The manifests the Dockerfile's build stage installs from: every workspace, as npm needs them all to honour the lock. */
export const MANIFESTS = [
  'package.json',
  'package-lock.json',
  'packages/protocol/package.json',
  'packages/testkit/package.json',
  'services/gateway/package.json',
  'load-tests/package.json',
] as const;

/** Bumped by hand when tools/image/pause changes (the binary's -v prints it); a cluster's containerd names this tag. */
export const PAUSE_VERSION = '1.0';

const CACHE = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'herald');

/**
 * Just enough of /etc for Node and glibc: names for uid 0 and 1000 (the official node image's
 * `node` user; os.userInfo() fails without an entry) and an nsswitch.conf saying that host
 * names come from /etc/hosts, then DNS — the kubelet mounts both /etc/hosts and resolv.conf.
 */
function etc(fs: Rootfs, user: string, home: string): Rootfs {
  return fs
    .text(
      'etc/passwd',
      `root:x:0:0:root:/root:/usr/sbin/nologin\n${user}:x:1000:1000::${home}:/usr/sbin/nologin\n`,
    )
    .text('etc/group', `root:x:0:\n${user}:x:1000:\n`)
    .text('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n')
    .dir('tmp', { mode: 0o1777 });
}

export interface Inputs {
  /** The pinned Node binary (tools/node.sh). */
  readonly node: string;
  /** The pinned nats-server binary (tools/nats-server.sh). */
  readonly natsServer: string;
  /** A statically linked pause binary (buildPause). */
  readonly pause: string;
  /** A directory holding the production node_modules (stageProductionDeps). */
  readonly deps: string;
}

export function gatewayImage(inputs: Inputs): ImageSpec {
  const version = packageVersion('services/gateway/package.json');
  for (const dist of ['packages/protocol/dist', 'services/gateway/dist/main.js']) {
    if (!existsSync(join(REPO, dist)))
      throw new Error(`${dist} is missing: run \`make build\` first (make image does)`);
  }
  const runtime = etc(new Rootfs(), 'node', '/home/node')
    .executable('usr/local/bin/node', inputs.node)
    .dir('home/node', { uid: 1000, gid: 1000 });
  // What the Dockerfile's final stage copies, path for path.
  const app = new Rootfs()
    .dir('app')
    .tree('app/node_modules', join(inputs.deps, 'node_modules'))
    .file('app/package.json', join(REPO, 'package.json'))
    .file('app/packages/protocol/package.json', join(REPO, 'packages/protocol/package.json'))
    .tree('app/packages/protocol/dist', join(REPO, 'packages/protocol/dist'))
    .file('app/services/gateway/package.json', join(REPO, 'services/gateway/package.json'))
    .tree('app/services/gateway/dist', join(REPO, 'services/gateway/dist'));
  return {
    name: 'gateway',
    ref: `${chartRepository()}:${version}`,
    config: {
      User: '1000:1000',
      ExposedPorts: { '8080/tcp': {}, '9464/tcp': {} },
      Env: [PATH_ENV, 'NODE_ENV=production'],
      Entrypoint: ['node', 'services/gateway/dist/main.js'],
      WorkingDir: '/app',
      Labels: labels('Herald gateway', version, 'Herald SSE gateway and publish API'),
    },
    layers: [
      { createdBy: `Node ${nodeVersion(inputs.node)} and the libraries ldd lists for it`, fs: runtime },
      {
        createdBy: 'the compiled gateway and its production dependencies (services/gateway/Dockerfile)',
        fs: app,
      },
    ],
  };
}

export function natsServerImage(inputs: Inputs): ImageSpec {
  const version = natsServerVersion(inputs.natsServer);
  const fs = etc(new Rootfs(), 'nats', '/data')
    .executable('usr/local/bin/nats-server', inputs.natsServer)
    // Writable by the image's user when run without a volume; the chart mounts one here.
    .dir('data', { uid: 1000, gid: 1000 });
  return {
    name: 'nats-server',
    ref: `localhost/herald/nats-server:${version}`,
    config: {
      User: '1000:1000',
      ExposedPorts: { '4222/tcp': {}, '6222/tcp': {}, '8222/tcp': {} },
      Env: [PATH_ENV],
      // Arguments replace Cmd and keep the entrypoint, as with the official image.
      Entrypoint: ['/usr/local/bin/nats-server'],
      Cmd: ['--jetstream', '--store_dir', '/data'],
      Labels: labels('nats-server', version, 'nats-server built from its Go module by tools/nats-server.sh'),
    },
    layers: [{ createdBy: `nats-server ${version} and the libraries ldd lists for it`, fs }],
  };
}

export function pauseImage(inputs: Inputs): ImageSpec {
  return {
    name: 'pause',
    ref: `localhost/herald/pause:${PAUSE_VERSION}`,
    config: {
      // As Kubernetes' own pause image: nobody's uid, never root.
      User: '65535:65535',
      Env: [PATH_ENV],
      Entrypoint: ['/pause'],
      Labels: labels('pause', PAUSE_VERSION, 'Pod sandbox: holds the namespaces, reaps zombies'),
    },
    layers: [
      {
        createdBy: 'tools/image/pause, built with CGO_ENABLED=0',
        fs: new Rootfs().file('pause', inputs.pause),
      },
    ],
  };
}

function labels(title: string, version: string, description: string): Record<string, string> {
  return {
    'org.opencontainers.image.title': title,
    'org.opencontainers.image.version': version,
    'org.opencontainers.image.description': description,
  };
}

function packageVersion(file: string): string {
  const version = JSON.parse(readFileSync(join(REPO, file), 'utf8')).version;
  if (typeof version !== 'string') throw new Error(`${file} has no version`);
  return version;
}

/** The chart's `image.repository`: the chart's default image reference then names this image. */
export function chartRepository(): string {
  const values = parse(readFileSync(join(REPO, 'charts/herald/values.yaml'), 'utf8'));
  const repo = values?.image?.repository;
  if (typeof repo !== 'string' || repo === '')
    throw new Error('charts/herald/values.yaml has no image.repository');
  return repo;
}

function run(program: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(program, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`could not run ${program}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${program} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

function nodeVersion(node: string): string {
  return run(node, ['--version']).trim();
}

function natsServerVersion(bin: string): string {
  const out = run(bin, ['--version']);
  const m = /v(\d+\.\d+\.\d+\S*)/.exec(out);
  if (!m) throw new Error(`cannot read a version from \`${bin} --version\`: ${out}`);
  return m[1]!;
}

/** A path printed by one of the tools/*.sh installers (installing the tool if needed). */
export function toolPath(script: string): string {
  return run('bash', [join(REPO, 'tools', script)], { cwd: REPO })
    .trim()
    .split('\n')
    .at(-1)!;
}

/**
 * The production dependencies, as the Dockerfile gets them (`npm install` of the workspace
 * manifests, then `npm prune --omit=dev`), installed into a staging directory: the repository's
 * own node_modules, which holds the dev tools, is never touched. Cached under ~/.cache/herald per
 * set of manifests and npm version, unless `into` names a directory to install into afresh (the
 * reproducibility test). `--ignore-scripts`: the one install script in the tree (protobufjs's)
 * only prints a warning, and no script gets to make the output depend on the machine.
 */
export function stageProductionDeps(opts: { into?: string; progress?: (line: string) => void } = {}): string {
  const say = opts.progress ?? (() => {});
  const npmVersion = run('npm', ['--version']).trim();
  const hash = createHash('sha256').update(`npm ${npmVersion}\n`);
  for (const file of MANIFESTS) hash.update(`${file}\n`).update(readFileSync(join(REPO, file)));
  const key = hash.digest('hex').slice(0, 16);
  const root = join(CACHE, 'image-deps');
  const dir = opts.into ?? join(root, key);
  if (opts.into === undefined && existsSync(join(dir, '.complete'))) return dir;
  const tmp = opts.into ?? join(root, `.tmp-${key}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  for (const file of MANIFESTS) cpSync(join(REPO, file), join(tmp, file));
  say(`gateway: installing the production dependencies with npm ${npmVersion} (--omit=dev) into ${tmp}`);
  const args = ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'];
  try {
    run('npm', [...args, '--loglevel=error'], { cwd: tmp });
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(
      `${(error as Error).message}\nnpm could not install the production dependencies; \`make deps\` fills npm's cache, then retry`,
    );
  }
  if (opts.into !== undefined) return tmp;
  writeFileSync(join(tmp, '.complete'), '');
  // Stagings of other manifests are stale once a day old (younger ones may be another checkout's).
  for (const old of readdirSync(root)) {
    const path = join(root, old);
    if (old !== key && Date.now() - statSync(path).mtimeMs > 86_400_000)
      rmSync(path, { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

/**
 * Builds tools/image/pause statically and reproducibly (no cgo, no build ID, no VCS stamp, no
 * file paths) with the machine's Go, into `outDir`; returns the binary's path.
 */
export function buildPause(outDir: string): string {
  const out = join(outDir, 'pause');
  try {
    const ldflags = `-s -w -buildid= -X main.version=${PAUSE_VERSION}`;
    run('go', ['build', '-trimpath', '-buildvcs=false', `-ldflags=${ldflags}`, '-o', out, '.'], {
      cwd: join(REPO, 'tools/image/pause'),
      env: { ...process.env, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' },
    });
  } catch (error) {
    throw new Error(
      `${(error as Error).message}\nthe pause image needs Go (https://go.dev) to build tools/image/pause`,
    );
  }
  return out;
}
