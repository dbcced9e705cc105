/**
 * A publish cut short after it wrote a new root but before the timestamp
 * (a crash, a full disk) while that root rotates online or targets keys:
 * the roles on disk are still signed under the previous root. The writer
 * must still open the repository, and the next publish must finish the job
 * under the new root, so clients that already took the new root recover.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InMemorySigner } from '../../src/keys/keygen.js';
import { readKeyFile, unsealPrivateKey } from '../../src/keys/keyfile.js';
import { publish } from '../../src/repository/publish.js';
import {
  MetadataKind,
  addSignature,
  parseMetadata,
  serializeMetadata,
} from '../../src/tuf/metadata.js';
import { Repository } from '../../src/repository/repository.js';
import { editRoot, stagedRootPath } from '../../src/repository/signing.js';
import { editTargets } from '../../src/repository/targets-event.js';
import { verifyRepository } from '../../src/repository/verify.js';
import { newClient, reopen } from '../helpers/client.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
} from '../helpers/fixtures.js';
import {
  KeyBox,
  collectSignatures,
  serverKeyring,
} from '../helpers/signing-events.js';
import { serveRepository } from '../helpers/static-server.js';

async function withFault<T>(point: string, run: () => Promise<T>) {
  const saved = process.env.TUFOTA_FAULT;
  process.env.TUFOTA_FAULT = `${point}:error`;
  try {
    return await run();
  } finally {
    if (saved === undefined) delete process.env.TUFOTA_FAULT;
    else process.env.TUFOTA_FAULT = saved;
  }
}

describe('a publish cut short after its new root', () => {
  after(cleanupTempDirs);

  it('is finished by the next publish when online keys rotate', async () => {
    const t = await createTestRepo();
    const keys = new KeyBox(t);
    let repo = await Repository.open(t.dir, { lock: true });
    await editRoot(repo, {
      removeKeys: [
        { role: 'timestamp', keyid: await keys.id('timestamp-1') },
        { role: 'snapshot', keyid: await keys.id('snapshot-1') },
      ],
      addKeys: [
        { role: 'timestamp', key: await keys.key('new-ts') },
        { role: 'snapshot', key: await keys.key('new-snap') },
      ],
    });
    await repo.close();
    await collectSignatures(keys, stagedRootPath(repo.layout), [
      'root-1',
      'root-2',
    ]);
    const server = await serveRepository(t.dir);
    try {
      // A device that follows along, from before the rotation.
      const device = await newClient(t.dir, server);
      await device.updater.refresh();

      const ring = () => serverKeyring(keys, ['new-ts', 'new-snap']);
      repo = await Repository.open(t.dir, {
        lock: true,
        keyring: await ring(),
      });
      await assert.rejects(
        withFault('publish:timestamp', () => publish(repo)),
        /ENOSPC/,
      );
      await repo.close();

      // The device takes root v2 and then cannot go on: the timestamp on
      // the server is signed by the old key.
      await assert.rejects(
        reopen(device.metadataDir, device.targetDir, server).refresh(),
      );

      repo = await Repository.open(t.dir, {
        lock: true,
        keyring: await ring(),
      });
      assert.equal(repo.root.signed.version, 2);
      assert.equal(repo.unfinishedRoot?.signed.version, 1);
      const result = await publish(repo);
      assert.deepEqual(Object.keys(result.versions).sort(), [
        'snapshot',
        'timestamp',
      ]);
      await repo.close();

      repo = await Repository.open(t.dir);
      assert.equal(repo.unfinishedRoot, undefined);
      const report = await verifyRepository(t.dir);
      assert.ok(report.ok, report.problems.join('\n'));
      await reopen(device.metadataDir, device.targetDir, server).refresh();
      const fresh = await newClient(t.dir, server);
      await fresh.updater.refresh();

      // Once the publish is whole, a timestamp the rotated-away key signed
      // is a plant, not an unfinished publish: the writer refuses it.
      const path = join(t.dir, 'metadata', 'timestamp.json');
      const json = JSON.parse(await readFile(path, 'utf8')) as {
        signed: { version: number };
        signatures: unknown[];
      };
      json.signed.version += 5;
      json.signatures = [];
      const planted = parseMetadata(
        MetadataKind.Timestamp,
        Buffer.from(JSON.stringify(json)),
        path,
      );
      const oldKey = await readKeyFile(await keys.path('timestamp-1'));
      await addSignature(
        planted,
        new InMemorySigner(await unsealPrivateKey(oldKey, TEST_PASSPHRASE)),
      );
      await writeFile(path, serializeMetadata(planted));
      await assert.rejects(
        Repository.open(t.dir),
        /timestamp\.json fails its signature check/,
      );
    } finally {
      await server.close();
    }
  });

  it('re-signs targets under the new root when both targets keys rotate', async () => {
    const t = await createTestRepo();
    const keys = new KeyBox(t);
    let repo = await Repository.open(t.dir, { lock: true });
    await editRoot(repo, {
      removeKeys: [
        { role: 'targets', keyid: await keys.id('targets-1') },
        { role: 'targets', keyid: await keys.id('targets-2') },
      ],
      addKeys: [{ role: 'targets', key: await keys.key('new-targets') }],
    });
    await repo.close();
    await collectSignatures(keys, stagedRootPath(repo.layout), [
      'root-1',
      'root-2',
    ]);
    repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(keys, ['new-targets']),
    });
    await assert.rejects(
      withFault('publish:timestamp', () => publish(repo)),
      /ENOSPC/,
    );
    await repo.close();

    // Without the new targets key the server cannot finish; the holders
    // sign a staged targets under the new root instead.
    await rm(join(t.base, 'server-keys'), { recursive: true });
    repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    assert.equal(repo.unfinishedRoot?.signed.version, 1);
    await assert.rejects(publish(repo), /targets/);
    await editTargets(repo, {});
    await repo.close();
    await collectSignatures(
      keys,
      stagedRootPath(repo.layout).replace('root.json', 'targets.json'),
      ['new-targets'],
    );
    repo = await Repository.open(t.dir, {
      lock: true,
      keyring: await serverKeyring(keys),
    });
    const result = await publish(repo);
    assert.equal(result.versions.targets, 2);
    await repo.close();
    const report = await verifyRepository(t.dir);
    assert.ok(report.ok, report.problems.join('\n'));

    const server = await serveRepository(t.dir);
    try {
      const client = await newClient(t.dir, server);
      await client.updater.refresh();
    } finally {
      await server.close();
    }
  });
});
