import { HeraldError } from '@herald/protocol';
import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from 'jose';
import type { Clock } from '../clock.ts';
import { type AsymmetricAlgorithm, isHmacAlgorithm } from './algorithms.ts';
import { ApiKeyRing } from './api-keys.ts';
import type { Credentials } from './credentials.ts';
import { grantsOf } from './grants.ts';
import { JWKS_COOLDOWN_MS, JWKS_TIMEOUT_MS, JwksCache, type JwksFetch } from './jwks-cache.ts';
import { keyFits, type VerificationKey } from './keys.ts';
import type { AuthOptions } from './options.ts';
import { ALL_ACCESS, type AuthAction, authorize, type Principal } from './principal.ts';

/**
 * Longer tokens are refused before any parsing. Node refuses request heads over 16 KiB anyway, so
 * no token that arrives in a header, cookie or URL is lost.
 */
export const MAX_TOKEN_LENGTH = 16_384;

const invalid = (detail: string, cause?: unknown) =>
  new HeraldError('HERALD_TOKEN_INVALID', detail, cause === undefined ? {} : { cause });

/**
 * A jose verification error as the Herald error a client sees; the token itself is never in it.
 * jose errors are not kept as `cause`: claim errors carry the token's payload, which a logger
 * printing causes would spill, and the detail already names the failed check.
 */
function fromJose(err: unknown): HeraldError {
  if (err instanceof errors.JWTExpired)
    return new HeraldError('HERALD_TOKEN_EXPIRED', 'The token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    const missing = err.reason === 'missing';
    switch (err.claim) {
      case 'nbf':
        if (err.reason === 'check_failed')
          return new HeraldError('HERALD_TOKEN_NOT_YET_VALID', 'The token is not valid before its nbf time');
        return invalid('Claim nbf must be a number');
      case 'iss':
        return invalid(missing ? 'The token has no issuer (iss)' : 'The issuer (iss) does not match');
      case 'aud':
        return invalid(missing ? 'The token has no audience (aud)' : 'The audience (aud) does not match');
      case 'exp':
        return invalid(
          missing
            ? 'The token has no expiry (exp); this gateway requires one (HERALD_JWT_REQUIRE_EXP)'
            : 'Claim exp must be a number',
        );
      case 'iat':
        return invalid(`Claim ${err.claim} must be a number`);
      default:
        return invalid(`Claim ${err.claim} is invalid`);
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return invalid('The token algorithm is not allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('The signature does not verify');
  if (err instanceof errors.JOSENotSupported) return invalid('The token uses an unsupported feature');
  if (err instanceof errors.JOSEError) return invalid('The token is malformed');
  // jose throws TypeError for a key unfit for the algorithm; keys are filtered by fit first, so
  // this is a token naming something odd rather than a fault of ours.
  if (err instanceof TypeError) return invalid('No trusted key can verify the token', err);
  throw err;
}

/**
 * Turns credentials into a `Principal`: verifies JWTs (HMAC secrets, a key file, a JWKS URL) and
 * looks up API keys. HMAC algorithms are verified only against the HMAC secrets and asymmetric ones
 * only against public keys, so a token "signed" with a public key as an HMAC secret never verifies.
 */
export class Authenticator {
  readonly #options: AuthOptions;
  readonly #clock: Clock;
  readonly #algorithms: ReadonlySet<string>;
  readonly #apiKeys: ApiKeyRing;
  readonly #jwks: JwksCache | undefined;

  /** `fetch` fetches the JWKS; default `globalThis.fetch`. */
  constructor(options: AuthOptions, clock: Clock, fetch: JwksFetch = globalThis.fetch) {
    this.#options = options;
    this.#clock = clock;
    this.#algorithms = new Set(options.algorithms);
    this.#apiKeys = new ApiKeyRing(options.apiKeys);
    this.#jwks =
      options.mode === 'jwt' && options.jwksUrl !== undefined
        ? new JwksCache(
            {
              url: options.jwksUrl,
              refreshMs: options.jwksRefreshMs,
              maxStaleMs: options.jwksMaxStaleMs,
              timeoutMs: JWKS_TIMEOUT_MS,
              cooldownMs: JWKS_COOLDOWN_MS,
            },
            clock,
            fetch,
          )
        : undefined;
  }

  /**
   * Fetches the JWKS (when configured) and starts its periodic refresh. Resolves even when the
   * fetch fails: requests then get `HERALD_AUTH_UNAVAILABLE` until keys arrive. Without `start()`
   * keys are fetched on first use, and again only for an unknown `kid` or once they are too stale.
   */
  async start(): Promise<void> {
    await this.#jwks?.start();
  }

  /** Stops the JWKS refresh timer and aborts a fetch in flight. */
  close(): void {
    this.#jwks?.close();
  }

  /** Fetches the JWKS now, or joins the fetch in flight; never rejects. A no-op without a JWKS URL. */
  async refreshKeys(): Promise<void> {
    await this.#jwks?.refresh();
  }

  /**
   * The principal `credentials` prove, or a `HeraldError`: `HERALD_UNAUTHENTICATED` (none given),
   * `HERALD_TOKEN_INVALID`, `HERALD_TOKEN_EXPIRED`, `HERALD_TOKEN_NOT_YET_VALID`,
   * `HERALD_API_KEY_INVALID`, or `HERALD_AUTH_UNAVAILABLE` (no usable JWKS keys). In mode `none`
   * credentials are not even looked at.
   */
  async authenticate(credentials: Credentials): Promise<Principal> {
    if (this.#options.mode === 'none') return ALL_ACCESS;
    switch (credentials.kind) {
      case 'none':
        throw new HeraldError('HERALD_UNAUTHENTICATED', 'Send a token as "Authorization: Bearer <token>"');
      case 'apiKey': {
        const found = this.#apiKeys.lookup(credentials.key);
        if (found === undefined) throw new HeraldError('HERALD_API_KEY_INVALID', 'The API key is not known');
        return Object.freeze({
          subject: `api-key#${found.index + 1}`,
          subscribe: Object.freeze([]),
          publish: found.key.publish,
          via: 'apiKey',
        });
      }
      case 'jwt':
        return this.#verify(credentials.token);
    }
  }

  /** Throws `HERALD_FORBIDDEN` unless `principal` may `action` every one of `requested`. */
  authorize(principal: Principal, action: AuthAction, requested: readonly string[]): void {
    authorize(principal, action, requested);
  }

  async #verify(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_LENGTH)
      throw invalid(`The token is longer than ${MAX_TOKEN_LENGTH} characters`);
    if (token.split('.').length !== 3)
      throw invalid('The token is not a signed JWT (three dot-separated parts)');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw invalid('The token header is malformed');
    }
    const { alg, kid } = header;
    if (typeof alg !== 'string') throw invalid('The token header has no alg');
    if (alg.toLowerCase() === 'none') throw invalid('Unsigned tokens (alg none) are never accepted');
    // Checked before any key lookup, so a disallowed algorithm can never trigger a JWKS fetch.
    if (!this.#algorithms.has(alg)) throw invalid('The token algorithm is not allowed');
    if (kid !== undefined && typeof kid !== 'string') throw invalid('The token header kid is not a string');
    const keys: readonly (Uint8Array | VerificationKey['key'])[] = isHmacAlgorithm(alg)
      ? this.#options.hmacSecrets
      : (await this.#publicKeys(alg as AsymmetricAlgorithm, kid)).map((k) => k.key);
    const now = this.#clock.now();
    // Several keys may fit (HMAC rotation, PEM keys without kid): the first that verifies wins.
    // A claim check fails only after the signature verified, so that error is final.
    for (const key of keys) {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: [alg],
          issuer: this.#options.issuer,
          audience: this.#options.audience,
          clockTolerance: this.#options.leewayMs / 1000,
          currentDate: new Date(now),
          // RFC 8725, 3.10 asks to bound a token's lifetime; here it also bounds its stream's.
          ...(this.#options.requireExp ? { requiredClaims: ['exp'] } : {}),
        });
        return this.#principalOf(payload, now);
      } catch (err) {
        if (err instanceof HeraldError) throw err;
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw fromJose(err);
      }
    }
    throw invalid('The signature does not verify with any trusted key');
  }

  #principalOf(payload: JWTPayload, now: number): Principal {
    // jose checks iat only together with a maximum token age; a token issued in the future is a
    // skewed or forged clock either way.
    if (typeof payload.iat === 'number' && payload.iat * 1000 > now + this.#options.leewayMs)
      throw new HeraldError('HERALD_TOKEN_NOT_YET_VALID', 'The token was issued in the future (iat)');
    const grants = grantsOf(payload);
    return Object.freeze({
      ...(typeof payload.sub === 'string' ? { subject: payload.sub } : {}),
      subscribe: grants.subscribe,
      publish: grants.publish,
      ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}),
      via: 'jwt',
    });
  }

  /** The public keys that may have signed a token with `alg` and `kid`. */
  async #publicKeys(alg: AsymmetricAlgorithm, kid: string | undefined): Promise<readonly VerificationKey[]> {
    const fit = (keys: readonly VerificationKey[]) =>
      keys.filter(
        (k) =>
          keyFits(k.key, alg) &&
          (k.alg === undefined || k.alg === alg) &&
          (kid === undefined || k.kid === undefined || k.kid === kid),
      );
    const local = fit(this.#options.publicKeys);
    const jwks = this.#jwks;
    if (jwks === undefined) {
      if (local.length === 0) throw invalid(noKey(kid));
      return local;
    }
    let remote = await jwks.keys();
    if (remote === undefined) {
      if (local.length > 0) return local;
      throw new HeraldError(
        'HERALD_AUTH_UNAVAILABLE',
        `Signing keys cannot be fetched and none are cached (${jwks.failure ?? 'unknown failure'})`,
      );
    }
    let candidates = [...local, ...fit(remote)];
    if (candidates.length === 0 && kid !== undefined) {
      remote = await jwks.keysAfterUnknownKid();
      if (remote !== undefined) candidates = [...local, ...fit(remote)];
    }
    if (candidates.length === 0) throw invalid(noKey(kid));
    return candidates;
  }
}

function noKey(kid: string | undefined): string {
  return kid === undefined
    ? 'No trusted key fits the token algorithm'
    : 'No trusted key has the token kid and fits its algorithm';
}
