/**
 * The names a server certificate is issued for: DNS names and IP addresses
 * as a person types them on the command line, checked before any key is
 * made so a typo costs nothing and writes nothing.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { BadInputError } from '../errors.js';

/** What a server certificate's subjectAltName lists. */
export interface ServerNames {
  /** DNS names, lower case (DNS names do not care about case). */
  dns: string[];
  /** IPv4 and IPv6 addresses, IPv6 in lower case. */
  ips: string[];
}

/** What `tufota tls init` issues for when given no --name and no --ip. */
export const DEFAULT_SERVER_NAMES: ServerNames = {
  dns: ['localhost'],
  ips: ['127.0.0.1', '::1'],
};

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why `name` cannot go into a certificate as a DNS name, if it cannot. */
function dnsProblem(name: string): string | undefined {
  if (isIPv4(name) || isIPv6(name)) return 'it is an address; give it as --ip';
  if (name.length === 0 || name.length > 253) {
    return 'a DNS name has 1 to 253 characters';
  }
  const labels = name.split('.');
  // A wildcard covers one label, and only the first (RFC 6125, 6.4.3).
  const first = labels[0] === '*' && labels.length > 2 ? 1 : 0;
  for (const label of labels.slice(first)) {
    if (!LABEL.test(label)) {
      return (
        'each dot-separated part must be 1 to 63 letters, digits or ' +
        'hyphens, not starting or ending with a hyphen (international ' +
        'names in their xn-- form)'
      );
    }
  }
  // Clients read an all-digit last label as part of an address.
  if (/^\d+$/.test(labels[labels.length - 1])) {
    return 'its last part is all digits, which clients take for an address';
  }
  return undefined;
}

/**
 * The 4 or 16 bytes an address is stored as in a certificate. Only for
 * addresses that `isIPv4` or `isIPv6` accepted.
 */
export function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // A trailing dotted quad (::ffff:192.0.2.1) is the last two groups.
  let text = ip;
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    const groups = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
    text = text.slice(0, quad.index) + groups;
  }
  const [head, tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = 8 - headGroups.length - tailGroups.length;
  const groups = [
    ...headGroups,
    ...Array<string>(tail === undefined ? 0 : zeros).fill('0'),
    ...tailGroups,
  ];
  const out = Buffer.alloc(16);
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

/**
 * Checks and normalizes the names and addresses for a server certificate.
 * Each bad value is refused by name; duplicates are dropped; at least one
 * name or address must remain.
 */
export function parseServerNames(
  names: readonly string[],
  ips: readonly string[],
): ServerNames {
  const dns: string[] = [];
  for (const given of names) {
    const name = given.toLowerCase();
    const problem = dnsProblem(name);
    if (problem) {
      throw new BadInputError(`--name ${given}: not a DNS name: ${problem}`);
    }
    if (!dns.includes(name)) dns.push(name);
  }

  const out: string[] = [];
  const seen = new Set<string>();
  for (const given of ips) {
    // A zone (fe80::1%eth0) names an interface of one machine; a
    // certificate cannot hold it.
    if (given.includes('%') || !(isIPv4(given) || isIPv6(given))) {
      throw new BadInputError(
        `--ip ${given}: not an IPv4 or IPv6 address (e.g. 192.0.2.10 or ` +
          '2001:db8::10, no zone, no port, no leading zeros)',
      );
    }
    const key = ipBytes(given).toString('hex');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(given.toLowerCase());
  }

  if (dns.length === 0 && out.length === 0) {
    throw new BadInputError(
      'a server certificate needs at least one --name or --ip',
    );
  }
  return { dns, ips: out };
}

/** The names as one line for people: `localhost, 127.0.0.1, ::1`. */
export function describeServerNames(names: ServerNames): string {
  return [...names.dns, ...names.ips].join(', ');
}
