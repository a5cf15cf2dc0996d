/**
 * The key a per-client limit counts under. An IPv4 address (also when IPv4-mapped, as a dual-stack
 * listener reports it) is its own key; an IPv6 address counts under its /64, since one host is
 * routinely given a whole /64 (RFC 6177) and could otherwise open as many connections as it has
 * addresses. Anything else (a forwarded value that is no address) is used as it is.
 */
import { isIP } from 'node:net';

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

export function addressKey(address: string): string {
  const mapped = MAPPED_V4.exec(address)?.[1];
  if (mapped !== undefined && isIP(mapped) === 4) return mapped;
  const bare = address.split('%')[0] ?? '';
  if (isIP(bare) !== 6) return address;
  return `${ipv6Groups(bare).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address, in lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const groupsOf = (part: string): string[] => {
    if (part === '') return [];
    return part.split(':').flatMap((g) => {
      if (!g.includes('.')) return [g];
      // An embedded IPv4 address (e.g. 64:ff9b::192.0.2.1) is the last two groups.
      const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  };
  const [head = '', tail] = address.split('::');
  const left = groupsOf(head);
  const right = tail === undefined ? [] : groupsOf(tail);
  const zeros = Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}
