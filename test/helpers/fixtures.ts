/**
 * Real repositories in temporary folders for tests. Keys are sealed with a
 * cheap scrypt setting so a test suite can make dozens of repositories; the
 * format and code path are the production ones.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring } from '../../src/keys/keyring.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import {
  initRepository,
  type InitOptions,
  type InitResult,
} from '../../src/repository/init.js';
import { Repository } from '../../src/repository/repository.js';

export const TEST_PASSPHRASE = 'correct horse battery staple';
export const CHEAP_SCRYPT = { N: 2 ** 10, r: 8, p: 1 };

const made: string[] = [];

/** A new empty folder, removed by `cleanupTempDirs`. */
export async function tempDir(prefix = 'tufota-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function cleanupTempDirs(): Promise<void> {
  while (made.length > 0) {
    await rm(made.pop() as string, { recursive: true, force: true });
  }
}

export interface TestRepo {
  base: string;
  dir: string;
  keysDir: string;
  init: InitResult;
  /** Opens the repository as its writer, with every key unlockable. */
  open(): Promise<Repository>;
}

export async function createTestRepo(
  options: Partial<InitOptions> = {},
): Promise<TestRepo> {
  const base = await tempDir();
  const dir = join(base, 'repo');
  const keysDir = join(base, 'keys');
  const passphrases = new FixedPassphrase(TEST_PASSPHRASE);
  const init = await initRepository({
    dir,
    keysDir,
    passphrases,
    scrypt: CHEAP_SCRYPT,
    ...options,
  });
  return {
    base,
    dir,
    keysDir,
    init,
    open: async () =>
      Repository.open(dir, {
        lock: true,
        keyring: await Keyring.open(keysDir, passphrases),
      }),
  };
}
