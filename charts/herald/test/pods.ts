/**
 * Running the chart's rendered containers as local processes, for lack of a kubelet: volumes laid
 * out under a temporary root as the kubelet would mount them, the environment and arguments
 * expanded and pointed at those paths.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form.
type Obj = Record<string, any>;

/** Secrets the user manages outside the chart (existingSecret): name → key → content. */
export type Secrets = Readonly<Record<string, Readonly<Record<string, string>>>>;

export interface MountedContainer {
  /** The environment as the kubelet sets it, with paths inside mounted volumes under the root. */
  readonly env: Record<string, string>;
  /** command + args, `$(VAR)` expanded and paths under the root. */
  readonly argv: string[];
}

function keysOf(objs: readonly Obj[], kind: 'Secret' | 'ConfigMap', name: string, secrets: Secrets) {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (o) {
    const out: Record<string, string> = { ...o.stringData };
    for (const [k, v] of Object.entries(o.data ?? {}))
      out[k] = kind === 'Secret' ? Buffer.from(v as string, 'base64').toString('utf8') : (v as string);
    return out;
  }
  const external = kind === 'Secret' ? secrets[name] : undefined;
  // The kubelet does not start a pod whose volume source is missing.
  if (!external) throw new Error(`${kind} ${name} does not exist: the pod would not start`);
  return external;
}

/**
 * Lays out the volumes `container` mounts under `root` (Secrets and ConfigMaps from `objs` or
 * `secrets`, emptyDirs and the StatefulSet's claims as empty directories) and returns its
 * environment and command line as the kubelet would run it there. Throws where the kubelet would
 * refuse to start the pod: a missing Secret, ConfigMap or key.
 */
export function mountContainer(
  objs: readonly Obj[],
  workload: Obj,
  containerName: string,
  root: string,
  secrets: Secrets = {},
): MountedContainer {
  const template = workload.kind === 'Pod' ? workload : workload.spec.template;
  const spec: Obj = template.spec;
  const podName = workload.kind === 'StatefulSet' ? `${workload.metadata.name}-0` : workload.metadata.name;
  const claims = new Set((workload.spec.volumeClaimTemplates ?? []).map((c: Obj) => c.metadata.name));
  const container: Obj = spec.containers.find((c: Obj) => c.name === containerName);
  if (!container) throw new Error(`no container ${containerName}`);
  const mounts: Obj[] = [...(container.volumeMounts ?? [])].sort(
    (a, b) => b.mountPath.length - a.mountPath.length,
  );
  for (const m of mounts) {
    const dir = join(root, m.mountPath);
    mkdirSync(dir, { recursive: true });
    const vol: Obj | undefined = spec.volumes?.find((v: Obj) => v.name === m.name);
    if (!vol) {
      if (!claims.has(m.name)) throw new Error(`volume ${m.name} is mounted but not defined`);
      continue;
    }
    const source = vol.secret ?? vol.configMap;
    if (!source) continue; // emptyDir
    const data = vol.secret
      ? keysOf(objs, 'Secret', vol.secret.secretName, secrets)
      : keysOf(objs, 'ConfigMap', vol.configMap.name, secrets);
    const items: Obj[] = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const { key, path } of items) {
      if (!(key in data)) throw new Error(`volume ${m.name}: no key ${key}: the pod would not start`);
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), data[key]!);
    }
  }
  const remap = (value: string) => {
    const m = mounts.find((x) => value === x.mountPath || value.startsWith(`${x.mountPath}/`));
    return m ? join(root, value) : value;
  };
  const env: Record<string, string> = {};
  const expand = (value: string) =>
    value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n) => env[n] ?? all);
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = remap(expand(String(e.value)));
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
    else throw new Error(`env ${e.name}: unsupported source ${JSON.stringify(e.valueFrom)}`);
  }
  const argv = [...(container.command ?? []), ...(container.args ?? [])].map((a: string) => remap(expand(a)));
  return { env, argv };
}

export interface Exited {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `argv` with exactly `env` and collects its output; SIGKILL after `timeoutMs`. */
export async function runToExit(
  argv: readonly string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<Exited> {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A process started from a rendered container, with its log so far. */
export interface Started {
  readonly child: ChildProcess;
  log(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `argv` and resolves once its combined output matches every pattern in `waitFor`, with
 * each pattern's first capture group; rejects if it exits or `timeoutMs` passes first.
 */
export async function startUntil(
  argv: readonly string[],
  env: Record<string, string>,
  waitFor: readonly RegExp[],
  timeoutMs = 15_000,
): Promise<{ started: Started; captures: string[] }> {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const exited = once(child, 'exit');
  const started: Started = {
    child,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const captures = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      void started.stop();
      reject(new Error(`${argv[0]} not started after ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    const check = () => {
      const found = waitFor.map((re) => re.exec(log)?.[1]);
      if (found.every((f) => f !== undefined)) {
        clearTimeout(timer);
        resolve(found as string[]);
      }
    };
    const onData = (c: Buffer) => {
      log += c.toString();
      check();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`${argv[0]} exited with ${code}:\n${log}`));
    });
  });
  return { started, captures };
}
