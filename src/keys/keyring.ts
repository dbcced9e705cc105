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
  readonly dir: string;
  readonly #files = new Map<string, KeyFile>();
  readonly #signers = new Map<string, SigningKey>();
  readonly #passphrases: PassphraseSource;

  private constructor(dir: string, passphrases: PassphraseSource) {
    this.dir = dir;
    this.#passphrases = passphrases;
  }

  /**
   * Reads every `*.json` key file in `dir`. A missing folder is an empty
   * keyring: an online server may hold only some keys, or none.
   */
  static async open(dir: string, passphrases: PassphraseSource): Promise<Keyring> {
    const ring = new Keyring(dir, passphrases);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ring;
      throw err;
    }
    for (const name of names.sort()) {
      if (!name.endsWith('.json')) continue;
      const file = await readKeyFile(join(dir, name));
      ring.#files.set(file.key.keyID, file);
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
    const out: SigningKey[] = [];
    for (const keyid of new Set(keyids)) {
      const signer = await this.signer(keyid);
      if (signer) out.push(signer);
    }
    return out;
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
