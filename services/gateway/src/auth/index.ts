export {
  type Algorithm,
  ASYMMETRIC_ALGORITHMS,
  type AsymmetricAlgorithm,
  HMAC_ALGORITHMS,
  type HmacAlgorithm,
} from './algorithms.ts';
export { type ApiKey, ApiKeyRing, MIN_API_KEY_LENGTH, parseApiKeys } from './api-keys.ts';
export { Authenticator, MAX_TOKEN_LENGTH } from './authenticator.ts';
export { AuthConfigError } from './config-error.ts';
export {
  type CredentialOptions,
  type CredentialSource,
  type Credentials,
  credentialsOf,
  QUERY_TOKEN_PARAM,
} from './credentials.ts';
export { GRANTS_CLAIM, type Grants, grantsOf, MAX_GRANT_PATTERNS } from './grants.ts';
export { JWKS_COOLDOWN_MS, JWKS_TIMEOUT_MS, type JwksFetch, MAX_JWKS_BYTES } from './jwks-cache.ts';
export { keysFromJwks, loadKeyFile, type VerificationKey } from './keys.ts';
export {
  type AuthMode,
  type AuthOptions,
  type AuthSettings,
  authOptions,
  MIN_HMAC_SECRET_BYTES,
} from './options.ts';
export { ALL_ACCESS, type AuthAction, authorize, type Principal } from './principal.ts';
