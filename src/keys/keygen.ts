/**
 * Key generation with node:crypto, and the TUF public-key form of each key
 * type, matching what python-tuf (securesystemslib) writes so that every
 * TUF client reads our keys the same way.
 */
import { Key } from '@tufjs/models';
import {
  constants,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { BadInputError } from '../errors.js';
import { computeKeyId } from '../tuf/canonical.js';
import type { SigningKey } from '../tuf/metadata.js';

/** Key types by the name of their signature scheme. */
export const KEY_TYPES = [
  'ed25519',
  'ecdsa-sha2-nistp256',
  'rsassa-pss-sha256',
] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export function parseKeyType(value: string): KeyType {
  if ((KEY_TYPES as readonly string[]).includes(value)) {
    return value as KeyType;
  }
  throw new BadInputError(
    `unknown key type "${value}"; choose one of ${KEY_TYPES.join(', ')}`,
  );
}

/** The size of new RSA keys, in files and on tokens alike. */
export const RSA_BITS = 3072;

export function generatePrivateKey(type: KeyType): KeyObject {
  switch (type) {
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'ecdsa-sha2-nistp256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'rsassa-pss-sha256':
      // Plain RSA keys (not RSA-PSS-restricted ones): their SPKI form is
      // what every TUF implementation parses.
      return generateKeyPairSync('rsa', { modulusLength: RSA_BITS }).privateKey;
  }
}

/** The key type of a private or public key, judged from the key itself. */
export function keyTypeOf(key: KeyObject): KeyType {
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'ed25519';
    case 'ec':
      if (key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
        return 'ecdsa-sha2-nistp256';
      }
      break;
    case 'rsa':
      return 'rsassa-pss-sha256';
  }
  throw new BadInputError(
    `unsupported ${key.type} key (${key.asymmetricKeyType ?? 'unknown'})`,
  );
}

/**
 * The TUF public key of a private key (or of its public half, as a token
 * gives it), with its key id computed last.
 */
export function publicKeyFor(key: KeyObject): Key {
  const type = keyTypeOf(key);
  const pub = key.type === 'public' ? key : createPublicKey(key);
  let fields: { keyType: string; scheme: string; public: string };
  switch (type) {
    case 'ed25519': {
      // The raw 32-byte key, hex encoded, is what the specification shows.
      const der = pub.export({ format: 'der', type: 'spki' });
      fields = {
        keyType: 'ed25519',
        scheme: 'ed25519',
        public: der.subarray(der.length - 32).toString('hex'),
      };
      break;
    }
    case 'ecdsa-sha2-nistp256':
      fields = {
        keyType: 'ecdsa',
        scheme: 'ecdsa-sha2-nistp256',
        public: pub.export({ format: 'pem', type: 'spki' }).toString(),
      };
      break;
    case 'rsassa-pss-sha256':
      fields = {
        keyType: 'rsa',
        scheme: 'rsassa-pss-sha256',
        public: pub.export({ format: 'pem', type: 'spki' }).toString(),
      };
      break;
  }
  const draft = new Key({
    keyID: '',
    keyType: fields.keyType,
    scheme: fields.scheme,
    keyVal: { public: fields.public },
  });
  return new Key({
    keyID: computeKeyId(draft),
    keyType: draft.keyType,
    scheme: draft.scheme,
    keyVal: draft.keyVal,
  });
}

/**
 * The node:crypto public key of a TUF key, whatever its keyval form (raw
 * hex for ed25519, PEM for the others).
 */
export function keyObjectOf(key: Key): KeyObject {
  const value = key.keyVal.public ?? '';
  try {
    if (key.keyType === 'ed25519' && /^[0-9a-fA-F]{64}$/.test(value)) {
      const x = Buffer.from(value, 'hex').toString('base64url');
      return createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x },
        format: 'jwk',
      });
    }
    return createPublicKey(value);
  } catch (err) {
    throw new BadInputError(`key ${key.keyID} has a malformed public key`, {
      cause: err,
    });
  }
}

/** Signs with the scheme the key's type calls for. */
export function signWith(privateKey: KeyObject, data: Buffer): Buffer {
  switch (keyTypeOf(privateKey)) {
    case 'ed25519':
      return cryptoSign(null, data, privateKey);
    case 'ecdsa-sha2-nistp256':
      // DER-encoded (r, s), as securesystemslib writes and clients expect.
      return cryptoSign('sha256', data, privateKey);
    case 'rsassa-pss-sha256':
      // A salt as long as the digest verifies both where clients check
      // "auto" (tuf-js, python-tuf) and "equals hash" (go-tuf).
      return cryptoSign('sha256', data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
  }
}

/** Whether `sig` is what `signWith` makes over `data` for this key. */
export function verifyWith(
  publicKey: KeyObject,
  data: Buffer,
  sig: Buffer,
): boolean {
  switch (keyTypeOf(publicKey)) {
    case 'ed25519':
      return cryptoVerify(null, data, publicKey, sig);
    case 'ecdsa-sha2-nistp256':
      return cryptoVerify('sha256', data, publicKey, sig);
    case 'rsassa-pss-sha256':
      return cryptoVerify(
        'sha256',
        data,
        {
          key: publicKey,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        },
        sig,
      );
  }
}

/** A signer over a private key held in memory. */
export class InMemorySigner implements SigningKey {
  readonly key: Key;
  readonly #privateKey: KeyObject;

  constructor(privateKey: KeyObject) {
    this.#privateKey = privateKey;
    this.key = publicKeyFor(privateKey);
  }

  sign(data: Buffer): Promise<Buffer> {
    return Promise.resolve(signWith(this.#privateKey, data));
  }
}
