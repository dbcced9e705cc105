/**
 * Keys on PKCS#11 tokens (a YubiKey, an HSM, SoftHSM2): a signer whose
 * private key never leaves the token, and generating or importing such keys.
 *
 * A token key gets the same TUF public key and key id as a key file of the
 * same key would (keygen.ts `publicKeyFor`), and signs the same bytes:
 * ed25519 through CKM_EDDSA, ecdsa-sha2-nistp256 through CKM_ECDSA over the
 * SHA-256 digest (the token's r||s turned into DER, as securesystemslib
 * writes), rsassa-pss-sha256 through CKM_SHA256_RSA_PKCS_PSS with MGF1-SHA256
 * and a 32-byte salt. Every signature a token returns is verified against
 * the expected public key before it is used, so a swapped or faulty token
 * cannot put a bad signature into metadata.
 */
import type { Key } from '@tufjs/models';
import {
  createHash,
  createPublicKey,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import type { Template } from 'pkcs11js';
import { BadInputError, TokenError } from '../errors.js';
import { publicIdentity, type SigningKey } from '../tuf/metadata.js';
import {
  RSA_BITS,
  keyObjectOf,
  keyTypeOf,
  publicKeyFor,
  verifyWith,
  type KeyType,
} from './keygen.js';
import { TokenSession, ulong, type TokenOptions } from './pkcs11-session.js';
import { formatPkcs11Uri, idHex, type Pkcs11Uri } from './pkcs11-uri.js';

export type { TokenOptions } from './pkcs11-session.js';

type Handle = Buffer;

/** PKCS#11 3.0 names pkcs11js does not have. */
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;

/** CKA_EC_PARAMS: the Ed25519 OID, its older PrintableString form, P-256. */
const ED25519_OID = Buffer.from('06032b6570', 'hex');
const ED25519_NAME = Buffer.from('130c656477617264733235353139', 'hex');
const P256_OID = Buffer.from('06082a8648ce3d030107', 'hex');

/** Signed once when a key is placed or found by id alone, to prove it. */
const PROBE = Buffer.from('tufota: does this token hold the expected key?');

/** A key on a token: its TUF public key and the URI that finds it. */
export interface TokenKey {
  key: Key;
  type: KeyType;
  /** Without any PIN, ready to store in a reference file. */
  uri: Pkcs11Uri;
  /** `token "LABEL" (serial S)`. */
  token: string;
}

function keyName(uri: Pkcs11Uri): string {
  const parts = [];
  if (uri.object !== undefined) parts.push(`"${uri.object}"`);
  if (uri.id !== undefined) parts.push(`id ${idHex(uri.id)}`);
  return `key ${parts.join(' ')}`;
}

function requireKeyName(uri: Pkcs11Uri): void {
  if (uri.id === undefined && uri.object === undefined) {
    throw new BadInputError(
      `${formatPkcs11Uri(uri)} names no key: add id=%NN or object=LABEL`,
    );
  }
}

/** The raw point inside CKA_EC_POINT, which tokens give DER-wrapped or bare. */
function ecPoint(value: Buffer, length: number): Buffer {
  if (value.length === length) return value;
  if (value.length === length + 2 && value[0] === 0x04 && value[1] === length) {
    return value.subarray(2);
  }
  throw new TokenError(`the token gave an EC point of ${value.length} bytes`);
}

/** DER OCTET STRING, the form CKA_EC_POINT takes on import. */
function octetString(value: Buffer): Buffer {
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
function keyTypeOfObject(session: TokenSession, object: Handle): KeyType {
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
function publicKeyOfObject(
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
function findObjects(
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

function onlyOne(found: Handle[], what: string, where: string): Handle {
  if (found.length === 1) return found[0];
  throw new TokenError(
    found.length === 0
      ? `no ${what} on ${where}`
      : `${found.length} objects match ${what} on ${where}; name one with ` +
          'both id= and object=',
  );
}

/** A signer over a private key that stays on its token. */
export class Pkcs11Signer implements SigningKey {
  readonly key: Key;
  readonly type: KeyType;
  /** The token and key, for messages. */
  readonly where: string;
  readonly #session: TokenSession;
  readonly #handle: Handle;
  readonly #publicKey: KeyObject;

  private constructor(
    session: TokenSession,
    handle: Handle,
    key: Key,
    publicKey: KeyObject,
    where: string,
  ) {
    this.#session = session;
    this.#handle = handle;
    this.key = key;
    this.type = keyTypeOf(publicKey);
    this.#publicKey = publicKey;
    this.where = where;
  }

  /**
   * Logs in to the token the URI names and finds its private key. With
   * `expected` (from a reference file), a token whose key is another one is
   * refused.
   */
  static async open(
    uri: Pkcs11Uri,
    options: TokenOptions & { expected?: Key },
  ): Promise<Pkcs11Signer> {
    requireKeyName(uri);
    const session = TokenSession.open(uri, options);
    try {
      await session.login(uri, options);
      return await Pkcs11Signer.inSession(session, uri, options.expected);
    } catch (err) {
      session.close();
      throw err;
    }
  }

  /**
   * The signer for the private key `name` finds, in a session already
   * logged in; closing the signer closes that session.
   */
  static async inSession(
    session: TokenSession,
    name: Pkcs11Uri,
    expected?: Key,
  ): Promise<Pkcs11Signer> {
    const { lib } = session;
    const where = `${keyName(name)} on ${session.description}`;
    const handle = onlyOne(
      findObjects(session, lib.CKO_PRIVATE_KEY, name),
      `private ${keyName(name)}`,
      session.description,
    );
    const type = keyTypeOfObject(session, handle);
    let publicKey: KeyObject;
    let probe = false;
    if (type === 'rsassa-pss-sha256') {
      publicKey = publicKeyOfObject(session, handle, type);
    } else {
      // The public half of an EC key is its own object, under the same id.
      const [id] = session.attributes(handle, [lib.CKA_ID]);
      const pub = findObjects(
        session,
        lib.CKO_PUBLIC_KEY,
        id.length > 0 ? { id } : { object: name.object },
      );
      if (pub.length === 1) {
        publicKey = publicKeyOfObject(session, pub[0], type);
      } else if (expected) {
        publicKey = keyObjectOf(expected);
        probe = true;
      } else {
        throw new TokenError(
          `${where} has no single public key object beside it; use the ` +
            'reference file "tufota key generate" or "key import" wrote',
        );
      }
    }
    const onToken = publicKeyFor(publicKey);
    if (
      expected &&
      (expected.scheme !== onToken.scheme ||
        publicIdentity(expected) !== publicIdentity(onToken))
    ) {
      throw new TokenError(
        `${where} is key ${onToken.keyID.slice(0, 8)} (${onToken.scheme}), ` +
          `not the expected key ${expected.keyID.slice(0, 8)} ` +
          `(${expected.scheme}); is this the right token?`,
      );
    }
    const signer = new Pkcs11Signer(
      session,
      handle,
      expected ?? onToken,
      publicKey,
      where,
    );
    if (probe) await signer.sign(PROBE);
    return signer;
  }

  /**
   * Signs on the token, then checks the signature. PKCS#11 calls are
   * synchronous here: a session runs one operation at a time, and a
   * synchronous call cannot interleave with another signature.
   */
  sign(data: Buffer): Promise<Buffer> {
    return new Promise((resolve) => resolve(this.#signNow(data)));
  }

  #signNow(data: Buffer): Buffer {
    const { lib, api, session } = this.#session;
    const mechanism =
      this.type === 'ed25519'
        ? { mechanism: CKM_EDDSA }
        : this.type === 'ecdsa-sha2-nistp256'
          ? { mechanism: lib.CKM_ECDSA }
          : {
              mechanism: lib.CKM_SHA256_RSA_PKCS_PSS,
              parameter: {
                type: lib.CK_PARAMS_RSA_PSS,
                hashAlg: lib.CKM_SHA256,
                mgf: lib.CKG_MGF1_SHA256,
                saltLen: 32,
              },
            };
    // CKM_ECDSA signs a digest the caller makes; the others hash inside.
    const input =
      this.type === 'ecdsa-sha2-nistp256'
        ? createHash('sha256').update(data).digest()
        : data;
    const raw = this.#session.call(`signing with ${this.where}`, () => {
      api.C_SignInit(session, mechanism, this.#handle);
      return api.C_Sign(session, input, Buffer.alloc(1024));
    });
    const sig = this.type === 'ecdsa-sha2-nistp256' ? ecdsaRawToDer(raw) : raw;
    if (!verifyWith(this.#publicKey, data, sig)) {
      throw new TokenError(
        `${this.where} made a signature that does not verify with key ` +
          `${this.key.keyID.slice(0, 8)}: the token holds another key under ` +
          'that name, or is faulty',
      );
    }
    return sig;
  }

  /** Ends the session; the module is finalized with its last session. */
  close(): void {
    this.#session.close();
  }
}

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

/**
 * The public key a URI names, read without logging in (tokens show public
 * objects to anyone). For `root edit --add-key` and `key show`.
 */
export function readTokenPublicKey(
  uri: Pkcs11Uri,
  options: TokenOptions = {},
): TokenKey {
  requireKeyName(uri);
  const session = TokenSession.open(uri, options);
  try {
    const handle = onlyOne(
      findObjects(session, session.lib.CKO_PUBLIC_KEY, uri),
      `public ${keyName(uri)} (visible without a PIN)`,
      session.description,
    );
    const type = keyTypeOfObject(session, handle);
    const key = publicKeyFor(publicKeyOfObject(session, handle, type));
    const found: Pkcs11Uri = { ...uri };
    delete found.pinValue;
    return { key, type, uri: found, token: session.description };
  } finally {
    session.close();
  }
}
