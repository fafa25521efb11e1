/**
 * Polls `check` until it returns true, at most `timeoutMs`. For conditions that no event
 * announces (readiness across processes); the error says what was awaited.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  /** What is awaited, for the timeout's message; a function is asked at the timeout, for the state then. */
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    if (await check()) return;
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`,
      );
    await new Promise((r) => setTimeout(r, wait));
  }
}

/** Resolves once `GET /readyz` answers `status` (200 by default). */
export function untilReady(url: string, status = 200, timeoutMs = 10_000): Promise<void> {
  return until(
    async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status === status,
    `${url}/readyz to answer ${status}`,
    timeoutMs,
  );
}
