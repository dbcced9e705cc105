/**
 * The key files in one folder, indexed by key id. A key is unlocked only when
 * a role it signs for has to be signed, and then kept in memory for the life
 * of the keyring so one command asks for each passphrase once.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BadPassphraseError } from '../errors.js';
import type { SigningKey } from '../tuf/metadata.js';
import { InMemorySigner } from './keygen.js';
import { readKeyFile, unsealPrivateKey, type KeyFile } from './keyfile.js';
import type { PassphraseSource } from './passphrase.js';

export class Keyring {
  /** The folders read, in the order given. */
  readonly dirs: string[];
  readonly #files = new Map<string, KeyFile>();
  readonly #signers = new Map<string, SigningKey>();
  readonly #passphrases: PassphraseSource;

  private constructor(dirs: string[], passphrases: PassphraseSource) {
    this.dirs = dirs;
    this.#passphrases = passphrases;
  }

  /**
   * Reads every `*.json` key file in each folder (say, the online keys and
   * a mounted stick of offline keys). A missing folder adds nothing: a
   * server may hold only some keys, or none.
   */
  static async open(
    dirs: string | readonly string[],
    passphrases: PassphraseSource,
  ): Promise<Keyring> {
    const list = typeof dirs === 'string' ? [dirs] : [...dirs];
    const ring = new Keyring(list, passphrases);
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
        const file = await readKeyFile(join(dir, name));
        ring.#files.set(file.key.keyID, file);
      }
    }
    return ring;
  }

  has(keyid: string): boolean {
    return this.#files.has(keyid) || this.#signers.has(keyid);
  }

  /** Adds a signer that is already unlocked (a new key, a token). */
  addSigner(signer: SigningKey): void {
    this.#signers.set(signer.key.keyID, signer);
  }

  addFile(file: KeyFile): void {
    this.#files.set(file.key.keyID, file);
  }

  /** Signers for whichever of `keyids` this keyring holds. */
  async signersFor(keyids: readonly string[]): Promise<SigningKey[]> {
    const unique = [...new Set(keyids)];
    // scrypt runs on the libuv pool, so keys whose passphrase needs no
    // person unlock side by side; prompts go one at a time.
    const signers = this.#passphrases.interactive
      ? await unique.reduce<Promise<(SigningKey | undefined)[]>>(
          async (acc, keyid) => [...(await acc), await this.signer(keyid)],
          Promise.resolve([]),
        )
      : await Promise.all(unique.map((keyid) => this.signer(keyid)));
    return signers.filter((s): s is SigningKey => s !== undefined);
  }

  /** Unlocks every key this keyring can for `keyids`, ahead of signing. */
  async unlock(keyids: readonly string[]): Promise<number> {
    return (await this.signersFor(keyids)).length;
  }

  async signer(keyid: string): Promise<SigningKey | undefined> {
    const ready = this.#signers.get(keyid);
    if (ready) return ready;
    const file = this.#files.get(keyid);
    if (!file) return undefined;

    const label = `${file.label || 'key'} ${keyid.slice(0, 8)} (${file.path})`;
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      const passphrase = await this.#passphrases.forKey(label, attempt);
      if (passphrase === undefined) break;
      try {
        const signer = new InMemorySigner(await unsealPrivateKey(file, passphrase));
        this.#signers.set(keyid, signer);
        return signer;
      } catch (err) {
        if (!(err instanceof BadPassphraseError)) throw err;
        lastError = err;
      }
    }
    throw lastError instanceof Error
      ? lastError
      : new BadPassphraseError(`no passphrase opened ${label}`);
  }
}
