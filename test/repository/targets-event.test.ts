/**
 * Targets signing events: the offline targets keys sign a staged targets
 * role that rotates the keys of a role it delegates to; publish takes it as
 * signed and re-signs what the new keys now own (for releases, every hashed
 * bin), and the real tuf-js client, holding 1.root.json, follows.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnsignedMetadataError } from '../../src/errors.js';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import { readKeyFile, writeKeyFile } from '../../src/keys/keyfile.js';
import { Keyring } from '../../src/keys/keyring.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import { mergeSignatures, signFile } from '../../src/repository/signing.js';
import {
  editTargets,
  readStagedTargets,
  stagedTargetsPath,
  type TargetsEdit,
} from '../../src/repository/targets-event.js';
import { newClient } from '../helpers/client.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';

const passphrases = new FixedPassphrase(TEST_PASSPHRASE);

async function keyFile(t: TestRepo, prefix: string): Promise<string> {
  const name = (await readdir(t.keysDir)).find((n) => n.startsWith(prefix));
  assert.ok(name, `key file ${prefix}`);
  return join(t.keysDir, name);
}

/** The online keys, plus `extra` key files, as on the server. */
async function serverKeyring(t: TestRepo, extra: string[] = []) {
  const dir = join(t.base, 'server-keys');
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(t.keysDir)) {
    if (/^(releases|rollouts|snapshot|timestamp)-/.test(name)) {
      await copyFile(join(t.keysDir, name), join(dir, name));
    }
  }
  for (const path of extra) {
    await copyFile(path, join(dir, `extra-${extra.indexOf(path)}.json`));
  }
  return Keyring.open(dir, passphrases);
}

/** Stages `edit`, has the named holders sign copies, merges them. */
async function targetsEvent(
  t: TestRepo,
  edit: TargetsEdit,
  signers: string[],
): Promise<void> {
  const repo = await Repository.open(t.dir, { lock: true });
  try {
    await editTargets(repo, edit);
  } finally {
    await repo.close();
  }
  const staged = stagedTargetsPath(repo.layout);
  const copies = [];
  for (const [i, path] of signers.entries()) {
    const copy = join(t.base, `targets-copy-${i}.json`);
    await copyFile(staged, copy);
    await signFile(copy, await readKeyFile(path), passphrases);
    copies.push(copy);
  }
  if (copies.length > 0) await mergeSignatures([staged, ...copies]);
}

async function newKey(t: TestRepo, name: string): Promise<string> {
  const path = join(t.base, `${name}.json`);
  await writeKeyFile(
    path,
    name,
    generatePrivateKey('ed25519'),
    TEST_PASSPHRASE,
    CHEAP_SCRYPT,
  );
  return path;
}

describe('targets signing events', () => {
  after(cleanupTempDirs);

  it('rotates the releases key: bins follow, and a client updates', async () => {
    const t = await createTestRepo({ bins: 16 });
    const source = join(t.base, 'fw.img');
    await writeFile(source, 'before rotation');
    let repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(t),
    });
    await repo.addTargets([{ source, path: 'images/fw-1.img' }]);
    await publish(repo);
    await repo.close();

    const oldKey = (await readKeyFile(await keyFile(t, 'releases-'))).key;
    const fresh = await newKey(t, 'releases-new');
    await targetsEvent(
      t,
      {
        removeKeys: [{ role: 'releases', keyid: oldKey.keyID }],
        addKeys: [{ role: 'releases', key: (await readKeyFile(fresh)).key }],
      },
      [await keyFile(t, 'targets-1')],
    );

    // The server has the new releases key and still the old one: only the
    // new one may sign from now on.
    repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(t, [fresh]),
    });
    const result = await publish(repo);
    assert.equal(result.versions.targets, 2);
    assert.equal(result.versions.releases, 2);
    assert.equal(
      Object.keys(result.versions).filter((r) => r.includes('-bin-')).length,
      16,
      'every bin re-signed',
    );
    const freshId = (await readKeyFile(fresh)).key.keyID;
    const releases = (await repo.publishedTargets('releases')).signed;
    for (const bin of Object.values(releases.delegations?.roles ?? {})) {
      assert.deepEqual(bin.keyIDs, [freshId]);
    }
    const bin = await repo.publishedTargets(
      await repo.ownerOf('images/fw-1.img'),
    );
    assert.deepEqual(Object.keys(bin.signatures), [freshId]);
    assert.equal(await readStagedTargets(repo.layout), undefined);

    await writeFile(source, 'after rotation');
    await repo.addTargets([{ source, path: 'images/fw-2.img' }]);
    await publish(repo);
    await repo.close();

    const server = await serveRepository(t.dir);
    try {
      const client = await newClient(t.dir, server);
      for (const path of ['images/fw-1.img', 'images/fw-2.img']) {
        assert.ok(await client.updater.getTargetInfo(path), path);
      }
    } finally {
      await server.close();
    }
  });

  it('renews targets with no change, signed offline', async () => {
    const t = await createTestRepo();
    await targetsEvent(t, {}, [await keyFile(t, 'targets-2')]);
    const repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(t),
    });
    try {
      const result = await publish(repo);
      assert.deepEqual(Object.keys(result.versions).sort(), [
        'snapshot',
        'targets',
        'timestamp',
      ]);
    } finally {
      await repo.close();
    }
  });

  it('refuses a staged targets role below threshold, naming the keys', async () => {
    const t = await createTestRepo();
    await targetsEvent(t, { thresholds: { rollouts: 1 } }, []);
    const repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(t),
    });
    try {
      await assert.rejects(
        publish(repo),
        (err: unknown) =>
          err instanceof UnsignedMetadataError &&
          /targets v2 has 0 of 1 required signatures/.test(err.message),
      );
      assert.equal(repo.publishedVersion('targets'), 1);
      assert.ok(await readStagedTargets(repo.layout), 'staged file kept');
    } finally {
      await repo.close();
    }
  });

  it('refuses an edit that leaves a role with no keys', async () => {
    const t = await createTestRepo();
    const repo = await Repository.open(t.dir, { lock: true });
    try {
      const id = (await readKeyFile(await keyFile(t, 'rollouts-'))).key.keyID;
      await assert.rejects(
        editTargets(repo, { removeKeys: [{ role: 'rollouts', keyid: id }] }),
        /rollouts: would be left with no keys/,
      );
      await assert.rejects(
        editTargets(repo, { thresholds: { nosuch: 1 } }),
        /nosuch is not a role delegated by targets/,
      );
      assert.equal(await readStagedTargets(repo.layout), undefined);
    } finally {
      await repo.close();
    }
  });
});
