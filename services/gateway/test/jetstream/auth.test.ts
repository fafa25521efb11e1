import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startGateway } from '@herald/gateway/testing';
import { startNats, until, untilReady } from '@herald/testkit';

it('jetstream - a NATS server that requires a token: with HERALD_NATS_TOKEN_FILE the gateway connects, without it it stays unready', async (t) => {
  const token = `t-${process.pid}-${Date.now()}`;
  const nats = await startNats({ config: { authorization: { token } } });
  const dir = mkdtempSync(join(tmpdir(), 'herald-token-'));
  t.after(async () => {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = join(dir, 'token');
  writeFileSync(file, `${token}\n`);
  const authed = await startGateway({ broker: 'jetstream', natsUrl: nats.url, natsTokenFile: file });
  t.after(() => authed.close());
  await untilReady(authed.url);
  assert.equal((await authed.publish({ topic: 'auth', data: 'x' })).status, 200);
  const anonymous = await startGateway({ broker: 'jetstream', natsUrl: nats.url });
  t.after(() => anonymous.close());
  const ready = await fetch(`${anonymous.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(
    (await anonymous.publish({ topic: 'auth', data: 'x' })).body.code,
    'HERALD_BROKER_UNAVAILABLE',
  );
});

/** A CA and a server certificate for 127.0.0.1, made with Debian's openssl. */
function certificates(dir: string): { ca: string; cert: string; key: string } {
  const at = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  run(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=herald-test-ca',
    '-keyout',
    at('ca.key'),
    '-out',
    at('ca.pem'),
  );
  run(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    at('server.key'),
    '-out',
    at('server.csr'),
  );
  writeFileSync(at('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(
    'x509',
    '-req',
    '-in',
    at('server.csr'),
    '-CA',
    at('ca.pem'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    at('san.ext'),
    '-out',
    at('server.pem'),
  );
  return { ca: at('ca.pem'), cert: at('server.pem'), key: at('server.key') };
}

it('jetstream - a NATS server that requires TLS: with HERALD_NATS_TLS_CA_FILE the gateway connects and serves, without the CA it stays unready', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { ca, cert, key } = certificates(dir);
  const nats = await startNats({ config: { tls: { cert_file: cert, key_file: key, ca_file: ca } } });
  t.after(() => nats.stop());
  const trusted = await startGateway({ broker: 'jetstream', natsUrl: nats.url, natsTlsCaFile: ca });
  t.after(() => trusted.close());
  await untilReady(trusted.url);
  const c = await trusted.stream({ topic: 'tls' });
  await c.waitFor((s) => s.ids.length === 1, 'the opening');
  assert.equal((await trusted.publish({ topic: 'tls', data: 'over tls' })).status, 200);
  await c.waitFor(
    (s) => s.events.some((e) => e.data === 'over tls'),
    'the event, through a TLS NATS connection',
  );
  const logged: { msg: string; error: string }[] = [];
  const untrusting = await startGateway(
    { broker: 'jetstream', natsUrl: nats.url },
    { log: (_level, msg, fields) => logged.push({ msg, error: String(fields?.['error'] ?? '') }) },
  );
  t.after(() => untrusting.close());
  await until(
    () =>
      logged.some(
        (l) => l.msg === 'nats not reachable; retrying' && /certificate|self.signed|tls/i.test(l.error),
      ),
    'a refused TLS handshake to be logged',
  );
  assert.equal(
    (await fetch(`${untrusting.url}/readyz`)).status,
    503,
    'a server certificate it cannot verify is never used',
  );
});
