/**
 * A certificate and key for the HTTPS server, read and checked before the
 * server listens: files tufota wrote, or a person's own (`--cert` and
 * `--key`). Certificates are read with node:crypto, not forge, so a
 * person's ECDSA certificate works as well as tufota's RSA ones.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { BadInputError, NotFoundError, describeError } from '../errors.js';

/** What `https.createServer` takes. */
export interface TlsMaterial {
  /** The server certificate, then any intermediates, PEM. */
  cert: string;
  /** The server's private key, PEM, not encrypted. */
  key: string;
  /** The CA certificate the chain was checked against, when one was given. */
  ca?: string;
}

/** What `loadTlsMaterial` may check besides the pair itself. */
export interface LoadTlsOptions {
  /** A CA certificate the server certificate must chain to. */
  caFile?: string;
  /** The time validity is checked at; the clock unless given. */
  now?: Date;
}

/** PEM files are a few kilobytes; a chain of ten would be far below this. */
const MAX_PEM_BYTES = 1024 * 1024;

const CERT_BLOCK =
  /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/**
 * The text of a PEM file. Only a regular file of sane size is read, opened
 * without blocking, so a path to a pipe or a device cannot hang a server
 * that is starting.
 */
export async function readPemFile(path: string, what: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`${what} ${path} does not exist`);
    }
    throw new BadInputError(`cannot read ${what} ${path}`, { cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new BadInputError(`${what} ${path} is not a regular file`);
    }
    if (info.size > MAX_PEM_BYTES) {
      throw new BadInputError(
        `${what} ${path} is ${info.size} bytes; PEM files are far smaller`,
      );
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** Every certificate in a PEM text, in order; at least one. */
export function parseCertificates(
  text: string,
  path: string,
): X509Certificate[] {
  const blocks = text.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) {
    throw new BadInputError(
      `${path} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`,
    );
  }
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new BadInputError(
        `certificate ${i + 1} in ${path} does not parse ` +
          `(${describeError(err)})`,
        { cause: err },
      );
    }
  });
}

function parsePrivateKey(text: string, path: string): KeyObject {
  // PKCS#8 encryption, or the older OpenSSL form with its Proc-Type header.
  if (
    text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') ||
    /Proc-Type:\s*4,ENCRYPTED/.test(text)
  ) {
    throw new BadInputError(
      `${path} is encrypted; the server starts unattended, so give it an ` +
        'unencrypted key readable by its user only (mode 0600)',
    );
  }
  if (!/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(text)) {
    throw new BadInputError(
      `${path} holds no PEM private key ("-----BEGIN PRIVATE KEY-----")`,
    );
  }
  try {
    return createPrivateKey({ key: text, format: 'pem' });
  } catch (err) {
    throw new BadInputError(
      `the private key in ${path} does not parse (${describeError(err)})`,
      { cause: err },
    );
  }
}

/** Refuses a certificate outside its validity period at `now`. */
export function checkValidity(
  cert: X509Certificate,
  what: string,
  now: Date,
  renew = 'issue a new one with "tufota tls issue"',
): void {
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now < from) {
    throw new BadInputError(
      `${what} is not valid yet: valid from ${from.toISOString()} ` +
        `(the clock says ${now.toISOString()})`,
    );
  }
  if (now > to) {
    throw new BadInputError(`${what} expired on ${to.toISOString()}; ${renew}`);
  }
}

/** Refuses a chain in which a certificate is not signed by the next. */
function checkChain(chain: X509Certificate[], path: string): void {
  for (let i = 0; i + 1 < chain.length; i++) {
    if (
      !chain[i].checkIssued(chain[i + 1]) ||
      !chain[i].verify(chain[i + 1].publicKey)
    ) {
      throw new BadInputError(
        `${path}: certificate ${i + 1} is not signed by certificate ${i + 2}; ` +
          'put the server certificate first, then each one that signed the one before',
      );
    }
  }
}

/**
 * Reads a server certificate (optionally followed by its intermediates)
 * and its private key, and refuses them unless the key is the one the
 * certificate certifies, every certificate is valid now, and, with
 * `caFile`, the chain ends at that CA.
 */
export async function loadTlsMaterial(
  certFile: string,
  keyFile: string,
  options: LoadTlsOptions = {},
): Promise<TlsMaterial> {
  const now = options.now ?? new Date();
  const certText = await readPemFile(certFile, 'certificate file');
  const keyText = await readPemFile(keyFile, 'key file');
  const chain = parseCertificates(certText, certFile);
  const key = parsePrivateKey(keyText, keyFile);

  // Comparing the public keys catches a key from another pair, which
  // would otherwise only fail at the first handshake.
  if (!chain[0].checkPrivateKey(key)) {
    throw new BadInputError(
      `the key in ${keyFile} does not match the certificate in ${certFile} ` +
        '(their public keys differ)',
    );
  }
  chain.forEach((cert, i) =>
    checkValidity(cert, `certificate ${i + 1} in ${certFile}`, now),
  );
  checkChain(chain, certFile);

  const material: TlsMaterial = {
    cert: chain.map((c) => c.toString()).join(''),
    key: keyText,
  };
  if (options.caFile) {
    const caText = await readPemFile(options.caFile, 'CA certificate file');
    const [ca] = parseCertificates(caText, options.caFile);
    checkValidity(ca, `the CA certificate in ${options.caFile}`, now);
    const last = chain[chain.length - 1];
    if (!last.checkIssued(ca) || !last.verify(ca.publicKey)) {
      throw new BadInputError(
        `the certificate in ${certFile} is not signed by the CA in ` +
          `${options.caFile}; devices pinning that CA would refuse it`,
      );
    }
    material.ca = ca.toString();
  }
  return material;
}
