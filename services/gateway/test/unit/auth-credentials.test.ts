import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CredentialOptions, type CredentialSource, credentialsOf } from '../../src/auth/index.ts';

// Shaped like a JWT (three base64url parts); the credential parser never verifies it.
const b64 = (s: string) => Buffer.from(s).toString('base64url');
const TOKEN = [b64('{"alg":"HS256"}'), b64('{"sub":"x"}'), b64('signature')].join('.');
const options: CredentialOptions = { cookieName: 'herald_token', queryToken: false };

const req = (headers: CredentialSource['headers'] = {}, query = ''): CredentialSource => ({
  headers,
  query: new URLSearchParams(query),
});

const invalid = (detail: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'HERALD_TOKEN_INVALID');
  assert.match((err as Error).message, detail);
  return true;
};

describe('credentialsOf', () => {
  it('nothing presented is kind none', () => {
    assert.deepEqual(credentialsOf(req(), options), { kind: 'none' });
  });

  it('Authorization: Bearer is a jwt from the header, the scheme in any case', () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER'])
      assert.deepEqual(credentialsOf(req({ authorization: `${scheme} ${TOKEN}` }), options), {
        kind: 'jwt',
        token: TOKEN,
        source: 'header',
      });
  });

  it('Authorization: ApiKey is an API key', () => {
    assert.deepEqual(credentialsOf(req({ authorization: 'ApiKey k-0123456789abcdef' }), options), {
      kind: 'apiKey',
      key: 'k-0123456789abcdef',
    });
  });

  it('a malformed Authorization header is refused with HERALD_TOKEN_INVALID', () => {
    const cases: Array<[string | string[], RegExp]> = [
      ['', /malformed/],
      ['Bearer', /malformed/],
      ['Bearer ', /malformed/],
      [TOKEN, /malformed/],
      [`Bearer ${TOKEN} extra`, /malformed/],
      ['Bearer a"b', /characters/],
      ['Basic dXNlcjpwYXNz', /scheme is not supported/],
      [[`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], /one Authorization header/],
    ];
    for (const [authorization, why] of cases)
      assert.throws(
        () => credentialsOf(req({ authorization }), options),
        invalid(why),
        JSON.stringify(authorization),
      );
  });

  it('the cookie is found among several cookies, quoted or not', () => {
    for (const cookie of [
      `theme=dark; herald_token=${TOKEN}; lang=en`,
      `herald_token_old=x;herald_token=${TOKEN}`,
      `a=1; herald_token="${TOKEN}"`,
    ])
      assert.deepEqual(
        credentialsOf(req({ cookie }), options),
        { kind: 'jwt', token: TOKEN, source: 'cookie' },
        cookie,
      );
  });

  it('an empty cookie counts as absent; a cookie is not read when no cookie name is set', () => {
    assert.deepEqual(credentialsOf(req({ cookie: 'herald_token=; theme=dark' }), options), { kind: 'none' });
    assert.deepEqual(
      credentialsOf(req({ cookie: `herald_token=${TOKEN}` }), { ...options, cookieName: undefined }),
      {
        kind: 'none',
      },
    );
  });

  it('access_token in the query is a jwt when query tokens are on', () => {
    assert.deepEqual(
      credentialsOf(req({}, `topic=a&access_token=${TOKEN}`), { ...options, queryToken: true }),
      {
        kind: 'jwt',
        token: TOKEN,
        source: 'query',
      },
    );
  });

  it('access_token in the query is refused, saying why, when query tokens are off', () => {
    assert.throws(() => credentialsOf(req({}, `access_token=${TOKEN}`), options), invalid(/disabled/));
  });

  it('a repeated or empty access_token is refused', () => {
    const on = { ...options, queryToken: true };
    assert.throws(
      () => credentialsOf(req({}, `access_token=${TOKEN}&access_token=${TOKEN}`), on),
      invalid(/one/),
    );
    assert.throws(() => credentialsOf(req({}, 'access_token='), on), invalid(/does not hold a token/));
  });

  it('the header wins over cookie and query, the cookie over the query', () => {
    const both = { ...options, queryToken: true };
    const all = req(
      { authorization: 'ApiKey k-0123456789abcdef', cookie: 'herald_token=c.c.c' },
      'access_token=q.q.q',
    );
    assert.equal(credentialsOf(all, both).kind, 'apiKey');
    assert.deepEqual(credentialsOf(req({ cookie: 'herald_token=c.c.c' }, 'access_token=q.q.q'), both), {
      kind: 'jwt',
      token: 'c.c.c',
      source: 'cookie',
    });
    // With query tokens off, a header makes the stray parameter irrelevant rather than an error.
    assert.equal(
      credentialsOf(req({ authorization: `Bearer ${TOKEN}` }, 'access_token=q.q.q'), options).kind,
      'jwt',
    );
  });

  it('error details never echo the credential', () => {
    for (const authorization of ['Bearer s3cr3t"x', 'Basic s3cr3t', 's3cr3t'])
      assert.throws(
        () => credentialsOf(req({ authorization }), options),
        (err: Error) => !err.message.includes('s3cr3t'),
      );
  });
});
