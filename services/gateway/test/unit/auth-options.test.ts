import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { AuthConfigError, authOptions, loadKeyFile } from '../../src/auth/index.ts';

const secret = randomBytes(32);
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();

const configError = (option: string, detail: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AuthConfigError, String(err));
  assert.equal(err.option, option);
  assert.match(err.message, detail);
  return true;
};

describe('authOptions', () => {
  it('fills the documented defaults and freezes the result', () => {
    const o = authOptions({ mode: 'jwt', hmacSecrets: [secret] });
    assert.deepEqual(
      {
        jwksRefreshMs: o.jwksRefreshMs,
        jwksMaxStaleMs: o.jwksMaxStaleMs,
        jwksTimeoutMs: o.jwksTimeoutMs,
        jwksCooldownMs: o.jwksCooldownMs,
        leewayMs: o.leewayMs,
        requireExp: o.requireExp,
        queryToken: o.queryToken,
        cookieName: o.cookieName,
        issuer: o.issuer,
        audience: o.audience,
        apiKeys: o.apiKeys,
        publicKeys: o.publicKeys,
      },
      {
        jwksRefreshMs: 300_000,
        jwksMaxStaleMs: 3_600_000,
        jwksTimeoutMs: 5_000,
        jwksCooldownMs: 30_000,
        leewayMs: 5_000,
        requireExp: true,
        queryToken: false,
        cookieName: undefined,
        issuer: undefined,
        audience: undefined,
        apiKeys: [],
        publicKeys: [],
      },
    );
    assert.ok(Object.isFrozen(o) && Object.isFrozen(o.algorithms) && Object.isFrozen(o.hmacSecrets));
  });

  it('derives the algorithms from the configured keys', () => {
    const hs = ['HS256', 'HS384', 'HS512'];
    const asym = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
    assert.deepEqual(authOptions({ mode: 'jwt', hmacSecrets: [secret] }).algorithms, hs);
    assert.deepEqual(authOptions({ mode: 'jwt', jwksUrl: 'https://id.example/jwks' }).algorithms, asym);
    assert.deepEqual(authOptions({ mode: 'jwt', publicKeys: loadKeyFile(rsaPem) }).algorithms, asym);
    assert.deepEqual(
      authOptions({ mode: 'jwt', hmacSecrets: [secret], publicKeys: loadKeyFile(rsaPem) }).algorithms,
      [...hs, ...asym],
    );
  });

  it("refuses alg 'none' in any case with a clear message", () => {
    for (const none of ['none', 'NONE', 'None'])
      assert.throws(
        () => authOptions({ mode: 'jwt', hmacSecrets: [secret], algorithms: ['HS256', none] }),
        configError('algorithms', /'none' can never be allowed/),
      );
  });

  it('refuses unknown algorithms and algorithms no configured key can verify', () => {
    assert.throws(
      () => authOptions({ mode: 'jwt', hmacSecrets: [secret], algorithms: ['HS1'] }),
      configError('algorithms', /not one of/),
    );
    assert.throws(
      () => authOptions({ mode: 'jwt', hmacSecrets: [secret], algorithms: ['RS256'] }),
      configError('algorithms', /neither jwksUrl nor publicKeys/),
    );
    assert.throws(
      () => authOptions({ mode: 'jwt', publicKeys: loadKeyFile(rsaPem), algorithms: ['HS256'] }),
      configError('algorithms', /no hmacSecrets/),
    );
  });

  it('refuses settings that cannot work, naming the setting', () => {
    const cases: Array<[() => unknown, string, RegExp]> = [
      [() => authOptions({ mode: 'jwt' }), 'mode', /at least one of/],
      [
        () => authOptions({ mode: 'jwt', hmacSecrets: [randomBytes(16)] }),
        'hmacSecrets',
        /shorter than 32 bytes/,
      ],
      [() => authOptions({ mode: 'jwt', jwksUrl: 'ftp://x/jwks' }), 'jwksUrl', /http or https/],
      [() => authOptions({ mode: 'jwt', jwksUrl: 'not a url' }), 'jwksUrl', /not a URL/],
      [
        () =>
          authOptions({
            mode: 'jwt',
            jwksUrl: 'https://x/jwks',
            jwksRefreshMs: 60_000,
            jwksMaxStaleMs: 1_000,
          }),
        'jwksMaxStaleMs',
        /between 60000/,
      ],
      [() => authOptions({ mode: 'jwt', hmacSecrets: [secret], leewayMs: -1 }), 'leewayMs', /between 0/],
      [
        () => authOptions({ mode: 'jwt', hmacSecrets: [secret], cookieName: 'a b' }),
        'cookieName',
        /cookie name/,
      ],
      [() => authOptions({ mode: 'jwt', hmacSecrets: [secret], issuer: ' ' }), 'issuer', /empty/],
      [
        () => authOptions({ mode: 'jwt', apiKeys: [{ key: 'k-0123456789abcdef', publish: ['a..b'] }] }),
        'apiKeys',
        /key 1/,
      ],
    ];
    for (const [f, option, why] of cases) assert.throws(f, configError(option, why));
  });

  it('copies HMAC secrets so later changes to the caller buffer do not matter', () => {
    const buf = Buffer.from(secret);
    const o = authOptions({ mode: 'jwt', hmacSecrets: [buf] });
    buf.fill(0);
    assert.deepEqual(Buffer.from(o.hmacSecrets[0]!), secret);
  });

  it('mode none needs no keys', () => {
    assert.equal(authOptions({ mode: 'none' }).mode, 'none');
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
