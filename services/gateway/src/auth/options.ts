import { checkPattern } from '@herald/protocol';
import {
  type Algorithm,
  ASYMMETRIC_ALGORITHMS,
  HMAC_ALGORITHMS,
  isAsymmetricAlgorithm,
  isHmacAlgorithm,
} from './algorithms.ts';
import { type ApiKey, MIN_API_KEY_LENGTH } from './api-keys.ts';
import { AuthConfigError } from './config-error.ts';
import type { VerificationKey } from './keys.ts';

/** `jwt`: every request needs a credential. `none`: auth is off; every request may do everything. */
export type AuthMode = 'jwt' | 'none';

/**
 * The auth module's settings as the config layer gives them: every one set, already within the
 * bounds and filled with the defaults of its `HERALD_*` variable (`config.ts` owns both, and
 * relations such as `jwksMaxStaleMs` ≥ `jwksRefreshMs`). Key material is the content of the files
 * the config names. `authOptions` checks what only the content can tell.
 */
export interface AuthSettings {
  readonly mode: AuthMode;
  /** Shared secrets for HS256/384/512 tokens; any of them may verify (rotation). */
  readonly hmacSecrets: readonly Uint8Array[];
  /** Public keys from a key file (see `loadKeyFile`). */
  readonly publicKeys: readonly VerificationKey[];
  /** Publish-only API keys (see `parseApiKeys`). */
  readonly apiKeys: readonly ApiKey[];
  /** The issuer's JWKS endpoint (http or https); unset: none. */
  readonly jwksUrl: string | undefined;
  /** How often the JWKS is refetched, in ms. */
  readonly jwksRefreshMs: number;
  /**
   * How long keys from the last successful fetch keep verifying while the endpoint fails, in ms;
   * after that requests get `HERALD_AUTH_UNAVAILABLE`.
   */
  readonly jwksMaxStaleMs: number;
  /** The algorithms tokens may use; unset: those the configured keys can verify. */
  readonly algorithms: readonly string[] | undefined;
  /** Required `iss` claim; unset: not checked. */
  readonly issuer: string | undefined;
  /** Required `aud` claim (one of the token's audiences); unset: not checked. */
  readonly audience: string | undefined;
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, in ms. */
  readonly leewayMs: number;
  /**
   * Whether a JWT must carry `exp`; one without it is refused with `HERALD_TOKEN_INVALID`. A stream
   * lives as long as its token, so a token that never expires would hold one for ever.
   */
  readonly requireExp: boolean;
  /** The cookie carrying a JWT (set it HttpOnly); unset: cookies are not read. */
  readonly cookieName: string | undefined;
  /** Whether an `access_token` query parameter is accepted. */
  readonly queryToken: boolean;
}

/** The settings checked and frozen, with the algorithms resolved. Build with `authOptions`. */
export interface AuthOptions extends Omit<AuthSettings, 'algorithms'> {
  /**
   * The algorithms tokens may use: as set, or else HS256/384/512 when `hmacSecrets` are set, plus
   * RS, PS, ES 256/384/512 and EdDSA when `jwksUrl` or `publicKeys` are. `none` is never allowed.
   */
  readonly algorithms: readonly Algorithm[];
}

/** RFC 7518 §3.2: an HMAC key at least as long as the smallest hash output. */
export const MIN_HMAC_SECRET_BYTES = 32;
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function nonEmpty(option: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === '')
    throw new AuthConfigError(option, 'must not be empty when set');
  return value;
}

function algorithmsOf(
  requested: readonly string[] | undefined,
  hmac: boolean,
  asymmetric: boolean,
): readonly Algorithm[] {
  if (requested === undefined)
    return [...(hmac ? HMAC_ALGORITHMS : []), ...(asymmetric ? ASYMMETRIC_ALGORITHMS : [])];
  const out: Algorithm[] = [];
  for (const alg of requested) {
    if (alg.toLowerCase() === 'none')
      throw new AuthConfigError('algorithms', "'none' can never be allowed: it accepts unsigned tokens");
    if (isHmacAlgorithm(alg)) {
      if (!hmac) throw new AuthConfigError('algorithms', `${alg} is allowed but no hmacSecrets are set`);
    } else if (isAsymmetricAlgorithm(alg)) {
      if (!asymmetric)
        throw new AuthConfigError(
          'algorithms',
          `${alg} is allowed but neither jwksUrl nor publicKeys is set`,
        );
    } else {
      throw new AuthConfigError(
        'algorithms',
        `${JSON.stringify(alg)} is not one of ${[...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].join(', ')}`,
      );
    }
    if (!out.includes(alg)) out.push(alg);
  }
  return out;
}

/**
 * Checks what the settings' content alone can tell (secret and API key lengths, key patterns, the
 * JWKS URL's scheme, algorithms against the configured keys, the cookie name) and freezes them;
 * throws an `AuthConfigError` naming the setting. In mode `jwt` at least one credential kind must
 * be configured, or nothing could ever authenticate. Bounds and defaults are the config's.
 */
export function authOptions(settings: AuthSettings): AuthOptions {
  // Copies, so a caller reusing its buffers cannot change a secret after validation.
  const hmacSecrets = settings.hmacSecrets.map((secret, i) => {
    if (secret.byteLength < MIN_HMAC_SECRET_BYTES)
      throw new AuthConfigError(
        'hmacSecrets',
        `secret ${i + 1} is shorter than ${MIN_HMAC_SECRET_BYTES} bytes`,
      );
    return Uint8Array.from(secret);
  });
  const jwksUrl = settings.jwksUrl;
  if (jwksUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(jwksUrl);
    } catch {
      throw new AuthConfigError('jwksUrl', 'is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new AuthConfigError('jwksUrl', 'must be an http or https URL');
  }
  const publicKeys = Object.freeze([...settings.publicKeys]);
  const apiKeys = Object.freeze(
    settings.apiKeys.map((k, i) => {
      if (k.key.length < MIN_API_KEY_LENGTH)
        throw new AuthConfigError('apiKeys', `key ${i + 1} is shorter than ${MIN_API_KEY_LENGTH} characters`);
      for (const pattern of k.publish) {
        const check = checkPattern(pattern);
        if (!check.ok) throw new AuthConfigError('apiKeys', `key ${i + 1}: a pattern ${check.reason}`);
      }
      return Object.freeze({ key: k.key, publish: Object.freeze([...k.publish]) });
    }),
  );
  const asymmetric = jwksUrl !== undefined || publicKeys.length > 0;
  if (settings.mode === 'jwt' && hmacSecrets.length === 0 && !asymmetric && apiKeys.length === 0)
    throw new AuthConfigError(
      'mode',
      'jwt needs at least one of hmacSecrets, jwksUrl, publicKeys or apiKeys; use mode none to turn auth off',
    );
  const cookieName = settings.cookieName;
  if (cookieName !== undefined && !COOKIE_NAME.test(cookieName))
    throw new AuthConfigError('cookieName', 'is not a valid cookie name');
  return Object.freeze({
    mode: settings.mode,
    hmacSecrets: Object.freeze(hmacSecrets),
    jwksUrl,
    jwksRefreshMs: settings.jwksRefreshMs,
    jwksMaxStaleMs: settings.jwksMaxStaleMs,
    publicKeys,
    algorithms: Object.freeze(algorithmsOf(settings.algorithms, hmacSecrets.length > 0, asymmetric)),
    issuer: nonEmpty('issuer', settings.issuer),
    audience: nonEmpty('audience', settings.audience),
    leewayMs: settings.leewayMs,
    requireExp: settings.requireExp,
    cookieName,
    queryToken: settings.queryToken,
    apiKeys,
  });
}
