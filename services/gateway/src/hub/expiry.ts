import { encodeFrame, SystemEvents } from '@herald/protocol';
import type { Clock } from '../clock.ts';
import type { Connection } from './connection.ts';

/** setTimeout's longest delay (~24.8 days); Node fires a longer one after 1 ms. */
const TIMER_MAX_MS = 2 ** 31 - 1;

/**
 * Token lifetime on a stream: `herald.token-expiring` `warnMs` before `expiresAt` (ms since the
 * Unix epoch), then `expire`. The timers go on `c.timers`, which the hub clears when the stream ends.
 */
export function scheduleExpiry(
  c: Connection,
  clock: Clock,
  expiresAt: number,
  warnMs: number,
  on: { readonly warn: (frame: Buffer) => void; readonly expire: () => void },
): void {
  const now = clock.now();
  if (expiresAt - now > TIMER_MAX_MS) {
    // setTimeout fires at once past ~24.8 days: wait in steps instead.
    c.timers = [clock.setTimeout(() => scheduleExpiry(c, clock, expiresAt, warnMs, on), TIMER_MAX_MS)];
    return;
  }
  c.timers = [
    clock.setTimeout(
      () => {
        if (c.closed) return;
        const data = JSON.stringify({ expiresAt: new Date(expiresAt).toISOString() });
        on.warn(Buffer.from(encodeFrame({ event: SystemEvents.tokenExpiring, data })));
      },
      Math.max(0, expiresAt - warnMs - now),
    ),
    clock.setTimeout(on.expire, Math.max(0, expiresAt - now)),
  ];
}
