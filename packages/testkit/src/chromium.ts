import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

/**
 * A real Chromium for browser tests: Debian's package, installed on demand by `tools/chromium.sh`
 * and driven by playwright-core. Never a browser build downloaded by Playwright.
 */

const SCRIPT = fileURLToPath(new URL('../../../tools/chromium.sh', import.meta.url));
const DEBIAN = '/usr/bin/chromium';
/** The binary behind Debian's `/usr/bin/chromium` shell wrapper. */
const DEBIAN_BINARY = '/usr/lib/chromium/chromium';

/**
 * Flags for a headless Chromium on a machine with no network but loopback. Without the
 * background-networking ones Chromium keeps dialling out to Google services and logs every refusal.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let resolved: string | undefined;

/**
 * The Chromium executable: whatever `tools/chromium.sh` prints (it installs Debian's package when
 * missing; its progress goes to our stderr), else `/usr/bin/chromium`. Debian's path is a shell
 * wrapper that adds its own default flags (remote extensions, GPU rasterisation) and probes
 * `/dev/shm`; the binary behind it is launched directly so that only our flags apply.
 */
export function chromiumPath(): string {
  if (resolved !== undefined) return resolved;
  let path = DEBIAN;
  if (existsSync(SCRIPT)) {
    path = execFileSync('bash', [SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  }
  if (path === DEBIAN && existsSync(DEBIAN_BINARY)) path = DEBIAN_BINARY;
  if (!existsSync(path)) {
    throw new Error(
      `Chromium not found at ${path}; run \`bash tools/chromium.sh\` (it installs Debian's chromium)`,
    );
  }
  resolved = path;
  return path;
}

export interface LaunchChromiumOptions {
  /** Defaults to `chromiumPath()`. */
  readonly executablePath?: string;
  /** Added after `CHROMIUM_ARGS`. */
  readonly args?: readonly string[];
  /** Launch timeout in ms (default 30 s). */
  readonly timeout?: number;
}

/**
 * Launches a headless Chromium. Playwright gives it a fresh temporary `--user-data-dir`
 * (`$TMPDIR/playwright_chromiumdev_profile-*`) and removes it on `browser.close()`.
 */
export async function launchChromium(opts: LaunchChromiumOptions = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: opts.executablePath ?? chromiumPath(),
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
    timeout: opts.timeout ?? 30_000,
  });
}
