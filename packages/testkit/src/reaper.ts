import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The last resort behind process.ts: no child process or temporary directory of the harnesses
 * outlives the test process. Children still running when it exits are SIGKILLed and its
 * directories removed from an `exit` hook. When it dies without running that hook (SIGKILL, a
 * signal it does not handle), a detached `sh` watcher does the same: it learns of every child
 * and directory through a pipe and acts when the pipe closes, which the kernel does for any death.
 * The watcher recognises a child by pid and start time, so a pid the system has since given to
 * another process is spared.
 *
 * No signal handlers: one would replace the default action (ending the process) of the signal it
 * handles, which is not a test harness's to change, and the watcher already covers those deaths.
 */

/** A new directory under the system's temporary directory, removed at exit unless `removeTempDir` came first. */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  ownedDirs.add(dir);
  installExitHook();
  tellWatcher(`dir ${dir}`);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  if (ownedDirs.delete(dir)) tellWatcher(`removed ${dir}`);
}

const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
/** Start times (from /proc) of the children the watcher knows, by pid. */
const startTimes = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** From its start (while its pid is still its own) until `forget`, `child` is killed at exit. */
export function track(child: ChildProcess): void {
  liveChildren.add(child);
  installExitHook();
  const pid = child.pid!;
  const started = startTime(pid);
  if (started === undefined) return;
  startTimes.set(pid, started);
  tellWatcher(`started ${pid} ${started}`);
}

/** At its exit. */
export function forget(child: ChildProcess): void {
  liveChildren.delete(child);
  const pid = child.pid!;
  const started = startTimes.get(pid);
  if (started === undefined) return;
  startTimes.delete(pid);
  tellWatcher(`exited ${pid} ${started}`);
}

/**
 * Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. With the
 * pid it names one process for good. Readable at once: until this process reaps the child (which
 * takes a turn of the event loop), its entry stays, even if it has already exited.
 */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Reads lines until EOF, which comes when this process is gone however it died: `started <pid>
 * <start time>` and `exited <pid> <start time>`, `dir <path>` and `removed <path>`. Then kills
 * each started child that has not exited and is still the same process, and removes each
 * directory not removed.
 */
const WATCHER = `
all=''
while IFS= read -r l; do all="$all$l
"; done
printf %s "$all" | while read -r kind pid start; do
  [ "$kind" = started ] || continue
  printf %s "$all" | grep -qxF "exited $pid $start" && continue
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
  set -- \${stat##*") "}
  [ "\${20}" = "$start" ] && kill -9 "$pid" 2>/dev/null
done
printf %s "$all" | while IFS= read -r l; do
  case $l in
  "dir "*) d=\${l#dir }; printf %s "$all" | grep -qxF "removed $d" || rm -rf "$d" ;;
  esac
done
`;

let watcher: Socket | undefined;

function tellWatcher(line: string): void {
  if (watcher === undefined) {
    // Detached: a Ctrl-C to the terminal's process group must not end it before it has cleaned up.
    const sh = spawn('sh', ['-c', WATCHER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    sh.on('error', () => {});
    sh.unref();
    watcher = sh.stdin as Socket;
    watcher.on('error', () => {});
    watcher.unref();
  }
  watcher.write(`${line}\n`);
}
