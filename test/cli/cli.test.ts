import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  RepositoryStatus,
  RoleStatus,
} from '../../src/repository/status.js';
import { CLI_PASSPHRASE, cliJson, cliOk, runCli } from '../helpers/cli.js';
import { newClient } from '../helpers/client.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';
import { hashTree } from '../helpers/tree.js';

interface Listed {
  path: string;
  role: string;
  length: number;
  hashes: { sha256: string; sha512: string };
  custom: Record<string, unknown>;
  pending: boolean;
}

interface RootJson {
  signed: {
    keys: Record<string, { scheme: string }>;
    roles: Record<string, { keyids: string[]; threshold: number }>;
  };
}

interface Signed {
  signed: { version: number; expires: string };
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

function roleOf(status: RepositoryStatus, role: string): RoleStatus {
  const found = status.roles.find((r) => r.role === role);
  assert.ok(found, `status lists ${role}`);
  return found;
}

describe('the tufota command line', function () {
  // Keys are sealed with the production scrypt cost: about 0.1 s each.
  this.timeout(120_000);

  let base: string;
  let dir: string;
  let keys: string;
  let files: string;
  let initOut: string;
  /** `--dir D --keys K` for the shared default repository. */
  let at: string[];

  before(async () => {
    base = await tempDir('tufota-cli-');
    dir = join(base, 'repo');
    keys = join(base, 'keys');
    files = join(base, 'files');
    at = ['--dir', dir, '--keys', keys];
    await mkdir(files);
    for (const name of ['a.bin', 'b.bin', 'c.bin', 'd.bin']) {
      await writeFile(join(files, name), `firmware ${name}\n`);
    }
    initOut = await cliOk([...at, 'init']);
  });
  after(cleanupTempDirs);

  describe('tufota init', () => {
    describe('with defaults', () => {
      it('prints every role with its threshold, keys and key files', () => {
        assert.match(initOut, /^Created repository in .*repo$/m);
        for (const [role, threshold, count] of [
          ['root', 2, 3],
          ['targets', 1, 2],
          ['releases', 1, 1],
          ['rollouts', 1, 1],
          ['snapshot', 1, 1],
          ['timestamp', 1, 1],
        ] as const) {
          assert.match(
            initOut,
            new RegExp(`^  ${role} +${threshold} of ${count}$`, 'm'),
          );
        }
        assert.match(initOut, /^Expiry: root 365d0h, .*timestamp 1d0h$/m);
        assert.match(initOut, /offline keys: keep their files off the server/);
      });

      it('writes nine ed25519 key files and version 1 of every role', async () => {
        const names = (await readdir(keys)).sort();
        assert.equal(names.length, 9);
        assert.equal(names.filter((n) => n.startsWith('root-')).length, 3);
        const root = await readJson<RootJson>(
          join(dir, 'metadata', '1.root.json'),
        );
        assert.deepEqual(
          new Set(Object.values(root.signed.keys).map((k) => k.scheme)),
          new Set(['ed25519']),
        );
        const status = await cliJson<RepositoryStatus>([...at, 'status']);
        assert.deepEqual(
          status.roles.map((r) => [r.role, r.version]),
          [
            ['root', 1],
            ['timestamp', 1],
            ['snapshot', 1],
            ['targets', 1],
            ['releases', 1],
            ['rollouts', 1],
          ],
        );
      });

      it('refuses to initialise the same folder twice', async () => {
        const before = await hashTree(base);
        const result = await runCli([...at, 'init']);
        assert.equal(result.code, 1);
        assert.match(result.err, /is already a tufota repository/);
        assert.deepEqual(await hashTree(base), before);
      });
    });

    describe('with --bins, --key-type, --key-count, --threshold, --expiry and --refresh', () => {
      let custom: string[];
      let customDir: string;
      let initJson: {
        bins: number;
        keys: { role: string; keyType: string; path: string }[];
      };

      before(async () => {
        customDir = join(base, 'custom');
        custom = ['--dir', customDir, '--keys', join(base, 'custom-keys')];
        initJson = await cliJson([
          ...custom,
          'init',
          '--bins',
          '16',
          '--key-type',
          'ecdsa-sha2-nistp256',
          '--key-type',
          'timestamp=rsassa-pss-sha256',
          '--key-count',
          'targets=3',
          '--threshold',
          'targets=2',
          '--expiry',
          'timestamp=1h',
          '--expiry',
          'targets=30d',
          '--refresh',
          'timestamp=30m',
        ]);
        // init refuses a refresh window not shorter than the period; a
        // config edited by hand may still hold one, and then the role is
        // always due (what the tests below rely on).
        const configPath = join(customDir, '.tufota', 'config.json');
        const config = JSON.parse(await readFile(configPath, 'utf8')) as {
          expiry: { timestamp: { period: number; refreshWindow: number } };
        };
        assert.equal(config.expiry.timestamp.refreshWindow, HOUR / 2);
        config.expiry.timestamp.refreshWindow = 2 * HOUR;
        await writeFile(configPath, JSON.stringify(config, null, 2));
      });

      it('splits releases into 16 hashed bins', async () => {
        assert.equal(initJson.bins, 16);
        const status = await cliJson<RepositoryStatus>([...custom, 'status']);
        const bins = status.roles.filter((r) =>
          r.role.startsWith('releases-bin-'),
        );
        assert.equal(bins.length, 16);
        assert.deepEqual(
          bins.map((b) => b.role),
          [...'0123456789abcdef'].map((h) => `releases-bin-${h}`),
        );
        const text = await cliOk([...custom, 'status']);
        assert.match(text, /^16 hashed bins: version 1, /m);
      });

      it('makes keys of the type asked for each role', async () => {
        const root = await readJson<RootJson>(
          join(customDir, 'metadata', '1.root.json'),
        );
        const schemeOf = (role: string) =>
          new Set(
            root.signed.roles[role].keyids.map(
              (id) => root.signed.keys[id].scheme,
            ),
          );
        assert.deepEqual(schemeOf('timestamp'), new Set(['rsassa-pss-sha256']));
        for (const role of ['root', 'targets', 'snapshot']) {
          assert.deepEqual(schemeOf(role), new Set(['ecdsa-sha2-nistp256']));
        }
        assert.deepEqual(
          initJson.keys.map((k) => `${k.role} ${k.keyType}`).sort(),
          [
            'releases ecdsa-sha2-nistp256',
            'rollouts ecdsa-sha2-nistp256',
            'root ecdsa-sha2-nistp256',
            'root ecdsa-sha2-nistp256',
            'root ecdsa-sha2-nistp256',
            'snapshot ecdsa-sha2-nistp256',
            'targets ecdsa-sha2-nistp256',
            'targets ecdsa-sha2-nistp256',
            'targets ecdsa-sha2-nistp256',
            'timestamp rsassa-pss-sha256',
          ],
        );
      });

      it('gives targets 3 keys with a threshold of 2, all of them signing', async () => {
        const status = await cliJson<RepositoryStatus>([...custom, 'status']);
        const targets = roleOf(status, 'targets');
        assert.equal(targets.threshold, 2);
        assert.equal(targets.keyids.length, 3);
        assert.deepEqual(
          [...targets.signedBy].sort(),
          [...targets.keyids].sort(),
        );
        const root = roleOf(status, 'root');
        assert.equal(root.threshold, 2);
        assert.equal(root.keyids.length, 3);
      });

      it('signs with the expiry periods asked for', async () => {
        const now = Date.now();
        const ts = await readJson<Signed>(
          join(customDir, 'metadata', 'timestamp.json'),
        );
        const tsLeft = Date.parse(ts.signed.expires) - now;
        assert.ok(tsLeft > 0.9 * HOUR && tsLeft <= HOUR, `${tsLeft} ms`);
        const targets = await readJson<Signed>(
          join(customDir, 'metadata', '1.targets.json'),
        );
        const targetsLeft = Date.parse(targets.signed.expires) - now;
        assert.ok(
          targetsLeft > 29.9 * DAY && targetsLeft <= 30 * DAY,
          `${targetsLeft} ms`,
        );
      });

      it('flags a role whose refresh window is longer than its period', async () => {
        const status = await cliJson<RepositoryStatus>([...custom, 'status']);
        assert.deepEqual(
          status.roles.filter((r) => r.needsRefresh).map((r) => r.role),
          ['timestamp'],
        );
        const text = await cliOk([...custom, 'status']);
        assert.match(text, /^timestamp +v1 .*due for re-signing$/m);
        assert.doesNotMatch(text, /^snapshot .*due for re-signing$/m);
      });

      it('publishes only the timestamp when it is due and nothing changed', async () => {
        const out = await cliOk([...custom, 'publish']);
        assert.equal(out, 'published timestamp version 2\n');
      });

      it('delivers a target through a bin to the tuf-js client', async () => {
        const added = await cliOk([
          ...custom,
          'targets',
          'add',
          join(files, 'a.bin'),
          '--version',
          '2.0.0',
        ]);
        assert.match(
          added,
          /^added images\/a\.bin .* in releases-bin-[0-9a-f]$/m,
        );
        const published = await cliOk([...custom, 'publish']);
        assert.match(published, /^published releases-bin-[0-9a-f] version 2$/m);
        assert.match(published, /^published snapshot version 2$/m);
        assert.match(published, /^published timestamp version 3$/m);
        const server = await serveRepository(customDir);
        try {
          const client = await newClient(customDir, server);
          const info = await client.updater.getTargetInfo('images/a.bin');
          assert.ok(info, 'the client finds images/a.bin');
          assert.deepEqual(info.custom, { version: '2.0.0' });
        } finally {
          await server.close();
        }
      });
    });
  });

  describe('tufota targets, publish, status, discard and verify on one repository', () => {
    it('adds several files at once with --version, --hardware and --custom', async () => {
      const out = await cliOk([
        ...at,
        'targets',
        'add',
        join(files, 'a.bin'),
        join(files, 'b.bin'),
        '--version',
        '1.2.0',
        '--hardware',
        'board-a',
        '--hardware',
        'board-b,board-c',
        '--custom',
        '{"channel":"beta","size":7}',
      ]);
      assert.match(
        out,
        /^added images\/a\.bin \(15 bytes, sha256 [0-9a-f]{16}…\) in releases$/m,
      );
      assert.match(out, /^added images\/b\.bin \(15 bytes, .*\) in releases$/m);
      assert.match(out, /^Not yet published: run "tufota publish"\.$/m);
    });

    it('adds a file under another delegation with --path', async () => {
      const out = await cliOk([
        ...at,
        'targets',
        'add',
        join(files, 'c.bin'),
        '--path',
        'rollouts/plan-1.json',
      ]);
      assert.match(out, /^added rollouts\/plan-1\.json .* in rollouts$/m);
    });

    it('lists the targets as unpublished, with their custom data (--json)', async () => {
      const listed = await cliJson<Listed[]>([...at, 'targets', 'list']);
      assert.deepEqual(
        listed.map((l) => [l.path, l.role, l.length, l.pending]),
        [
          ['images/a.bin', 'releases', 15, true],
          ['images/b.bin', 'releases', 15, true],
          ['rollouts/plan-1.json', 'rollouts', 15, true],
        ],
      );
      assert.deepEqual(listed[0].custom, {
        channel: 'beta',
        size: 7,
        version: '1.2.0',
        hardware: ['board-a', 'board-b', 'board-c'],
      });
      assert.match(listed[0].hashes.sha256, /^[0-9a-f]{64}$/);
      assert.match(listed[0].hashes.sha512, /^[0-9a-f]{128}$/);
      const text = await cliOk([...at, 'targets', 'list']);
      assert.match(
        text,
        /^images\/a\.bin {2}v1\.2\.0 {2}for board-a, board-b, board-c\b.*\n {4}15 bytes {2}sha256 [0-9a-f]{64} {2}releases {2}\(unpublished\)$/m,
      );
    });

    it('shows the drafts as pending in status', async () => {
      const status = await cliJson<RepositoryStatus>([...at, 'status']);
      assert.deepEqual(status.pending, ['releases', 'rollouts']);
      assert.equal(roleOf(status, 'releases').pending, true);
      assert.equal(roleOf(status, 'targets').pending, false);
      const text = await cliOk([...at, 'status']);
      assert.match(
        text,
        /unpublished changes: 2 role\(s\); run "tufota publish"/,
      );
    });

    it('publishes and prints the new version of each changed role', async () => {
      const out = await cliOk([...at, 'publish']);
      assert.equal(
        out,
        'published releases version 2\n' +
          'published rollouts version 2\n' +
          'published snapshot version 2\n' +
          'published timestamp version 2\n',
      );
      const listed = await cliJson<Listed[]>([...at, 'targets', 'list']);
      assert.ok(listed.every((l) => !l.pending));
      // A new draft marks only what it adds, not what it carries over.
      await writeFile(join(files, 'e.bin'), 'a fifth target\n');
      await cliOk([...at, 'targets', 'add', join(files, 'e.bin')]);
      const drafted = await cliJson<Listed[]>([...at, 'targets', 'list']);
      assert.deepEqual(
        drafted.filter((l) => l.pending).map((l) => l.path),
        ['images/e.bin'],
      );
      await cliOk([...at, 'discard', 'releases']);
    });

    it('says there is nothing to publish when nothing changed, and writes nothing', async () => {
      const before = await hashTree(dir);
      const out = await cliOk([...at, 'publish']);
      assert.equal(
        out,
        'nothing to publish: no changes and no role due for refresh\n',
      );
      assert.deepEqual(await hashTree(dir), before);
    });

    it('reports versions, thresholds, signatures and no refresh due (status --json)', async () => {
      const status = await cliJson<RepositoryStatus>([...at, 'status']);
      const summary = status.roles.map((r) => ({
        role: r.role,
        version: r.version,
        threshold: r.threshold,
        keys: r.keyids.length,
        signed: r.signedBy.length,
        needsRefresh: r.needsRefresh,
        expired: r.expired,
        pending: r.pending,
      }));
      const row = (
        role: string,
        version: number,
        threshold: number,
        keys: number,
      ) => ({
        role,
        version,
        threshold,
        keys,
        signed: keys,
        needsRefresh: false,
        expired: false,
        pending: false,
      });
      assert.deepEqual(summary, [
        row('root', 1, 2, 3),
        row('timestamp', 2, 1, 1),
        row('snapshot', 2, 1, 1),
        row('targets', 1, 1, 2),
        row('releases', 2, 1, 1),
        row('rollouts', 2, 1, 1),
      ]);
      for (const role of status.roles) {
        assert.ok(role.signedBy.every((id) => role.keyids.includes(id)));
      }
      assert.deepEqual(status.pending, []);
    });

    it('removes a target, keeps its file, and publishes the removal', async () => {
      const listed = await cliJson<Listed[]>([...at, 'targets', 'list']);
      const b = listed.find((l) => l.path === 'images/b.bin');
      assert.ok(b);
      const out = await cliOk([...at, 'targets', 'remove', 'images/b.bin']);
      assert.equal(
        out,
        'removed images/b.bin from releases; not yet published\n',
      );
      const after = await cliJson<Listed[]>([...at, 'targets', 'list']);
      assert.deepEqual(
        after.map((l) => l.path),
        ['images/a.bin', 'rollouts/plan-1.json'],
      );
      assert.ok(
        existsSync(join(dir, 'targets', 'images', `${b.hashes.sha256}.b.bin`)),
        'the file stays for older versions',
      );
      const published = await cliOk([...at, 'publish']);
      assert.match(published, /^published releases version 3$/m);
      assert.doesNotMatch(published, /rollouts/);
    });

    it('discards unpublished changes and leaves the published ones', async () => {
      const before = await cliJson<Listed[]>([...at, 'targets', 'list']);
      await cliOk([...at, 'targets', 'add', join(files, 'd.bin')]);
      const out = await cliOk([...at, 'discard']);
      assert.equal(out, 'discarded drafts of releases\n');
      assert.deepEqual(
        await cliJson<Listed[]>([...at, 'targets', 'list']),
        before,
      );
      assert.equal(await cliOk([...at, 'discard']), 'no unpublished changes\n');
      const named = await runCli([...at, 'discard', 'rollouts']);
      assert.equal(named.code, 1);
      assert.equal(named.err, 'error: rollouts has no draft\n');
    });

    it('verifies the published repository with OK', async () => {
      const out = await cliOk([...at, 'verify']);
      assert.equal(
        out,
        'OK: root v1, 3 targets roles, 2 targets, 12 kept versions, 0 problem(s)\n',
      );
    });

    it('publishes with the passphrase from --passphrase-file', async () => {
      const passFile = join(base, 'passphrase.txt');
      await writeFile(passFile, `${CLI_PASSPHRASE}\nignored second line\n`);
      await cliOk([...at, 'targets', 'add', join(files, 'c.bin')], {});
      const out = await cliOk(
        [...at, '--passphrase-file', passFile, 'publish'],
        {},
      );
      assert.match(out, /^published releases version 4$/m);
    });

    it('with a wrong passphrase exits 1, names the key, and publishes nothing', async () => {
      await cliOk([...at, 'targets', 'add', join(files, 'd.bin')]);
      const before = await hashTree(base);
      const result = await runCli([...at, 'publish'], {
        TUFOTA_PASSPHRASE: 'not the passphrase',
      });
      assert.equal(result.code, 1);
      // The keys publish needs are unlocked side by side, so any one of
      // them may be the one named; it must be one of them, by id and file.
      const named = (await readdir(keys))
        .filter((n) => /^(releases|snapshot|timestamp)-1-/.test(n))
        .map(
          (n) =>
            `error: wrong passphrase for key ${n.slice(-13, -5)} ` +
            `(${join(keys, n)})\n`,
        );
      assert.equal(named.length, 3);
      assert.ok(named.includes(result.err), result.err);
      assert.equal(result.out, '');
      assert.deepEqual(await hashTree(base), before, 'nothing changed');
      const status = await cliJson<RepositoryStatus>([...at, 'status']);
      assert.equal(roleOf(status, 'timestamp').version, 4);
      assert.deepEqual(status.pending, ['releases']);
    });

    describe('when a published target file is corrupted on disk', () => {
      let copy: string;
      before(async () => {
        copy = join(await tempDir('tufota-cli-corrupt-'), 'repo');
        await cp(dir, copy, { recursive: true });
        const listed = await cliJson<Listed[]>([...at, 'targets', 'list']);
        const a = listed.find((l) => l.path === 'images/a.bin');
        assert.ok(a);
        const stored = join(
          copy,
          'targets',
          'images',
          `${a.hashes.sha256}.a.bin`,
        );
        const bytes = await readFile(stored);
        bytes[0] ^= 0xff;
        await writeFile(stored, bytes);
      });

      it('reports FAILED with exit 1 and names the target', async () => {
        const result = await runCli(['--dir', copy, 'verify']);
        assert.equal(result.code, 1);
        assert.match(
          result.out,
          /^FAIL target images\/a\.bin \(releases\): sha256 mismatch \(.*\.a\.bin\)$/m,
        );
        assert.match(
          result.out,
          /^FAILED: root v1, 3 targets roles, 3 targets, \d+ kept versions, 1 problem\(s\)$/m,
        );
        assert.doesNotMatch(result.out, /plan-1/);
      });

      it('still passes with --skip-targets, which reads metadata only', async () => {
        const out = await cliOk(['--dir', copy, 'verify', '--skip-targets']);
        assert.match(out, /^OK: .* \(files not checked\), 0 problem\(s\)$/m);
      });
    });
  });
});
