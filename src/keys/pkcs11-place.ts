/**
 * Putting keys on a PKCS#11 token: generated there (the private key is
 * sensitive and never leaves), or imported from a key file.
 */
import type { Key } from '@tufjs/models';
import { randomBytes, type KeyObject } from 'node:crypto';
import type { Template } from 'pkcs11js';
import { BadInputError, TokenError } from '../errors.js';
import { RSA_BITS, keyTypeOf, publicKeyFor, type KeyType } from './keygen.js';
import { Pkcs11Signer } from './pkcs11.js';
import {
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  ED25519_OID,
  P256_OID,
  PROBE,
  octetString,
  type TokenKey,
} from './pkcs11-objects.js';
import { TokenSession, type TokenOptions } from './pkcs11-session.js';
import { idHex, type Pkcs11Uri } from './pkcs11-uri.js';

/**
 * Puts a key on the token: `create` makes its objects under `id` and
 * `label` in a read-write session; the key is then found again and tried
 * once, as any signer would use it.
 */
async function placeKey(
  uri: Pkcs11Uri,
  options: TokenOptions & {
    label?: string;
    defaultLabel: string;
    expected?: Key;
  },
  create: (session: TokenSession, id: Buffer, label: string) => void,
): Promise<TokenKey> {
  if (
    uri.object !== undefined &&
    options.label !== undefined &&
    uri.object !== options.label
  ) {
    throw new BadInputError(
      `the URI names the key "${uri.object}" and --label "${options.label}"; ` +
        'give one',
    );
  }
  const session = TokenSession.open(uri, options, true);
  try {
    await session.login(uri, options);
    const { lib } = session;
    const chosen = uri.object ?? options.label;
    const label = chosen ?? options.defaultLabel;
    const id = uri.id ?? randomBytes(8);
    // A label the user chose must name one key; a default one may repeat,
    // since the random id tells such keys apart.
    const clash = [
      ...session.find([{ type: lib.CKA_ID, value: id }]),
      ...(chosen !== undefined
        ? session.find([{ type: lib.CKA_LABEL, value: label }])
        : []),
    ];
    if (clash.length > 0) {
      throw new TokenError(
        `${session.description} already holds a key with id ` +
          `${idHex(id)} or label "${label}"; choose another`,
      );
    }
    create(session, id, label);
    const placed: Pkcs11Uri = { ...uri, id, object: label };
    delete placed.pinValue;
    delete placed.type;
    const signer = await Pkcs11Signer.inSession(
      session,
      placed,
      options.expected,
    );
    await signer.sign(PROBE);
    return {
      key: signer.key,
      type: signer.type,
      uri: placed,
      token: session.description,
    };
  } finally {
    session.close();
  }
}

function privateTemplate(session: TokenSession, id: Buffer, label: string): Template {
  const { lib } = session;
  return [
    { type: lib.CKA_TOKEN, value: true },
    { type: lib.CKA_PRIVATE, value: true },
    { type: lib.CKA_SENSITIVE, value: true },
    { type: lib.CKA_EXTRACTABLE, value: false },
    { type: lib.CKA_SIGN, value: true },
    { type: lib.CKA_ID, value: id },
    { type: lib.CKA_LABEL, value: label },
  ];
}

function publicTemplate(session: TokenSession, id: Buffer, label: string): Template {
  const { lib } = session;
  return [
    { type: lib.CKA_TOKEN, value: true },
    { type: lib.CKA_PRIVATE, value: false },
    { type: lib.CKA_VERIFY, value: true },
    { type: lib.CKA_ID, value: id },
    { type: lib.CKA_LABEL, value: label },
  ];
}

/**
 * Generates a key pair on the token. The private key is sensitive and not
 * extractable: it can sign and never leave.
 */
export async function generateTokenKey(
  uri: Pkcs11Uri,
  type: KeyType,
  options: TokenOptions & { label?: string } = {},
): Promise<TokenKey> {
  const defaultLabel = `tufota-${type}`;
  return placeKey(uri, { ...options, defaultLabel }, (session, id, label) => {
    const { lib, api } = session;
    const pub = publicTemplate(session, id, label);
    const priv = privateTemplate(session, id, label);
    let mechanism: number;
    if (type === 'rsassa-pss-sha256') {
      mechanism = lib.CKM_RSA_PKCS_KEY_PAIR_GEN;
      pub.push(
        { type: lib.CKA_MODULUS_BITS, value: RSA_BITS },
        { type: lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      );
    } else {
      mechanism =
        type === 'ed25519' ? CKM_EC_EDWARDS_KEY_PAIR_GEN : lib.CKM_EC_KEY_PAIR_GEN;
      pub.push({
        type: lib.CKA_EC_PARAMS,
        value: type === 'ed25519' ? ED25519_OID : P256_OID,
      });
    }
    session.call(`generating a ${type} key`, () =>
      api.C_GenerateKeyPair(session.session, { mechanism }, pub, priv),
    );
  });
}

/**
 * Copies a private key onto the token (with its public half beside it).
 * The source stays where it was: destroying it is the caller's choice.
 */
export async function importTokenKey(
  uri: Pkcs11Uri,
  privateKey: KeyObject,
  options: TokenOptions & { label?: string } = {},
): Promise<TokenKey> {
  const type = keyTypeOf(privateKey);
  const expected = publicKeyFor(privateKey);
  const jwk = privateKey.export({ format: 'jwk' });
  const bytes = (value: string | undefined) =>
    Buffer.from(value ?? '', 'base64url');
  return placeKey(
    uri,
    {
      ...options,
      expected,
      defaultLabel: `tufota-${expected.keyID.slice(0, 8)}`,
    },
    (session, id, label) => {
      const { lib, api } = session;
      const pub = publicTemplate(session, id, label);
      const priv = privateTemplate(session, id, label);
      pub.push({ type: lib.CKA_CLASS, value: lib.CKO_PUBLIC_KEY });
      priv.push({ type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY });
      if (type === 'rsassa-pss-sha256') {
        const common = [
          { type: lib.CKA_KEY_TYPE, value: lib.CKK_RSA },
          { type: lib.CKA_MODULUS, value: bytes(jwk.n) },
          { type: lib.CKA_PUBLIC_EXPONENT, value: bytes(jwk.e) },
        ];
        pub.push(...common);
        priv.push(
          ...common,
          { type: lib.CKA_PRIVATE_EXPONENT, value: bytes(jwk.d) },
          { type: lib.CKA_PRIME_1, value: bytes(jwk.p) },
          { type: lib.CKA_PRIME_2, value: bytes(jwk.q) },
          { type: lib.CKA_EXPONENT_1, value: bytes(jwk.dp) },
          { type: lib.CKA_EXPONENT_2, value: bytes(jwk.dq) },
          { type: lib.CKA_COEFFICIENT, value: bytes(jwk.qi) },
        );
      } else {
        const ed = type === 'ed25519';
        const common = [
          { type: lib.CKA_KEY_TYPE, value: ed ? CKK_EC_EDWARDS : lib.CKK_EC },
          { type: lib.CKA_EC_PARAMS, value: ed ? ED25519_OID : P256_OID },
        ];
        const point = ed
          ? bytes(jwk.x)
          : Buffer.concat([Buffer.from([4]), bytes(jwk.x), bytes(jwk.y)]);
        pub.push(...common, { type: lib.CKA_EC_POINT, value: octetString(point) });
        priv.push(...common, { type: lib.CKA_VALUE, value: bytes(jwk.d) });
      }
      const pubHandle = session.call('storing the public key', () =>
        api.C_CreateObject(session.session, pub),
      );
      try {
        session.call('storing the private key', () =>
          api.C_CreateObject(session.session, priv),
        );
      } catch (err) {
        // A public key alone would block the id for the next attempt.
        api.C_DestroyObject(session.session, pubHandle);
        throw err;
      }
    },
  );
}
