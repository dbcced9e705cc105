/**
 * The repository's own files changed behind its back: a metadata folder
 * restored from an old copy, kept history deleted or forged, drafts edited
 * by hand, partial copies left by a killed import. Each must be refused or
 * reported, never signed or silently served.
 */
import assert from 'node:assert/strict';
import {
  cp,
  mkdir,
  readFile,
  readdir,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CorruptMetadataError } from '../../src/errors.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import { verifyRepository } from '../../src/repository/verify.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { hashTree } from '../helpers/tree.js';

async function release(t: TestRepo, name: string, content: string) {
  const source = join(t.base, name);
  await writeFile(source, content);
  const repo = await t.open();
  try {
    await repo.addTargets([{ source, path: `images/${name}` }]);
    await publish(repo);
  } finally {
    await repo.close();
  }
}

const meta = (t: TestRepo, name: string) => join(t.dir, 'metadata', name);

describe('Repository integrity', () => {
  let t: TestRepo;

  beforeEach(async () => {
    t = await createTestRepo();
    await release(t, 'a.img', 'a');
    await release(t, 'b.img', 'b');
  });
  after(cleanupTempDirs);

  describe('when metadata/ is restored from an older copy', () => {
    it('refuses to open it for writing, naming the versions', async () => {
      await cp(meta(t, '2.timestamp.json'), meta(t, 'timestamp.json'));
      const before = await hashTree(t.dir);
      await assert.rejects(
        t.open(),
        (err: unknown) =>
          err instanceof CorruptMetadataError &&
          /3\.timestamp\.json is kept but timestamp\.json is version 2/.test(
            err.message,
          ),
      );
      assert.deepEqual(await hashTree(t.dir), before);
      const report = await verifyRepository(t.dir);
      assert.ok(
        report.problems.some((p) =>
          /^rolled back: 3\.timestamp\.json is kept but timestamp\.json is version 2$/.test(
            p,
          ),
        ),
        report.problems.join('\n'),
      );
    });

    it('refuses even when the kept history went with it', async () => {
      await cp(meta(t, '2.timestamp.json'), meta(t, 'timestamp.json'));
      await rm(meta(t, '3.timestamp.json'));
      const report = await verifyRepository(t.dir);
      assert.ok(
        report.problems.includes(
          'rolled back: timestamp is version 2, 3 was published',
        ),
        report.problems.join('\n'),
      );
      await assert.rejects(
        t.open(),
        /timestamp is version 2, 3 was published\).* rolled back/,
      );
    });
  });

  describe('when the record of what was published is gone too', () => {
    it('still refuses: a snapshot two versions ahead is no crash', async () => {
      await release(t, 'c.img', 'c');
      await cp(meta(t, '2.timestamp.json'), meta(t, 'timestamp.json'));
      await rm(meta(t, '3.timestamp.json'));
      await rm(meta(t, '4.timestamp.json'));
      await rm(join(t.dir, '.tufota', 'published.json'));
      await assert.rejects(
        t.open(),
        /4\.snapshot\.json exists but the current snapshot is version 2/,
      );
      const report = await verifyRepository(t.dir);
      assert.equal(report.ok, false);
    });
  });

  describe('when kept versions are deleted or added', () => {
    it('reports a missing old version and a root outside the chain', async () => {
      await rm(meta(t, '1.snapshot.json'));
      await cp(meta(t, '1.root.json'), meta(t, '3.root.json'));
      const report = await verifyRepository(t.dir);
      assert.equal(report.ok, false);
      assert.ok(
        report.problems.includes(
          '1.snapshot.json is missing from the kept versions',
        ),
        report.problems.join('\n'),
      );
      assert.ok(
        report.problems.some((p) =>
          /^3\.root\.json: not part of the root chain/.test(p),
        ),
      );
    });

    it('reports a kept snapshot overwritten with another version', async () => {
      await cp(meta(t, '3.snapshot.json'), meta(t, '2.snapshot.json'));
      const report = await verifyRepository(t.dir);
      assert.ok(
        report.problems.includes('2.snapshot.json: has version 3'),
        report.problems.join('\n'),
      );
    });
  });

  describe('when a draft is edited by hand', () => {
    const cases: {
      name: string;
      edit: (draft: Record<string, unknown>) => void;
      error: RegExp;
    }[] = [
      {
        name: 'a target outside the role',
        edit: (d) => {
          const targets = d.targets as Record<string, unknown>;
          targets['rollouts/evil'] = targets['images/c.img'];
        },
        error: /lists rollouts\/evil, which the delegations do not give/,
      },
      {
        name: 'a target whose file is not stored',
        edit: (d) => {
          const targets = d.targets as Record<string, { hashes: object }>;
          targets['images/c.img'].hashes = {
            sha256: '0'.repeat(64),
            sha512: '0'.repeat(128),
          };
        },
        error: /lists images\/c\.img, but .* is missing/,
      },
      {
        name: 'a path with ..',
        edit: (d) => {
          const targets = d.targets as Record<string, unknown>;
          targets['images/../../etc/passwd'] = targets['images/c.img'];
        },
        error: /lists a bad path/,
      },
      {
        name: 'another _type',
        edit: (d) => {
          d._type = 'snapshot';
        },
        error: /its _type is "snapshot", not targets/,
      },
      {
        name: 'a sha512 name that is not stored',
        edit: (d) => {
          const targets = d.targets as Record<
            string,
            { hashes: Record<string, string> }
          >;
          targets['images/c.img'].hashes.sha512 = '0'.repeat(128);
        },
        error: /lists images\/c\.img, but .*0{128}\.c\.img is missing/,
      },
      {
        name: 'an extra hash',
        edit: (d) => {
          const targets = d.targets as Record<
            string,
            { hashes: Record<string, string> }
          >;
          targets['images/c.img'].hashes.md5 = 'zz';
        },
        error: /hashes md5,sha256,sha512, not sha256 and sha512/,
      },
      {
        name: 'custom data the commands refuse',
        edit: (d) => {
          const targets = d.targets as Record<string, { custom?: unknown }>;
          targets['images/c.img'].custom = { version: '1.0.0', x: '\u{1F600}' };
        },
        error: /lists images\/c\.img with bad custom data/,
      },
      {
        name: 'an unknown field in a target entry',
        edit: (d) => {
          const targets = d.targets as Record<string, Record<string, unknown>>;
          targets['images/c.img'].evil = 1;
        },
        error: /fields other than custom: evil/,
      },
      {
        name: 'an unknown field in the role',
        edit: (d) => {
          d.evil = { x: 1 };
        },
        error: /adds fields to the role/,
      },
      {
        name: 'a new delegation',
        edit: (d) => {
          d.delegations = { keys: {}, roles: [] };
        },
        error: /changes delegations/,
      },
    ];
    for (const c of cases) {
      it(`refuses to publish ${c.name}`, async () => {
        const source = join(t.base, 'c.img');
        await writeFile(source, 'c');
        let repo = await t.open();
        await repo.addTargets([{ source, path: 'images/c.img' }]);
        await repo.close();
        const draftPath = join(t.dir, '.tufota', 'drafts', 'releases.json');
        const draft = JSON.parse(await readFile(draftPath, 'utf8')) as Record<
          string,
          unknown
        >;
        c.edit(draft);
        await writeFile(draftPath, JSON.stringify(draft));
        const before = await readFile(meta(t, 'timestamp.json'));

        repo = await t.open();
        try {
          await assert.rejects(publish(repo), c.error);
        } finally {
          await repo.close();
        }
        assert.deepEqual(await readFile(meta(t, 'timestamp.json')), before);
      });
    }
  });

  describe('when a targets add was killed mid-copy', () => {
    it('removes the partial copies on the next write', async () => {
      const images = join(t.dir, 'targets', 'images');
      const partial = join(images, '.tmp-target.abcdef123456');
      await writeFile(partial, 'half a file');
      await writeFile(
        join(t.dir, '.tufota', 'importing.json'),
        JSON.stringify({ dirs: [images, '/etc'] }),
      );
      // A link inside targets/ must not lead the cleanup elsewhere.
      const outside = join(t.base, 'outside');
      await mkdir(outside);
      await writeFile(join(outside, '.tmp-precious'), 'keep me');
      await symlink(outside, join(images, 'link'));
      await writeFile(
        join(t.dir, '.tufota', 'importing.json'),
        JSON.stringify({ dirs: [images, join(images, 'link'), '/etc'] }),
      );
      const reader = await Repository.open(t.dir);
      assert.ok(existsSync(partial), 'a reader leaves them alone');
      const repo = await t.open();
      await repo.close();
      assert.equal(existsSync(partial), false);
      assert.equal(
        (await readdir(images)).filter((n) => n.startsWith('.tmp-')).length,
        0,
      );
      assert.equal(existsSync(join(t.dir, '.tufota', 'importing.json')), false);
      assert.ok(existsSync(join(outside, '.tmp-precious')), 'outside kept');
      void reader;
    });
  });
});
