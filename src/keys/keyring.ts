/**
 * The key files in one folder, indexed by key id. A key is unlocked only when
 * a role it signs for has to be signed, and then kept in memory for the life
 * of the keyring so one command asks for each passphrase once. Reference
 * files (keyref.ts) in the same folders stand for keys on PKCS#11 tokens;
 * their sessions stay open until `close`.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadPassphraseError,
  BadPinError,
  TokenError,
} from '../errors.js';
import { logger } from '../log.js';
import type { SigningKey } from '../tuf/metadata.js';
import { InMemorySigner } from './keygen.js';
import {
  claimsToBeKeyFile,
  openKeyFile,
  parseKeyFile,
  readKeyText,
  type KeyFile,
} from './keyfile.js';
import { claimsToBeKeyRef, parseKeyRef, type KeyRef } from './keyref.js';
import type { PassphraseSource } from './passphrase.js';
import { Pkcs11Signer, type TokenOptions } from './pkcs11.js';

/**
 * Why a key the keyring holds did not open: no passphrase fitted, the
 * token refused its PIN, or the token is absent or holds another key.
 */
export type UnlockError = BadPassphraseError | BadPinError | TokenError;

function isUnlockError(err: unknown): err is UnlockError {
  return (
    err instanceof BadPassphraseError ||
    err instanceof BadPinError ||
    err instanceof TokenError
  );
}

/** A key the keyring holds but could not open. */
export interface UnlockFailure {
  keyid: string;
  /** Names the key and its file, as `signersFor` would have thrown it. */
  error: UnlockError;
}

export interface SignersResult {
  /** Signers for the keys that opened (and ones already unlocked). */
  signers: SigningKey[];
  /** Keys held here that no passphrase opened; empty when all opened. */
  failures: UnlockFailure[];
}

interface Attempt {
  keyid: string;
  signer?: SigningKey;
  error?: UnlockError;
}

const log = logger.child({ module: 'keys/keyring' });

export class Keyring {
  /** The folders read, in the order given. */
  readonly dirs: string[];
  readonly #files = new Map<string, KeyFile>();
  readonly #refs = new Map<string, KeyRef>();
  readonly #signers = new Map<string, SigningKey>();
  readonly #tokens: Pkcs11Signer[] = [];
  readonly #failed = new Map<string, UnlockError>();
  readonly #passphrases: PassphraseSource;
  readonly #tokenOptions: TokenOptions;

  private constructor(
    dirs: string[],
    passphrases: PassphraseSource,
    tokens: TokenOptions,
  ) {
    this.dirs = dirs;
    this.#passphrases = passphrases;
    this.#tokenOptions = { ...tokens, passphrases };
  }

  /**
   * Reads every `*.json` key file in each folder (say, the online keys and
   * a mounted stick of offline keys). A missing folder adds nothing: a
   * server may hold only some keys, or none. JSON files that are neither
   * key files nor reference files (no `"tufota_key"` or `"tufota_key_ref"`
   * field) are skipped; one that has the field but is damaged fails with a
   * BadKeyFileError naming it. `tokens` says where token keys find their
   * module and PIN (the environment; the passphrase source prompts).
   */
  static async open(
    dirs: string | readonly string[],
    passphrases: PassphraseSource,
    tokens: TokenOptions = {},
  ): Promise<Keyring> {
    const list = typeof dirs === 'string' ? [dirs] : [...dirs];
    const ring = new Keyring(list, passphrases, tokens);
    for (const dir of list) {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const name of names.sort()) {
        if (!name.endsWith('.json')) continue;
        const path = join(dir, name);
        // A folder (or pipe) that happens to end in .json is no key file.
        const info = await stat(path).catch(() => undefined);
        if (info && !info.isFile()) continue;
        const raw = await readKeyText(path);
        // Other JSON (a README's data, a device list) may share the folder;
        // a file that says it is a key file must be a good one.
        if (claimsToBeKeyRef(raw)) {
          const ref = parseKeyRef(raw, path);
          ring.#refs.set(ref.key.keyID, ref);
          continue;
        }
        if (!claimsToBeKeyFile(raw)) {
          log.debug({ path }, 'skipping a JSON file that is not a key file');
          continue;
        }
        const file = parseKeyFile(raw, path);
        ring.#files.set(file.key.keyID, file);
      }
    }
    return ring;
  }

  has(keyid: string): boolean {
    return (
      this.#files.has(keyid) ||
      this.#refs.has(keyid) ||
      this.#signers.has(keyid)
    );
  }

  /** Adds a signer that is already unlocked (a new key, a token). */
  addSigner(signer: SigningKey): void {
    this.#signers.set(signer.key.keyID, signer);
  }

  addFile(file: KeyFile): void {
    this.#files.set(file.key.keyID, file);
  }

  /** Adds a token key by its reference file. */
  addRef(ref: KeyRef): void {
    this.#refs.set(ref.key.keyID, ref);
  }

  /**
   * Signers for whichever of `keyids` this keyring holds. The first key
   * that no passphrase opens fails the whole call; see `trySignersFor` to
   * go on without it.
   */
  async signersFor(keyids: readonly string[]): Promise<SigningKey[]> {
    const { signers, failures } = await this.trySignersFor(keyids);
    if (failures.length > 0) throw failures[0].error;
    return signers;
  }

  /**
   * Signers for whichever of `keyids` this keyring holds and can open.
   * A key that no passphrase opens, whose token refuses its PIN, or whose
   * token is absent or holds another key does not stop the others: it is
   * listed in `failures` (with its error), so a caller can sign with the
   * rest and still reach a threshold, or report every key that would not
   * open. Any other error (a scrypt failure, a key file whose private half
   * does not match, no terminal to ask on) is thrown. Signers come in the
   * order of `keyids`.
   */
  async trySignersFor(keyids: readonly string[]): Promise<SignersResult> {
    const unique = [...new Set(keyids)];
    const attempt = async (keyid: string): Promise<Attempt> => {
      try {
        return { keyid, signer: await this.signer(keyid) };
      } catch (err) {
        if (isUnlockError(err)) return { keyid, error: err };
        throw err;
      }
    };
    // scrypt runs on the libuv pool, so keys whose passphrase needs no
    // person unlock side by side; prompts go one at a time.
    let attempts: Attempt[];
    if (this.#passphrases.interactive) {
      attempts = [];
      for (const keyid of unique) attempts.push(await attempt(keyid));
    } else {
      const settled = await Promise.allSettled(unique.map(attempt));
      const thrown = settled.find((r) => r.status === 'rejected');
      if (thrown) throw thrown.reason;
      attempts = settled.map(
        (r) => (r as PromiseFulfilledResult<Attempt>).value,
      );
    }
    const signers: SigningKey[] = [];
    const failures: UnlockFailure[] = [];
    for (const a of attempts) {
      if (a.error) failures.push({ keyid: a.keyid, error: a.error });
      else if (a.signer) signers.push(a.signer);
    }
    return { signers, failures };
  }

  async signer(keyid: string): Promise<SigningKey | undefined> {
    const ready = this.#signers.get(keyid);
    if (ready) return ready;
    // A key that no passphrase opened is not tried (or asked for) again.
    const failed = this.#failed.get(keyid);
    if (failed) throw failed;
    // A key both on a token and in a file (one just imported) signs on
    // the token: that is where it is meant to live now.
    const ref = this.#refs.get(keyid);
    const file = this.#files.get(keyid);
    if (!ref && !file) return undefined;

    let signer: SigningKey;
    try {
      signer = ref
        ? await this.#openToken(ref)
        : await this.#openFile(file as KeyFile);
    } catch (err) {
      if (isUnlockError(err)) {
        log.info(
          { keyid, from: ref?.path ?? file?.path, code: err.code },
          'key did not open',
        );
        this.#failed.set(keyid, err);
      }
      throw err;
    }
    this.#signers.set(keyid, signer);
    return signer;
  }

  async #openToken(ref: KeyRef): Promise<SigningKey> {
    const token = await Pkcs11Signer.open(ref.uri, {
      ...this.#tokenOptions,
      expected: ref.key,
    });
    this.#tokens.push(token);
    return token;
  }

  async #openFile(file: KeyFile): Promise<SigningKey> {
    const keyid = file.key.keyID;
    const label = `${file.label || 'key'} ${keyid.slice(0, 8)} (${file.path})`;
    return new InMemorySigner(await openKeyFile(file, this.#passphrases, label));
  }

  /** Ends the sessions of token keys; signers from them stop working. */
  close(): Promise<void> {
    for (const token of this.#tokens.splice(0)) {
      token.close();
      this.#signers.delete(token.key.keyID);
    }
    return Promise.resolve();
  }
}
