/**
 * Every setting of the gateway, parsed once from `HERALD_*` environment variables by one schema
 * and frozen. The README's settings table is generated from `settings` (`make docs`).
 *
 * Longer than other modules on purpose: it is the one table of settings (an entry each, with its
 * bounds, default and documentation), and splitting it would make two owners of defaults.
 */

interface IntSetting {
  readonly type: 'int';
  readonly key: string;
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly doc: string;
}
interface StringSetting {
  readonly type: 'string';
  readonly key: string;
  readonly default: string;
  readonly pattern: RegExp;
  readonly doc: string;
}
interface EnumSetting<V extends string = string> {
  readonly type: 'enum';
  readonly key: string;
  readonly default: V;
  readonly values: readonly V[];
  readonly doc: string;
}
interface BoolSetting {
  readonly type: 'bool';
  readonly key: string;
  readonly default: boolean;
  readonly doc: string;
}
type Setting = IntSetting | StringSetting | EnumSetting | BoolSetting;

const int = <K extends string>(key: K, def: number, min: number, max: number, doc: string) =>
  ({ type: 'int', key, default: def, min, max, doc }) as const;
const str = <K extends string>(key: K, def: string, pattern: RegExp, doc: string) =>
  ({ type: 'string', key, default: def, pattern, doc }) as const;
const oneOf = <K extends string, const V extends string>(key: K, def: V, values: readonly V[], doc: string) =>
  ({ type: 'enum', key, default: def, values, doc }) as const;
const bool = <K extends string>(key: K, def: boolean, doc: string) =>
  ({ type: 'bool', key, default: def, doc }) as const;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const settings = {
  HERALD_HOST: str('host', '0.0.0.0', /^[0-9A-Za-z.:_-]{1,253}$/, 'Address to listen on.'),
  HERALD_PORT: int(
    'port',
    8080,
    0,
    65535,
    'TCP port for streams, publishes and probes (0 picks a free port).',
  ),
  HERALD_METRICS: bool('metrics', true, 'Serve Prometheus metrics on HERALD_METRICS_PORT.'),
  HERALD_METRICS_PORT: int(
    'metricsPort',
    9464,
    0,
    65535,
    'Internal TCP port serving Prometheus metrics at `/metrics` (0 picks a free port). Keep it off the public network.',
  ),
  HERALD_BROKER: oneOf(
    'broker',
    'memory',
    ['memory', 'jetstream'],
    'Event broker. `memory`: embedded, one process, history lost on restart. `jetstream`: NATS JetStream, shared by the fleet.',
  ),
  HERALD_NATS_URL: str(
    'natsUrl',
    'nats://127.0.0.1:4222',
    /^\S+$/,
    'JetStream: NATS server URLs, comma-separated.',
  ),
  HERALD_NATS_CREDS_FILE: str(
    'natsCredsFile',
    '',
    /^\S*$/,
    'JetStream: a NATS `.creds` file (user JWT and nkey seed).',
  ),
  HERALD_NATS_TOKEN_FILE: str('natsTokenFile', '', /^\S*$/, 'JetStream: a file holding a NATS auth token.'),
  HERALD_NATS_USER: str(
    'natsUser',
    '',
    /^\S*$/,
    'JetStream: NATS user name (with HERALD_NATS_PASSWORD_FILE).',
  ),
  HERALD_NATS_PASSWORD_FILE: str(
    'natsPasswordFile',
    '',
    /^\S*$/,
    "JetStream: a file holding the NATS user's password.",
  ),
  HERALD_NATS_TLS_CA_FILE: str(
    'natsTlsCaFile',
    '',
    /^\S*$/,
    'JetStream: CA bundle to verify the NATS server.',
  ),
  HERALD_NATS_TLS_CERT_FILE: str(
    'natsTlsCertFile',
    '',
    /^\S*$/,
    'JetStream: client certificate for mutual TLS.',
  ),
  HERALD_NATS_TLS_KEY_FILE: str('natsTlsKeyFile', '', /^\S*$/, 'JetStream: client key for mutual TLS.'),
  HERALD_STREAM_NAME: str(
    'streamName',
    'HERALD',
    /^[A-Za-z0-9_-]{1,64}$/,
    'JetStream: the stream holding `herald.t.>`.',
  ),
  HERALD_STREAM_MANAGE: bool(
    'streamManage',
    true,
    'JetStream: create or update the stream at start (`0`: only verify it).',
  ),
  HERALD_STREAM_REPLICAS: int(
    'streamReplicas',
    1,
    1,
    5,
    'JetStream: stream replicas when managed (3 for durability, see docs/durability.md).',
  ),
  HERALD_STREAM_MAX_BYTES: int(
    'streamMaxBytes',
    1024 ** 3,
    1024 * 1024,
    2 ** 50,
    'JetStream: stream size limit when managed (bytes).',
  ),
  HERALD_RELEASE_VERSION: str(
    'releaseVersion',
    'dev',
    /^[A-Za-z0-9._-]{1,63}$/,
    'Version this gateway reports in `X-Release-Version`.',
  ),
  HERALD_HEARTBEAT_MS: int(
    'heartbeatMs',
    15 * SECOND,
    1000,
    5 * MINUTE,
    'A comment is sent on streams that wrote nothing for this long (ms).',
  ),
  HERALD_RETRY_MS: int(
    'retryMs',
    2 * SECOND,
    0,
    5 * MINUTE,
    'Reconnection delay announced to clients with `retry:` (ms); jittered ±50% on drain.',
  ),
  HERALD_DRAIN_MS: int(
    'drainMs',
    10 * SECOND,
    0,
    10 * MINUTE,
    'On SIGTERM, open streams are closed spread over this window (ms).',
  ),
  HERALD_RING_SIZE: int(
    'ringSize',
    16_384,
    16,
    1_000_000,
    'Recent events kept in memory per gateway for instant resumes; filled from the stream at start.',
  ),
  HERALD_RING_MAX_BYTES: int(
    'ringMaxBytes',
    64 * 1024 * 1024,
    64 * 1024,
    4 * 1024 * 1024 * 1024,
    'Encoded bytes the ring holds at most; the oldest events leave first when over.',
  ),
  HERALD_HISTORY_MAX_EVENTS: int(
    'historyMaxEvents',
    100_000,
    1,
    1_000_000_000,
    'Events retained for resume (the stream limit when managed).',
  ),
  HERALD_HISTORY_MAX_AGE_MS: int(
    'historyMaxAgeMs',
    HOUR,
    SECOND,
    30 * DAY,
    'Age after which events are dropped (ms; the stream limit when managed).',
  ),
  HERALD_DEDUPE_WINDOW_MS: int(
    'dedupeWindowMs',
    2 * MINUTE,
    0,
    DAY,
    'A publish repeating an idempotency key within this window is stored once (ms).',
  ),
  HERALD_MAX_BODY_BYTES: int(
    'maxBodyBytes',
    1024 * 1024,
    1024,
    64 * 1024 * 1024,
    'Largest publish request body (bytes).',
  ),
  HERALD_MAX_MESSAGE_BYTES: int(
    'maxMessageBytes',
    64 * 1024,
    1,
    16 * 1024 * 1024,
    'Largest message `data`, UTF-8 encoded (bytes).',
  ),
  HERALD_MAX_BATCH: int('maxBatch', 100, 1, 10_000, 'Most messages in one publish request.'),
  HERALD_MAX_TOPICS: int('maxTopics', 32, 1, 1024, 'Most topics (or patterns) on one stream.'),
  HERALD_AUTH: oneOf(
    'auth',
    'jwt',
    ['jwt', 'none'],
    '`jwt`: every stream and publish needs a token (or, to publish, an API key). `none`: no authentication at all; say so explicitly.',
  ),
  HERALD_JWT_SECRETS_FILE: str(
    'jwtSecretsFile',
    '',
    /^\S*$/,
    'File of HMAC secrets (HS256/384/512), one per line, each at least 32 bytes; any of them verifies (rotation).',
  ),
  HERALD_JWT_KEYS_FILE: str(
    'jwtKeysFile',
    '',
    /^\S*$/,
    'File of public keys (RS/PS/ES/EdDSA): a JWKS document or PEM `PUBLIC KEY` blocks.',
  ),
  HERALD_JWKS_URL: str(
    'jwksUrl',
    '',
    /^(https?:\/\/\S+)?$/,
    'JWKS endpoint of the token issuer (http or https).',
  ),
  HERALD_JWKS_REFRESH_MS: int(
    'jwksRefreshMs',
    5 * MINUTE,
    SECOND,
    DAY,
    'How often the JWKS is refetched (ms).',
  ),
  HERALD_JWKS_MAX_STALE_MS: int(
    'jwksMaxStaleMs',
    HOUR,
    SECOND,
    7 * DAY,
    'How long fetched keys keep verifying while the JWKS endpoint fails (ms); then tokens get 503. At least HERALD_JWKS_REFRESH_MS.',
  ),
  HERALD_JWT_ALGORITHMS: str(
    'jwtAlgorithms',
    '',
    /^[A-Za-z0-9,]*$/,
    'Allowed token algorithms, comma-separated (e.g. `RS256,ES256`). Empty: those the configured keys can verify. `none` is never allowed.',
  ),
  HERALD_JWT_ISSUER: str('jwtIssuer', '', /^\S*$/, 'Required `iss` claim; empty: not checked.'),
  HERALD_JWT_AUDIENCE: str('jwtAudience', '', /^\S*$/, 'Required `aud` claim; empty: not checked.'),
  HERALD_JWT_REQUIRE_EXP: bool(
    'jwtRequireExp',
    true,
    'Refuse tokens without an `exp` claim (401 `HERALD_TOKEN_INVALID`): a stream lives as long as its token, so a token without one would hold a stream for ever. `0` accepts them.',
  ),
  HERALD_JWT_LEEWAY_MS: int(
    'jwtLeewayMs',
    5 * SECOND,
    0,
    5 * MINUTE,
    'Clock skew tolerated on `exp`, `nbf` and `iat` (ms).',
  ),
  HERALD_AUTH_COOKIE: str(
    'authCookie',
    '',
    /^[A-Za-z0-9!#$%&'*+.^_`|~-]*$/,
    'Name of an (HttpOnly) cookie carrying the token; empty: cookies are not read.',
  ),
  HERALD_AUTH_QUERY_TOKEN: bool(
    'authQueryToken',
    false,
    'Accept the token in an `access_token` query parameter (it ends up in access logs; prefer the cookie).',
  ),
  HERALD_API_KEYS_FILE: str(
    'apiKeysFile',
    '',
    /^\S*$/,
    'File of publish API keys, one per line: `<key> [pattern,pattern...]` (patterns default to `>`).',
  ),
  HERALD_TOKEN_EXPIRY_WARN_MS: int(
    'tokenExpiryWarnMs',
    MINUTE,
    0,
    HOUR,
    'A stream gets `herald.token-expiring` this long before its token expires (ms), and is closed at expiry.',
  ),
  HERALD_CORS_ORIGINS: str(
    'corsOrigins',
    '',
    /^[^\s]*$/,
    'Origins allowed to use the API from a browser, comma-separated: `https://app.example.com`, `https://*.example.com`, or `*` (then without credentials).',
  ),
  HERALD_TRUSTED_PROXIES: str(
    'trustedProxies',
    '',
    /^[^\s]*$/,
    'Proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` names the client, for per-IP limits: the load balancer or Gateway API data plane in front of the gateways. Empty: the peer address is the client.',
  ),
  HERALD_MAX_CONNECTIONS: int(
    'maxConnections',
    50_000,
    0,
    10_000_000,
    'Streams one gateway holds at most (0: no limit); beyond it new streams get 503 with a jittered Retry-After.',
  ),
  HERALD_MAX_CONNECTIONS_PER_IP: int(
    'maxConnectionsPerIp',
    0,
    0,
    10_000_000,
    'Streams per client address (0: no limit); beyond it 429.',
  ),
  HERALD_MAX_CONNECTIONS_PER_SUBJECT: int(
    'maxConnectionsPerSubject',
    0,
    0,
    10_000_000,
    'Streams per token subject (`sub`) (0: no limit); beyond it 429.',
  ),
  HERALD_CONNECT_RATE: int(
    'connectRate',
    0,
    0,
    1_000_000,
    'New streams accepted per second, as a token bucket (0: no limit); beyond it 429 with Retry-After.',
  ),
  HERALD_CONNECT_BURST: int(
    'connectBurst',
    0,
    0,
    10_000_000,
    "Token bucket size for HERALD_CONNECT_RATE (0: one second's worth).",
  ),
  HERALD_MAX_QUEUED_BYTES: int(
    'maxQueuedBytes',
    1024 * 1024,
    64 * 1024,
    1024 * 1024 * 1024,
    'Bytes a stream may have waiting to be sent; a client that stops reading is closed beyond it and resumes when back.',
  ),
  HERALD_HEADERS_TIMEOUT_MS: int(
    'headersTimeoutMs',
    10 * SECOND,
    SECOND,
    MINUTE,
    'A request whose head has not all arrived within this is answered 408 and closed (ms); a connection that sends nothing in this time is closed.',
  ),
  HERALD_REQUEST_TIMEOUT_MS: int(
    'requestTimeoutMs',
    30 * SECOND,
    SECOND,
    10 * MINUTE,
    'A request whose body has not all arrived within this of its start is answered 408 and closed (ms); at least HERALD_HEADERS_TIMEOUT_MS. Streams are not cut by it (their request ends with its head).',
  ),
  HERALD_MAX_HEADER_BYTES: int(
    'maxHeaderBytes',
    16 * 1024,
    1024,
    1024 * 1024,
    'Largest request head (bytes); beyond it 431.',
  ),
  HERALD_DEMO: bool('demo', false, 'Serve the demo page at `/`.'),
  HERALD_TRACE_PING_RATIO: str(
    'tracePingRatio',
    '0.01',
    /^(0(\.\d{1,6})?|1(\.0{1,6})?)$/,
    'Share of a traced connection’s heartbeats recorded as `sse.ping` spans (0–1), when tracing is on (`OTEL_EXPORTER_OTLP_ENDPOINT`).',
  ),
  HERALD_LOG_LEVEL: oneOf(
    'logLevel',
    'info',
    ['debug', 'info', 'warn', 'error'],
    'Least severe log level written to stdout.',
  ),
} as const satisfies Record<string, Setting>;

type Settings = typeof settings;
type ValueOf<S> = S extends IntSetting
  ? number
  : S extends BoolSetting
    ? boolean
    : S extends { readonly type: 'enum'; readonly values: readonly (infer V)[] }
      ? V
      : string;

export type Config = { readonly [N in keyof Settings as Settings[N]['key']]: ValueOf<Settings[N]> };

/** A setting was unknown or invalid; the message names the variable and what it accepts. */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

function parseOne(name: string, s: Setting, raw: string): unknown {
  switch (s.type) {
    case 'int': {
      if (!/^(0|[1-9][0-9]*)$/.test(raw))
        throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
      const n = Number(raw);
      if (n < s.min || n > s.max)
        throw new ConfigError(name, `must be between ${s.min} and ${s.max}, got ${raw}`);
      return n;
    }
    case 'bool':
      if (raw === '1' || raw === 'true') return true;
      if (raw === '0' || raw === 'false') return false;
      throw new ConfigError(name, `expected 1, 0, true or false, got ${JSON.stringify(raw)}`);
    case 'enum':
      if (!s.values.includes(raw))
        throw new ConfigError(name, `expected one of ${s.values.join(', ')}, got ${JSON.stringify(raw)}`);
      return raw;
    case 'string':
      if (!s.pattern.test(raw))
        throw new ConfigError(name, `must match ${s.pattern}, got ${JSON.stringify(raw)}`);
      return raw;
  }
}

/**
 * Bounds between settings, checked after each is parsed on its own. The modules the settings go
 * to (auth, admission, ...) take them as given: bounds, defaults and these relations are only here.
 */
function checkTogether(config: Config): Config {
  // node:http refuses a head deadline longer than the whole request's.
  if (config.requestTimeoutMs < config.headersTimeoutMs)
    throw new ConfigError(
      'HERALD_REQUEST_TIMEOUT_MS',
      `must be at least HERALD_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}), got ${config.requestTimeoutMs}`,
    );
  // Otherwise fetched keys would lapse between two refreshes even while the endpoint answers.
  if (config.jwksMaxStaleMs < config.jwksRefreshMs)
    throw new ConfigError(
      'HERALD_JWKS_MAX_STALE_MS',
      `must be at least HERALD_JWKS_REFRESH_MS (${config.jwksRefreshMs}), got ${config.jwksMaxStaleMs}`,
    );
  return config;
}

/**
 * The connect token bucket's size: HERALD_CONNECT_BURST, or when that is 0 one second's worth of
 * HERALD_CONNECT_RATE; at least 1 (also without a rate, where it is unused).
 */
export function connectBurstOf(config: Pick<Config, 'connectRate' | 'connectBurst'>): number {
  return config.connectBurst > 0 ? config.connectBurst : Math.max(1, Math.ceil(config.connectRate));
}

/** HERALD_RETRY_MS as a `Retry-After` base: whole seconds, rounded up, never 0 (which means "now"). */
export function retryAfterSecondsOf(config: Pick<Config, 'retryMs'>): number {
  return Math.max(1, Math.ceil(config.retryMs / 1000));
}

/**
 * Parses the environment. Unknown `HERALD_*` variables are errors too, because a misspelt
 * setting silently falling back to its default is worse than not starting.
 */
export function parseConfig(env: Readonly<Record<string, string | undefined>>): Config {
  for (const name of Object.keys(env)) {
    if (name.startsWith('HERALD_') && !Object.hasOwn(settings, name)) {
      throw new ConfigError(name, 'is not a Herald setting (see the settings table in README.md)');
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(settings) as Array<[string, Setting]>) {
    const raw = env[name];
    out[s.key] = raw === undefined || raw === '' ? s.default : parseOne(name, s, raw);
  }
  return checkTogether(Object.freeze(out) as Config);
}

/**
 * Defaults for every setting, with overrides: for tests and embedding. Overrides are taken as
 * given, not held to each setting's bounds (tests use deadlines shorter than an operator may set);
 * the relations between settings are checked.
 */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return checkTogether(Object.freeze({ ...parseConfig({}), ...overrides }));
}

/** The README table of settings, in Markdown. */
export function settingsTable(): string {
  const rows = Object.entries(settings).map(([name, s]: [string, Setting]) => {
    const def = s.type === 'bool' ? (s.default ? '`1`' : '`0`') : `\`${s.default}\``;
    const accepts =
      s.type === 'int'
        ? `${s.min}–${s.max}`
        : s.type === 'enum'
          ? s.values.map((v) => `\`${v}\``).join(', ')
          : s.type === 'bool'
            ? '`1`/`0`'
            : `\`${s.pattern.source}\``;
    return `| \`${name}\` | ${def} | ${accepts} | ${s.doc} |`;
  });
  return ['| Variable | Default | Accepts | Meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
