/**
 * The install step's own check: the chain verified again with tuf-js from
 * its own root over what the network step cached, walking root versions
 * through the network step's archive, and the recorded target held to it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  copyFile,
  mkdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import { ClientError } from '../../../client/errors.js';
import {
  checkCachedTarget,
  type CachedTargetCheck,
} from '../../../client/update/reverify.js';
import { createUpdater } from '../../../client/update/updater.js';
import { publish } from '../../../src/repository/publish.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../../helpers/fixtures.js';
import {
  serveRepository,
  type StaticServer,
} from '../../helpers/static-server.js';

const PATH = 'images/fw-2.0.0.img';

describe('checkCachedTarget', () => {
  let t: TestRepo;
  let server: StaticServer;
  let cache: string;
  let listed: TargetFile;

  /** A fresh trusted folder holding only version 1 of root. */
  const trusted = async () => {
    const dir = await tempDir('tufota-trust-');
    await copyFile(
      join(t.dir, 'metadata', '1.root.json'),
      join(dir, 'root.json'),
    );
    return dir;
  };
  const check = async (
    trustedDir: string,
    change: Partial<CachedTargetCheck> = {},
  ) =>
    checkCachedTarget({
      trustedDir,
      cacheDir: cache,
      targetPath: PATH,
      length: listed.length,
      hashes: listed.hashes,
      ...change,
    });
  /** A copy of the network step's cache, all but the file `without`. */
  const cacheWithout = async (without: string) => {
    const copy = await tempDir('tufota-cache-copy-');
    const names = ['timestamp.json', 'snapshot.json', 'targets.json'];
    for (const name of [...names, 'releases.json']) {
      if (name !== without) await copyFile(join(cache, name), join(copy, name));
    }
    await mkdir(join(copy, 'roots'));
    for (const v of [2, 3]) {
      const name = `${v}.root.json`;
      await copyFile(join(cache, 'roots', name), join(copy, 'roots', name));
    }
    return copy;
  };

  before(async () => {
    t = await createTestRepo();
    const repo = await t.open();
    try {
      const source = join(t.base, 'fw');
      await writeFile(source, Buffer.alloc(50_000, 0x42));
      await repo.addTargets([
        { source, path: PATH, custom: { version: '2.0.0' } },
      ]);
      await publish(repo);
      // Two more root versions, for the walk from version 1.
      await publish(repo, { resign: ['root'] });
      await publish(repo, { resign: ['root'] });
    } finally {
      await repo.close();
    }
    server = await serveRepository(t.dir);
    // The network step: refreshes from its shipped root, archiving roots.
    cache = await tempDir('tufota-cache-');
    await copyFile(
      join(t.dir, 'metadata', '1.root.json'),
      join(cache, 'root.json'),
    );
    const updater = createUpdater({
      metadataDir: cache,
      metadataBaseUrl: server.metadataUrl,
      targetBaseUrl: server.targetsUrl,
      rootArchive: join(cache, 'roots'),
      config: { fetchRetries: 0 },
    });
    await updater.refresh();
    listed = (await updater.getTargetInfo(PATH))!;
    assert.ok(listed);
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  it('accepts the recorded target and walks its own root forward through the archive', async () => {
    const dir = await trusted();
    await check(dir);
    const root = JSON.parse(await readFile(join(dir, 'root.json'), 'utf8')) as {
      signed: { version: number };
    };
    assert.equal(root.signed.version, 3);
  });

  it('refuses a record whose hashes, length or path the metadata does not list', async () => {
    const dir = await trusted();
    const other = { ...listed.hashes, sha256: 'ab'.repeat(32) };
    for (const attempt of [
      () => check(dir, { hashes: other }),
      () => check(dir, { length: listed.length + 1 }),
      () => check(dir, { targetPath: 'images/fw-9.9.9.img' }),
      () => check(dir, { targetPath: 'rollouts/plan.json' }),
    ]) {
      await assert.rejects(
        attempt(),
        (err: unknown) =>
          err instanceof ClientError &&
          err.code === 'INTEGRITY' &&
          /verified metadata|is not a release/.test(err.message),
      );
    }
  });

  it('does not trust a cache that fails verification, and says so apart from a refusal', async () => {
    const forged = await cacheWithout('releases.json');
    // The releases role as the network step could rewrite it: another
    // hash for the image, signature left as it was.
    const releases = await readFile(join(cache, 'releases.json'), 'utf8');
    await writeFile(
      join(forged, 'releases.json'),
      releases.replace(listed.hashes.sha256, 'cd'.repeat(32)),
    );
    await assert.rejects(
      check(await trusted(), {
        cacheDir: forged,
        hashes: { ...listed.hashes, sha256: 'cd'.repeat(32) },
      }),
      (err: unknown) =>
        err instanceof Error &&
        !(err instanceof ClientError && err.code === 'INTEGRITY') &&
        /signed by 0\/1 keys/.test(err.message),
    );
  });

  it('asks for init when it has no root of its own', async () => {
    await assert.rejects(
      check(await tempDir('tufota-trust-empty-')),
      /holds no trusted root of its own/,
    );
  });
  it('reads no cached file through a link, from a FIFO, or of another owner', async () => {
    const odd = await cacheWithout('timestamp.json');
    const cases: [string, () => Promise<void>][] = [
      [
        'a link',
        () =>
          symlink(join(cache, 'timestamp.json'), join(odd, 'timestamp.json')),
      ],
      [
        'a FIFO',
        () => {
          execFileSync('mkfifo', [join(odd, 'timestamp.json')]);
          return Promise.resolve();
        },
      ],
    ];
    for (const [what, plant] of cases) {
      await rm(join(odd, 'timestamp.json'), { force: true });
      await plant();
      await assert.rejects(
        check(await trusted(), { cacheDir: odd }),
        /safely|not a regular file/,
        what,
      );
    }
    await rm(join(odd, 'timestamp.json'), { force: true });
    await copyFile(join(cache, 'timestamp.json'), join(odd, 'timestamp.json'));
    await assert.rejects(
      check(await trusted(), {
        cacheDir: odd,
        cacheOwner: process.getuid!() + 1,
      }),
      /not a regular file of the network step's own/,
    );
  });
});
