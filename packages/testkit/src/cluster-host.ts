import { execFile, spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * What the one-node cluster changes on the machine outside its own directory, written down before
 * it is changed so that it can be undone however the test process ends: the network namespace,
 * the cgroups under one root of its own in every hierarchy, the kernel settings kubelet changes,
 * and the few fixed paths kubelet and containerd create whatever they are told
 * (`/var/lib/kubelet/device-plugins`, `/run/containerd/{s,fifo,runc}`, `/var/log/containers`).
 *
 * The record is a JSON file in /run/herald-cluster (gone at reboot, like everything it names).
 * `cleanupHost` undoes one record: it kills every process in the namespace, in the cgroups or
 * naming the cluster's directory (containerd's shims, which outlive containerd), unmounts what
 * kubelet and containerd mounted under that directory, removes the cgroups, the namespace and
 * the paths the cluster created, and restores the kernel settings. It is idempotent and runs
 * from `stop()`, from a detached watcher when the test process dies without stopping the cluster
 * (`cluster-cleanup.ts`), and on a record whose owner is gone when the next cluster starts.
 */

const execFileAsync = promisify(execFile);

/** Where the records live; one cluster per machine (kubelet and containerd share fixed paths). */
export const STATE_DIR = '/run/herald-cluster';
const CLEANUP_SCRIPT = fileURLToPath(new URL('./cluster-cleanup.ts', import.meta.url));

/** Kernel settings kubelet sets when `protectKernelDefaults` is false (pkg/kubelet/cm, setupKernelTunables). */
export const KUBELET_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
] as const;

/**
 * Paths kubelet, containerd or `ip netns` create at fixed places, whatever their configuration
 * says; the cluster removes those it created. Parents before children.
 */
export const FIXED_PATHS = [
  '/var/lib/kubelet',
  '/var/lib/kubelet/device-plugins',
  '/run/containerd',
  '/run/containerd/s',
  '/run/containerd/fifo',
  '/run/containerd/runc',
  '/var/log/containers',
  '/var/log/pods',
  '/var/lib/cni',
  '/run/netns',
] as const;

export interface HostState {
  readonly id: string;
  /** The test process that owns the cluster: pid and start time (a reused pid is another process). */
  readonly owner: { readonly pid: number; readonly start: string };
  /** The cluster's own directory (configuration, data, containerd's root and state, kubelet's root). */
  readonly root: string;
  /** `ip netns` name; `/run/netns/<netns>`. */
  readonly netns: string;
  /** Its inode, to find the processes inside it even after the name is gone. */
  netnsInode?: number;
  /** Directory name under each cgroup hierarchy (kubelet's cgroupRoot). */
  readonly cgroupRoot: string;
  /** Kernel settings as they were before, under /proc/sys. */
  readonly sysctls: Record<string, string>;
  /** Which of FIXED_PATHS did not exist before. */
  readonly created: readonly string[];
  /** /run/netns was not a mount point before (`ip netns add` makes it one). */
  readonly netnsDirMounted: boolean;
}

function stateFile(id: string): string {
  return join(STATE_DIR, `${id}.json`);
}

export function writeState(state: HostState): string {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const file = stateFile(state.id);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

export function readState(file: string): HostState | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as HostState;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat: its start time in clock ticks since boot. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the test process that owns `state` still runs (a zombie, dead but not yet reaped, does not). */
export function ownerAlive(state: HostState): boolean {
  const stat = readOr(`/proc/${state.owner.pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] === state.owner.start && fields[0] !== 'Z' && fields[0] !== 'X';
}

function isMountPoint(path: string): boolean {
  return mountPoints().includes(path);
}

/** Every mount point of this mount namespace, unescaped (mountinfo writes a space as \040). */
function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) =>
      l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    );
}

/** The state of the machine before a cluster starts: what to restore and what to remove afterwards. */
export function snapshotHost(id: string, root: string, netns: string, cgroupRoot: string): HostState {
  const sysctls: Record<string, string> = {};
  for (const key of KUBELET_SYSCTLS) {
    try {
      sysctls[key] = readFileSync(`/proc/sys/${key}`, 'utf8').trim();
    } catch {
      // Absent on this kernel: kubelet cannot change it either.
    }
  }
  return {
    id,
    owner: { pid: process.pid, start: processStart(process.pid) ?? '' },
    root,
    netns,
    cgroupRoot,
    sysctls,
    created: FIXED_PATHS.filter((p) => !existsSync(p)),
    netnsDirMounted: !isMountPoint('/run/netns'),
  };
}

/** Records of clusters whose owner is alive (another test run), and cleans up those whose owner is gone. */
export async function sweepStale(log: (line: string) => void): Promise<HostState[]> {
  let files: string[];
  try {
    files = readdirSync(STATE_DIR).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const live: HostState[] = [];
  for (const f of files) {
    const state = readState(join(STATE_DIR, f));
    if (state === undefined) {
      rmSync(join(STATE_DIR, f), { force: true });
      continue;
    }
    if (ownerAlive(state)) {
      live.push(state);
      continue;
    }
    log(`cleaning up cluster ${state.id} left by pid ${state.owner.pid}, which is gone`);
    await cleanupHost(state, log);
  }
  return live;
}

/**
 * A detached watcher that runs `cluster-cleanup.ts` on the record once this process is gone,
 * however it died (the kernel closes the pipe it reads). `end()` closes the pipe at once (after a
 * `stop()` that cleaned up, the script finds no record and exits).
 */
export function startCleanupWatcher(file: string): { end(): void } {
  const script = `while IFS= read -r _; do :; done; exec "$0" "$1" "$2"`;
  const sh = spawn('sh', ['-c', script, process.execPath, CLEANUP_SCRIPT, file], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  sh.on('error', () => {});
  sh.unref();
  const pipe = sh.stdin as Socket;
  pipe.on('error', () => {});
  pipe.unref();
  return { end: () => pipe.end() };
}

// ---------------------------------------------------------------------------------------------
// Undoing it.

/** Pids (not this process, not its ancestors) in the namespace, in the cgroups, or naming `root` on their command line. */
function clusterPids(state: HostState): number[] {
  const spared = new Set<number>();
  for (let pid = process.pid; pid > 1; ) {
    spared.add(pid);
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(readOr(`/proc/${pid}/status`))?.[1] ?? 0);
    pid = ppid;
  }
  const found = new Set<number>();
  for (const dir of cgroupDirs(state.cgroupRoot)) {
    for (const sub of walkDirs(dir)) {
      for (const p of readOr(join(sub, 'cgroup.procs')).split('\n')) if (p !== '') found.add(Number(p));
    }
  }
  const netns = state.netnsInode === undefined ? undefined : `net:[${state.netnsInode}]`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (netns !== undefined) {
      try {
        if (readlinkSync(`/proc/${pid}/ns/net`) === netns) found.add(pid);
      } catch {
        // Gone, or a kernel thread.
      }
    }
    if (
      readOr(`/proc/${pid}/cmdline`)
        .split('\0')
        .some((arg) => arg.includes(state.root))
    )
      found.add(pid);
  }
  return [...found].filter((p) => !spared.has(p));
}

function readOr(path: string, fallback = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** Every cgroup hierarchy mounted under /sys/fs/cgroup: the unified one (v2), or each v1 one once. */
export function cgroupHierarchies(): string[] {
  const base = '/sys/fs/cgroup';
  if (existsSync(join(base, 'cgroup.controllers'))) return [base];
  const seen = new Set<string>();
  for (const h of readdirSync(base)) {
    try {
      const real = realpathSync(join(base, h));
      if (existsSync(join(real, 'cgroup.procs'))) seen.add(real);
    } catch {
      // A dangling link.
    }
  }
  return [...seen];
}

/** `<hierarchy>/<cgroupRoot>` where it exists. */
function cgroupDirs(cgroupRoot: string): string[] {
  return cgroupHierarchies()
    .map((h) => join(h, cgroupRoot))
    .filter((d) => existsSync(d));
}

/** `dir` and every directory below it, deepest first. */
function walkDirs(dir: string): string[] {
  const out: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return out;
  }
  for (const e of entries) out.push(...walkDirs(join(dir, e)));
  out.push(dir);
  return out;
}

async function killAll(state: HostState, log: (line: string) => void): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const pids = clusterPids(state);
    if (pids.length === 0) return;
    if (round === 0) log(`killing ${pids.length} leftover process(es): ${pids.join(' ')}`);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(100);
  }
  throw new Error(`processes of cluster ${state.id} survive SIGKILL: ${clusterPids(state).join(' ')}`);
}

async function unmountUnder(prefixes: readonly string[], log: (line: string) => void): Promise<void> {
  const under = () =>
    mountPoints()
      .filter((m) => prefixes.some((p) => m === p || m.startsWith(`${p}/`)))
      .sort((a, b) => b.length - a.length);
  for (let round = 0; round < 5; round++) {
    const mounts = under();
    if (mounts.length === 0) return;
    if (round === 0) log(`unmounting ${mounts.length} mount(s) under ${prefixes.join(', ')}`);
    for (const m of mounts) {
      try {
        await execFileAsync('umount', [m]);
      } catch {
        await execFileAsync('umount', ['--lazy', m]).catch(() => {});
      }
    }
  }
  const left = under();
  if (left.length > 0) throw new Error(`could not unmount: ${left.join(' ')}`);
}

async function removeCgroups(cgroupRoot: string): Promise<string[]> {
  let left: string[] = [];
  for (let round = 0; round < 20; round++) {
    left = [];
    for (const top of cgroupDirs(cgroupRoot)) {
      for (const dir of walkDirs(top)) {
        try {
          rmdirSync(dir);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
        }
      }
    }
    if (left.length === 0) return [];
    await sleep(100);
  }
  return left;
}

/**
 * Undoes what `state` records (see the module comment). Idempotent; every step runs even when an
 * earlier one failed, and the error lists what is still there.
 */
export async function cleanupHost(state: HostState, log: (line: string) => void = () => {}): Promise<void> {
  const problems: string[] = [];
  const step = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };
  if (state.netnsInode === undefined) {
    try {
      (state as { netnsInode?: number }).netnsInode = statSync(`/run/netns/${state.netns}`).ino;
    } catch {
      // Never created, or already deleted.
    }
  }
  await step('processes', () => killAll(state, log));
  const fixed = state.created.filter((p) => p !== '/run/netns');
  await step('mounts', () => unmountUnder([state.root, ...fixed], log));
  await step('cgroups', async () => {
    const left = await removeCgroups(state.cgroupRoot);
    if (left.length > 0) throw new Error(`still there: ${left.join(' ')}`);
  });
  await step('network namespace', async () => {
    if (existsSync(`/run/netns/${state.netns}`)) await execFileAsync('ip', ['netns', 'delete', state.netns]);
  });
  await step('kernel settings', () => {
    for (const [key, value] of Object.entries(state.sysctls)) {
      const path = `/proc/sys/${key}`;
      if (readOr(path).trim() !== value) {
        log(`restoring ${key.replaceAll('/', '.')} = ${value}`);
        writeFileSync(path, value);
      }
    }
  });
  await step('paths', async () => {
    // Children first, then parents; /run/netns only when no namespace is left in it.
    for (const p of [...fixed].reverse()) rmSync(p, { recursive: true, force: true });
    if (state.netnsDirMounted && existsSync('/run/netns') && readdirSync('/run/netns').length === 0) {
      if (isMountPoint('/run/netns')) await execFileAsync('umount', ['/run/netns']);
      if (state.created.includes('/run/netns')) rmdirSync('/run/netns');
    }
  });
  await step('directory', () => {
    if (existsSync(state.root) && lstatSync(state.root).isDirectory())
      rmSync(state.root, { recursive: true, force: true });
  });
  if (problems.length > 0) {
    throw new Error(`cleaning up cluster ${state.id} left things behind:\n  ${problems.join('\n  ')}`);
  }
  rmSync(stateFile(state.id), { force: true });
  try {
    rmdirSync(STATE_DIR);
  } catch {
    // Another cluster's record is there (or the directory is gone already).
  }
}

// ---------------------------------------------------------------------------------------------
// What the machine must offer.

/** What the cluster needs to know of a machine; `hostFacts()` reads this one's. */
export interface HostFacts {
  readonly uid: number;
  /** /proc/self/ns/net exists. */
  readonly netns: boolean;
  /** Programs found on PATH (or in /usr/sbin, /sbin), by name. */
  readonly programs: Readonly<Record<string, boolean>>;
  readonly overlay: boolean;
  readonly kmsg: boolean;
  /** cgroup v2's enabled controllers, or, for v1, which hierarchies under /sys/fs/cgroup are writable. */
  readonly cgroups:
    | { readonly version: 2; readonly controllers: readonly string[] }
    | { readonly version: 1; readonly writable: Readonly<Record<string, boolean>> };
}

const PROGRAMS = ['ip', 'nsenter', 'umount'] as const;
const CGROUP_V1 = ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer'] as const;
const CGROUP_V2 = ['cpu', 'cpuset', 'memory', 'pids'] as const;

export function hostFacts(): HostFacts {
  const cg = '/sys/fs/cgroup';
  const writable = (path: string) => {
    try {
      accessSync(path, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  };
  return {
    uid: process.getuid?.() ?? -1,
    netns: existsSync('/proc/self/ns/net'),
    programs: Object.fromEntries(PROGRAMS.map((p) => [p, onPath(p)])),
    overlay: /\toverlay$/m.test(readOr('/proc/filesystems')),
    kmsg: existsSync('/dev/kmsg'),
    cgroups: existsSync(join(cg, 'cgroup.controllers'))
      ? { version: 2, controllers: readOr(join(cg, 'cgroup.controllers')).trim().split(/\s+/) }
      : { version: 1, writable: Object.fromEntries(CGROUP_V1.map((c) => [c, writable(join(cg, c))])) },
  };
}

/** What a machine lacks for the cluster, each with what to do about it; empty when nothing is missing. */
export function missingOnHost(facts: HostFacts = hostFacts()): string[] {
  const missing: string[] = [];
  if (facts.uid !== 0) {
    missing.push(
      `root: the cluster creates a network namespace, cgroups and mounts (this runs as uid ${facts.uid}; run \`sudo make cluster\`)`,
    );
  }
  if (!facts.netns) missing.push('network namespaces: the kernel has no /proc/self/ns/net (CONFIG_NET_NS)');
  const programs = PROGRAMS.filter((p) => !facts.programs[p]);
  if (programs.length > 0) {
    missing.push(
      `${programs.join(', ')}: install iproute2 and util-linux (apt-get install iproute2 util-linux)`,
    );
  }
  if (!facts.overlay) missing.push('overlayfs: containerd unpacks images with it (modprobe overlay)');
  if (!facts.kmsg) missing.push('/dev/kmsg: kubelet watches it for OOM kills');
  if (facts.cgroups.version === 2) {
    const have = facts.cgroups.controllers;
    const lack = CGROUP_V2.filter((c) => !have.includes(c));
    if (lack.length > 0) {
      missing.push(`cgroups: the v2 controllers ${lack.join(', ')} are not enabled in /sys/fs/cgroup`);
    }
  } else {
    const w = facts.cgroups.writable;
    const lack = CGROUP_V1.filter((c) => !w[c]);
    if (lack.length > 0) {
      missing.push(
        `cgroups: no writable ${lack.map((c) => `/sys/fs/cgroup/${c}`).join(', ')} (kubelet and runc need these hierarchies)`,
      );
    }
  }
  return missing;
}

function onPath(tool: string): boolean {
  return (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((d) => {
      try {
        accessSync(join(d, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}
