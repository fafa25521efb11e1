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

/** The auth module's settings, validated, defaults filled in, frozen. Build with `authOptions`. */
export interface AuthOptions {
  readonly mode: AuthMode;
  /** Shared secrets for HS256/384/512 tokens; any of them may verify (rotation). Default none. */
  readonly hmacSecrets: readonly Uint8Array[];
  /** The issuer's JWKS endpoint (http or https). Default unset. */
  readonly jwksUrl: string | undefined;
  /** How often the JWKS is refetched, in ms. Default 300000 (5 min). */
  readonly jwksRefreshMs: number;
  /**
   * How long keys from the last successful fetch keep verifying while the endpoint fails, in ms;
   * after that requests get `HERALD_AUTH_UNAVAILABLE`. Default 3600000 (1 h); at least `jwksRefreshMs`.
   */
  readonly jwksMaxStaleMs: number;
  /** Timeout of one JWKS fetch, in ms. Default 5000. */
  readonly jwksTimeoutMs: number;
  /**
   * Least time between two JWKS fetches that are not the periodic refresh (a token with an
   * unknown `kid`, or no usable keys), in ms, so a flood of random kids cannot hammer the
   * endpoint. Default 30000.
   */
  readonly jwksCooldownMs: number;
  /** Public keys from a key file (see `loadKeyFile`). Default none. */
  readonly publicKeys: readonly VerificationKey[];
  /**
   * The algorithms tokens may use. Default: HS256/384/512 when `hmacSecrets` are set, plus RS, PS,
   * ES 256/384/512 and EdDSA when `jwksUrl` or `publicKeys` are. `none` is never allowed.
   */
  readonly algorithms: readonly Algorithm[];
  /** Required `iss` claim; unset: not checked. */
  readonly issuer: string | undefined;
  /** Required `aud` claim (one of the token's audiences); unset: not checked. */
  readonly audience: string | undefined;
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, in ms. Default 5000. */
  readonly leewayMs: number;
  /**
   * Whether a JWT must carry `exp`; one without it is refused with `HERALD_TOKEN_INVALID`. A stream
   * lives as long as its token, so a token that never expires would hold one for ever. Default true.
   */
  readonly requireExp: boolean;
  /** The cookie carrying a JWT (set it HttpOnly). Default unset: cookies are not read. */
  readonly cookieName: string | undefined;
  /** Whether an `access_token` query parameter is accepted. Default false. */
  readonly queryToken: boolean;
  /** Publish-only API keys (see `parseApiKeys`). Default none. */
  readonly apiKeys: readonly ApiKey[];
}

/** What the config layer fills: `mode` and whichever settings differ from their defaults. */
export type AuthSettings = { readonly mode: AuthMode } & {
  readonly [K in Exclude<keyof AuthOptions, 'mode' | 'algorithms'>]?: AuthOptions[K];
} & { readonly algorithms?: readonly string[] };

export const AUTH_DEFAULTS = Object.freeze({
  jwksRefreshMs: 300_000,
  jwksMaxStaleMs: 3_600_000,
  jwksTimeoutMs: 5_000,
  jwksCooldownMs: 30_000,
  leewayMs: 5_000,
  requireExp: true,
  queryToken: false,
});

/** RFC 7518 §3.2: an HMAC key at least as long as the smallest hash output. */
export const MIN_HMAC_SECRET_BYTES = 32;
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function ms(option: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw new AuthConfigError(option, `must be a whole number of ms between ${min} and ${max}, got ${value}`);
  return value;
}

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
 * Validates settings and fills in defaults; throws an `AuthConfigError` naming the setting. In
 * mode `jwt` at least one credential kind must be configured, or nothing could ever authenticate.
 */
export function authOptions(settings: AuthSettings): AuthOptions {
  if (settings.mode !== 'jwt' && settings.mode !== 'none')
    throw new AuthConfigError('mode', `must be jwt or none, got ${JSON.stringify(settings.mode)}`);
  // Copies, so a caller reusing its buffers cannot change a secret after validation.
  const hmacSecrets = (settings.hmacSecrets ?? []).map((secret, i) => {
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
  const publicKeys = Object.freeze([...(settings.publicKeys ?? [])]);
  const jwksRefreshMs = ms(
    'jwksRefreshMs',
    settings.jwksRefreshMs ?? AUTH_DEFAULTS.jwksRefreshMs,
    1000,
    86_400_000,
  );
  const jwksMaxStaleMs = ms(
    'jwksMaxStaleMs',
    settings.jwksMaxStaleMs ?? AUTH_DEFAULTS.jwksMaxStaleMs,
    jwksRefreshMs,
    7 * 86_400_000,
  );
  const apiKeys = Object.freeze(
    (settings.apiKeys ?? []).map((k, i) => {
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
    jwksRefreshMs,
    jwksMaxStaleMs,
    jwksTimeoutMs: ms('jwksTimeoutMs', settings.jwksTimeoutMs ?? AUTH_DEFAULTS.jwksTimeoutMs, 1, 600_000),
    jwksCooldownMs: ms(
      'jwksCooldownMs',
      settings.jwksCooldownMs ?? AUTH_DEFAULTS.jwksCooldownMs,
      1,
      86_400_000,
    ),
    publicKeys,
    algorithms: Object.freeze(algorithmsOf(settings.algorithms, hmacSecrets.length > 0, asymmetric)),
    issuer: nonEmpty('issuer', settings.issuer),
    audience: nonEmpty('audience', settings.audience),
    leewayMs: ms('leewayMs', settings.leewayMs ?? AUTH_DEFAULTS.leewayMs, 0, 300_000),
    requireExp: settings.requireExp ?? AUTH_DEFAULTS.requireExp,
    cookieName,
    queryToken: settings.queryToken ?? AUTH_DEFAULTS.queryToken,
    apiKeys,
  });
}
