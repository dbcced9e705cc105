/**
 * The objects keys are made of on a PKCS#11 token: finding them, reading a
 * key's type and public half, and the byte forms PKCS#11 and TUF disagree on
 * (EC points, ECDSA signatures).
 */
import type { Key } from '@tufjs/models';
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Template } from 'pkcs11js';
import { BadInputError, TokenError } from '../errors.js';
import type { KeyType } from './keygen.js';
import { ulong, type TokenSession } from './pkcs11-session.js';
import { formatPkcs11Uri, idHex, type Pkcs11Uri } from './pkcs11-uri.js';

export type Handle = Buffer;

/** PKCS#11 3.0 names pkcs11js does not have. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;

/** CKA_EC_PARAMS: the Ed25519 OID, its older PrintableString form, P-256. */
export const ED25519_OID = Buffer.from('06032b6570', 'hex');
export const ED25519_NAME = Buffer.from('130c656477617264733235353139', 'hex');
export const P256_OID = Buffer.from('06082a8648ce3d030107', 'hex');

/** Signed once when a key is placed or found by id alone, to prove it. */
export const PROBE = Buffer.from('tufota: does this token hold the expected key?');

/** A key on a token: its TUF public key and the URI that finds it. */
export interface TokenKey {
  key: Key;
  type: KeyType;
  /** Without any PIN, ready to store in a reference file. */
  uri: Pkcs11Uri;
  /** `token "LABEL" (serial S)`. */
  token: string;
}

/** `key "LABEL" id 01`, for messages. */
export function keyName(uri: Pkcs11Uri): string {
  const parts = [];
  if (uri.object !== undefined) parts.push(`"${uri.object}"`);
  if (uri.id !== undefined) parts.push(`id ${idHex(uri.id)}`);
  return `key ${parts.join(' ')}`;
}

/** Refuses a URI that could match any key on the token. */
export function requireKeyName(uri: Pkcs11Uri): void {
  if (uri.id === undefined && uri.object === undefined) {
    throw new BadInputError(
      `${formatPkcs11Uri(uri)} names no key: add id=%NN or object=LABEL`,
    );
  }
}

/** The raw point inside CKA_EC_POINT, which tokens give DER-wrapped or bare. */
export function ecPoint(value: Buffer, length: number): Buffer {
  if (value.length === length) return value;
  if (value.length === length + 2 && value[0] === 0x04 && value[1] === length) {
    return value.subarray(2);
  }
  throw new TokenError(`the token gave an EC point of ${value.length} bytes`);
}

/** DER OCTET STRING, the form CKA_EC_POINT takes on import. */
export function octetString(value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x04, value.length]), value]);
}

/** ECDSA r||s (as PKCS#11 returns it) in DER, as TUF clients verify it. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  if (raw.length !== 64) {
    throw new TokenError(`the token gave an ECDSA signature of ${raw.length} bytes`);
  }
  const integer = (bytes: Buffer) => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start++;
    let value = bytes.subarray(start);
    if (value[0] & 0x80) value = Buffer.concat([Buffer.from([0]), value]);
    return Buffer.concat([Buffer.from([0x02, value.length]), value]);
  };
  const body = Buffer.concat([integer(raw.subarray(0, 32)), integer(raw.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** The TUF key type of a token object, or a TokenError naming what it is. */
export function keyTypeOfObject(session: TokenSession, object: Handle): KeyType {
  const { lib } = session;
  const [ckk] = session.attributes(object, [lib.CKA_KEY_TYPE]);
  const type = ulong(ckk);
  if (type === lib.CKK_RSA) return 'rsassa-pss-sha256';
  if (type === CKK_EC_EDWARDS || type === lib.CKK_EC) {
    const [params] = session.attributes(object, [lib.CKA_EC_PARAMS]);
    if (type === CKK_EC_EDWARDS) {
      if (params.equals(ED25519_OID) || params.equals(ED25519_NAME)) {
        return 'ed25519';
      }
    } else if (params.equals(P256_OID)) {
      return 'ecdsa-sha2-nistp256';
    }
    throw new TokenError(
      `the key's curve (CKA_EC_PARAMS ${params.toString('hex')}) is not ` +
        'Ed25519 or P-256, the curves TUF signs with',
    );
  }
  throw new TokenError(
    `the key's type (CKK 0x${type.toString(16)}) is not RSA, EC or EC_EDWARDS`,
  );
}

/** The public key an object carries (a public key, or an RSA private key). */
export function publicKeyOfObject(
  session: TokenSession,
  object: Handle,
  type: KeyType,
): KeyObject {
  const { lib } = session;
  const b64 = (value: Buffer) => value.toString('base64url');
  let jwk: Record<string, string>;
  if (type === 'rsassa-pss-sha256') {
    const [n, e] = session.attributes(object, [
      lib.CKA_MODULUS,
      lib.CKA_PUBLIC_EXPONENT,
    ]);
    jwk = { kty: 'RSA', n: b64(n), e: b64(e) };
  } else {
    const [value] = session.attributes(object, [lib.CKA_EC_POINT]);
    if (type === 'ed25519') {
      jwk = { kty: 'OKP', crv: 'Ed25519', x: b64(ecPoint(value, 32)) };
    } else {
      const point = ecPoint(value, 65);
      jwk = {
        kty: 'EC',
        crv: 'P-256',
        x: b64(point.subarray(1, 33)),
        y: b64(point.subarray(33)),
      };
    }
  }
  return createPublicKey({ key: jwk, format: 'jwk' });
}

/** The objects of one class a URI's id and object label name. */
export function findObjects(
  session: TokenSession,
  cls: number,
  name: { id?: Buffer; object?: string },
): Handle[] {
  const { lib } = session;
  const template: Template = [{ type: lib.CKA_CLASS, value: cls }];
  if (name.id) template.push({ type: lib.CKA_ID, value: name.id });
  if (name.object !== undefined) {
    template.push({ type: lib.CKA_LABEL, value: name.object });
  }
  return session.find(template);
}

/** The one object found, or a TokenError saying none or how many. */
export function onlyOne(found: Handle[], what: string, where: string): Handle {
  if (found.length === 1) return found[0];
  throw new TokenError(
    found.length === 0
      ? `no ${what} on ${where}`
      : `${found.length} objects match ${what} on ${where}; name one with ` +
          'both id= and object=',
  );
}
