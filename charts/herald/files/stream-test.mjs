// The chart's `helm test`: opens a stream through the Service, publishes one event on its topic
// and waits (20 s at most) for the event to arrive over SSE. Plain Node (it runs in the gateway
// image, which has no test libraries); exits 0 after printing "received ...", else 1 with why.
//
// Environment, set by templates/tests/stream-test.yaml:
//   HERALD_URL               the gateway Service, http://<name>:<port>
//   HERALD_AUTH              the gateways' auth mode (jwt or none)
//   HERALD_TEST_TOKEN_FILE   a token the user minted (test.existingSecret), used as it is
//   HERALD_JWT_SECRETS_FILE  else the gateways' HMAC secrets, to mint a short-lived token
//   HERALD_JWT_ISSUER, HERALD_JWT_AUDIENCE  claims the gateways require of a minted token
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

const TIMEOUT_MS = 20_000;
const env = process.env;

function fail(message) {
  console.error(`stream-test: ${message}`);
  process.exit(1);
}

const base = env.HERALD_URL;
if (!base) fail('HERALD_URL is not set');
// Under helm-test.> so that a pre-minted token can grant exactly that.
const topic = `helm-test.${randomUUID()}`;
const nonce = randomUUID();

/** The Authorization header value, or undefined without authentication. */
function authorization() {
  if (env.HERALD_TEST_TOKEN_FILE) {
    const token = readFileSync(env.HERALD_TEST_TOKEN_FILE, 'utf8').trim();
    if (token === '') fail(`${env.HERALD_TEST_TOKEN_FILE} (test.existingSecret) is empty`);
    return `Bearer ${token}`;
  }
  if (env.HERALD_JWT_SECRETS_FILE) {
    // The gateway's format: one secret per line, blank lines and # comments ignored; any verifies.
    const secret = readFileSync(env.HERALD_JWT_SECRETS_FILE, 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line !== '' && !line.startsWith('#'));
    if (secret === undefined) fail(`${env.HERALD_JWT_SECRETS_FILE} holds no secret`);
    const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: 'helm-test',
      iat: now,
      exp: now + 300,
      herald: { subscribe: [topic], publish: [topic] },
    };
    if (env.HERALD_JWT_ISSUER) claims.iss = env.HERALD_JWT_ISSUER;
    if (env.HERALD_JWT_AUDIENCE) claims.aud = env.HERALD_JWT_AUDIENCE;
    const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    const signature = createHmac('sha256', secret).update(unsigned).digest('base64url');
    return `Bearer ${unsigned}.${signature}`;
  }
  if (env.HERALD_AUTH === 'none') return undefined;
  return fail(
    'no token to test with: the gateways verify tokens with public keys or a JWKS URL only, so the ' +
      'test cannot mint one; give it a token with test.existingSecret (see the chart values)',
  );
}

const auth = authorization();
const headers = auth === undefined ? {} : { authorization: auth };
setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms waiting for the event on ${topic}`), TIMEOUT_MS).unref();

async function request(what, url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    return fail(`${what}: ${url}: ${err.cause?.message ?? err.message}`);
  }
}

const stream = await request('stream', `${base}/v1/stream?topic=${encodeURIComponent(topic)}`, {
  headers: { ...headers, accept: 'text/event-stream' },
});
if (stream.status !== 200) fail(`stream: HTTP ${stream.status} ${await stream.text()}`);
const published = await request('publish', `${base}/v1/publish`, {
  method: 'POST',
  headers: { ...headers, 'content-type': 'application/json' },
  body: JSON.stringify({ topic, data: nonce }),
});
if (!published.ok) fail(`publish: HTTP ${published.status} ${await published.text()}`);

let text = '';
const decoder = new TextDecoder();
for await (const chunk of stream.body) {
  text += decoder.decode(chunk, { stream: true });
  if (text.includes(`\ndata: ${nonce}\n`)) {
    console.log(`stream-test: received ${nonce} on ${topic} through ${base}`);
    process.exit(0);
  }
}
fail('the stream ended before the event arrived');
