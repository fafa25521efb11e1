import type { ErrorCodes } from '@herald/protocol';

export interface CorsOptions {
  /**
   * Origins allowed to read responses. Each entry is one of:
   * - an exact origin, `scheme://host[:port]` with no path (`https://app.example.com`);
   * - a subdomain wildcard, `scheme://*.host[:port]` (`https://*.example.com` allows
   *   `https://a.example.com` and `https://a.b.example.com`, not `https://example.com`); the part
   *   after `*.` needs at least two labels, so `https://*.com` is refused;
   * - `*`, any well-formed origin (still echoed, not answered with `*`), only with
   *   `credentials: false`;
   * - `null`, the opaque origin of sandboxed frames and `file:` pages; matched only when listed,
   *   even alongside `*`, since any page can make itself opaque.
   * Scheme and host compare case-insensitively; a default port (80 for http, 443 for https) is
   * the same as none. Hosts are ASCII (write IDNs in punycode, as browsers send them).
   * An invalid entry throws at construction, naming it.
   */
  readonly origins: readonly string[];
  /**
   * Let listed origins send cookies and `Authorization` (`Access-Control-Allow-Credentials`).
   * Default true. Only ever granted to the echoed origin, hence incompatible with `*`.
   */
  readonly credentials?: boolean;
  /**
   * How long a browser may cache a preflight answer, in seconds; whole number ≥ 0. Default 600.
   * Browsers cap it (Chromium at 7200, Firefox at 86400).
   */
  readonly maxAgeSeconds?: number;
  /** Request headers a preflight allows, named (no `*`); case-insensitive. Default {@link DEFAULT_ALLOW_HEADERS}. */
  readonly allowHeaders?: readonly string[];
  /** Response headers scripts may read. Default {@link DEFAULT_EXPOSE_HEADERS}. */
  readonly exposeHeaders?: readonly string[];
}

export const DEFAULT_ALLOW_HEADERS = [
  'authorization',
  'content-type',
  'idempotency-key',
  'last-event-id',
  'x-release-version',
] as const;
export const DEFAULT_EXPOSE_HEADERS = ['x-release-version'] as const;
/** The gateway's public endpoints take GET (streams) and POST (publish); nothing else. */
export const ALLOW_METHODS = ['GET', 'POST'] as const;

/** What `decide` needs of a request. */
export interface CorsRequest {
  readonly method: string;
  /** The `Origin` header; absent means not a CORS request. */
  readonly origin?: string | undefined;
  /** `Access-Control-Request-Method`; on an OPTIONS request, marks it a preflight. */
  readonly requestMethod?: string | undefined;
  /** `Access-Control-Request-Headers`; not consulted (see {@link corsPolicy}). */
  readonly requestHeaders?: string | undefined;
  /**
   * The `Host` header, when known. Browsers send `Origin` on same-origin POSTs too (the demo
   * page's publish); an origin naming this host is treated as same-origin, not CORS, so pages
   * served by the gateway itself need not be listed. A forged `Host` gains nothing: only
   * non-browser clients can forge it, and those are not bound by CORS anyway.
   */
  readonly host?: string | undefined;
}

type Headers = Readonly<Record<string, string>>;

/**
 * Every decision carries `headers` to set on the answer (at least `Vary: Origin`, since the
 * answer depends on it). `preflight`: answer 204 with them. `actual`: serve the request and add
 * them. `forbidden`: answer 403 problem+json with `code` and `detail`.
 */
export type CorsDecision =
  | { readonly kind: 'not-cors'; readonly headers: Headers }
  | {
      readonly kind: 'forbidden';
      readonly code: 'HERALD_ORIGIN_FORBIDDEN';
      readonly status: (typeof ErrorCodes)['HERALD_ORIGIN_FORBIDDEN']['status'];
      readonly detail: string;
      readonly headers: Headers;
    }
  | { readonly kind: 'preflight'; readonly headers: Headers }
  | { readonly kind: 'actual'; readonly headers: Headers };

interface Origin {
  readonly scheme: string;
  readonly host: string;
  /** Empty for the scheme's default port. */
  readonly port: string;
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443' };
const ORIGIN_RE = /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9a-f:.]+\]|[^/?#:@[\]]+)(?::([0-9]{1,5}))?$/i;
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const TOKEN_RE = /^[!#$%&'+.^_`|~0-9a-z-]+$/;
const VARY = { Vary: 'Origin' } as const;

function parseHost(raw: string): string | undefined {
  const host = raw.toLowerCase();
  if (host.startsWith('[')) return host;
  if (host.length > 253) return undefined;
  return host.split('.').every((label) => LABEL_RE.test(label)) ? host : undefined;
}

function parsePort(scheme: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return '';
  const n = Number(raw);
  if (n < 1 || n > 65535) return undefined;
  return String(n) === DEFAULT_PORTS[scheme] ? '' : String(n);
}

/** A serialized origin, normalized, or undefined when it is not one. */
function parseOrigin(value: string): Origin | undefined {
  const m = ORIGIN_RE.exec(value);
  if (m === null) return undefined;
  const scheme = m[1]!.toLowerCase();
  const host = parseHost(m[2]!);
  const port = parsePort(scheme, m[3]);
  return host === undefined || port === undefined ? undefined : { scheme, host, port };
}

const keyOf = (o: Origin): string => `${o.scheme}://${o.host}${o.port === '' ? '' : `:${o.port}`}`;

interface Allowlist {
  readonly any: boolean;
  readonly opaque: boolean;
  readonly exact: ReadonlySet<string>;
  /** Wildcards as origins whose host is the part after `*.`. */
  readonly wildcards: readonly Origin[];
}

function compile(entries: readonly string[], credentials: boolean): Allowlist {
  const exact = new Set<string>();
  const wildcards: Origin[] = [];
  let any = false;
  let opaque = false;
  for (const entry of entries) {
    const bad = (why: string) => new Error(`CORS origin ${JSON.stringify(entry)}: ${why}`);
    if (entry === '*') {
      if (credentials) {
        throw bad(
          'any origin cannot be combined with credentials; list the origins, or set credentials to false',
        );
      }
      any = true;
    } else if (entry === 'null') {
      opaque = true;
    } else {
      const wildcard = /^([a-z][a-z0-9+.-]*:\/\/)\*\.(.*)$/i.exec(entry);
      const origin = parseOrigin(wildcard === null ? entry : wildcard[1]! + wildcard[2]!);
      if (origin === undefined) {
        throw bad(
          /^[a-z][a-z0-9+.-]*:\/\/[^/?#]+[/?#]/i.test(entry)
            ? 'an origin has no path, query or fragment (drop the trailing slash)'
            : 'expected scheme://host[:port], scheme://*.host[:port], * or null',
        );
      }
      if (wildcard === null) exact.add(keyOf(origin));
      else if (origin.host.startsWith('[') || origin.host.split('.').length < 2) {
        throw bad('a wildcard needs a domain of at least two labels after "*."');
      } else wildcards.push(origin);
    }
  }
  return { any, opaque, exact, wildcards };
}

function allows(list: Allowlist, origin: string): boolean {
  if (origin === 'null') return list.opaque;
  // Parsed even for `*`: the value is echoed into a header, so it must be a well-formed origin.
  const o = parseOrigin(origin);
  if (o === undefined) return false;
  if (list.any) return true;
  if (list.exact.has(keyOf(o))) return true;
  return list.wildcards.some(
    (w) => w.scheme === o.scheme && w.port === o.port && o.host.endsWith(`.${w.host}`),
  );
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  const o = parseOrigin(origin);
  const h = o === undefined ? undefined : parseOrigin(`${o.scheme}://${host}`);
  return o !== undefined && h !== undefined && keyOf(o) === keyOf(h);
}

function headerList(name: string, values: readonly string[]): string[] {
  return values.map((v) => {
    const lower = v.toLowerCase();
    if (!TOKEN_RE.test(lower)) throw new Error(`CORS ${name}: ${JSON.stringify(v)} is not a header name`);
    return lower;
  });
}

/**
 * Compiles a CORS policy for the public endpoints; returns `decide`, which is pure and cheap.
 *
 * - No `Origin` (or a same-origin one, see {@link CorsRequest.host}): `not-cors`.
 * - `OPTIONS` with `Access-Control-Request-Method` from an allowed origin: `preflight`, answering
 *   the full method and header allow lists whatever was asked. The browser compares them with
 *   its request and fails it itself; refusing here would only replace its clear console message
 *   with an opaque 403.
 * - An allowed origin otherwise: `actual`, echoing the exact `Origin` (never `*`).
 * - An unlisted origin, preflight or not: `forbidden`. Serving without CORS headers would be
 *   useless (the browser hides the response from the page) yet cost a stream slot and broker
 *   work for as long as the attacker's page keeps it open; refusing early saves both and tells
 *   the page's developer why.
 *
 * @throws Error naming the entry or header when an option is invalid, or `*` with credentials.
 */
export function corsPolicy(options: CorsOptions): (req: CorsRequest) => CorsDecision {
  const credentials = options.credentials ?? true;
  const list = compile(options.origins, credentials);
  const maxAge = options.maxAgeSeconds ?? 600;
  if (!(Number.isSafeInteger(maxAge) && maxAge >= 0)) {
    throw new RangeError(`CORS maxAgeSeconds must be a whole number >= 0, got ${maxAge}`);
  }
  const allowHeaders = headerList('allowHeaders', options.allowHeaders ?? DEFAULT_ALLOW_HEADERS);
  const exposeHeaders = headerList('exposeHeaders', options.exposeHeaders ?? DEFAULT_EXPOSE_HEADERS);

  const common = (origin: string): Record<string, string> => ({
    'Access-Control-Allow-Origin': origin,
    ...(credentials ? { 'Access-Control-Allow-Credentials': 'true' } : {}),
    ...VARY,
  });
  const preflightHeaders: Record<string, string> = {
    'Access-Control-Allow-Methods': ALLOW_METHODS.join(', '),
    ...(allowHeaders.length > 0 ? { 'Access-Control-Allow-Headers': allowHeaders.join(', ') } : {}),
    'Access-Control-Max-Age': String(maxAge),
  };
  const actualHeaders: Record<string, string> =
    exposeHeaders.length > 0 ? { 'Access-Control-Expose-Headers': exposeHeaders.join(', ') } : {};

  return (req) => {
    const { origin } = req;
    if (origin === undefined || sameOrigin(origin, req.host)) return { kind: 'not-cors', headers: VARY };
    if (!allows(list, origin)) {
      return {
        kind: 'forbidden',
        code: 'HERALD_ORIGIN_FORBIDDEN',
        status: 403,
        // Bounded and quoted: the header is the client's, and the detail lands in logs.
        detail: `origin ${JSON.stringify(origin.slice(0, 200))} is not allowed`,
        headers: VARY,
      };
    }
    if (req.method === 'OPTIONS' && req.requestMethod !== undefined) {
      return { kind: 'preflight', headers: { ...common(origin), ...preflightHeaders } };
    }
    return { kind: 'actual', headers: { ...common(origin), ...actualHeaders } };
  };
}
