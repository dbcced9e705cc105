/**
 * Encrypted key files. The private key (PKCS#8 DER) is sealed with
 * AES-256-GCM under a key derived from a passphrase with scrypt; the key id
 * is bound in as associated data, so a file whose public half was swapped
 * fails to open instead of signing under a wrong id.
 *
 * File format, version 1 (JSON):
 *   { "tufota_key": 1, "label", "keyid", "public": <TUF key>,
 *     "private": { "kdf": { "name": "scrypt", "N", "r", "p", "salt" },
 *                  "cipher": { "name": "aes-256-gcm", "iv", "tag" },
 *                  "ciphertext" } }   (binary fields base64)
 */
import { Key } from '@tufjs/models';
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  randomBytes,
  scrypt,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { BadKeyFileError, BadPassphraseError } from '../errors.js';
import { writeFileAtomic } from '../repository/atomic.js';
import { computeKeyId } from '../tuf/canonical.js';
import { publicKeyFor } from './keygen.js';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/**
 * 2^15 with r=8 costs about 32 MiB and a tenth of a second per unlock: slow
 * enough to hurt guessing, fast enough for the few keys a command opens.
 */
export const DEFAULT_SCRYPT = { N: 2 ** 15, r: 8, p: 1 };

export interface KeyFile {
  /** Where it was read from, for messages. */
  path: string;
  label: string;
  key: Key;
  private: SealedKey;
}

interface SealedKey {
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: { name: 'aes-256-gcm'; iv: string; tag: string };
  ciphertext: string;
}

async function deriveKey(
  passphrase: string,
  kdf: SealedKey['kdf'],
): Promise<Buffer> {
  return scryptAsync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 256 * kdf.N * kdf.r + 16 * 1024 * 1024,
  });
}

export async function sealPrivateKey(
  privateKey: KeyObject,
  keyid: string,
  passphrase: string,
  params = DEFAULT_SCRYPT,
): Promise<SealedKey> {
  if (passphrase.length === 0) {
    throw new BadPassphraseError('an empty passphrase is not allowed');
  }
  const kdf = {
    name: 'scrypt' as const,
    ...params,
    salt: randomBytes(16).toString('base64'),
  };
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', await deriveKey(passphrase, kdf), iv);
  cipher.setAAD(Buffer.from(keyid, 'utf8'));
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const ciphertext = Buffer.concat([cipher.update(der), cipher.final()]);
  return {
    kdf,
    cipher: {
      name: 'aes-256-gcm',
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
    },
    ciphertext: ciphertext.toString('base64'),
  };
}

export async function writeKeyFile(
  path: string,
  label: string,
  privateKey: KeyObject,
  passphrase: string,
  params = DEFAULT_SCRYPT,
): Promise<KeyFile> {
  const key = publicKeyFor(privateKey);
  const sealed = await sealPrivateKey(privateKey, key.keyID, passphrase, params);
  const doc = {
    tufota_key: 1,
    label,
    keyid: key.keyID,
    public: key.toJSON(),
    private: sealed,
  };
  await writeFileAtomic(path, JSON.stringify(doc, null, 2) + '\n', {
    mode: 0o600,
    exclusive: true,
  });
  return { path, label, key, private: sealed };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads a key file's public half; the private half stays sealed. */
export async function readKeyFile(path: string): Promise<KeyFile> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    throw new BadKeyFileError(`cannot read key file ${path}`, { cause: err });
  }
  return parseKeyFile(raw, path);
}

export function parseKeyFile(raw: string, path: string): KeyFile {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw new BadKeyFileError(`key file ${path} is not valid JSON`, {
      cause: err,
    });
  }
  if (!isRecord(doc) || doc.tufota_key !== 1) {
    throw new BadKeyFileError(`${path} is not a tufota key file (version 1)`);
  }
  const { keyid, label, public: pub, private: sealed } = doc;
  if (typeof keyid !== 'string' || !isRecord(pub) || !isRecord(sealed)) {
    throw new BadKeyFileError(`key file ${path} is missing fields`);
  }
  let key: Key;
  try {
    key = Key.fromJSON(keyid, pub as Parameters<typeof Key.fromJSON>[1]);
  } catch (err) {
    throw new BadKeyFileError(`key file ${path} has a malformed public key`, {
      cause: err,
    });
  }
  if (computeKeyId(key) !== keyid) {
    throw new BadKeyFileError(
      `key file ${path}: key id ${keyid} does not match its public key`,
    );
  }
  const kdf = sealed.kdf;
  const cipher = sealed.cipher;
  if (
    !isRecord(kdf) ||
    kdf.name !== 'scrypt' ||
    !isRecord(cipher) ||
    cipher.name !== 'aes-256-gcm' ||
    typeof sealed.ciphertext !== 'string'
  ) {
    throw new BadKeyFileError(
      `key file ${path} uses an unknown encryption; expected scrypt and aes-256-gcm`,
    );
  }
  return {
    path,
    label: typeof label === 'string' ? label : '',
    key,
    private: sealed as unknown as SealedKey,
  };
}

/**
 * Opens the sealed private key. A wrong passphrase and a tampered file look
 * the same to GCM; both are reported as a passphrase that does not open it.
 */
export async function unsealPrivateKey(
  file: KeyFile,
  passphrase: string,
): Promise<KeyObject> {
  const { kdf, cipher, ciphertext } = file.private;
  let der: Buffer;
  try {
    const decipher = createDecipheriv(
      'aes-256-gcm',
      await deriveKey(passphrase, kdf),
      Buffer.from(cipher.iv, 'base64'),
    );
    decipher.setAAD(Buffer.from(file.key.keyID, 'utf8'));
    decipher.setAuthTag(Buffer.from(cipher.tag, 'base64'));
    der = Buffer.concat([
      decipher.update(Buffer.from(ciphertext, 'base64')),
      decipher.final(),
    ]);
  } catch (err) {
    throw new BadPassphraseError(
      `wrong passphrase for key ${file.key.keyID.slice(0, 8)} (${file.path})`,
      { cause: err },
    );
  }
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  if (publicKeyFor(privateKey).keyID !== file.key.keyID) {
    throw new BadKeyFileError(
      `key file ${file.path}: private key does not match key id ${file.key.keyID}`,
    );
  }
  return privateKey;
}
