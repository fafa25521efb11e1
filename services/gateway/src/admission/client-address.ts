import { BlockList, isIP } from 'node:net';

/**
 * The proxies whose `X-Forwarded-For` is believed, by address or CIDR range. Behind a load balancer
 * or a Gateway API data plane every stream arrives from the proxy's address, so per-IP limits
 * would count the whole proxy as one client; from anyone else the header is a free choice of the
 * sender and is ignored.
 */
export class TrustedProxies {
  readonly #list = new BlockList();

  /** `entries`: `10.0.0.0/8`, `fd00::/8`, `192.0.2.7`, … Throws an Error naming a bad entry. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [address = '', prefix, extra] = entry.split('/');
      const family = isIP(address);
      const max = family === 6 ? 128 : 32;
      const bits = prefix === undefined ? max : Number(prefix);
      if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(prefix ?? '0') || bits > max)
        throw new Error(`"${entry}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, fd00::/8)`);
      this.#list.addSubnet(address, bits, family === 6 ? 'ipv6' : 'ipv4');
    }
  }

  /** Whether `address` is one of the trusted proxies. */
  has(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.#list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * The client's address. The peer's own, unless the peer is a trusted proxy: then the nearest
   * `X-Forwarded-For` hop that is not one, walking from the right (each proxy appends the address
   * it saw, so only the hops our own proxies added are facts). A malformed hop ends the walk at
   * the last address known good; hops that are all trusted give the leftmost.
   */
  clientAddress(peer: string, forwardedFor: string | undefined): string {
    let client = unmapped(peer);
    if (forwardedFor === undefined || !this.has(client)) return client;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hopAddress(hops[i]!);
      if (hop === undefined) return client;
      client = hop;
      if (!this.has(hop)) return hop;
    }
    return client;
  }
}

/** `::ffff:192.0.2.1` (an IPv4 peer on a dual-stack socket) as `192.0.2.1`, so each client has one key. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** One X-Forwarded-For entry: an address, with the port or brackets some proxies add; else undefined. */
function hopAddress(raw: string): string | undefined {
  const hop = raw.trim();
  if (isIP(hop) !== 0) return unmapped(hop);
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::\d{1,5})?$/.exec(hop);
  if (bracketed !== null && isIP(bracketed[1]!) === 6) return unmapped(bracketed[1]!);
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(hop);
  if (withPort !== null && isIP(withPort[1]!) === 4) return withPort[1];
  return undefined;
}
