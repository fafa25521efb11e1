import assert from 'node:assert/strict';
import { it } from 'node:test';
import { TrustedProxies } from '../../src/admission/index.ts';

const proxies = new TrustedProxies(['10.0.0.0/8', '192.0.2.7', 'fd00::/8']);

it('client address - from an untrusted peer X-Forwarded-For is ignored (anyone can send it)', () => {
  assert.equal(proxies.clientAddress('203.0.113.9', '198.51.100.1'), '203.0.113.9');
  assert.equal(new TrustedProxies([]).clientAddress('10.1.2.3', '198.51.100.1'), '10.1.2.3');
});

it('client address - from a trusted proxy, the nearest hop that is not a proxy, walking from the right', () => {
  assert.equal(proxies.clientAddress('10.1.2.3', '198.51.100.1'), '198.51.100.1');
  // The client forged the leftmost hop; our proxies appended the real one after it.
  assert.equal(proxies.clientAddress('10.1.2.3', '6.6.6.6, 198.51.100.1, 10.9.9.9'), '198.51.100.1');
  assert.equal(proxies.clientAddress('192.0.2.7', '198.51.100.1,10.9.9.9'), '198.51.100.1');
  // Only proxies in the header: the leftmost is the closest thing to the client.
  assert.equal(proxies.clientAddress('10.1.2.3', '10.4.4.4, 10.5.5.5'), '10.4.4.4');
  // No header: the proxy is all we know.
  assert.equal(proxies.clientAddress('10.1.2.3', undefined), '10.1.2.3');
});

it('client address - a malformed hop ends the walk at the last address known good', () => {
  assert.equal(proxies.clientAddress('10.1.2.3', 'unknown'), '10.1.2.3');
  assert.equal(proxies.clientAddress('10.1.2.3', '198.51.100.1, garbage, 10.9.9.9'), '10.9.9.9');
  assert.equal(proxies.clientAddress('10.1.2.3', ''), '10.1.2.3');
});

it('client address - IPv6, IPv4-mapped peers and hops with ports', () => {
  assert.equal(proxies.clientAddress('::ffff:10.1.2.3', '198.51.100.1'), '198.51.100.1');
  assert.equal(
    proxies.clientAddress('::ffff:203.0.113.9', '198.51.100.1'),
    '203.0.113.9',
    'one key per client',
  );
  assert.equal(proxies.clientAddress('fd00::1', '2001:db8::5'), '2001:db8::5');
  assert.equal(proxies.clientAddress('fd00::1', '[2001:db8::5]:4711'), '2001:db8::5');
  assert.equal(proxies.clientAddress('10.1.2.3', '198.51.100.1:4711'), '198.51.100.1');
  assert.equal(proxies.clientAddress('10.1.2.3', '::ffff:198.51.100.1'), '198.51.100.1');
});

it('client address - a bad entry is refused, naming it', () => {
  for (const bad of [
    '10.0.0.0/33',
    'example.com',
    '10.0.0/8',
    'fd00::/129',
    '10.0.0.0/8/1',
    '10.0.0.0/x',
    '10.0.0.0/',
  ])
    assert.throws(
      () => new TrustedProxies([bad]),
      new RegExp(`"${bad.replace(/[./]/g, '\\$&')}" is not an IP address`),
    );
});
