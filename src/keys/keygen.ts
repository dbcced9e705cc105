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

const RSA_BITS = 3072;

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

/** The key type of a private key, judged from the key itself. */
export function keyTypeOf(privateKey: KeyObject): KeyType {
  switch (privateKey.asymmetricKeyType) {
    case 'ed25519':
      return 'ed25519';
    case 'ec':
      if (privateKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
        return 'ecdsa-sha2-nistp256';
      }
      break;
    case 'rsa':
      return 'rsassa-pss-sha256';
  }
  throw new BadInputError(
    `unsupported private key (${privateKey.asymmetricKeyType ?? 'unknown'})`,
  );
}

/** The TUF public key of a private key, with its key id computed last. */
export function publicKeyFor(privateKey: KeyObject): Key {
  const type = keyTypeOf(privateKey);
  const pub = createPublicKey(privateKey);
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
