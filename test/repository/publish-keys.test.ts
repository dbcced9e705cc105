import assert from 'node:assert/strict';
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BadPassphraseError } from '../../src/errors.js';
import {
  readKeyFile,
  unsealPrivateKey,
  writeKeyFile,
} from '../../src/keys/keyfile.js';
import { publish } from '../../src/repository/publish.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';

/** Seals one key file of `role` again under another passphrase. */
async function resealOne(t: TestRepo, prefix: string): Promise<string> {
  const name = (await readdir(t.keysDir)).find((n) => n.startsWith(prefix));
  assert.ok(name, `a ${prefix} key file`);
  const path = join(t.keysDir, name);
  const file = await readKeyFile(path);
  const privateKey = await unsealPrivateKey(file, TEST_PASSPHRASE);
  await unlink(path);
  await writeKeyFile(
    path,
    file.label,
    privateKey,
    'another holder',
    CHEAP_SCRYPT,
  );
  return file.key.keyID;
}

describe('publish', () => {
  after(cleanupTempDirs);

  describe('when one key of a role will not open', () => {
    it('signs with the others while they reach the threshold', async () => {
      const t = await createTestRepo(); // targets: 2 keys, threshold 1
      const unopened = await resealOne(t, 'targets-2-');
      const repo = await t.open();
      try {
        const result = await publish(repo, { resign: ['targets'] });
        assert.equal(result.versions.targets, 2);
        const md = await repo.publishedTargets('targets');
        assert.deepEqual(Object.keys(md.signatures).length, 1);
        assert.equal(md.signatures[unopened], undefined);
      } finally {
        await repo.close();
      }
    });

    it('names the key that would not open when the threshold fails', async () => {
      const t = await createTestRepo({ thresholds: { targets: 2 } });
      const unopened = await resealOne(t, 'targets-1-');
      const repo = await t.open();
      try {
        await assert.rejects(
          publish(repo, { resign: ['targets'] }),
          (err: unknown) =>
            err instanceof BadPassphraseError &&
            err.message.includes(unopened.slice(0, 8)),
        );
      } finally {
        await repo.close();
      }
    });
  });
});
