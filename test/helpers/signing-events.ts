/**
 * Signing events as the tests play them: key files by name, holders who
 * each sign a copy of a staged file with only that file and their key file
 * (as `tufota sign` does on their own machines), and a server that holds
 * only the online keys.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import { readKeyFile, writeKeyFile } from '../../src/keys/keyfile.js';
import { Keyring } from '../../src/keys/keyring.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import { mergeSignatures, signFile } from '../../src/repository/signing.js';
import type { Key } from '../../src/tuf/models.js';
import { CHEAP_SCRYPT, TEST_PASSPHRASE, type TestRepo } from './fixtures.js';

export const passphrases = new FixedPassphrase(TEST_PASSPHRASE);

/**
 * Key files by name: `root-1`, `targets-2`, `releases-1`.. as init made
 * them, and `new-NAME`, made on first use in a folder of their own.
 */
export class KeyBox {
  readonly extra: string;

  constructor(readonly t: TestRepo) {
    this.extra = join(t.base, 'new-keys');
  }

  async path(name: string): Promise<string> {
    if (name.startsWith('new-')) {
      await mkdir(this.extra, { recursive: true });
      const path = join(this.extra, `${name}.json`);
      if (!(await readdir(this.extra)).includes(`${name}.json`)) {
        await writeKeyFile(
          path,
          name,
          generatePrivateKey('ed25519'),
          TEST_PASSPHRASE,
          CHEAP_SCRYPT,
        );
      }
      return path;
    }
    const file = (await readdir(this.t.keysDir)).find((n) =>
      n.startsWith(`${name}-`),
    );
    assert.ok(file, `key file ${name}`);
    return join(this.t.keysDir, file);
  }

  async key(name: string): Promise<Key> {
    return (await readKeyFile(await this.path(name))).key;
  }

  async id(name: string): Promise<string> {
    return (await this.key(name)).keyID;
  }
}

/**
 * Each named holder signs a copy of `staged`; the copies come back and are
 * merged into it.
 */
export async function collectSignatures(
  keys: KeyBox,
  staged: string,
  signers: readonly string[],
): Promise<void> {
  const copies: string[] = [];
  for (const [i, signer] of signers.entries()) {
    const copy = join(keys.t.base, `${basename(staged, '.json')}-${i}.json`);
    await copyFile(staged, copy);
    await signFile(
      copy,
      await readKeyFile(await keys.path(signer)),
      passphrases,
    );
    copies.push(copy);
  }
  if (copies.length > 0) await mergeSignatures([staged, ...copies]);
}

/**
 * The server's keyring: the online keys init made (releases, rollouts,
 * snapshot, timestamp) and the named `extra` keys the server was given.
 */
export async function serverKeyring(
  keys: KeyBox,
  extra: readonly string[] = [],
): Promise<Keyring> {
  const { t } = keys;
  const dir = join(t.base, 'server-keys');
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(t.keysDir)) {
    if (/^(releases|rollouts|snapshot|timestamp)-/.test(name)) {
      await copyFile(join(t.keysDir, name), join(dir, name));
    }
  }
  for (const name of extra) {
    await copyFile(await keys.path(name), join(dir, `${name}.json`));
  }
  return Keyring.open(dir, passphrases);
}
