import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadKeyFileError,
  BadPassphraseError,
  NoPassphraseError,
} from '../../src/errors.js';
import { writeKeyFile, type KeyFile } from '../../src/keys/keyfile.js';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import { Keyring } from '../../src/keys/keyring.js';
import {
  FixedPassphrase,
  type PassphraseSource,
} from '../../src/keys/passphrase.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';

const OTHER_PASSPHRASE = 'another holder passphrase';

async function newKey(dir: string, name: string, passphrase = TEST_PASSPHRASE): Promise<KeyFile> {
  return writeKeyFile(
    join(dir, name),
    name,
    generatePrivateKey('ed25519'),
    passphrase,
    CHEAP_SCRYPT,
  );
}

describe('the keyring', function () {
  this.timeout(30_000);
  after(cleanupTempDirs);

  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('tufota-keyring-');
  });

  describe('reading a key folder', () => {
    it('skips JSON files that are not key files', async () => {
      const key = await newKey(dir, 'a.json');
      await writeFile(join(dir, 'devices.json'), '{"devices":["rpi4"]}');
      await writeFile(join(dir, 'list.json'), '[1, 2]');
      await writeFile(join(dir, 'notes.json'), 'not json at all');
      await writeFile(join(dir, 'empty.json'), '');
      await mkdir(join(dir, 'folder.json'));
      const ring = await Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE));
      assert.ok(ring.has(key.key.keyID));
      assert.equal((await ring.signersFor([key.key.keyID])).length, 1);
    });

    it('fails on a file that says it is a key file but is damaged, naming it', async () => {
      await newKey(dir, 'a.json');
      const bad = join(dir, 'b.json');
      await writeFile(bad, '{"tufota_key": 1, "label": "half"}');
      await assert.rejects(
        Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE)),
        (err: unknown) =>
          err instanceof BadKeyFileError && err.message.includes(bad),
      );
    });

    it('fails on a key file cut short, naming it', async () => {
      const key = await newKey(dir, 'a.json');
      const text = await readFile(key.path, 'utf8');
      await writeFile(key.path, text.slice(0, text.length >> 1));
      await assert.rejects(
        Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE)),
        (err: unknown) =>
          err instanceof BadKeyFileError &&
          err.message === `key file ${key.path} is not valid JSON`,
      );
    });

    it('fails on a key file of an unknown version', async () => {
      const bad = join(dir, 'b.json');
      await writeFile(bad, '{"tufota_key": 2}');
      await assert.rejects(
        Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE)),
        new RegExp(`${bad} is not a tufota key file \\(version 1\\)`),
      );
    });
  });

  describe('trySignersFor', () => {
    it('gives the keys that open and lists the ones that do not', async () => {
      const a = await newKey(dir, 'a.json');
      const b = await newKey(dir, 'b.json', OTHER_PASSPHRASE);
      const c = await newKey(dir, 'c.json');
      const ring = await Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE));
      const ids = [a, b, c].map((k) => k.key.keyID);
      const { signers, failures } = await ring.trySignersFor([
        ...ids,
        'f'.repeat(64), // not held: neither a signer nor a failure
      ]);
      assert.deepEqual(
        signers.map((s) => s.key.keyID),
        [a.key.keyID, c.key.keyID],
      );
      assert.equal(failures.length, 1);
      assert.equal(failures[0].keyid, b.key.keyID);
      assert.ok(failures[0].error instanceof BadPassphraseError);
      assert.match(
        failures[0].error.message,
        new RegExp(`wrong passphrase for key ${b.key.keyID.slice(0, 8)} \\(${b.path}\\)`),
      );
    });

    it('keeps signersFor throwing on a key that will not open', async () => {
      const a = await newKey(dir, 'a.json');
      const b = await newKey(dir, 'b.json', OTHER_PASSPHRASE);
      const ring = await Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE));
      await assert.rejects(
        ring.signersFor([a.key.keyID, b.key.keyID]),
        BadPassphraseError,
      );
      // With both passphrases at hand both open.
      const both = await Keyring.open(
        dir,
        new FixedPassphrase(TEST_PASSPHRASE, OTHER_PASSPHRASE),
      );
      const result = await both.trySignersFor([a.key.keyID, b.key.keyID]);
      assert.equal(result.signers.length, 2);
      assert.deepEqual(result.failures, []);
    });

    it('throws errors other than a wrong passphrase', async () => {
      const a = await newKey(dir, 'a.json');
      const b = await newKey(dir, 'b.json');
      // A source that cannot ask for b's passphrase (no terminal, say).
      const fixed = new FixedPassphrase(TEST_PASSPHRASE);
      const source: PassphraseSource = {
        interactive: false,
        forNewKeys: () => fixed.forNewKeys(),
        forKey: (label, attempt) =>
          label.includes(b.path)
            ? Promise.reject(new NoPassphraseError('no terminal'))
            : fixed.forKey(label, attempt),
      };
      const ring = await Keyring.open(dir, source);
      await assert.rejects(
        ring.trySignersFor([a.key.keyID, b.key.keyID]),
        NoPassphraseError,
      );
    });

    it('refuses at once a key file asking for scrypt settings out of bounds', async () => {
      const b = await newKey(dir, 'b.json');
      const doc = JSON.parse(await readFile(b.path, 'utf8')) as {
        private: { kdf: Record<string, unknown> };
      };
      doc.private.kdf.N = 2 ** 24;
      await writeFile(b.path, JSON.stringify(doc));
      await assert.rejects(
        Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE)),
        (err: unknown) =>
          err instanceof BadKeyFileError &&
          err.message.startsWith(`key file ${b.path}: scrypt N 16777216`),
      );
    });
  });
});
