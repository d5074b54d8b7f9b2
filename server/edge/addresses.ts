import { BlockList, isIP } from 'node:net';

/** Request metadata listing the addresses a call was forwarded for, client first. */
export const FORWARDED_FOR_HEADER = 'x-forwarded-for';

/** A set of CIDR ranges (IPv4 and IPv6); an IPv4 address also matches its IPv4-mapped IPv6 form. */
export interface AddressRanges {
  readonly empty: boolean;
  has(address: string): boolean;
}

/**
 * Builds the ranges from CIDRs such as "10.0.0.0/8", "fd00::/8", or single addresses. The config
 * schema has already checked them; an invalid one here is a programming error.
 */
export function createAddressRanges(cidrs: readonly string[]): AddressRanges {
  const list = new BlockList();
  for (const cidr of cidrs) {
    // Taken as written: "::ffff:10.0.0.0/104" stays an IPv6 range, which `has` also consults.
    const [address = '', rawPrefix] = cidr.trim().split('/');
    const family = isIP(address);
    if (family === 0) throw new Error(`not a CIDR range: ${cidr}`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const prefix = rawPrefix === undefined ? (family === 4 ? 32 : 128) : Number(rawPrefix);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128))
      throw new Error(`not a CIDR range: ${cidr}`);
    list.addSubnet(address, prefix, type);
  }
  return {
    empty: cidrs.length === 0,
    has(address) {
      const normalized = normalizeAddress(address);
      if (normalized === undefined) return false;
      if (isIP(normalized) === 4)
        return list.check(normalized, 'ipv4') || list.check(`::ffff:${normalized}`, 'ipv6');
      return list.check(normalized, 'ipv6');
    },
  };
}

/**
 * An IP address in canonical textual form: brackets, a port and an IPv6 zone are dropped and an
 * IPv4-mapped IPv6 address becomes plain IPv4. Undefined when the text is not an address.
 */
export function normalizeAddress(text: string): string | undefined {
  let address = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) address = bracketed[1] ?? '';
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(':'));
  address = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) address = mapped[1] ?? '';
  return isIP(address) === 0 ? undefined : address.toLowerCase();
}

/**
 * The address of the client behind a call. Forwarding headers are believed only when the direct peer
 * is a trusted proxy; then the hops are read from the right, skipping trusted proxies, and the first
 * other hop is the client (anything to its left could have been written by the client itself).
 * Undefined when the address cannot be told (no peer address, or a hop that is not an address).
 */
export function clientAddress(
  peerAddress: string | undefined,
  forwardedFor: readonly string[],
  trustedProxies: AddressRanges,
): string | undefined {
  const peer = peerAddress === undefined ? undefined : normalizeAddress(peerAddress);
  if (peer === undefined || trustedProxies.empty || !trustedProxies.has(peer)) return peer;
  const hops = forwardedFor
    .flatMap((value) => value.split(','))
    .map((hop) => hop.trim())
    .filter((hop) => hop.length > 0);
  let client: string | undefined = peer;
  for (let index = hops.length - 1; index >= 0; index -= 1) {
    client = normalizeAddress(hops[index] ?? '');
    if (client === undefined || !trustedProxies.has(client)) return client;
  }
  return client;
}
