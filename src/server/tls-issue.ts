/**
 * Issuing a server certificate from a CA made earlier: the yearly renewal,
 * or a certificate for new names. The CA key is unlocked only here, after
 * every other check has passed.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import {
  BadInputError,
  BadKeyFileError,
  BadPassphraseError,
  NotFoundError,
} from '../errors.js';
import type { PassphraseSource } from '../keys/passphrase.js';
import { logger } from '../log.js';
import {
  SERVER_DAYS,
  SERVER_KEY_BITS,
  certificateNames,
  generateRsaKey,
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
import { checkValidity, parseCertificates, readPemFile } from './tls-load.js';
import {
  DEFAULT_SERVER_NAMES,
  parseServerNames,
  type ServerNames,
} from './tls-names.js';
import { openCaKey } from './tls-seal.js';

const log = logger.child({ module: 'tls' });

const DAY_MS = 24 * 60 * 60 * 1000;

/** What issuing a server certificate takes, from a new CA or an old one. */
export interface IssueCommon {
  /** DNS names; with `ips` unset too, a default applies (see callers). */
  names?: string[];
  /** IPv4 and IPv6 addresses. */
  ips?: string[];
  /** Server certificate validity in days; 397 unless given. */
  days?: number;
  /** 2048 unless given. */
  serverKeyBits?: RsaBits;
  /** The time of issue; the clock unless given. */
  now?: Date;
}

/** What `issueServerCertificate` takes. */
export interface IssueTlsOptions extends IssueCommon {
  /** A folder `createTlsMaterial` wrote: its ca.crt and ca.key are read. */
  caDir: string;
  /** Where server.crt and server.key go; the CA folder unless given. */
  out?: string;
  /** Where the CA key's passphrase comes from. */
  passphrases: PassphraseSource;
}

/** The names asked for, or `fallback` when neither list was given. */
export function namesFrom(
  options: IssueCommon,
  fallback: ServerNames,
): ServerNames {
  if (options.names === undefined && options.ips === undefined) {
    return parseServerNames(fallback.dns, fallback.ips);
  }
  return parseServerNames(options.names ?? [], options.ips ?? []);
}

/** Refuses a validity that is not a whole number of days from 1. */
export function checkDays(days: number, what: string): void {
  if (!Number.isSafeInteger(days) || days < 1) {
    throw new BadInputError(
      `${what} ${String(days)}: give a whole number of days from 1`,
    );
  }
}

/** Refuses a server certificate that would outlive the CA signing it. */
export function checkWithinCa(caNotAfter: Date, now: Date, days: number): void {
  if (now.getTime() + days * DAY_MS > caNotAfter.getTime()) {
    throw new BadInputError(
      `--days ${days}: the server certificate would outlive the CA, which ` +
        `expires on ${caNotAfter.toISOString()}; give fewer days`,
    );
  }
}

/**
 * Opens the CA key with whichever passphrase fits, trying each one the
 * source offers, and checks it is the key of the CA certificate.
 */
async function unlockCaKey(
  path: string,
  ca: X509Certificate,
  passphrases: PassphraseSource,
): Promise<KeyObject> {
  const text = await readPemFile(path, 'CA key file');
  let last: BadPassphraseError | undefined;
  for (let attempt = 0; ; attempt++) {
    const passphrase = await passphrases.forKey(`the CA key ${path}`, attempt);
    if (passphrase === undefined) break;
    let key: KeyObject;
    try {
      key = openCaKey(text, passphrase, path);
    } catch (err) {
      if (!(err instanceof BadPassphraseError)) throw err;
      last = err;
      continue;
    }
    if (!ca.checkPrivateKey(key)) {
      throw new BadKeyFileError(
        `${path} is not the key of the CA certificate beside it`,
      );
    }
    return key;
  }
  throw last ?? new BadPassphraseError(`no passphrase opened ${path}`);
}

/**
 * The names of the server certificate already at `path`, so a renewal
 * keeps serving the names devices use; the defaults when there is none.
 */
async function namesToRenew(path: string): Promise<ServerNames> {
  if (!(await exists(path))) return DEFAULT_SERVER_NAMES;
  try {
    return certificateNames(await readPemFile(path, 'server certificate'));
  } catch (err) {
    throw new BadInputError(
      `cannot read the names in ${path} to issue its successor; give ` +
        '--name or --ip',
      { cause: err },
    );
  }
}

/** Reads the CA certificate of `caDir`, refusing one that cannot sign now. */
async function readCa(
  caDir: string,
  now: Date,
): Promise<{ pem: string; cert: X509Certificate }> {
  const paths = tlsPaths(caDir);
  for (const path of [paths.caCert, paths.caKey]) {
    if (!(await exists(path))) {
      throw new NotFoundError(
        `${path} does not exist; make a CA first with ` +
          `"tufota tls init --out ${caDir}"`,
      );
    }
  }
  const text = await readPemFile(paths.caCert, 'CA certificate');
  const [cert] = parseCertificates(text, paths.caCert);
  if (!cert.ca) {
    throw new BadInputError(`${paths.caCert} is not a CA certificate`);
  }
  checkValidity(
    cert,
    `the CA certificate ${paths.caCert}`,
    now,
    'make a new CA with "tufota tls init --force" and give devices its ca.crt',
  );
  return { pem: cert.toString(), cert };
}

/**
 * Issues a fresh server certificate and key from the CA in `caDir`,
 * replacing server.crt and server.key in `out`: replacing them is the
 * point of a renewal, so no force is needed. ca.crt and ca.key are only
 * read. With neither `names` nor `ips`, the names of the certificate being
 * replaced are kept.
 */
export async function issueServerCertificate(
  options: IssueTlsOptions,
): Promise<TlsResult> {
  const now = options.now ?? new Date();
  const out = options.out ?? options.caDir;
  const caPaths = tlsPaths(options.caDir);
  const paths = {
    ...tlsPaths(out),
    caCert: caPaths.caCert,
    caKey: caPaths.caKey,
  };
  const ca = await readCa(options.caDir, now);
  const names = namesFrom(options, await namesToRenew(paths.serverCert));
  const days = options.days ?? SERVER_DAYS;
  checkDays(days, '--days');
  checkWithinCa(new Date(ca.cert.validTo), now, days);
  const caKey = await unlockCaKey(caPaths.caKey, ca.cert, options.passphrases);

  const serverKey = await generateRsaKey(
    options.serverKeyBits ?? SERVER_KEY_BITS,
  );
  const serverCert = makeServerCertificate(
    { cert: ca.pem, key: caKey },
    serverKey,
    names,
    { days, now },
  );
  await mkdir(out, { recursive: true, mode: 0o700 });
  const written = await writeTlsFiles(
    out,
    [
      { path: paths.serverKey, data: keyPem(serverKey), mode: 0o600 },
      { path: paths.serverCert, data: serverCert, mode: 0o644 },
    ],
    false,
  );
  const result = tlsResult(written, paths, ca.pem, serverCert, names);
  log.info({ dir: out, names, notAfter: result.notAfter }, 'issued');
  return result;
}
