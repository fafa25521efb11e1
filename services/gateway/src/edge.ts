import { type ErrorCode, HeraldError } from '@herald/protocol';
import { Admission, type AdmissionOptions, type AdmissionReason, TrustedProxies } from './admission/index.ts';
import {
  type ApiKey,
  AuthConfigError,
  Authenticator,
  type AuthOptions,
  type AuthSettings,
  authOptions,
  type CredentialOptions,
  type JwksFetch,
  loadKeyFile,
  parseApiKeys,
  type VerificationKey,
} from './auth/index.ts';
import type { Clock } from './clock.ts';
import { type Config, ConfigError, connectBurstOf, retryAfterSecondsOf } from './config.ts';
import { type CorsDecision, type CorsRequest, corsPolicy } from './cors/index.ts';
import { fromFile } from './setting-file.ts';

/**
 * Who may come in, built once from the config at start: authentication, CORS and admission
 * control. The HTTP adapters ask it; it knows nothing of sockets.
 */
export interface Edge {
  readonly auth: Authenticator;
  readonly credentials: CredentialOptions;
  readonly cors: (req: CorsRequest) => CorsDecision;
  readonly admission: Admission;
  /** `Retry-After` for a 503 (s): HERALD_RETRY_MS rounded up, at least 1; admission jitters its own from it. */
  readonly retryAfterSeconds: number;
  /** The client's address: the peer's, or what a trusted proxy's `X-Forwarded-For` says. */
  readonly clientAddress: (peer: string, forwardedFor: string | undefined) => string;
  /** The stream gets `herald.token-expiring` this long before its token expires (ms). */
  readonly tokenExpiryWarnMs: number;
  /** What the edge let in and kept out; monotonic counts, read by the metrics. */
  readonly stats: EdgeStats;
}

/** Why a request was refused, as the metrics label it. */
export const REJECTION_REASONS = [
  'pod_full',
  'rate',
  'ip_full',
  'subject_full',
  'topics',
  'unauthenticated',
  'forbidden',
  'origin',
  'auth_unavailable',
  'broker_unavailable',
  'invalid',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export interface EdgeStats {
  /** Stream requests: served, refused with a problem, or turned away with a `retry:` (draining). */
  readonly connects: { accepted: number; rejected: number; turned_away: number };
  readonly rejections: Record<RejectionReason, number>;
  /** Events stored through the publish API (duplicates not counted). */
  published: number;
}

const BY_ADMISSION: Record<AdmissionReason, RejectionReason> = {
  'pod-full': 'pod_full',
  rate: 'rate',
  'ip-full': 'ip_full',
  'subject-full': 'subject_full',
};

const BY_CODE: Partial<Record<ErrorCode, RejectionReason>> = {
  HERALD_UNAUTHENTICATED: 'unauthenticated',
  HERALD_TOKEN_INVALID: 'unauthenticated',
  HERALD_TOKEN_EXPIRED: 'unauthenticated',
  HERALD_TOKEN_NOT_YET_VALID: 'unauthenticated',
  HERALD_API_KEY_INVALID: 'unauthenticated',
  HERALD_FORBIDDEN: 'forbidden',
  HERALD_ORIGIN_FORBIDDEN: 'origin',
  HERALD_AUTH_UNAVAILABLE: 'auth_unavailable',
  HERALD_BROKER_UNAVAILABLE: 'broker_unavailable',
  HERALD_TOO_MANY_TOPICS: 'topics',
};

/** Counts a refusal by its reason: the admission reason when there is one, else by error code. */
export function countRejection(stats: EdgeStats, err: unknown, admission?: AdmissionReason): void {
  const reason =
    admission !== undefined
      ? BY_ADMISSION[admission]
      : err instanceof HeraldError
        ? (BY_CODE[err.code] ?? 'invalid')
        : 'invalid';
  stats.rejections[reason]++;
}

/**
 * Which variable each auth option that `authOptions` checks comes from, so a bad one is reported by
 * the name the user set. (Bounds are the config's, checked before.)
 */
const AUTH_VARIABLES: Record<string, string> = {
  mode: 'HERALD_AUTH',
  hmacSecrets: 'HERALD_JWT_SECRETS_FILE',
  publicKeys: 'HERALD_JWT_KEYS_FILE',
  jwksUrl: 'HERALD_JWKS_URL',
  algorithms: 'HERALD_JWT_ALGORITHMS',
  issuer: 'HERALD_JWT_ISSUER',
  audience: 'HERALD_JWT_AUDIENCE',
  cookieName: 'HERALD_AUTH_COOKIE',
  apiKeys: 'HERALD_API_KEYS_FILE',
};

const list = (value: string): string[] =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
const optional = (value: string): string | undefined => (value === '' ? undefined : value);

const secretLines = (text: string) =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => Buffer.from(line, 'utf8'));

/** Key material from the files the config names, read and parsed. */
export interface AuthKeys {
  readonly hmacSecrets: readonly Uint8Array[];
  readonly publicKeys: readonly VerificationKey[];
  readonly apiKeys: readonly ApiKey[];
}

/**
 * The auth settings the config describes, with the key material of its files (none unless
 * given): the one way from `HERALD_*` settings to the auth module, bounds and defaults included.
 */
export function authSettingsOf(config: Config, keys: Partial<AuthKeys> = {}): AuthSettings {
  return {
    mode: config.auth,
    hmacSecrets: keys.hmacSecrets ?? [],
    publicKeys: keys.publicKeys ?? [],
    apiKeys: keys.apiKeys ?? [],
    jwksUrl: optional(config.jwksUrl),
    jwksRefreshMs: config.jwksRefreshMs,
    jwksMaxStaleMs: config.jwksMaxStaleMs,
    algorithms: config.jwtAlgorithms === '' ? undefined : list(config.jwtAlgorithms),
    issuer: optional(config.jwtIssuer),
    audience: optional(config.jwtAudience),
    leewayMs: config.jwtLeewayMs,
    requireExp: config.jwtRequireExp,
    cookieName: optional(config.authCookie),
    queryToken: config.authQueryToken,
  };
}

/** The auth options the config describes, with key files read. Throws ConfigError naming the variable. */
export function authOptionsOf(config: Config, readFile: (path: string) => string): AuthOptions {
  const settings = authSettingsOf(config, {
    hmacSecrets: fromFile('HERALD_JWT_SECRETS_FILE', config.jwtSecretsFile, readFile, secretLines),
    publicKeys: fromFile('HERALD_JWT_KEYS_FILE', config.jwtKeysFile, readFile, loadKeyFile),
    apiKeys: fromFile('HERALD_API_KEYS_FILE', config.apiKeysFile, readFile, parseApiKeys),
  });
  try {
    return authOptions(settings);
  } catch (err) {
    if (!(err instanceof AuthConfigError)) throw err;
    // `mode` fails only for jwt with nothing to verify tokens with: say what to set.
    if (err.option === 'mode')
      throw new ConfigError(
        'HERALD_AUTH',
        'is jwt (the default) but no key is configured: set HERALD_JWT_SECRETS_FILE, HERALD_JWT_KEYS_FILE, HERALD_JWKS_URL or HERALD_API_KEYS_FILE, or set HERALD_AUTH=none to run without authentication',
      );
    throw new ConfigError(AUTH_VARIABLES[err.option] ?? 'HERALD_AUTH', err.message);
  }
}

/** Admission's limits as the config sets them: the one way from `HERALD_*` settings to admission. */
export function admissionOptionsOf(config: Config): AdmissionOptions {
  return {
    maxConnections: config.maxConnections,
    connectRate: config.connectRate,
    connectBurst: connectBurstOf(config),
    maxPerIp: config.maxConnectionsPerIp,
    maxPerSubject: config.maxConnectionsPerSubject,
    retryAfterSeconds: retryAfterSecondsOf(config),
  };
}

export interface EdgeDeps {
  readonly clock: Clock;
  readonly random: () => number;
  readonly readFile: (path: string) => string;
  readonly fetch?: JwksFetch;
}

export function createEdge(config: Config, deps: EdgeDeps): Edge {
  const verified = authOptionsOf(config, deps.readFile);
  const auth = new Authenticator(verified, deps.clock, deps.fetch);
  let cors: Edge['cors'];
  try {
    const origins = list(config.corsOrigins);
    // `*` serves any page, so never with the user's cookies.
    cors = corsPolicy({ origins, credentials: !origins.includes('*') });
  } catch (err) {
    throw new ConfigError('HERALD_CORS_ORIGINS', (err as Error).message);
  }
  let proxies: TrustedProxies;
  try {
    proxies = new TrustedProxies(list(config.trustedProxies));
  } catch (err) {
    throw new ConfigError('HERALD_TRUSTED_PROXIES', (err as Error).message);
  }
  const admission = new Admission({ ...admissionOptionsOf(config), clock: deps.clock, random: deps.random });
  return {
    auth,
    // As validated for the authenticator, not read again from the raw config.
    credentials: { cookieName: verified.cookieName, queryToken: verified.queryToken },
    cors,
    admission,
    retryAfterSeconds: retryAfterSecondsOf(config),
    clientAddress: (peer, forwardedFor) => proxies.clientAddress(peer, forwardedFor),
    tokenExpiryWarnMs: config.tokenExpiryWarnMs,
    stats: {
      connects: { accepted: 0, rejected: 0, turned_away: 0 },
      rejections: Object.fromEntries(REJECTION_REASONS.map((r) => [r, 0])) as Record<RejectionReason, number>,
      published: 0,
    },
  };
}
