import { createHash, timingSafeEqual } from 'node:crypto';
import { checkPattern } from '@herald/protocol';
import { AuthConfigError } from './config-error.ts';

/** A publish-only credential, for backends; sent as `Authorization: ApiKey <key>`. */
export interface ApiKey {
  /** The secret itself. */
  readonly key: string;
  /** Topic patterns the key may publish to; `['>']` (everything) when the file names none. */
  readonly publish: readonly string[];
}

/** Shorter keys are guessable; the file is written by operators, so say so at start. */
export const MIN_API_KEY_LENGTH = 16;
const KEY = /^[\x21-\x7e]+$/;

/**
 * Parses an API key file (a mounted secret): one key per line, `<key>` or
 * `<key> <pattern>[,<pattern>...]`; blank lines and lines starting with `#` are ignored. Throws an
 * `AuthConfigError` naming the line number, never the key.
 */
export function parseApiKeys(text: string): readonly ApiKey[] {
  const out: ApiKey[] = [];
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const n = i + 1;
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    if (fields.length > 2)
      throw new AuthConfigError('apiKeys', `line ${n}: expected <key> or <key> <pattern>[,<pattern>...]`);
    const [key, list] = fields as [string, string | undefined];
    if (!KEY.test(key)) throw new AuthConfigError('apiKeys', `line ${n}: the key has non-ASCII characters`);
    if (key.length < MIN_API_KEY_LENGTH)
      throw new AuthConfigError(
        'apiKeys',
        `line ${n}: the key is shorter than ${MIN_API_KEY_LENGTH} characters`,
      );
    const first = seen.get(key);
    if (first !== undefined) throw new AuthConfigError('apiKeys', `line ${n}: the same key as line ${first}`);
    seen.set(key, n);
    const publish = list === undefined ? ['>'] : list.split(',');
    publish.forEach((pattern, j) => {
      const check = checkPattern(pattern);
      if (!check.ok) throw new AuthConfigError('apiKeys', `line ${n}: pattern ${j + 1} ${check.reason}`);
    });
    out.push(Object.freeze({ key, publish: Object.freeze(publish) }));
  }
  return Object.freeze(out);
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Finds the API key a request presents, in time independent of where (or whether) it matches. */
export class ApiKeyRing {
  readonly #entries: readonly { readonly digest: Buffer; readonly index: number; readonly key: ApiKey }[];

  constructor(keys: readonly ApiKey[]) {
    this.#entries = keys.map((key, index) => ({ digest: digest(key.key), index, key }));
  }

  /**
   * The key matching `presented` and its position (0-based) in the list, or undefined. Hashing both
   * sides gives equal lengths for `timingSafeEqual`, and every entry is compared, so neither the
   * length nor the position of a key leaks through timing.
   */
  lookup(presented: string): { readonly key: ApiKey; readonly index: number } | undefined {
    const d = digest(presented);
    let found: { readonly key: ApiKey; readonly index: number } | undefined;
    for (const entry of this.#entries)
      if (timingSafeEqual(d, entry.digest) && found === undefined)
        found = { key: entry.key, index: entry.index };
    return found;
  }
}
