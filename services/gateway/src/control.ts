/**
 * Fleet commands that arrive on the NATS control subjects (`herald.ctl.>`), parsed strictly: a
 * malformed command is reported and ignored, never half-applied. Only identities the NATS server
 * lets publish there can send them (docs/security.md shows the permissions).
 */

import type { Logger } from './log.ts';

export const SHED_SUBJECT = 'herald.ctl.shed';

/** Close `fraction` of the matching gateways' streams, spread over `windowMs`. */
export interface ShedCommand {
  readonly kind: 'shed';
  /** Share of open streams to close, 0 < fraction ≤ 1. */
  readonly fraction: number;
  /** Closes are spread uniformly over this window, in ms (0–3,600,000). */
  readonly windowMs: number;
  /** Only gateways of this release version act; absent: every gateway. */
  readonly version: string | undefined;
}

export type ControlCommand = ShedCommand;

export type ParsedControl =
  | { readonly ok: true; readonly command: ControlCommand }
  | { readonly ok: false; readonly error: string };

const MAX_WINDOW_MS = 3_600_000;
const VERSION = /^[A-Za-z0-9._+-]{1,64}$/;
const fail = (error: string): ParsedControl => ({ ok: false, error });

export function parseControl(subject: string, data: Uint8Array): ParsedControl {
  if (subject !== SHED_SUBJECT)
    return fail(`unknown control subject ${JSON.stringify(subject.slice(0, 100))}`);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    return fail('shed: the body is not UTF-8 JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return fail('shed: the body must be a JSON object');
  const { fraction, windowMs, version, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) return fail(`shed: unknown member ${JSON.stringify(extra[0]!.slice(0, 64))}`);
  if (typeof fraction !== 'number' || !(fraction > 0 && fraction <= 1))
    return fail('shed: fraction must be a number in (0, 1]');
  if (typeof windowMs !== 'number' || !Number.isInteger(windowMs) || windowMs < 0 || windowMs > MAX_WINDOW_MS)
    return fail(`shed: windowMs must be a whole number of ms in [0, ${MAX_WINDOW_MS}]`);
  if (version !== undefined && (typeof version !== 'string' || !VERSION.test(version)))
    return fail('shed: version must be a release version string');
  return { ok: true, command: { kind: 'shed', fraction, windowMs, version } };
}

/** Where fleet commands come from: the broker's NATS connection (the embedded broker has none). */
export interface ControlSource {
  onControl?(handler: (subject: string, data: Uint8Array) => void): () => void;
}

/** What fleet commands act on: this gateway's streams (the hub). */
export interface ControlTarget {
  /** Closes `fraction` of the open streams over `windowMs`; returns how many it closes. */
  shed(fraction: number, windowMs: number): number;
  /** Open streams, for the log line. */
  readonly size: number;
}

/**
 * Applies the fleet commands `source` delivers to `target`, a gateway of `releaseVersion`: a
 * malformed one is logged and ignored, one naming another version is not this gateway's.
 * Returns the unsubscribe.
 */
export function followControl(
  source: ControlSource,
  target: ControlTarget,
  releaseVersion: string,
  log: Logger,
): () => void {
  return (
    source.onControl?.((subject, data) => {
      const parsed = parseControl(subject, data);
      if (!parsed.ok) return log('warn', 'control command ignored', { subject, error: parsed.error });
      const { fraction, windowMs, version } = parsed.command;
      if (version !== undefined && version !== releaseVersion) return;
      const closing = target.shed(fraction, windowMs);
      log('info', 'shedding streams', { fraction, windowMs, closing, of: target.size });
    }) ?? (() => {})
  );
}
