/**
 * Keys on PKCS#11 tokens (a YubiKey, an HSM, SoftHSM2): a signer whose
 * private key never leaves the token.
 *
 * A token key gets the same TUF public key and key id as a key file of the
 * same key would (keygen.ts `publicKeyFor`), and signs the same bytes:
 * ed25519 through CKM_EDDSA, ecdsa-sha2-nistp256 through CKM_ECDSA over the
 * SHA-256 digest (the token's r||s turned into DER, as securesystemslib
 * writes), rsassa-pss-sha256 through CKM_SHA256_RSA_PKCS_PSS with MGF1-SHA256
 * and a 32-byte salt. Every signature a token returns is verified against
 * the expected public key before it is used, so a swapped or faulty token
 * cannot put a bad signature into metadata. Generating and importing keys
 * is in pkcs11-place.ts.
 */
import type { Key } from '@tufjs/models';
import { createHash, type KeyObject } from 'node:crypto';
import { TokenError } from '../errors.js';
import { publicIdentity, type SigningKey } from '../tuf/metadata.js';
import {
  keyObjectOf,
  keyTypeOf,
  publicKeyFor,
  verifyWith,
  type KeyType,
} from './keygen.js';
import {
  CKM_EDDSA,
  PROBE,
  ecdsaRawToDer,
  findObjects,
  keyName,
  keyTypeOfObject,
  onlyOne,
  publicKeyOfObject,
  requireKeyName,
  type Handle,
  type TokenKey,
} from './pkcs11-objects.js';
import { TokenSession, type TokenOptions } from './pkcs11-session.js';
import type { Pkcs11Uri } from './pkcs11-uri.js';

export type { TokenKey } from './pkcs11-objects.js';
export type { TokenOptions } from './pkcs11-session.js';

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
