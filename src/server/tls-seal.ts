/**
 * The CA private key at rest: an encrypted PKCS#8 PEM file ("ENCRYPTED
 * PRIVATE KEY", PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC), which
 * OpenSSL and node:crypto read as it is.
 *
 * It is built here rather than by node:crypto's `export({ cipher })` or
 * forge's `encryptRsaPrivateKey` because both fix PBKDF2 at 2048
 * iterations, which a graphics card tries millions of guesses a second
 * against. node:crypto derives the key natively at the iteration count
 * OWASP gives for PBKDF2-HMAC-SHA256, and forge only writes the ASN.1.
 */
import {
  createCipheriv,
  createPrivateKey,
  pbkdf2Sync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import forge from 'node-forge';
import { BadKeyFileError, BadPassphraseError } from '../errors.js';
import { checkNewPassphrase } from '../keys/passphrase.js';
import { toLf } from './tls-cert.js';

/**
 * OWASP's 2023 figure for PBKDF2-HMAC-SHA256: about a sixth of a second
 * per unlock here, paid once per certificate issued.
 */
export const CA_KEY_ITERATIONS = 600_000;

const OID = {
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  hmacWithSHA256: '1.2.840.113549.2.9',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
};

const PEM_LABEL = 'ENCRYPTED PRIVATE KEY';

const { asn1 } = forge;

function seq(items: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
}

function oid(dotted: string): forge.asn1.Asn1 {
  const bytes = asn1.oidToDer(dotted).getBytes();
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, bytes);
}

function octets(data: Buffer): forge.asn1.Asn1 {
  const bytes = data.toString('binary');
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, bytes);
}

function integer(value: number): forge.asn1.Asn1 {
  const bytes = asn1.integerToDer(value).getBytes();
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, bytes);
}

function asnNull(): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '');
}

/**
 * `privateKey` as an encrypted PKCS#8 PEM text. The passphrase must be
 * one fit for new keys (at least 8 characters).
 */
export function sealCaKey(
  privateKey: KeyObject,
  passphrase: string,
  iterations = CA_KEY_ITERATIONS,
): string {
  checkNewPassphrase(passphrase);
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const key = pbkdf2Sync(passphrase, salt, iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const plain = privateKey.export({ type: 'pkcs8', format: 'der' });
  const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);

  // EncryptedPrivateKeyInfo (RFC 5958) with PBES2 parameters (RFC 8018).
  const info = seq([
    seq([
      oid(OID.pbes2),
      seq([
        seq([
          oid(OID.pbkdf2),
          seq([
            octets(salt),
            integer(iterations),
            seq([oid(OID.hmacWithSHA256), asnNull()]),
          ]),
        ]),
        seq([oid(OID.aes256Cbc), octets(iv)]),
      ]),
    ]),
    octets(sealed),
  ]);
  const body = asn1.toDer(info).getBytes();
  return toLf(forge.pem.encode({ type: PEM_LABEL, body }, { maxline: 64 }));
}

/**
 * Opens a CA key file's text. A wrong passphrase and a damaged file look
 * alike once decrypted, so both are a BadPassphraseError that says so;
 * a file that is not an encrypted key at all is a BadKeyFileError.
 */
export function openCaKey(
  pem: string,
  passphrase: string,
  path: string,
): KeyObject {
  if (!pem.includes(`-----BEGIN ${PEM_LABEL}-----`)) {
    throw new BadKeyFileError(
      `${path} is not an encrypted private key (no "BEGIN ${PEM_LABEL}" ` +
        'block); tufota keeps the CA key encrypted',
    );
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (err) {
    throw new BadPassphraseError(
      `wrong passphrase for the CA key ${path} (or the file is damaged)`,
      { cause: err },
    );
  }
}
