/**
 * TLS material for the HTTPS update server: a private CA that devices pin,
 * and the server certificates it signs. A TLS folder holds
 *
 *   ca.crt      the CA certificate: what devices pin (0644)
 *   ca.key      the CA private key, encrypted with a passphrase (0600);
 *               needed only to issue the next server certificate
 *   server.crt  the server certificate (0644)
 *   server.key  its private key, not encrypted, since the server must start
 *               unattended (0600, readable by the server's user only)
 *
 * server.crt holds the server certificate alone. The rest of its chain is
 * the CA itself, which every device already holds: that is what pinning
 * means, and a client must never trust a root because a server sent it.
 *
 * TUF metadata, not TLS, is what makes an update trustworthy; TLS keeps
 * what devices fetch private and makes a network attacker's work harder.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { AlreadyExistsError } from '../errors.js';
import type { PassphraseSource } from '../keys/passphrase.js';
import { logger } from '../log.js';
import {
  CA_DAYS,
  CA_KEY_BITS,
  SERVER_DAYS,
  SERVER_KEY_BITS,
  generateRsaKey,
  makeCaCertificate,
  makeServerCertificate,
  type RsaBits,
} from './tls-cert.js';
import {
  exists,
  keyPem,
  tlsPaths,
  tlsResult,
  writeTlsFiles,
  type TlsResult,
} from './tls-folder.js';
import {
  checkDays,
  checkWithinCa,
  namesFrom,
  type IssueCommon,
} from './tls-issue.js';
import { DEFAULT_SERVER_NAMES } from './tls-names.js';
import { CA_KEY_ITERATIONS, sealCaKey } from './tls-seal.js';

export { CA_DAYS, SERVER_DAYS, type RsaBits } from './tls-cert.js';
export {
  caFingerprint,
  tlsPaths,
  type TlsPaths,
  type TlsResult,
} from './tls-folder.js';
export { issueServerCertificate, type IssueTlsOptions } from './tls-issue.js';
export {
  loadTlsMaterial,
  type LoadTlsOptions,
  type TlsMaterial,
} from './tls-load.js';
export { DEFAULT_SERVER_NAMES, type ServerNames } from './tls-names.js';

const log = logger.child({ module: 'tls' });

/** What `createTlsMaterial` takes. */
export interface CreateTlsOptions extends IssueCommon {
  /** The folder to write; made (mode 0700) when missing. */
  dir: string;
  /** Where the CA key's new passphrase comes from (8 characters or more). */
  passphrases: PassphraseSource;
  /** Replace TLS files already in `dir`; without it they are refused. */
  force?: boolean;
  /** CA validity in days; ten years unless given. */
  caDays?: number;
  /** 3072 unless given. */
  caKeyBits?: RsaBits;
  /** PBKDF2 iterations sealing ca.key; 600,000 unless given. */
  caKeyIterations?: number;
}

/**
 * Makes a new CA and a server certificate it signs, and writes the four
 * files of a TLS folder. With neither `names` nor `ips`, the certificate
 * is for localhost, 127.0.0.1 and ::1. Names, days and existing files are
 * checked before the passphrase is asked for, and a refusal writes
 * nothing.
 */
export async function createTlsMaterial(
  options: CreateTlsOptions,
): Promise<TlsResult> {
  const now = options.now ?? new Date();
  const names = namesFrom(options, DEFAULT_SERVER_NAMES);
  const days = options.days ?? SERVER_DAYS;
  const caDays = options.caDays ?? CA_DAYS;
  checkDays(days, '--days');
  checkDays(caDays, 'CA validity');
  checkWithinCa(new Date(now.getTime() + caDays * 86_400_000), now, days);

  const paths = tlsPaths(options.dir);
  const present: string[] = [];
  for (const path of [
    paths.caCert,
    paths.caKey,
    paths.serverCert,
    paths.serverKey,
  ]) {
    if (await exists(path)) present.push(path);
  }
  if (present.length > 0 && !options.force) {
    throw new AlreadyExistsError(
      `${present.join(', ')} already exist; nothing was written (--force ` +
        'replaces them, and devices that pinned the old ca.crt will then ' +
        'refuse the server)',
    );
  }
  const passphrase = await options.passphrases.forNewKeys();

  const [caKey, serverKey] = await Promise.all([
    generateRsaKey(options.caKeyBits ?? CA_KEY_BITS),
    generateRsaKey(options.serverKeyBits ?? SERVER_KEY_BITS),
  ]);
  // A random part tells two CAs apart by name, so a device pinning the
  // wrong one fails on a missing issuer, not on a puzzling signature.
  const commonName = `tufota update server CA ${randomBytes(4).toString('hex')}`;
  const caCert = makeCaCertificate(caKey, { commonName, days: caDays, now });
  const serverCert = makeServerCertificate(
    { cert: caCert, key: caKey },
    serverKey,
    names,
    { days, now },
  );
  const sealed = sealCaKey(
    caKey,
    passphrase,
    options.caKeyIterations ?? CA_KEY_ITERATIONS,
  );

  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  // Keys before their certificates: a run cut short leaves no certificate
  // whose key is missing.
  const written = await writeTlsFiles(
    options.dir,
    [
      { path: paths.caKey, data: sealed, mode: 0o600 },
      { path: paths.caCert, data: caCert, mode: 0o644 },
      { path: paths.serverKey, data: keyPem(serverKey), mode: 0o600 },
      { path: paths.serverCert, data: serverCert, mode: 0o644 },
    ],
    !options.force,
  );
  const result = tlsResult(written, paths, caCert, serverCert, names);
  log.info({ dir: options.dir, fingerprint: result.fingerprint }, 'CA made');
  return result;
}
