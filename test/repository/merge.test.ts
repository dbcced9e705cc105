/**
 * `signing merge` when copies disagree on one key's signature: a damaged
 * or tampered copy must not push out a good signature, and a key that
 * signed twice with a randomized scheme (ECDSA) is no conflict at all.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import { readKeyFile, writeKeyFile } from '../../src/keys/keyfile.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import { Repository } from '../../src/repository/repository.js';
import {
  editRoot,
  mergeSignatures,
  rootSigningStatus,
  signFile,
  stagedRootPath,
} from '../../src/repository/signing.js';
import { parseMetadata, MetadataKind } from '../../src/tuf/metadata.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';

const passphrases = new FixedPassphrase(TEST_PASSPHRASE);

/** A staged root that adds one new ECDSA root key; returns its key file. */
async function stageWithNewKey(t: TestRepo): Promise<{
  staged: string;
  keyPath: string;
  keyid: string;
}> {
  const keyPath = join(t.base, 'new-root.json');
  await writeKeyFile(
    keyPath,
    'new root',
    generatePrivateKey('ecdsa-sha2-nistp256'),
    TEST_PASSPHRASE,
    CHEAP_SCRYPT,
  );
  const key = (await readKeyFile(keyPath)).key;
  const repo = await Repository.open(t.dir, { lock: true });
  try {
    await editRoot(repo, { addKeys: [{ role: 'root', key }] });
    return { staged: stagedRootPath(repo.layout), keyPath, keyid: key.keyID };
  } finally {
    await repo.close();
  }
}

async function signedCopy(
  t: TestRepo,
  staged: string,
  name: string,
  keyPath: string,
): Promise<string> {
  const copy = join(t.base, `${name}.json`);
  await copyFile(staged, copy);
  await signFile(copy, await readKeyFile(keyPath), passphrases);
  return copy;
}

/** Flips one hex digit of `keyid`'s signature in the file at `path`. */
async function damage(path: string, keyid: string): Promise<void> {
  const json = JSON.parse(await readFile(path, 'utf8')) as {
    signatures: { keyid: string; sig: string }[];
  };
  const entry = json.signatures.find((s) => s.keyid === keyid);
  assert.ok(entry);
  entry.sig = (entry.sig[0] === '0' ? '1' : '0') + entry.sig.slice(1);
  await writeFile(path, JSON.stringify(json));
}

describe('signing merge with copies that disagree', () => {
  after(cleanupTempDirs);

  it('keeps either of two valid ECDSA signatures by one key', async () => {
    const t = await createTestRepo();
    const { staged, keyPath, keyid } = await stageWithNewKey(t);
    const a = await signedCopy(t, staged, 'a', keyPath);
    const b = await signedCopy(t, staged, 'b', keyPath);
    const sig = async (p: string) =>
      (
        JSON.parse(await readFile(p, 'utf8')) as {
          signatures: { sig: string }[];
        }
      ).signatures[0].sig;
    assert.notEqual(await sig(a), await sig(b), 'ECDSA signs differently');
    const { md, undecided } = await mergeSignatures([staged, a, b]);
    assert.deepEqual(undecided, []);
    assert.deepEqual(Object.keys(md.signatures), [keyid]);
  });

  for (const order of ['damaged first', 'damaged last']) {
    it(`keeps the valid signature, ${order}`, async () => {
      const t = await createTestRepo();
      const { staged, keyPath, keyid } = await stageWithNewKey(t);
      const good = await signedCopy(t, staged, 'good', keyPath);
      const bad = await signedCopy(t, staged, 'bad', keyPath);
      await damage(bad, keyid);
      const copies = order === 'damaged first' ? [bad, good] : [good, bad];
      await mergeSignatures([staged, ...copies]);
      const repo = await Repository.open(t.dir);
      const merged = parseMetadata(
        MetadataKind.Root,
        await readFile(staged),
        staged,
      );
      const status = rootSigningStatus(repo.root.signed, merged);
      assert.deepEqual(status.own.signed, [keyid]);
    });
  }

  it('refuses when neither of two signatures verifies', async () => {
    const t = await createTestRepo();
    const { staged, keyPath, keyid } = await stageWithNewKey(t);
    const a = await signedCopy(t, staged, 'a', keyPath);
    const b = await signedCopy(t, staged, 'b', keyPath);
    await damage(a, keyid);
    await damage(b, keyid);
    await assert.rejects(
      mergeSignatures([staged, a, b]),
      new RegExp(`different signatures by key ${keyid}, and neither verifies`),
    );
  });

  it('settles a key only the published root lists with knownKeys', async () => {
    const t = await createTestRepo();
    // root-1 leaves in the staged root, but as a key of root v1 it must
    // still sign it.
    const repo = await Repository.open(t.dir, { lock: true });
    const rootIds = repo.root.signed.roles.root.keyIDs;
    const gone = rootIds[0];
    await editRoot(repo, { removeKeys: [{ role: 'root', keyid: gone }] });
    await repo.close();
    const staged = stagedRootPath(repo.layout);
    const keyPath = join(
      t.keysDir,
      (await readdir(t.keysDir))
        .filter((n) => n.startsWith('root-'))
        .find((n) => n.endsWith(`${gone.slice(0, 8)}.json`)) as string,
    );
    const good = await signedCopy(t, staged, 'good', keyPath);
    const bad = await signedCopy(t, staged, 'bad', keyPath);
    await damage(bad, gone);

    const copy = join(t.base, 'no-repo-staged.json');
    await copyFile(staged, copy);
    const blind = await mergeSignatures([copy, bad, good]);
    assert.deepEqual(blind.undecided, [gone], 'nothing here lists the key');

    const known = Object.values(repo.root.signed.keys);
    const settled = await mergeSignatures([staged, bad, good], known);
    assert.deepEqual(settled.undecided, []);
    const merged = parseMetadata(
      MetadataKind.Root,
      await readFile(staged),
      staged,
    );
    assert.deepEqual(
      rootSigningStatus(repo.root.signed, merged).previous.signed,
      [gone],
    );
  });
});
