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
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import {
  BadInputError,
  BadKeyFileError,
  BadPassphraseError,
  describeError,
} from '../errors.js';
import { writeFileAtomic } from '../repository/atomic.js';
import { computeKeyId } from '../tuf/canonical.js';
import { comparableKey } from '../tuf/metadata.js';
import { publicKeyFor } from './keygen.js';
import { checkNewPassphrase, type PassphraseSource } from './passphrase.js';

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

/**
 * The scrypt settings a key file may ask for. They are read from the file,
 * so a hostile one could otherwise ask for gigabytes of memory or hours of
 * work: N a power of two from 2^10 to 2^20, r from 1 to 32, p from 1 to 16.
 */
export const SCRYPT_LIMITS = {
  N: { min: 2 ** 10, max: 2 ** 20 },
  r: { min: 1, max: 32 },
  p: { min: 1, max: 16 },
} as const;

/** The most memory one key's scrypt may take: 8 times the default. */
const SCRYPT_MAX_MEMORY = 256 * 1024 * 1024;

/** Why scrypt settings are refused, or undefined when they are accepted. */
export function scryptProblem(params: {
  N?: unknown;
  r?: unknown;
  p?: unknown;
}): string | undefined {
  const { N, r, p } = params;
  const within = (v: unknown, l: { min: number; max: number }) =>
    typeof v === 'number' && Number.isInteger(v) && v >= l.min && v <= l.max;
  const powerOfTwo = (v: number) => (v & (v - 1)) === 0;
  if (!within(N, SCRYPT_LIMITS.N) || !powerOfTwo(N as number)) {
    return `scrypt N ${String(N)} is not a power of two from 2^10 to 2^20`;
  }
  if (!within(r, SCRYPT_LIMITS.r)) {
    return `scrypt r ${String(r)} is not from 1 to 32`;
  }
  if (!within(p, SCRYPT_LIMITS.p)) {
    return `scrypt p ${String(p)} is not from 1 to 16`;
  }
  // scrypt itself requires N < 2^(16 r) (RFC 7914); OpenSSL refuses more.
  if ((N as number) >= 2 ** (16 * (r as number))) {
    return `scrypt N ${String(N)} is not below 2^(16 r) for r ${String(r)}`;
  }
  // Memory is 128 N r bytes; the limits above alone would allow 4 GiB.
  if (128 * (N as number) * (r as number) > SCRYPT_MAX_MEMORY) {
    return `scrypt N ${String(N)} with r ${String(r)} needs more than 256 MiB`;
  }
  return undefined;
}

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
  checkNewPassphrase(passphrase);
  const problem = scryptProblem(params);
  if (problem) throw new BadInputError(`cannot seal a key: ${problem}`);
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

/**
 * The TUF public key a key file or reference file stores, checked against
 * the key id stored beside it. `what` names the file in errors.
 */
export function publicKeyFromJSON(
  keyid: string,
  pub: Record<string, unknown>,
  what: string,
): Key {
  let key: Key;
  try {
    key = Key.fromJSON(keyid, pub as Parameters<typeof Key.fromJSON>[1]);
  } catch (err) {
    throw new BadKeyFileError(`${what} has a malformed public key`, {
      cause: err,
    });
  }
  if (!comparableKey(key)) {
    throw new BadKeyFileError(
      `${what} has a ${key.keyType} key tufota does not use: only ed25519, ` +
        'P-256 and plain RSA keys, in forms that can be compared',
    );
  }
  if (computeKeyId(key) !== keyid) {
    throw new BadKeyFileError(
      `${what}: key id ${keyid} does not match its public key`,
    );
  }
  return key;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A base64 string that decodes to `min` to `max` bytes. */
function isBase64(value: unknown, min: number, max: number): boolean {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    return false;
  }
  const length = Buffer.from(value, 'base64').length;
  return length >= min && length <= max;
}

/**
 * Whether a file's text says it is a tufota key file: a JSON object with a
 * `"tufota_key"` field or, for text that is not JSON (a key file cut
 * short, say), the field's name anywhere in it. Such a file must then
 * parse as a good key file; any other file is not a key file at all.
 */
export function claimsToBeKeyFile(raw: string): boolean {
  return claimsField(raw, 'tufota_key');
}

/** Whether `raw` is a JSON object with `field`, or broken JSON naming it. */
export function claimsField(raw: string, field: string): boolean {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return raw.includes(`"${field}"`);
  }
  return isRecord(doc) && field in doc;
}

/** Reads a key file's public half; the private half stays sealed. */
export async function readKeyFile(path: string): Promise<KeyFile> {
  return parseKeyFile(await readKeyText(path), path);
}

/** Key files of every kind are a few kilobytes; this is far above that. */
const MAX_KEY_FILE_BYTES = 1024 * 1024;

/**
 * The text of a key file, reference file or public key file. Only a
 * regular file of sane size is read: a path to a device or a pipe (by
 * mistake or not) would otherwise be read without end or wait forever.
 * The file is opened without blocking and checked through its descriptor.
 */
export async function readKeyText(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new BadKeyFileError(`cannot read key file ${path}`, { cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new BadKeyFileError(`key file ${path} is not a regular file`);
    }
    if (info.size > MAX_KEY_FILE_BYTES) {
      throw new BadKeyFileError(
        `key file ${path} is ${info.size} bytes; key files are far smaller`,
      );
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
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
  const key = publicKeyFromJSON(keyid, pub, `key file ${path}`);
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
  const problem = scryptProblem(kdf);
  if (problem) {
    throw new BadKeyFileError(
      `key file ${path}: ${problem}; refusing to run it`,
    );
  }
  if (
    !isBase64(kdf.salt, 8, 64) ||
    !isBase64(cipher.iv, 12, 12) ||
    !isBase64(cipher.tag, 16, 16) ||
    !isBase64(sealed.ciphertext, 1, 16384)
  ) {
    throw new BadKeyFileError(
      `key file ${path} has a malformed salt, iv, tag or ciphertext`,
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
  // A file built in memory, not read by parseKeyFile, is checked here too.
  const problem = scryptProblem(kdf);
  if (problem) {
    throw new BadKeyFileError(
      `key file ${file.path}: ${problem}; refusing to run it`,
    );
  }
  // scrypt failing (out of memory, say) says nothing about the passphrase,
  // and trying other passphrases would only fail again.
  let derived: Buffer;
  try {
    derived = await deriveKey(passphrase, kdf);
  } catch (err) {
    throw new BadKeyFileError(
      `key file ${file.path}: scrypt failed (${describeError(err)}); ` +
        'the passphrase was not tried',
      { cause: err },
    );
  }
  let der: Buffer;
  try {
    const decipher = createDecipheriv(
      'aes-256-gcm',
      derived,
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

/**
 * Opens a key file with whichever passphrase fits: each one a source
 * offers is tried in turn (the lines of a file, or a prompt asked again).
 * When none fits, the last BadPassphraseError is thrown.
 */
export async function openKeyFile(
  file: KeyFile,
  passphrases: PassphraseSource,
  label: string,
): Promise<KeyObject> {
  let lastError: unknown;
  for (let attempt = 0; ; attempt++) {
    const passphrase = await passphrases.forKey(label, attempt);
    if (passphrase === undefined) break;
    try {
      return await unsealPrivateKey(file, passphrase);
    } catch (err) {
      if (!(err instanceof BadPassphraseError)) throw err;
      lastError = err;
    }
  }
  throw lastError instanceof BadPassphraseError
    ? lastError
    : new BadPassphraseError(`no passphrase opened ${label}`);
}
