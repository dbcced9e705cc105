/**
 * The device's fetcher against a real repository on 127.0.0.1, with the
 * real tuf-js Updater: it refuses what tufota never publishes even where
 * tuf-js alone would accept it, and passes everything else on unchanged.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { KeyTableError } from '../../../client/errors.js';
import { checkFetchedKeyTable } from '../../../client/update/fetcher.js';
import { publish } from '../../../src/repository/publish.js';
import { MetadataKind } from '../../../src/tuf/models.js';
import { newClient } from '../../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../../helpers/fixtures.js';
import {
  TWIN_ID,
  listTwice,
  readMetadataJson,
  signJson,
} from '../../helpers/forge.js';
import {
  serveRepository,
  type StaticServer,
} from '../../helpers/static-server.js';

async function keyFile(t: TestRepo, prefix: string): Promise<string> {
  const name = (await readdir(t.keysDir)).find((n) => n.startsWith(prefix));
  assert.ok(name, `key file ${prefix}`);
  return join(t.keysDir, name);
}

/**
 * 1.targets.json with releases given its one key twice and a threshold of
 * 2, signed by the targets key: a targets key holder's way to let the
 * releases key alone meet a threshold meant for two keys.
 */
async function targetsWithTwin(t: TestRepo): Promise<Buffer> {
  const json = await readMetadataJson(join(t.dir, 'metadata/1.targets.json'));
  const delegations = json.signed.delegations as {
    keys: Record<string, unknown>;
    roles: { name: string; keyids: string[] }[];
  };
  const releases = delegations.roles.find((r) => r.name === 'releases');
  assert.ok(releases);
  listTwice(delegations, 'releases', releases.keyids[0], 2);
  return signJson(json, MetadataKind.Targets, [await keyFile(t, 'targets-1')]);
}

/** Serves `body` in place of the file at `path` under the server. */
function replace(server: StaticServer, path: string, body: Buffer): void {
  server.tamper = (p, found) => (p === path ? body : found);
}

describe('KeyTableFetcher', () => {
  after(cleanupTempDirs);

  describe('when a targets file delegates to one key under two ids', () => {
    it('refuses it, naming role, version and both ids; plain tuf-js accepts it', async () => {
      const t = await createTestRepo();
      const server = await serveRepository(t.dir);
      try {
        replace(server, '/metadata/1.targets.json', await targetsWithTwin(t));
        const json = await readMetadataJson(
          join(t.dir, 'metadata/1.targets.json'),
        );
        const releasesId = (
          json.signed.delegations as { roles: { keyids: string[] }[] }
        ).roles[0].keyids[0];

        const plainDir = await tempDir('tufota-plain-');
        await writeFile(
          join(plainDir, 'root.json'),
          await readFile(join(t.dir, 'metadata/1.root.json')),
        );
        const plain = new Updater({
          metadataDir: plainDir,
          metadataBaseUrl: server.metadataUrl,
          config: { fetchRetries: 0 },
        });
        await plain.refresh();

        const device = await newClient(t.dir, server);
        await assert.rejects(device.updater.refresh(), (err: Error) => {
          assert.match(
            err.message,
            new RegExp(
              `targets v1 from ${server.metadataUrl}/1\\.targets\\.json ` +
                `lists one public key under two ids, ${releasesId} and ` +
                `${TWIN_ID}; refused`,
            ),
          );
          return true;
        });
        const kept = await readdir(device.metadataDir);
        assert.ok(!kept.includes('targets.json'), 'the file is not kept');
      } finally {
        await server.close();
      }
    });
  });

  describe('when a fetched root does not parse', () => {
    it('passes it on, and tuf-js refuses it with its own error', async () => {
      const t = await createTestRepo();
      const server = await serveRepository(t.dir);
      try {
        replace(server, '/metadata/2.root.json', Buffer.from('{"signed":'));
        const device = await newClient(t.dir, server);
        await assert.rejects(
          device.updater.refresh(),
          (err: unknown) =>
            err instanceof SyntaxError && !(err instanceof KeyTableError),
        );
        const root = await readMetadataJson(
          join(device.metadataDir, 'root.json'),
        );
        assert.equal(root.signed.version, 1);
      } finally {
        await server.close();
      }
    });
  });

  describe('when a target is large, or its bytes look like metadata', () => {
    it('passes it through unread, byte for byte', async () => {
      const t = await createTestRepo();
      const base = await tempDir();
      // Bytes the fetcher would refuse as metadata, as a target's content.
      const lookalike = join(base, 'targets.json');
      await writeFile(lookalike, await targetsWithTwin(t));
      const large = join(base, 'fw.img');
      await writeFile(large, Buffer.alloc(24 * 1024 * 1024, 7));
      const repo = await t.open();
      await repo.addTargets([
        { source: lookalike, path: 'images/targets.json' },
        { source: large, path: 'images/fw.img' },
      ]);
      await publish(repo);
      await repo.close();

      const server = await serveRepository(t.dir);
      try {
        const device = await newClient(t.dir, server);
        for (const [path, source] of [
          ['images/targets.json', lookalike],
          ['images/fw.img', large],
        ]) {
          const info = await device.updater.getTargetInfo(path);
          assert.ok(info, path);
          const got = await device.updater.downloadTarget(
            info,
            join(device.targetDir, path.replace('/', '_')),
          );
          assert.ok((await readFile(got)).equals(await readFile(source)));
        }
      } finally {
        await server.close();
      }
    });
  });
});

describe('checkFetchedKeyTable', () => {
  after(cleanupTempDirs);

  it('goes by the type a file declares, not by its name', async () => {
    const t = await createTestRepo();
    const twin = await targetsWithTwin(t);
    // tuf-js would load it as a delegated role named snapshot.
    assert.throws(
      () => checkFetchedKeyTable('3.snapshot.json', twin, 'u/3.snapshot.json'),
      (err: unknown) =>
        err instanceof KeyTableError &&
        err.code === 'KEY_TABLE' &&
        err.role === 'snapshot' &&
        err.version === 1,
    );
    const snapshot = await readFile(join(t.dir, 'metadata/1.snapshot.json'));
    checkFetchedKeyTable('1.snapshot.json', snapshot, 'u/1.snapshot.json');
  });

  it('passes on what it cannot parse, for tuf-js to refuse', () => {
    const bodies = [
      'not json',
      'null',
      '{"signed":{}}',
      '{"signed":{"_type":"root","version":2}}',
      '{"signed":{"_type":"targets","version":"2","delegations":{}}}',
    ];
    for (const body of bodies) {
      checkFetchedKeyTable('2.root.json', Buffer.from(body), 'u/2.root.json');
    }
  });
});
