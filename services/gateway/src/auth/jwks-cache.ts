import type { Clock } from '../clock.ts';
import { keysFromJwks, type VerificationKey } from './keys.ts';

/** The fetch the cache uses; `globalThis.fetch` fits. */
export type JwksFetch = (url: string, init: RequestInit) => Promise<Response>;

export interface JwksCacheOptions {
  readonly url: string;
  /** ms between periodic refetches. */
  readonly refreshMs: number;
  /** ms keys from the last successful fetch stay usable. */
  readonly maxStaleMs: number;
  /** ms one fetch may take. */
  readonly timeoutMs: number;
  /** Least ms between an on-demand fetch and the previous fetch attempt of any kind. */
  readonly cooldownMs: number;
}

/** An issuer publishes a handful of keys; anything far larger is a misconfigured URL. */
export const MAX_JWKS_BYTES = 512 * 1024;

/** How long one JWKS fetch may take (ms). Not a setting: an issuer's endpoint answers in far less. */
export const JWKS_TIMEOUT_MS = 5_000;

/**
 * Least time between two JWKS fetches that are not the periodic refresh (a token with an unknown
 * `kid`, or no usable keys), in ms, so a flood of random kids cannot hammer the endpoint. Not a
 * setting: it bounds what a client can make the gateway do, not what the operator wants.
 */
export const JWKS_COOLDOWN_MS = 30_000;

/** Why the last fetch failed, for the 503 detail; never holds a secret. */
type Outcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

async function readCapped(res: Response, max: number): Promise<string> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new Error(`the JWKS is larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The keys of a remote JWKS, fetched on start, refreshed every `refreshMs` and on demand (a token
 * naming an unknown `kid`) at most once per `cooldownMs`. A failed fetch keeps the previous keys
 * until they are `maxStaleMs` old. All timing goes through the injected clock.
 */
export class JwksCache {
  readonly #opts: JwksCacheOptions;
  readonly #clock: Clock;
  readonly #fetch: JwksFetch;
  #keys: readonly VerificationKey[] | undefined;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #attemptedAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<Outcome> | undefined;
  #abort: AbortController | undefined;
  #last: Outcome = { ok: false, reason: 'no fetch has completed yet' };
  #timer: unknown;
  #closed = false;

  constructor(opts: JwksCacheOptions, clock: Clock, fetch: JwksFetch) {
    this.#opts = opts;
    this.#clock = clock;
    this.#fetch = fetch;
  }

  /** Starts the periodic refresh and fetches once; resolves either way (a failure is not fatal). */
  async start(): Promise<void> {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = this.#clock.setInterval(() => {
      if (this.#inflight === undefined) void this.#refetch();
    }, this.#opts.refreshMs);
    // A real timer must not keep the process alive for the sake of a key refresh.
    const handle = this.#timer as { unref?: unknown } | null;
    if (typeof handle === 'object' && handle !== null && typeof handle.unref === 'function') handle.unref();
    await this.refresh();
  }

  /** Stops the periodic refresh and aborts a fetch in flight. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
  }

  /** Fetches now, or joins the fetch in flight; never rejects. */
  async refresh(): Promise<void> {
    await (this.#inflight ?? this.#refetch());
  }

  /** Why keys are unavailable, when they are. */
  get failure(): string | undefined {
    return this.#last.ok ? undefined : this.#last.reason;
  }

  /**
   * The keys to verify with, or undefined when none are usable (never fetched, or older than
   * `maxStaleMs`). With none usable it fetches, unless a fetch was attempted within the cooldown.
   */
  async keys(): Promise<readonly VerificationKey[] | undefined> {
    if (this.#usable()) return this.#keys;
    await this.#onDemand();
    return this.#usable() ? this.#keys : undefined;
  }

  /**
   * Refetches because a token names a `kid` the cached keys lack, unless a fetch was attempted
   * within the cooldown; then returns the usable keys, as `keys()` does.
   */
  async keysAfterUnknownKid(): Promise<readonly VerificationKey[] | undefined> {
    await this.#onDemand();
    return this.#usable() ? this.#keys : undefined;
  }

  async #onDemand(): Promise<void> {
    if (this.#inflight !== undefined) await this.#inflight;
    else if (this.#clock.now() - this.#attemptedAt >= this.#opts.cooldownMs) await this.#refetch();
  }

  #usable(): boolean {
    return this.#keys !== undefined && this.#clock.now() - this.#fetchedAt <= this.#opts.maxStaleMs;
  }

  #refetch(): Promise<Outcome> {
    if (this.#closed) return Promise.resolve({ ok: false, reason: 'closed' });
    this.#attemptedAt = this.#clock.now();
    const abort = new AbortController();
    this.#abort = abort;
    const timeout = this.#clock.setTimeout(() => abort.abort(), this.#opts.timeoutMs);
    const run = async (): Promise<Outcome> => {
      try {
        const res = await this.#fetch(this.#opts.url, {
          signal: abort.signal,
          headers: { accept: 'application/jwk-set+json, application/json' },
        });
        if (!res.ok) {
          await res.body?.cancel();
          return { ok: false, reason: `the JWKS endpoint answered HTTP ${res.status}` };
        }
        const keys = keysFromJwks(JSON.parse(await readCapped(res, MAX_JWKS_BYTES)));
        this.#keys = keys;
        this.#fetchedAt = this.#clock.now();
        return { ok: true };
      } catch (err) {
        if (abort.signal.aborted) return { ok: false, reason: 'the JWKS fetch timed out' };
        return {
          ok: false,
          reason:
            err instanceof SyntaxError
              ? 'the JWKS is not valid JSON'
              : `the JWKS fetch failed: ${(err as Error).message}`,
        };
      } finally {
        this.#clock.clearTimeout(timeout);
      }
    };
    const inflight = run().then((outcome) => {
      this.#last = outcome;
      if (this.#inflight === inflight) this.#inflight = undefined;
      if (this.#abort === abort) this.#abort = undefined;
      return outcome;
    });
    this.#inflight = inflight;
    return inflight;
  }
}
