/**
 * Keys made during a rotation. They are made in memory first, so the edit
 * that adds them can be checked with them in it, and written to key files
 * only once it passes: a refused edit leaves no key file behind.
 */
import { mkdir } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { Key } from '../tuf/models.js';
import { generatePrivateKey, publicKeyFor, type KeyType } from './keygen.js';
import { DEFAULT_SCRYPT, writeKeyFile } from './keyfile.js';

export interface NewKey {
  role: string;
  key: Key;
  readonly privateKey: KeyObject;
}

export function makeKeys(roles: readonly string[], type: KeyType): NewKey[] {
  return roles.map((role) => {
    const privateKey = generatePrivateKey(type);
    return { role, key: publicKeyFor(privateKey), privateKey };
  });
}

/**
 * Seals each key under the passphrase for its role and writes it to `dir`
 * as `ROLE-KEYID8.json`. Files are created exclusively, so an existing key
 * file is never overwritten. Returns the paths, in order.
 */
export async function writeNewKeys(
  dir: string,
  keys: readonly NewKey[],
  passphrase: (role: string) => string,
  scrypt = DEFAULT_SCRYPT,
): Promise<string[]> {
  if (keys.length > 0) await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = [];
  for (const { role, key, privateKey } of keys) {
    const path = join(dir, `${role}-${key.keyID.slice(0, 8)}.json`);
    await writeKeyFile(path, `${role} key`, privateKey, passphrase(role), scrypt);
    paths.push(path);
  }
  return paths;
}
