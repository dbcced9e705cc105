/**
 * The real tuf-js client against repositories published by tufota, served
 * over HTTP on 127.0.0.1: every test refreshes from 1.root.json and trusts
 * nothing else.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyType } from '../../src/keys/keygen.js';
import { KEYED_ROLES, type KeyedRole } from '../../src/repository/init.js';
import { newClient, reopen, type TestClient } from '../helpers/client.js';
import { release } from '../helpers/release.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  serveRepository,
  type StaticServer,
} from '../helpers/static-server.js';

/**
 * Finds `path` and downloads it; returns the bytes written. An Updater
 * refreshes once, on its first look-up.
 */
async function fetchTarget(
  client: TestClient,
  path: string,
  updater = client.updater,
): Promise<Buffer> {
  const info = await updater.getTargetInfo(path);
  assert.ok(info, `the client finds ${path}`);
  const dest = join(client.targetDir, path.replace(/\//g, '_'));
  const written = await updater.downloadTarget(info, dest);
  assert.equal(written, dest);
  return readFile(dest);
}

async function trustedVersion(
  client: TestClient,
  role: string,
): Promise<number> {
  const json = JSON.parse(
    await readFile(join(client.metadataDir, `${role}.json`), 'utf8'),
  ) as { signed: { version: number } };
  return json.signed.version;
}

const sha256 = (b: Buffer | string) =>
  createHash('sha256').update(b).digest('hex');

describe('the tuf-js client', function () {
  let servers: StaticServer[] = [];
  const serve = async (t: TestRepo) => {
    const server = await serveRepository(t.dir);
    servers.push(server);
    return server;
  };

  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close()));
    servers = [];
  });
  after(cleanupTempDirs);

  describe('when it starts from 1.root.json', () => {
    it('refreshes through timestamp, snapshot and targets by consistent names', async () => {
      const t = await createTestRepo();
      await release(t, { 'images/fw.img': 'firmware 1.0.0' });
      const server = await serve(t);
      const client = await newClient(t.dir, server);

      await client.updater.refresh();

      assert.equal(await trustedVersion(client, 'root'), 1);
      assert.equal(await trustedVersion(client, 'timestamp'), 2);
      assert.equal(await trustedVersion(client, 'snapshot'), 2);
      assert.equal(await trustedVersion(client, 'targets'), 1);
      assert.deepEqual(server.requests, [
        '/metadata/2.root.json',
        '/metadata/timestamp.json',
        '/metadata/2.snapshot.json',
        '/metadata/1.targets.json',
      ]);
    });

    it('finds nothing for a path no delegation covers', async () => {
      const t = await createTestRepo();
      await release(t, { 'images/fw.img': 'firmware 1.0.0' });
      const client = await newClient(t.dir, await serve(t));

      await client.updater.refresh();
      assert.equal(
        await client.updater.getTargetInfo('other/fw.img'),
        undefined,
      );
      assert.equal(
        await client.updater.getTargetInfo('images/missing.img'),
        undefined,
      );
    });
  });

  describe('when targets are delegated', () => {
    const cases: {
      name: string;
      bins?: number;
      path: string;
      role: string | ((t: TestRepo) => string);
    }[] = [
      {
        name: 'releases, without bins',
        path: 'images/fw.img',
        role: 'releases',
      },
      { name: 'rollouts', path: 'rollouts/canary-eu', role: 'rollouts' },
      {
        name: 'releases with 16 hashed bins',
        bins: 16,
        path: 'images/fw.img',
        role: 'releases-bin-',
      },
      {
        name: 'releases with 256 hashed bins',
        bins: 256,
        path: 'images/fw-256.img',
        role: 'releases-bin-',
      },
    ];

    for (const c of cases) {
      it(`downloads a target through ${c.name}`, async () => {
        const t = await createTestRepo(
          c.bins !== undefined ? { bins: c.bins } : {},
        );
        const content = `payload for ${c.path} (${c.name})`;
        const versions = await release(t, { [c.path]: content });
        const role = Object.keys(versions).find((r) =>
          r.startsWith(c.role as string),
        );
        assert.ok(role, `a role named ${String(c.role)}* was published`);
        if (c.bins !== undefined) {
          // The bin tuf-js walks to must be the one the path hashes into.
          const prefixLength = Math.ceil(Math.log2(c.bins) / 4);
          const prefix = parseInt(sha256(c.path).slice(0, prefixLength), 16);
          const per = 16 ** prefixLength / c.bins;
          const first = Math.floor(prefix / per) * per;
          assert.equal(
            role,
            `releases-bin-${first.toString(16).padStart(prefixLength, '0')}`,
          );
        }
        const server = await serve(t);
        const client = await newClient(t.dir, server);

        const bytes = await fetchTarget(client, c.path);

        assert.equal(bytes.toString(), content);
        assert.ok(
          server.requests.includes(`/metadata/${versions[role]}.${role}.json`),
          `the client fetched ${role}`,
        );
        if (c.bins !== undefined) {
          // One bin is loaded, not all of them.
          const bins = server.requests.filter((r) => r.includes('-bin-'));
          assert.equal(bins.length, 1);
        }
      });
    }
  });

  describe('when the repository publishes again', () => {
    it('gives a client that already refreshed the new and the replaced targets', async () => {
      const t = await createTestRepo();
      await release(t, { 'images/fw.img': 'firmware 1.0.0' });
      const server = await serve(t);
      const client = await newClient(t.dir, server);
      assert.equal(
        (await fetchTarget(client, 'images/fw.img')).toString(),
        'firmware 1.0.0',
      );
      assert.equal(await trustedVersion(client, 'timestamp'), 2);

      await release(t, {
        'images/fw.img': 'firmware 1.1.0',
        'images/bootloader.img': 'bootloader 7',
      });
      const updater = reopen(client.metadataDir, client.targetDir, server);

      assert.equal(
        (await fetchTarget(client, 'images/fw.img', updater)).toString(),
        'firmware 1.1.0',
      );
      assert.equal(
        (
          await fetchTarget(client, 'images/bootloader.img', updater)
        ).toString(),
        'bootloader 7',
      );
      assert.equal(await trustedVersion(client, 'timestamp'), 3);
      assert.equal(await trustedVersion(client, 'snapshot'), 3);
      assert.equal(await trustedVersion(client, 'releases'), 3);
    });

    it('walks a client holding 1.root.json to a re-signed 2.root.json', async () => {
      const t = await createTestRepo();
      await release(t, { 'images/fw.img': 'firmware 1.0.0' });
      const versions = await release(t, {}, { resign: ['root'] });
      assert.equal(versions.root, 2);
      const server = await serve(t);
      const client = await newClient(t.dir, server);

      assert.equal(
        (await fetchTarget(client, 'images/fw.img')).toString(),
        'firmware 1.0.0',
      );

      assert.equal(await trustedVersion(client, 'root'), 2);
      assert.deepEqual(
        server.requests.filter((r) => r.endsWith('root.json')),
        ['/metadata/2.root.json', '/metadata/3.root.json'],
      );
      assert.deepEqual(
        await readFile(join(client.metadataDir, 'root.json')),
        await readFile(join(t.dir, 'metadata', '2.root.json')),
      );
    });
  });

  describe('with each key type', () => {
    const roles = KEYED_ROLES;
    const all = (type: KeyType) =>
      Object.fromEntries(roles.map((r) => [r, type])) as Record<
        KeyedRole,
        KeyType
      >;
    // RSA keys take most of a second each to generate, so the RSA
    // repository has one root and one targets key instead of 3 and 2.
    const oneKey = {
      keyCounts: { root: 1, targets: 1 },
      thresholds: { root: 1 },
    };
    const cases: {
      name: string;
      keyTypes: Record<KeyedRole, KeyType>;
      options?: typeof oneKey;
    }[] = [
      { name: 'ed25519', keyTypes: all('ed25519') },
      { name: 'ecdsa-sha2-nistp256', keyTypes: all('ecdsa-sha2-nistp256') },
      {
        name: 'rsassa-pss-sha256',
        keyTypes: all('rsassa-pss-sha256'),
        options: oneKey,
      },
      {
        name: 'a mix of all three',
        keyTypes: {
          root: 'ecdsa-sha2-nistp256',
          targets: 'ed25519',
          releases: 'rsassa-pss-sha256',
          rollouts: 'ecdsa-sha2-nistp256',
          snapshot: 'ecdsa-sha2-nistp256',
          timestamp: 'ed25519',
        },
      },
    ];

    for (const c of cases) {
      it(`accepts metadata and downloads targets signed with ${c.name}`, async function () {
        this.timeout(30000);
        const t = await createTestRepo({
          keyTypes: c.keyTypes,
          ...c.options,
        });
        const schemes = new Set(
          t.init.keys.map((k) => `${k.role}:${k.keyType}`),
        );
        for (const role of roles) {
          assert.ok(schemes.has(`${role}:${c.keyTypes[role]}`));
        }
        await release(t, {
          'images/fw.img': `image signed with ${c.name}`,
          'rollouts/wave-1': `rollout signed with ${c.name}`,
        });
        const client = await newClient(t.dir, await serve(t));

        assert.equal(
          (await fetchTarget(client, 'images/fw.img')).toString(),
          `image signed with ${c.name}`,
        );
        assert.equal(
          (await fetchTarget(client, 'rollouts/wave-1')).toString(),
          `rollout signed with ${c.name}`,
        );
        const root = JSON.parse(
          await readFile(join(client.metadataDir, 'root.json'), 'utf8'),
        ) as { signed: { keys: Record<string, { scheme: string }> } };
        for (const role of ['root', 'targets', 'snapshot', 'timestamp']) {
          assert.ok(
            Object.values(root.signed.keys).some(
              (k) => k.scheme === c.keyTypes[role as KeyedRole],
            ),
            `root lists a ${c.keyTypes[role as KeyedRole]} key for ${role}`,
          );
        }
      });
    }
  });

  describe('consistent-snapshot target names', () => {
    it('stores each target as SHA256.NAME and SHA512.NAME with the same bytes', async () => {
      const t = await createTestRepo();
      const content = Buffer.from('firmware with both names\n');
      await release(t, { 'images/fw.img': content });
      const repo = await t.open();
      const listed = await repo.listTargets();
      await repo.close();
      assert.equal(listed.length, 1);
      const { hashes, length } = listed[0].target;
      assert.deepEqual(Object.keys(hashes).sort(), ['sha256', 'sha512']);
      assert.equal(hashes.sha256, sha256(content));
      assert.equal(
        hashes.sha512,
        createHash('sha512').update(content).digest('hex'),
      );
      assert.equal(length, content.length);

      for (const digest of [hashes.sha256, hashes.sha512]) {
        const file = join(t.dir, 'targets', 'images', `${digest}.fw.img`);
        assert.ok((await stat(file)).isFile(), `${file} exists`);
        assert.deepEqual(await readFile(file), content);
      }

      // And the client, which asks for the first listed hash, gets them.
      const server = await serve(t);
      const client = await newClient(t.dir, server);
      assert.deepEqual(await fetchTarget(client, 'images/fw.img'), content);
      assert.ok(
        server.requests.includes(`/targets/images/${hashes.sha256}.fw.img`),
      );
    });
  });
});
