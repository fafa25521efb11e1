import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { AuthConfigError, type AuthSettings, authOptions, loadKeyFile } from '../../src/auth/index.ts';
import { ConfigError, defaultConfig, parseConfig, settings } from '../../src/config.ts';
import { authOptionsOf, authSettingsOf } from '../../src/edge.ts';

const secret = randomBytes(32);
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** The auth options of the config's defaults (mode jwt, no keys) with `over` set. */
const optionsWith = (over: Partial<AuthSettings>) =>
  authOptions({ ...authSettingsOf(defaultConfig()), ...over });

const configError = (option: string, detail: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AuthConfigError, String(err));
  assert.equal(err.option, option);
  assert.match(err.message, detail);
  return true;
};

describe('authOptionsOf', () => {
  it("takes every value from the config, the schema's defaults included, and freezes the result", () => {
    const o = authOptionsOf(parseConfig({ HERALD_AUTH: 'none' }), () => '');
    const def = <N extends keyof typeof settings>(name: N) => settings[name].default;
    assert.deepEqual(
      {
        jwksRefreshMs: o.jwksRefreshMs,
        jwksMaxStaleMs: o.jwksMaxStaleMs,
        leewayMs: o.leewayMs,
        requireExp: o.requireExp,
        queryToken: o.queryToken,
        cookieName: o.cookieName,
        issuer: o.issuer,
        audience: o.audience,
        jwksUrl: o.jwksUrl,
        apiKeys: o.apiKeys,
        publicKeys: o.publicKeys,
        hmacSecrets: o.hmacSecrets,
        algorithms: o.algorithms,
      },
      {
        jwksRefreshMs: def('HERALD_JWKS_REFRESH_MS'),
        jwksMaxStaleMs: def('HERALD_JWKS_MAX_STALE_MS'),
        leewayMs: def('HERALD_JWT_LEEWAY_MS'),
        requireExp: def('HERALD_JWT_REQUIRE_EXP'),
        queryToken: def('HERALD_AUTH_QUERY_TOKEN'),
        cookieName: undefined,
        issuer: undefined,
        audience: undefined,
        jwksUrl: undefined,
        apiKeys: [],
        publicKeys: [],
        hmacSecrets: [],
        algorithms: [],
      },
    );
    assert.ok(Object.isFrozen(o) && Object.isFrozen(o.algorithms) && Object.isFrozen(o.hmacSecrets));
  });

  it('maps each HERALD_ variable to its option', () => {
    const files: Record<string, string> = {
      '/s': `# rotation\n${'a'.repeat(32)}\n${'b'.repeat(32)}\n`,
      '/k': rsaPem,
      '/a': 'k-0123456789abcdef orders.>',
    };
    const o = authOptionsOf(
      parseConfig({
        HERALD_JWT_SECRETS_FILE: '/s',
        HERALD_JWT_KEYS_FILE: '/k',
        HERALD_API_KEYS_FILE: '/a',
        HERALD_JWKS_URL: 'https://id.example/jwks',
        HERALD_JWKS_REFRESH_MS: '60000',
        HERALD_JWKS_MAX_STALE_MS: '120000',
        HERALD_JWT_ALGORITHMS: 'RS256,HS256',
        HERALD_JWT_ISSUER: 'https://id.example',
        HERALD_JWT_AUDIENCE: 'herald',
        HERALD_JWT_LEEWAY_MS: '0',
        HERALD_JWT_REQUIRE_EXP: '0',
        HERALD_AUTH_COOKIE: 'herald_token',
        HERALD_AUTH_QUERY_TOKEN: '1',
      }),
      (path) => files[path]!,
    );
    assert.deepEqual(
      {
        mode: o.mode,
        hmacSecrets: o.hmacSecrets.map((b) => Buffer.from(b).toString()),
        publicKeys: o.publicKeys.length,
        apiKeys: o.apiKeys,
        jwksUrl: o.jwksUrl,
        jwksRefreshMs: o.jwksRefreshMs,
        jwksMaxStaleMs: o.jwksMaxStaleMs,
        algorithms: o.algorithms,
        issuer: o.issuer,
        audience: o.audience,
        leewayMs: o.leewayMs,
        requireExp: o.requireExp,
        cookieName: o.cookieName,
        queryToken: o.queryToken,
      },
      {
        mode: 'jwt',
        hmacSecrets: ['a'.repeat(32), 'b'.repeat(32)],
        publicKeys: 1,
        apiKeys: [{ key: 'k-0123456789abcdef', publish: ['orders.>'] }],
        jwksUrl: 'https://id.example/jwks',
        jwksRefreshMs: 60_000,
        jwksMaxStaleMs: 120_000,
        algorithms: ['RS256', 'HS256'],
        issuer: 'https://id.example',
        audience: 'herald',
        leewayMs: 0,
        requireExp: false,
        cookieName: 'herald_token',
        queryToken: true,
      },
    );
  });

  it('names the variable of an option its content makes unusable', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{}, /^HERALD_AUTH: is jwt \(the default\) but no key is configured/],
      [{ HERALD_JWT_SECRETS_FILE: '/short' }, /^HERALD_JWT_SECRETS_FILE: hmacSecrets: secret 1 is shorter/],
      [
        { HERALD_JWT_SECRETS_FILE: '/s', HERALD_JWT_ALGORITHMS: 'RS256' },
        /^HERALD_JWT_ALGORITHMS: algorithms: RS256 is allowed but neither/,
      ],
      [{ HERALD_JWKS_URL: 'http://[' }, /^HERALD_JWKS_URL: jwksUrl: is not a URL/],
    ];
    const files: Record<string, string> = { '/short': 'x'.repeat(16), '/s': 'a'.repeat(32) };
    for (const [env, message] of cases)
      assert.throws(
        () => authOptionsOf(parseConfig(env), (path) => files[path]!),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
  });
});

describe('authOptions', () => {
  it('derives the algorithms from the configured keys', () => {
    const hs = ['HS256', 'HS384', 'HS512'];
    const asym = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
    assert.deepEqual(optionsWith({ hmacSecrets: [secret] }).algorithms, hs);
    assert.deepEqual(optionsWith({ jwksUrl: 'https://id.example/jwks' }).algorithms, asym);
    assert.deepEqual(optionsWith({ publicKeys: loadKeyFile(rsaPem) }).algorithms, asym);
    assert.deepEqual(optionsWith({ hmacSecrets: [secret], publicKeys: loadKeyFile(rsaPem) }).algorithms, [
      ...hs,
      ...asym,
    ]);
  });

  it("refuses alg 'none' in any case with a clear message", () => {
    for (const none of ['none', 'NONE', 'None'])
      assert.throws(
        () => optionsWith({ hmacSecrets: [secret], algorithms: ['HS256', none] }),
        configError('algorithms', /'none' can never be allowed/),
      );
  });

  it('refuses unknown algorithms and algorithms no configured key can verify', () => {
    assert.throws(
      () => optionsWith({ hmacSecrets: [secret], algorithms: ['HS1'] }),
      configError('algorithms', /not one of/),
    );
    assert.throws(
      () => optionsWith({ hmacSecrets: [secret], algorithms: ['RS256'] }),
      configError('algorithms', /neither jwksUrl nor publicKeys/),
    );
    assert.throws(
      () => optionsWith({ publicKeys: loadKeyFile(rsaPem), algorithms: ['HS256'] }),
      configError('algorithms', /no hmacSecrets/),
    );
  });

  it('refuses settings whose content cannot work, naming the setting (bounds are the config tests)', () => {
    const cases: Array<[() => unknown, string, RegExp]> = [
      [() => optionsWith({}), 'mode', /at least one of/],
      [() => optionsWith({ hmacSecrets: [randomBytes(16)] }), 'hmacSecrets', /shorter than 32 bytes/],
      [() => optionsWith({ jwksUrl: 'ftp://x/jwks' }), 'jwksUrl', /http or https/],
      [() => optionsWith({ jwksUrl: 'not a url' }), 'jwksUrl', /not a URL/],
      [() => optionsWith({ hmacSecrets: [secret], cookieName: 'a b' }), 'cookieName', /cookie name/],
      [() => optionsWith({ hmacSecrets: [secret], issuer: ' ' }), 'issuer', /empty/],
      [
        () => optionsWith({ apiKeys: [{ key: 'k-0123456789abcdef', publish: ['a..b'] }] }),
        'apiKeys',
        /key 1/,
      ],
    ];
    for (const [f, option, why] of cases) assert.throws(f, configError(option, why));
  });

  it('copies HMAC secrets so later changes to the caller buffer do not matter', () => {
    const buf = Buffer.from(secret);
    const o = optionsWith({ hmacSecrets: [buf] });
    buf.fill(0);
    assert.deepEqual(Buffer.from(o.hmacSecrets[0]!), secret);
  });

  it('mode none needs no keys', () => {
    assert.equal(optionsWith({ mode: 'none' }).mode, 'none');
  });
});

describe('loadKeyFile', () => {
  it('reads several PEM public keys, with text around them', () => {
    const keys = loadKeyFile(`# issuer keys\n${rsaPem}\nnext:\n${ecPem}`);
    assert.deepEqual(
      keys.map((k) => [k.kid, k.alg, k.key.asymmetricKeyType]),
      [
        [undefined, undefined, 'rsa'],
        [undefined, undefined, 'ec'],
      ],
    );
  });

  it('reads a JWKS document with kid and alg', () => {
    const jwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r1', alg: 'RS256', use: 'sig' };
    const keys = loadKeyFile(JSON.stringify({ keys: [jwk] }));
    assert.deepEqual(
      keys.map((k) => [k.kid, k.alg]),
      [['r1', 'RS256']],
    );
  });

  it('refuses keys it cannot use, naming them by position, never printing key material', () => {
    const pub = rsa.publicKey.export({ format: 'jwk' });
    const priv = rsa.privateKey.export({ format: 'jwk' });
    const privPem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const cases: Array<[string, RegExp]> = [
      ['', /neither a JWKS document nor PEM/],
      ['{ nope', /not valid JSON/],
      ['{"kty":"RSA"}', /expected a JWKS document/],
      ['{"keys":[]}', /holds no keys/],
      [JSON.stringify({ keys: [pub, { ...priv, kid: 'p' }] }), /JWKS key 2 \(kid "p"\) is a private key/],
      [JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), /JWKS key 1 is a symmetric key/],
      [JSON.stringify({ keys: [{ ...pub, use: 'enc' }] }), /not a signing key/],
      [JSON.stringify({ keys: [{ ...pub, alg: 'ES256' }] }), /alg its key type cannot verify/],
      [JSON.stringify({ keys: [{ ...pub, alg: 'RSA-OAEP' }] }), /not a supported signature algorithm/],
      [JSON.stringify({ keys: [{ ...pub, n: 'x' }] }), /shorter than 2048 bits|not a valid public JWK/],
      [`${rsaPem}${privPem}`, /PEM block 2 is a PRIVATE KEY/],
      [small.toString(), /PEM block 1 is an RSA key shorter than 2048 bits/],
      ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', /not a valid SPKI/],
    ];
    for (const [text, why] of cases)
      assert.throws(
        () => loadKeyFile(text),
        (err) => {
          assert.ok(err instanceof AuthConfigError && err.option === 'keyFile', String(err));
          assert.match(err.message, why);
          assert.ok(!err.message.includes(String(priv.d)) && !err.message.includes('c2VjcmV0'));
          return true;
        },
        text.slice(0, 40),
      );
  });
});
