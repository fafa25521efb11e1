import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JWTPayload, SignJWT } from 'jose';

/**
 * An HMAC secret long enough for HS256 (at least 32 bytes), for gateways under test: drawn anew
 * by each test process, so no key lives in the repository.
 */
export const TEST_HMAC_SECRET = randomBytes(32).toString('hex');

export interface TokenSpec {
  /** Default {@link TEST_HMAC_SECRET}. */
  readonly secret?: string;
  /** An HMAC algorithm; default HS256. */
  readonly alg?: 'HS256' | 'HS384' | 'HS512';
  readonly sub?: string;
  /** Topic patterns of the `herald.subscribe` grant; omitted: no such member. */
  readonly subscribe?: readonly string[];
  /** Topic patterns of the `herald.publish` grant; omitted: no such member. */
  readonly publish?: readonly string[];
  /** Expiry, in ms since the epoch (written as whole seconds, rounded down). */
  readonly expiresAt?: number;
  /** Not before, in ms since the epoch. */
  readonly notBefore?: number;
  /** Issued at, in ms since the epoch. */
  readonly issuedAt?: number;
  /** More claims, merged last. */
  readonly claims?: Readonly<Record<string, unknown>>;
}

const seconds = (ms: number) => Math.floor(ms / 1000);

function payloadOf(spec: TokenSpec): JWTPayload {
  const herald: Record<string, unknown> = {};
  if (spec.subscribe !== undefined) herald['subscribe'] = spec.subscribe;
  if (spec.publish !== undefined) herald['publish'] = spec.publish;
  return {
    ...(spec.sub === undefined ? {} : { sub: spec.sub }),
    ...(spec.expiresAt === undefined ? {} : { exp: seconds(spec.expiresAt) }),
    ...(spec.notBefore === undefined ? {} : { nbf: seconds(spec.notBefore) }),
    ...(spec.issuedAt === undefined ? {} : { iat: seconds(spec.issuedAt) }),
    ...(Object.keys(herald).length === 0 ? {} : { herald }),
    ...spec.claims,
  };
}

/** A JWT signed with an HMAC secret, as a token issuer would mint it. */
export function mintToken(spec: TokenSpec = {}): Promise<string> {
  return new SignJWT(payloadOf(spec))
    .setProtectedHeader({ alg: spec.alg ?? 'HS256', typ: 'JWT' })
    .sign(Buffer.from(spec.secret ?? TEST_HMAC_SECRET, 'utf8'));
}

/** An unsigned token (`alg: none`, empty signature) with the claims `spec` describes. */
export function unsignedToken(spec: TokenSpec = {}): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(payloadOf(spec))}.`;
}

/** Files written to a fresh temporary directory, for settings that name a file (secrets, API keys). */
export interface TempFiles {
  /** The path of each file, by the name it was given. */
  readonly paths: Readonly<Record<string, string>>;
  /** Removes the directory. */
  remove(): void;
}

export function writeTempFiles(files: Readonly<Record<string, string>>): TempFiles {
  const dir = mkdtempSync(join(tmpdir(), 'herald-edge-'));
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text, { mode: 0o600 });
  }
  return { paths, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
