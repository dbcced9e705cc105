import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadInputError,
  BadKeyFileError,
  BadPassphraseError,
} from '../../src/errors.js';
import {
  readKeyFile,
  unsealPrivateKey,
  writeKeyFile,
  type KeyFile,
} from '../../src/keys/keyfile.js';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';

type KeyDoc = {
  private: {
    kdf: Record<string, unknown>;
    cipher: Record<string, unknown>;
    ciphertext: unknown;
  };
};

describe('key files', function () {
  this.timeout(30_000);
  after(cleanupTempDirs);

  let path: string;
  beforeEach(async () => {
    path = join(await tempDir('tufota-keyfile-'), 'k.json');
    await writeKeyFile(
      path,
      'test key',
      generatePrivateKey('ed25519'),
      TEST_PASSPHRASE,
      CHEAP_SCRYPT,
    );
  });

  async function edit(change: (doc: KeyDoc) => void): Promise<void> {
    const doc = JSON.parse(await readFile(path, 'utf8')) as KeyDoc;
    change(doc);
    await writeFile(path, JSON.stringify(doc));
  }

  it('open with the passphrase that sealed them', async () => {
    const file = await readKeyFile(path);
    await unsealPrivateKey(file, TEST_PASSPHRASE);
    await assert.rejects(
      unsealPrivateKey(file, 'not the passphrase'),
      BadPassphraseError,
    );
  });

  describe('refuse scrypt settings a hostile file could ask for', () => {
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['N above 2^20', { N: 2 ** 30 }, /scrypt N 1073741824 is not a power of two from 2\^10 to 2\^20/],
      ['N below 2^10', { N: 2 ** 9 }, /scrypt N 512 is not a power of two/],
      ['N not a power of two', { N: 3000 }, /scrypt N 3000 is not a power of two/],
      ['N as a string', { N: '32768' }, /scrypt N 32768 is not a power of two/],
      ['r of 0', { r: 0 }, /scrypt r 0 is not from 1 to 32/],
      ['r of 64', { r: 64 }, /scrypt r 64 is not from 1 to 32/],
      ['r fractional', { r: 1.5 }, /scrypt r 1\.5 is not from 1 to 32/],
      ['p of 17', { p: 17 }, /scrypt p 17 is not from 1 to 16/],
      ['p missing', { p: undefined }, /scrypt p undefined is not from 1 to 16/],
    ];
    for (const [name, change, message] of bad) {
      it(name, async () => {
        await edit((doc) => Object.assign(doc.private.kdf, change));
        await assert.rejects(
          readKeyFile(path),
          (err: unknown) =>
            err instanceof BadKeyFileError &&
            err.message.startsWith(`key file ${path}: `) &&
            message.test(err.message),
        );
      });
    }
  });

  it('accept the limits themselves', async () => {
    for (const params of [
      { N: 2 ** 10, r: 1, p: 1 },
      { N: 2 ** 10, r: 32, p: 16 },
    ]) {
      const other = `${path}.${params.r}.json`;
      await writeKeyFile(
        other,
        'edge',
        generatePrivateKey('ed25519'),
        TEST_PASSPHRASE,
        params,
      );
      await unsealPrivateKey(await readKeyFile(other), TEST_PASSPHRASE);
    }
  });

  it('refuse to seal with settings they would not open', async () => {
    await assert.rejects(
      writeKeyFile(
        `${path}.new`,
        'x',
        generatePrivateKey('ed25519'),
        TEST_PASSPHRASE,
        { N: 2 ** 21, r: 8, p: 1 },
      ),
      BadInputError,
    );
  });

  it('refuse a malformed iv or tag', async () => {
    await edit((doc) => {
      doc.private.cipher.iv = 'AAAA';
    });
    await assert.rejects(readKeyFile(path), /malformed salt, iv, tag/);
  });

  it('refuse N too large for r, which scrypt itself would refuse', async () => {
    await edit((doc) => Object.assign(doc.private.kdf, { N: 2 ** 17, r: 1 }));
    await assert.rejects(
      readKeyFile(path),
      /scrypt N 131072 is not below 2\^\(16 r\) for r 1/,
    );
  });

  it('report a scrypt failure apart from a wrong passphrase', async () => {
    // No setting within the limits makes scrypt fail on a healthy machine
    // (it fails when memory runs out); a salt that is not a string does.
    const file = await readKeyFile(path);
    const broken: KeyFile = {
      ...file,
      private: {
        ...file.private,
        kdf: { ...file.private.kdf, salt: 42 as unknown as string },
      },
    };
    await assert.rejects(
      unsealPrivateKey(broken, TEST_PASSPHRASE),
      (err: unknown) =>
        err instanceof BadKeyFileError &&
        err.message.startsWith(`key file ${path}: scrypt failed (`) &&
        err.message.endsWith('the passphrase was not tried'),
    );
  });
});
