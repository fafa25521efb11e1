import { HeraldError } from '@herald/protocol';

/** What a request presents to prove who it is; the secret is never logged or echoed. */
export type Credentials =
  | { readonly kind: 'none' }
  | { readonly kind: 'jwt'; readonly token: string; readonly source: 'header' | 'cookie' | 'query' }
  | { readonly kind: 'apiKey'; readonly key: string };

/** The parts of a request credentials come from. Header names are lower case, as Node gives them. */
export interface CredentialSource {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly query: URLSearchParams;
}

export interface CredentialOptions {
  /** The cookie carrying a JWT; undefined: cookies are not read. */
  readonly cookieName: string | undefined;
  /** Whether the `access_token` query parameter is accepted. */
  readonly queryToken: boolean;
}

/** The query parameter of RFC 6750 §2.3. */
export const QUERY_TOKEN_PARAM = 'access_token';

const NONE: Credentials = Object.freeze({ kind: 'none' });
// RFC 6750 b64token; a JWT (base64url parts joined by dots) is a subset.
const BEARER = /^[A-Za-z0-9\-._~+/]+=*$/;
const API_KEY = /^[\x21-\x7e]+$/;

const invalid = (detail: string) => new HeraldError('HERALD_TOKEN_INVALID', detail);

function fromAuthorization(value: string): Credentials {
  const m = /^([A-Za-z][A-Za-z0-9-]*) +(\S+) *$/.exec(value);
  if (m === null)
    throw invalid('The Authorization header is malformed; expected "Bearer <token>" or "ApiKey <key>"');
  const scheme = m[1]!.toLowerCase();
  const secret = m[2]!;
  if (scheme === 'bearer') {
    if (!BEARER.test(secret)) throw invalid('The Bearer token has characters a token cannot have');
    return { kind: 'jwt', token: secret, source: 'header' };
  }
  if (scheme === 'apikey') {
    if (!API_KEY.test(secret)) throw invalid('The API key has characters a key cannot have');
    return { kind: 'apiKey', key: secret };
  }
  throw invalid('The Authorization scheme is not supported; use Bearer or ApiKey');
}

/** The first non-empty value of cookie `name` (RFC 6265 sends the most specific path first). */
function cookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of (Array.isArray(header) ? header.join('; ') : header).split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (value !== '') return value;
  }
  return undefined;
}

/**
 * The credentials a request presents. Pure. When several are present the `Authorization` header
 * wins, then the cookie, then the query parameter; the others are ignored. An empty cookie (as a
 * logout leaves) counts as absent. Throws `HERALD_TOKEN_INVALID` for a malformed `Authorization`
 * header and for an `access_token` parameter when query tokens are disabled, so a misconfigured
 * client learns why it is refused instead of being treated as anonymous.
 */
export function credentialsOf(req: CredentialSource, options: CredentialOptions): Credentials {
  const authorization = req.headers['authorization'];
  if (authorization !== undefined) {
    if (Array.isArray(authorization)) {
      if (authorization.length !== 1) throw invalid('Send one Authorization header, not several');
      return fromAuthorization(authorization[0]!);
    }
    return fromAuthorization(authorization);
  }
  if (options.cookieName !== undefined) {
    const token = cookie(req.headers['cookie'], options.cookieName);
    if (token !== undefined) {
      if (!BEARER.test(token)) throw invalid(`The ${options.cookieName} cookie does not hold a token`);
      return { kind: 'jwt', token, source: 'cookie' };
    }
  }
  const query = req.query.getAll(QUERY_TOKEN_PARAM);
  if (query.length === 0) return NONE;
  if (!options.queryToken)
    throw invalid(
      `The ${QUERY_TOKEN_PARAM} query parameter is disabled on this gateway; send an Authorization header`,
    );
  if (query.length > 1) throw invalid(`Send one ${QUERY_TOKEN_PARAM} query parameter, not several`);
  const token = query[0]!;
  if (!BEARER.test(token)) throw invalid(`The ${QUERY_TOKEN_PARAM} query parameter does not hold a token`);
  return { kind: 'jwt', token, source: 'query' };
}
