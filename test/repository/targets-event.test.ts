/**
 * Targets signing events: the offline targets keys sign a staged targets
 * role that rotates the keys of a role it delegates to; publish takes it as
 * signed and re-signs what the new keys now own (for releases, every hashed
 * bin), and the real tuf-js client, holding 1.root.json, follows.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnsignedMetadataError } from '../../src/errors.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import { editRoot, stagedRootPath } from '../../src/repository/signing.js';
import {
  editTargets,
  readStagedTargets,
  stagedTargetsPath,
  type TargetsEdit,
} from '../../src/repository/targets-event.js';
import { newClient } from '../helpers/client.js';
import { cleanupTempDirs, createTestRepo } from '../helpers/fixtures.js';
import {
  KeyBox,
  collectSignatures,
  serverKeyring,
} from '../helpers/signing-events.js';
import { serveRepository } from '../helpers/static-server.js';

/** Stages `edit`, has the named holders sign copies, merges them. */
async function targetsEvent(
  keys: KeyBox,
  edit: TargetsEdit,
  signers: string[],
): Promise<void> {
  const repo = await Repository.open(keys.t.dir, { lock: true });
  try {
    await editTargets(repo, edit);
  } finally {
    await repo.close();
  }
  await collectSignatures(keys, stagedTargetsPath(repo.layout), signers);
}

describe('targets signing events', () => {
  after(cleanupTempDirs);

  it('rotates the releases key: bins follow, and a client updates', async () => {
    const t = await createTestRepo({ bins: 16 });
    const keys = new KeyBox(t);
    const source = join(t.base, 'fw.img');
    await writeFile(source, 'before rotation');
    let repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    await repo.addTargets([{ source, path: 'images/fw-1.img' }]);
    await publish(repo);
    await repo.close();

    await targetsEvent(
      keys,
      {
        removeKeys: [{ role: 'releases', keyid: await keys.id('releases-1') }],
        addKeys: [{ role: 'releases', key: await keys.key('new-rel') }],
      },
      ['targets-1'],
    );

    // The server has the new releases key and still the old one: only the
    // new one may sign from now on.
    repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(keys, ['new-rel']),
    });
    const result = await publish(repo);
    assert.equal(result.versions.targets, 2);
    assert.equal(result.versions.releases, 2);
    assert.equal(
      Object.keys(result.versions).filter((r) => r.includes('-bin-')).length,
      16,
      'every bin re-signed',
    );
    const freshId = await keys.id('new-rel');
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
    const keys = new KeyBox(await createTestRepo());
    await targetsEvent(keys, {}, ['targets-2']);
    const repo = await Repository.open(keys.t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
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
    // Two of the two targets keys needed; one holder signs.
    const keys = new KeyBox(
      await createTestRepo({ thresholds: { targets: 2 } }),
    );
    await targetsEvent(keys, { thresholds: { rollouts: 1 } }, ['targets-1']);
    const signed = await keys.id('targets-1');
    const missing = await keys.id('targets-2');
    const repo = await Repository.open(keys.t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    try {
      await assert.rejects(publish(repo), (err: unknown) => {
        assert.ok(err instanceof UnsignedMetadataError);
        assert.match(
          err.message,
          /targets v2 has 1 of 2 required signatures; 1 more needed from: /,
        );
        assert.ok(err.message.includes(missing), 'names the missing key');
        assert.ok(!err.message.includes(signed), 'not the key that signed');
        assert.deepEqual(err.missing, [missing]);
        return true;
      });
      assert.equal(repo.publishedVersion('targets'), 1);
      assert.ok(await readStagedTargets(repo.layout), 'staged file kept');
    } finally {
      await repo.close();
    }
  });

  it('names every targets key when nobody has signed', async () => {
    const keys = new KeyBox(await createTestRepo());
    await targetsEvent(keys, { thresholds: { rollouts: 1 } }, []);
    const ids = [await keys.id('targets-1'), await keys.id('targets-2')];
    const repo = await Repository.open(keys.t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    try {
      await assert.rejects(publish(repo), (err: unknown) => {
        assert.ok(err instanceof UnsignedMetadataError);
        assert.match(err.message, /targets v2 has 0 of 1 required signatures/);
        for (const id of ids) assert.ok(err.message.includes(id), id);
        assert.deepEqual([...err.missing].sort(), [...ids].sort());
        return true;
      });
      assert.equal(repo.publishedVersion('targets'), 1);
    } finally {
      await repo.close();
    }
  });

  it('refuses an edit that leaves a role with no keys', async () => {
    const keys = new KeyBox(await createTestRepo());
    const repo = await Repository.open(keys.t.dir, { lock: true });
    try {
      const id = await keys.id('rollouts-1');
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

  it('refuses a key serving both a top-level and a delegated role', async () => {
    const keys = new KeyBox(await createTestRepo());
    const repo = await Repository.open(keys.t.dir, { lock: true });
    try {
      await assert.rejects(
        editTargets(repo, {
          addKeys: [{ role: 'rollouts', key: await keys.key('snapshot-1') }],
        }),
        /already serves a top-level role in root/,
      );
      await assert.rejects(
        editRoot(repo, {
          addKeys: [{ role: 'targets', key: await keys.key('releases-1') }],
        }),
        /already serves a role targets delegates to/,
      );
      assert.equal(await readStagedTargets(repo.layout), undefined);
    } finally {
      await repo.close();
    }
  });

  it('refuses at publish a hand-edited staged root that shares a key', async () => {
    const keys = new KeyBox(await createTestRepo());
    let repo = await Repository.open(keys.t.dir, { lock: true });
    const staged = await editRoot(repo, {});
    await repo.close();
    // Writes a releases key into root by hand, as targets' third key.
    const releases = await keys.key('releases-1');
    const json = staged.toJSON() as {
      signed: {
        keys: Record<string, unknown>;
        roles: Record<string, { keyids: string[] }>;
      };
    };
    json.signed.keys[releases.keyID] = releases.toJSON();
    json.signed.roles.targets.keyids.push(releases.keyID);
    await writeFile(stagedRootPath(repo.layout), JSON.stringify(json));
    await collectSignatures(keys, stagedRootPath(repo.layout), [
      'root-1',
      'root-2',
      'root-3',
    ]);
    repo = await Repository.open(keys.t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    try {
      await assert.rejects(publish(repo), /may serve one role only/);
      assert.equal(repo.root.signed.version, 1);
    } finally {
      await repo.close();
    }
  });
});
