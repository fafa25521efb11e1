import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { type ErrorCode, HeraldError } from '@herald/protocol';
import { FakeClock } from '@herald/testkit';
import { type JWTPayload, SignJWT } from 'jose';
import {
  ALL_ACCESS,
  Authenticator,
  type AuthSettings,
  authOptions,
  type Credentials,
  loadKeyFile,
} from '../../src/auth/index.ts';
import { defaultConfig } from '../../src/config.ts';
import { authSettingsOf } from '../../src/edge.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ecOther = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const edOther = generateKeyPairSync('ed25519');
const secret = randomBytes(32);
const otherSecret = randomBytes(32);

const pem = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();
const jwks = (...keys: Array<[KeyObject, string]>) =>
  JSON.stringify({ keys: keys.map(([k, kid]) => ({ ...k.export({ format: 'jwk' }), kid, use: 'sig' })) });

const START = Date.UTC(2026, 0, 1);
const SEC = START / 1000;
const grants = { herald: { subscribe: ['chat.>'], publish: ['chat.room1'] } };

function sign(
  key: KeyObject | Uint8Array,
  alg: string,
  claims: JWTPayload = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT({ sub: 'user-1', iat: SEC, exp: SEC + 60, ...grants, ...claims })
    .setProtectedHeader({ alg, ...header })
    .sign(key);
}

const jwt = (token: string): Credentials => ({ kind: 'jwt', token, source: 'header' });

/** The config's defaults (mode jwt, no keys), with `settings` over them. */
function setup(settings: Partial<AuthSettings>) {
  const clock = new FakeClock(START);
  const auth = new Authenticator(authOptions({ ...authSettingsOf(defaultConfig()), ...settings }), clock);
  return { clock, auth };
}

async function refused(auth: Authenticator, token: string, code: ErrorCode, detail?: RegExp): Promise<void> {
  await assert.rejects(auth.authenticate(jwt(token)), (err) => {
    assert.ok(err instanceof HeraldError, String(err));
    assert.equal(err.code, code, err.message);
    if (detail) assert.match(err.message, detail);
    // The token, or its signature, must never reach a client or a log.
    const signature = token.split('.')[2] ?? '';
    assert.ok(!err.message.includes(token) && (signature === '' || !err.message.includes(signature)));
    return true;
  });
}

interface KeyKind {
  readonly name: string;
  readonly alg: string;
  readonly signer: KeyObject | Uint8Array;
  readonly stranger: KeyObject | Uint8Array;
  readonly settings: Partial<AuthSettings>;
}

const kinds: readonly KeyKind[] = [
  {
    name: 'HMAC secret',
    alg: 'HS256',
    signer: secret,
    stranger: otherSecret,
    settings: { hmacSecrets: [secret] },
  },
  {
    name: 'RSA key from a JWKS key file',
    alg: 'RS256',
    signer: rsa.privateKey,
    stranger: rsaOther.privateKey,
    settings: { publicKeys: loadKeyFile(jwks([rsa.publicKey, 'rsa-1'])) },
  },
  {
    name: 'RSA key from a PEM key file',
    alg: 'RS256',
    signer: rsa.privateKey,
    stranger: rsaOther.privateKey,
    settings: { publicKeys: loadKeyFile(pem(rsa.publicKey)) },
  },
  {
    name: 'EC key from a PEM key file',
    alg: 'ES256',
    signer: ec.privateKey,
    stranger: ecOther.privateKey,
    settings: { publicKeys: loadKeyFile(pem(ec.publicKey)) },
  },
  {
    name: 'EC key from a JWKS key file',
    alg: 'ES256',
    signer: ec.privateKey,
    stranger: ecOther.privateKey,
    settings: { publicKeys: loadKeyFile(jwks([ec.publicKey, 'ec-1'])) },
  },
  {
    name: 'Ed25519 key from a PEM key file',
    alg: 'EdDSA',
    signer: ed.privateKey,
    stranger: edOther.privateKey,
    settings: { publicKeys: loadKeyFile(pem(ed.publicKey)) },
  },
  {
    name: 'Ed25519 key from a JWKS key file',
    alg: 'EdDSA',
    signer: ed.privateKey,
    stranger: edOther.privateKey,
    settings: { publicKeys: loadKeyFile(jwks([ed.publicKey, 'ed-1'])) },
  },
];

for (const kind of kinds) {
  describe(`auth - ${kind.name} (${kind.alg})`, () => {
    it('a valid token yields its subject, grants and expiry', async () => {
      const { auth } = setup(kind.settings);
      const p = await auth.authenticate(jwt(await sign(kind.signer, kind.alg)));
      assert.deepEqual(
        { ...p },
        {
          subject: 'user-1',
          subscribe: ['chat.>'],
          publish: ['chat.room1'],
          expiresAt: (SEC + 60) * 1000,
          via: 'jwt',
        },
      );
      assert.ok(Object.isFrozen(p));
    });

    it('an expired token is refused with HERALD_TOKEN_EXPIRED', async () => {
      const { auth } = setup(kind.settings);
      await refused(
        auth,
        await sign(kind.signer, kind.alg, { iat: SEC - 120, exp: SEC - 60 }),
        'HERALD_TOKEN_EXPIRED',
      );
    });

    it('a token before its nbf is refused with HERALD_TOKEN_NOT_YET_VALID', async () => {
      const { auth } = setup(kind.settings);
      await refused(auth, await sign(kind.signer, kind.alg, { nbf: SEC + 30 }), 'HERALD_TOKEN_NOT_YET_VALID');
    });

    it('a token signed by another key is refused with HERALD_TOKEN_INVALID', async () => {
      const { auth } = setup(kind.settings);
      await refused(auth, await sign(kind.stranger, kind.alg), 'HERALD_TOKEN_INVALID', /signature/);
    });

    it('leeway: valid until 5 s past exp, expired from then on', async () => {
      const { auth, clock } = setup({ ...kind.settings, leewayMs: 5_000 });
      const token = await sign(kind.signer, kind.alg);
      clock.tick(64_999);
      assert.equal((await auth.authenticate(jwt(token))).via, 'jwt');
      clock.tick(1);
      await refused(auth, token, 'HERALD_TOKEN_EXPIRED');
    });

    it('alg none with the same claims is refused with HERALD_TOKEN_INVALID', async () => {
      const { auth } = setup(kind.settings);
      const [, payload] = (await sign(kind.signer, kind.alg)).split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      await refused(auth, `${header}.${payload}.`, 'HERALD_TOKEN_INVALID', /alg none/);
    });
  });
}

describe('auth - leeway (here 5 s) on exp, nbf and iat', () => {
  const settings = { hmacSecrets: [secret], leewayMs: 5_000 };

  it('exp: valid until 5 s past it, expired from then on', async () => {
    const { auth, clock } = setup(settings);
    const token = await sign(secret, 'HS256', { exp: SEC + 60 });
    clock.tick(60_000 + 4_999);
    assert.equal((await auth.authenticate(jwt(token))).via, 'jwt');
    clock.tick(1);
    await refused(auth, token, 'HERALD_TOKEN_EXPIRED');
  });

  it('nbf: refused until 5 s before it, valid from then on', async () => {
    const { auth, clock } = setup(settings);
    const token = await sign(secret, 'HS256', { nbf: SEC + 60, exp: SEC + 600 });
    clock.tick(55_000 - 1);
    await refused(auth, token, 'HERALD_TOKEN_NOT_YET_VALID');
    clock.tick(1);
    assert.equal((await auth.authenticate(jwt(token))).via, 'jwt');
  });

  it('iat: up to 5 s in the future is skew, more is refused with HERALD_TOKEN_NOT_YET_VALID', async () => {
    const { auth } = setup(settings);
    assert.equal((await auth.authenticate(jwt(await sign(secret, 'HS256', { iat: SEC + 5 })))).via, 'jwt');
    await refused(auth, await sign(secret, 'HS256', { iat: SEC + 6 }), 'HERALD_TOKEN_NOT_YET_VALID', /iat/);
  });

  it('a leeway of 0 expires a token exactly at exp', async () => {
    const { auth, clock } = setup({ ...settings, leewayMs: 0 });
    const token = await sign(secret, 'HS256', { exp: SEC + 60 });
    clock.tick(59_999);
    assert.equal((await auth.authenticate(jwt(token))).via, 'jwt');
    clock.tick(1);
    await refused(auth, token, 'HERALD_TOKEN_EXPIRED');
  });
});

describe('auth - refused tokens', () => {
  const unsigned = (header: object, claims: object) =>
    `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;

  it('alg none is refused with HERALD_TOKEN_INVALID, whatever its case', async () => {
    const { auth } = setup({ hmacSecrets: [secret], publicKeys: loadKeyFile(pem(rsa.publicKey)) });
    const claims = { sub: 'x', exp: SEC + 60, ...grants };
    await refused(auth, unsigned({ alg: 'none' }, claims), 'HERALD_TOKEN_INVALID', /alg none/);
    await refused(auth, unsigned({ alg: 'None', typ: 'JWT' }, claims), 'HERALD_TOKEN_INVALID', /alg none/);
  });

  it('HS256 signed with the RSA public key as secret is refused when only RSA keys are trusted', async () => {
    const { auth } = setup({ publicKeys: loadKeyFile(pem(rsa.publicKey)) });
    const forged = await sign(Buffer.from(pem(rsa.publicKey)), 'HS256');
    await refused(auth, forged, 'HERALD_TOKEN_INVALID', /algorithm is not allowed/);
  });

  it('HS256 signed with the RSA public key as secret is refused when HMAC is allowed too', async () => {
    const { auth } = setup({ hmacSecrets: [secret], publicKeys: loadKeyFile(pem(rsa.publicKey)) });
    const forged = await sign(Buffer.from(pem(rsa.publicKey)), 'HS256');
    await refused(auth, forged, 'HERALD_TOKEN_INVALID', /signature/);
    // The same key material is fine for the algorithm it belongs to.
    assert.equal((await auth.authenticate(jwt(await sign(rsa.privateKey, 'RS256')))).via, 'jwt');
  });

  it('an algorithm outside an explicit allowlist is refused', async () => {
    const { auth } = setup({ publicKeys: loadKeyFile(pem(rsa.publicKey)), algorithms: ['PS256'] });
    await refused(
      auth,
      await sign(rsa.privateKey, 'RS256'),
      'HERALD_TOKEN_INVALID',
      /algorithm is not allowed/,
    );
    assert.equal((await auth.authenticate(jwt(await sign(rsa.privateKey, 'PS256')))).via, 'jwt');
  });

  it('a token for a key type no trusted key has is refused', async () => {
    const { auth } = setup({ publicKeys: loadKeyFile(pem(rsa.publicKey)) });
    await refused(auth, await sign(ec.privateKey, 'ES256'), 'HERALD_TOKEN_INVALID', /No trusted key/);
  });

  it('an unknown kid is refused when keys come from a key file', async () => {
    const { auth } = setup({ publicKeys: loadKeyFile(jwks([rsa.publicKey, 'rsa-1'])) });
    const token = await sign(rsa.privateKey, 'RS256', {}, { kid: 'rsa-2' });
    await refused(auth, token, 'HERALD_TOKEN_INVALID', /kid/);
  });

  it('a wrong issuer is refused with HERALD_TOKEN_INVALID, a right one accepted', async () => {
    const { auth } = setup({ hmacSecrets: [secret], issuer: 'https://id.example' });
    await refused(
      auth,
      await sign(secret, 'HS256', { iss: 'https://evil.example' }),
      'HERALD_TOKEN_INVALID',
      /issuer/,
    );
    await refused(auth, await sign(secret, 'HS256'), 'HERALD_TOKEN_INVALID', /issuer/);
    assert.equal(
      (await auth.authenticate(jwt(await sign(secret, 'HS256', { iss: 'https://id.example' })))).via,
      'jwt',
    );
  });

  it('a wrong audience is refused with HERALD_TOKEN_INVALID, a right one accepted among several', async () => {
    const { auth } = setup({ hmacSecrets: [secret], audience: 'herald' });
    await refused(auth, await sign(secret, 'HS256', { aud: 'billing' }), 'HERALD_TOKEN_INVALID', /audience/);
    assert.equal(
      (await auth.authenticate(jwt(await sign(secret, 'HS256', { aud: ['billing', 'herald'] })))).via,
      'jwt',
    );
  });

  it('malformed tokens are refused with HERALD_TOKEN_INVALID', async () => {
    const { auth } = setup({ hmacSecrets: [secret] });
    const good = await sign(secret, 'HS256');
    const [h, p, s] = good.split('.') as [string, string, string];
    for (const bad of [
      'x',
      'a.b',
      `${h}.${p}`,
      `${h}.${p}.${s}.x.y`,
      `!!.${p}.${s}`,
      `${h}.!!.${s}`,
      'x'.repeat(20_000),
    ])
      await refused(auth, bad, 'HERALD_TOKEN_INVALID');
    // A signed payload that is not a JSON object.
    await refused(auth, `${h}.${Buffer.from('[1]').toString('base64url')}.${s}`, 'HERALD_TOKEN_INVALID');
  });

  it('HMAC rotation: a token signed with either configured secret verifies, a third is refused', async () => {
    const { auth } = setup({ hmacSecrets: [otherSecret, secret] });
    assert.equal((await auth.authenticate(jwt(await sign(secret, 'HS256')))).via, 'jwt');
    assert.equal((await auth.authenticate(jwt(await sign(otherSecret, 'HS512')))).via, 'jwt');
    await refused(auth, await sign(randomBytes(32), 'HS256'), 'HERALD_TOKEN_INVALID');
  });
});

describe('auth - grants from the herald claim', () => {
  it('a valid token without the herald claim is authenticated with no grants', async () => {
    const { auth } = setup({ hmacSecrets: [secret] });
    const token = await new SignJWT({ exp: SEC + 60 }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    const p = await auth.authenticate(jwt(token));
    assert.deepEqual([p.subscribe, p.publish, p.subject], [[], [], undefined]);
    assert.throws(() => auth.authorize(p, 'subscribe', ['a']), { code: 'HERALD_FORBIDDEN' });
  });

  it('an invalid pattern in the claim is refused naming the claim path', async () => {
    const { auth } = setup({ hmacSecrets: [secret] });
    const cases: Array<[unknown, RegExp]> = [
      [{ subscribe: ['ok', 'a..b'] }, /herald\.subscribe\[1\]/],
      [{ publish: 'chat' }, /herald\.publish must be an array/],
      [{ publish: [7] }, /herald\.publish\[0\] must be a string/],
      [['chat'], /herald must be an object/],
      [{ subscribe: Array.from({ length: 257 }, (_, i) => `t${i}`) }, /more than 256/],
    ];
    for (const [herald, why] of cases)
      await refused(auth, await sign(secret, 'HS256', { herald } as JWTPayload), 'HERALD_TOKEN_INVALID', why);
  });

  it('a token without exp is refused by default (its stream would never end), a non-numeric exp always', async () => {
    const { auth } = setup({ hmacSecrets: [secret] });
    const token = await new SignJWT({ sub: 's' }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    await refused(auth, token, 'HERALD_TOKEN_INVALID', /no expiry \(exp\).*HERALD_JWT_REQUIRE_EXP/);
    const odd = await new SignJWT({ sub: 's', exp: 'soon' } as unknown as JWTPayload)
      .setProtectedHeader({ alg: 'HS256' })
      .sign(secret);
    await refused(auth, odd, 'HERALD_TOKEN_INVALID', /exp must be a number/);
  });

  it('with requireExp off, a token without exp is accepted and has no expiresAt', async () => {
    const { auth } = setup({ hmacSecrets: [secret], requireExp: false });
    const token = await new SignJWT({ sub: 's' }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    assert.equal((await auth.authenticate(jwt(token))).expiresAt, undefined);
  });
});

describe('auth - credentials other than a token', () => {
  it('no credentials in mode jwt are refused with HERALD_UNAUTHENTICATED', async () => {
    const { auth } = setup({ hmacSecrets: [secret] });
    await assert.rejects(auth.authenticate({ kind: 'none' }), { code: 'HERALD_UNAUTHENTICATED' });
  });

  it('mode none gives every request an all-access principal without looking at credentials', async () => {
    const auth = new Authenticator(
      authOptions(authSettingsOf(defaultConfig({ auth: 'none' }))),
      new FakeClock(START),
    );
    for (const c of [{ kind: 'none' }, jwt('garbage'), { kind: 'apiKey', key: 'nope' }] as const)
      assert.equal(await auth.authenticate(c), ALL_ACCESS);
    auth.authorize(ALL_ACCESS, 'publish', ['anything.at.all']);
  });

  it('a known API key yields a publish-only principal; an unknown one HERALD_API_KEY_INVALID', async () => {
    const { auth } = setup({
      apiKeys: [
        { key: 'k-0123456789abcdef', publish: ['orders.>'] },
        { key: 'k-fedcba9876543210', publish: ['>'] },
      ],
    });
    const p = await auth.authenticate({ kind: 'apiKey', key: 'k-0123456789abcdef' });
    assert.deepEqual({ ...p }, { subject: 'api-key#1', subscribe: [], publish: ['orders.>'], via: 'apiKey' });
    auth.authorize(p, 'publish', ['orders.eu.42']);
    assert.throws(() => auth.authorize(p, 'publish', ['billing.x']), { code: 'HERALD_FORBIDDEN' });
    assert.throws(() => auth.authorize(p, 'subscribe', ['orders.eu.42']), { code: 'HERALD_FORBIDDEN' });
    await assert.rejects(auth.authenticate({ kind: 'apiKey', key: 'k-0123456789abcdeX' }), (err) => {
      assert.ok(err instanceof HeraldError && err.code === 'HERALD_API_KEY_INVALID');
      assert.ok(!err.message.includes('k-0123456789abcdeX'));
      return true;
    });
  });
});
