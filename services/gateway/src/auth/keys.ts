import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { type AsymmetricAlgorithm, isAsymmetricAlgorithm } from './algorithms.ts';
import { AuthConfigError } from './config-error.ts';

/** A public key that may verify asymmetric token signatures. */
export interface VerificationKey {
  /** The JWK `kid`; undefined for PEM keys, which then match a token whatever its `kid`. */
  readonly kid: string | undefined;
  /** The JWK `alg` when the key is pinned to one algorithm. */
  readonly alg: AsymmetricAlgorithm | undefined;
  readonly key: KeyObject;
}

// jose refuses shorter RSA keys for every RS and PS algorithm; refusing them at load says so early.
const MIN_RSA_BITS = 2048;
const CURVE_OF: Readonly<Record<string, string>> = {
  ES256: 'prime256v1',
  ES384: 'secp384r1',
  ES512: 'secp521r1',
};
const SUPPORTED_CURVES = new Set(Object.values(CURVE_OF));

/** Why a public key can verify none of the supported algorithms, or undefined when it can. */
function unsupported(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS
        ? `is an RSA key shorter than ${MIN_RSA_BITS} bits`
        : undefined;
    case 'ec':
      return SUPPORTED_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '')
        ? undefined
        : 'is an EC key on a curve other than P-256, P-384 and P-521';
    case 'ed25519':
      return undefined;
    default:
      return `is a ${key.asymmetricKeyType ?? 'unknown'} key; RSA, EC and Ed25519 keys are supported`;
  }
}

/** Whether `key` can verify `alg`: RS and PS need RSA, ES256/384/512 their curve, EdDSA Ed25519. */
export function keyFits(key: KeyObject, alg: AsymmetricAlgorithm): boolean {
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
    case 'PS256':
    case 'PS384':
    case 'PS512':
      return key.asymmetricKeyType === 'rsa';
    case 'ES256':
    case 'ES384':
    case 'ES512':
      return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === CURVE_OF[alg];
    case 'EdDSA':
      return key.asymmetricKeyType === 'ed25519';
  }
}

type JwkResult =
  | { readonly ok: true; readonly key: VerificationKey }
  | { readonly ok: false; readonly reason: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fromJwk(jwk: unknown): JwkResult {
  if (!isRecord(jwk) || typeof jwk['kty'] !== 'string') return { ok: false, reason: 'is not a JWK object' };
  // A private or symmetric key here would be a leak, or an invitation to HMAC-with-public-key
  // confusion; HMAC secrets have their own option.
  if ('d' in jwk || 'priv' in jwk) return { ok: false, reason: 'is a private key; publish only public keys' };
  if (jwk['kty'] === 'oct')
    return { ok: false, reason: 'is a symmetric key; HMAC secrets are configured apart' };
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig')
    return { ok: false, reason: 'is not a signing key (use)' };
  const ops = jwk['key_ops'];
  if (ops !== undefined && !(Array.isArray(ops) && ops.includes('verify')))
    return { ok: false, reason: 'is not a verification key (key_ops)' };
  const kid = jwk['kid'];
  if (kid !== undefined && typeof kid !== 'string')
    return { ok: false, reason: 'has a kid that is not a string' };
  const alg = jwk['alg'];
  if (alg !== undefined && (typeof alg !== 'string' || !isAsymmetricAlgorithm(alg)))
    return { ok: false, reason: 'names an alg that is not a supported signature algorithm' };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    return { ok: false, reason: 'is not a valid public JWK' };
  }
  const why = unsupported(key);
  if (why !== undefined) return { ok: false, reason: why };
  if (alg !== undefined && !keyFits(key, alg))
    return { ok: false, reason: 'names an alg its key type cannot verify' };
  return { ok: true, key: Object.freeze({ kid, alg, key }) };
}

function jwksKeys(doc: unknown): readonly unknown[] {
  if (!isRecord(doc) || !Array.isArray(doc['keys']))
    throw new Error('expected a JWKS document {"keys": [...]}');
  return doc['keys'];
}

/**
 * The usable keys of a JWKS document fetched from an issuer. Keys the gateway cannot use (private,
 * symmetric, encryption-only, unsupported types) are skipped, as an issuer may publish them for
 * other consumers; a document that is not a JWKS throws.
 */
export function keysFromJwks(doc: unknown): readonly VerificationKey[] {
  const out: VerificationKey[] = [];
  for (const jwk of jwksKeys(doc)) {
    const r = fromJwk(jwk);
    if (r.ok) out.push(r.key);
  }
  return Object.freeze(out);
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * Parses a key file's text: a JWKS JSON document, or one or more PEM `PUBLIC KEY` (SPKI) blocks.
 * Pure; reading the file is the caller's job. Strict, unlike `keysFromJwks`: an operator wrote
 * this file, so any key that cannot be used throws an `AuthConfigError` naming it by position.
 */
export function loadKeyFile(text: string): readonly VerificationKey[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(trimmed);
    } catch {
      throw new AuthConfigError('keyFile', 'starts with { but is not valid JSON');
    }
    let jwks: readonly unknown[];
    try {
      jwks = jwksKeys(doc);
    } catch (err) {
      throw new AuthConfigError('keyFile', (err as Error).message);
    }
    if (jwks.length === 0) throw new AuthConfigError('keyFile', 'the JWKS holds no keys');
    return Object.freeze(
      jwks.map((jwk, i) => {
        const r = fromJwk(jwk);
        if (r.ok) return r.key;
        const kid =
          isRecord(jwk) && typeof jwk['kid'] === 'string' ? ` (kid ${JSON.stringify(jwk['kid'])})` : '';
        throw new AuthConfigError('keyFile', `JWKS key ${i + 1}${kid} ${r.reason}`);
      }),
    );
  }
  const blocks = [...trimmed.matchAll(PEM_BLOCK)];
  if (blocks.length === 0)
    throw new AuthConfigError('keyFile', 'is neither a JWKS document nor PEM PUBLIC KEY blocks');
  return Object.freeze(
    blocks.map((block, i) => {
      if (block[1] !== 'PUBLIC KEY')
        throw new AuthConfigError(
          'keyFile',
          `PEM block ${i + 1} is a ${block[1]}; only PUBLIC KEY (SPKI) blocks are accepted`,
        );
      let key: KeyObject;
      try {
        key = createPublicKey({ key: block[0], format: 'pem', type: 'spki' });
      } catch {
        throw new AuthConfigError('keyFile', `PEM block ${i + 1} is not a valid SPKI public key`);
      }
      const why = unsupported(key);
      if (why !== undefined) throw new AuthConfigError('keyFile', `PEM block ${i + 1} ${why}`);
      return Object.freeze({ kid: undefined, alg: undefined, key });
    }),
  );
}
