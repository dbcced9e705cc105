import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadInputError } from '../../src/errors.js';
import { writeKeyFile } from '../../src/keys/keyfile.js';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import {
  FixedPassphrase,
  MIN_NEW_PASSPHRASE,
  passphraseFromFile,
  passphraseSource,
} from '../../src/keys/passphrase.js';
import { CLI_PASSPHRASE } from '../helpers/cli.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';

const TOO_SHORT = /the passphrase for new keys.* is too short: use at least 8 characters/;

describe('passphrases for new keys', () => {
  after(cleanupTempDirs);

  it('need at least 8 characters from a fixed source', async () => {
    await assert.rejects(
      new FixedPassphrase('1234567').forNewKeys(),
      (err: unknown) => err instanceof BadInputError && TOO_SHORT.test(err.message),
    );
    assert.equal(await new FixedPassphrase('12345678').forNewKeys(), '12345678');
  });

  it('count characters, not UTF-16 units', async () => {
    // Four emoji are eight UTF-16 code units but four characters.
    await assert.rejects(
      new FixedPassphrase('🔑🔑🔑🔑').forNewKeys(),
      TOO_SHORT,
    );
  });

  it('need at least 8 characters from TUFOTA_PASSPHRASE, naming it', async () => {
    await assert.rejects(
      passphraseSource({ env: { TUFOTA_PASSPHRASE: 'short' } }).forNewKeys(),
      /new keys \(from TUFOTA_PASSPHRASE\) is too short/,
    );
  });

  it('need at least 8 characters on the first line of a file, naming it', async () => {
    const file = join(await tempDir('tufota-pass-'), 'pass.txt');
    await writeFile(file, 'short\na much longer second line\n');
    await assert.rejects(
      passphraseFromFile(file).forNewKeys(),
      new RegExp(`from the first line of ${file}\\) is too short`),
    );
  });

  it('are not needed to open existing keys: any passphrase is tried', async () => {
    const source = passphraseSource({ env: { TUFOTA_PASSPHRASE: 'short' } });
    assert.equal(await source.forKey('a key', 0), 'short');
    assert.equal(await source.forKey('a key', 1), undefined);
  });

  it('are needed by writeKeyFile itself', async () => {
    const path = join(await tempDir('tufota-pass-'), 'k.json');
    await assert.rejects(
      writeKeyFile(path, 'k', generatePrivateKey('ed25519'), 'short', CHEAP_SCRYPT),
      TOO_SHORT,
    );
  });

  it('are met by the passphrases the tests and the demo use', () => {
    for (const p of [TEST_PASSPHRASE, CLI_PASSPHRASE]) {
      assert.ok([...p].length >= MIN_NEW_PASSPHRASE, p);
    }
    // demo/journey.ts seals with 18 random bytes in base64url.
    assert.equal(Buffer.alloc(18).toString('base64url').length, 24);
  });
});
