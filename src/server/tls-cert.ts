/**
 * Certificates for the update server, built with node-forge: the private
 * CA that devices pin and the server certificates it signs. Keys come from
 * node:crypto, whose native key generation takes a fraction of a second
 * where forge's JavaScript takes seconds, and reach forge as PEM.
 *
 * The keys are RSA because node-forge builds and signs X.509 certificates
 * with RSA keys only. The CA key is 3072 bits: it lives ten years, past
 * 2030, after which NIST no longer counts 2048 bits as enough (SP 800-57
 * part 1, table 4). A server key is 2048 bits: its certificate lasts about
 * a year and is renewed, and small devices pay for every bit in each
 * handshake.
 */
import {
  X509Certificate,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { BadInputError } from '../errors.js';
import { ipBytes, type ServerNames } from './tls-names.js';

/** The RSA sizes tufota makes keys of. */
export type RsaBits = 2048 | 3072 | 4096;

/** The CA key's size; see the module comment for why. */
export const CA_KEY_BITS: RsaBits = 3072;
/** A server key's size; see the module comment for why. */
export const SERVER_KEY_BITS: RsaBits = 2048;

/** Ten years: a CA pinned on devices is costly to replace. */
export const CA_DAYS = 3650;

/**
 * 397 days, inside the 398 that browsers accept from public CAs
 * (CA/Browser Forum ballot SC31): not binding on a private CA, but a
 * yearly renewal with a month to spare.
 */
export const SERVER_DAYS = 397;

/**
 * How far notBefore is set in the past, so a device whose clock runs a
 * little behind does not refuse a certificate issued a minute ago.
 */
export const CLOCK_SKEW_MS = 60 * 60 * 1000;

const DAY_MS = 24 * 60 * 60 * 1000;

const generateKeyPairAsync = promisify(generateKeyPair);

/** A certificate (PEM) and the private key of its public key. */
export interface CertifiedKey {
  cert: string;
  key: KeyObject;
}

/** forge writes PEM with CRLF line ends; files on disk use LF. */
export function toLf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

/**
 * A fresh RSA private key, made natively off the main thread: a prime
 * search takes a tenth of a second to half a second, and two keys made
 * at once take about as long as one.
 */
export async function generateRsaKey(bits: RsaBits): Promise<KeyObject> {
  if (![2048, 3072, 4096].includes(bits)) {
    throw new BadInputError(
      `RSA keys of ${String(bits)} bits: use 2048, 3072 or 4096`,
    );
  }
  const pair = await generateKeyPairAsync('rsa', { modulusLength: bits });
  return pair.privateKey;
}

function forgePrivate(key: KeyObject): forge.pki.rsa.PrivateKey {
  const pem = key.export({ type: 'pkcs1', format: 'pem' }) as string;
  return forge.pki.privateKeyFromPem(pem);
}

function forgePublic(key: KeyObject): forge.pki.rsa.PublicKey {
  const pem = createPublicKey(key).export({ type: 'spki', format: 'pem' });
  return forge.pki.publicKeyFromPem(pem as string);
}

/**
 * 16 random bytes, read as a positive DER integer: the top bit clear (else
 * negative) and the first byte not zero (else not the shortest encoding,
 * which strict parsers refuse). That leaves over 120 random bits, well
 * above the 64 the CA/Browser Forum asks for.
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0] & 0x7f || 0x01;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}

/** Options both kinds of certificate take. */
export interface ValidityOptions {
  days: number;
  /** The time of issue; the clock unless given. */
  now?: Date;
}

/**
 * A self-signed CA certificate that may sign server certificates and
 * nothing below them (path length 0).
 */
export function makeCaCertificate(
  key: KeyObject,
  options: ValidityOptions & { commonName: string },
): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic(key);
  cert.serialNumber = randomSerial();
  validity(cert, options.now ?? new Date(), options.days);
  const subject = [{ shortName: 'CN', value: options.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    {
      name: 'basicConstraints',
      critical: true,
      cA: true,
      pathLenConstraint: 0,
    },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgePrivate(key), forge.md.sha256.create());
  return toLf(forge.pki.certificateToPem(cert));
}

/** The CA's subjectKeyIdentifier, which a certificate it signs points to. */
function keyIdentifier(ca: forge.pki.Certificate): string {
  const ext: { subjectKeyIdentifier?: string } =
    ca.getExtension('subjectKeyIdentifier') ?? {};
  return ext.subjectKeyIdentifier
    ? forge.util.hexToBytes(ext.subjectKeyIdentifier)
    : ca.generateSubjectKeyIdentifier().getBytes();
}

/**
 * A server certificate for `names`, signed by the CA: for TLS servers only
 * (extKeyUsage serverAuth), never a CA itself.
 */
export function makeServerCertificate(
  ca: CertifiedKey,
  key: KeyObject,
  names: ServerNames,
  options: ValidityOptions,
): string {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublic(key);
  cert.serialNumber = randomSerial();
  validity(cert, options.now ?? new Date(), options.days);
  // Clients check the subjectAltName only; the common name is for people.
  cert.setSubject([{ shortName: 'CN', value: names.dns[0] ?? names.ips[0] }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    ...names.dns.map((value) => ({ type: 2, value })),
    ...names.ips.map((ip) => ({
      type: 7,
      value: ipBytes(ip).toString('binary'),
    })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: false },
    {
      name: 'keyUsage',
      critical: true,
      digitalSignature: true,
      keyEncipherment: true,
    },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: keyIdentifier(caCert) },
  ]);
  cert.sign(forgePrivate(ca.key), forge.md.sha256.create());
  return toLf(forge.pki.certificateToPem(cert));
}

/**
 * The DNS names and addresses a certificate is issued for, as read from
 * its subjectAltName; for re-issuing a certificate to the same names.
 */
export function certificateNames(pem: string): ServerNames {
  const ext = forge.pki
    .certificateFromPem(pem)
    .getExtension('subjectAltName') as {
    altNames?: { type: number; value: string; ip?: string }[];
  };
  const names: ServerNames = { dns: [], ips: [] };
  for (const alt of ext?.altNames ?? []) {
    if (alt.type === 2) names.dns.push(alt.value);
    if (alt.type === 7 && alt.ip) names.ips.push(alt.ip);
  }
  return names;
}

/** When a certificate stops being valid. */
export function notAfter(pem: string): Date {
  return new Date(new X509Certificate(pem).validTo);
}
