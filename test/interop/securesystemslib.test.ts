/**
 * An independent check of what tufota writes: Debian's python3-securesystemslib
 * (not tuf-js, not @tufjs/canonical-json) recomputes key ids, verifies every
 * signature over its own canonical JSON, and checks thresholds, formats and
 * target files. See check_metadata.py beside this file.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyType } from '../../src/keys/keygen.js';
import { KEYED_ROLES, type InitOptions } from '../../src/repository/init.js';
import { publish } from '../../src/repository/publish.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';

const SCRIPT = join(
  dirname(fileURLToPath(import.meta.url)),
  'check_metadata.py',
);

interface Summary {
  files: number;
  keyids: number;
  signatures: number;
  signaturesByScheme: Record<string, number>;
  thresholds: number;
  targets: number;
  metaChecks: number;
  failures: string[];
}

/** A python3 that has securesystemslib (Debian's lives in /usr/bin). */
function findPython(): string {
  const candidates = [process.env.PYTHON, '/usr/bin/python3', 'python3'];
  for (const python of candidates) {
    if (!python) continue;
    const probe = spawnSync(python, ['-c', 'import securesystemslib'], {
      stdio: 'ignore',
    });
    if (probe.status === 0) return python;
  }
  throw new Error(
    'no python3 with securesystemslib found; ' +
      'install it with "apt-get install -y python3-securesystemslib"',
  );
}

function check(python: string, repoDir: string): Promise<Summary> {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      [SCRIPT, repoDir],
      { timeout: 30000 },
      (err, stdout, stderr) => {
        // Exit 1 means "failures listed"; anything else without JSON is a crash.
        try {
          resolve(JSON.parse(stdout) as Summary);
        } catch {
          reject(
            new Error(`check_metadata.py failed: ${err?.message}\n${stderr}`),
          );
        }
      },
    );
  });
}

const ROLES = KEYED_ROLES;

/**
 * A repository of one key type with targets in releases (through bins where
 * asked) and rollouts, published twice, the second time with a new root.
 */
async function publishedRepo(
  type: KeyType,
  options: Partial<InitOptions>,
): Promise<TestRepo> {
  const t = await createTestRepo({
    keyTypes: Object.fromEntries(ROLES.map((r) => [r, type])),
    ...options,
  });
  const files = {
    'images/fw.img': `firmware signed with ${type}`,
    'rollouts/wave-1': `rollout signed with ${type}`,
  };
  const repo = await t.open();
  try {
    const inputs = [];
    for (const [path, content] of Object.entries(files)) {
      const source = join(t.base, path.replace('/', '_'));
      await writeFile(source, content);
      inputs.push({ source, path });
    }
    await repo.addTargets(inputs);
    await publish(repo);
    await repo.addTargets([
      { source: inputs[0].source, path: 'images/fw-copy.img' },
    ]);
    const second = await publish(repo, { resign: ['root'] });
    assert.equal(second.versions.root, 2);
  } finally {
    await repo.close();
  }
  return t;
}

describe('metadata checked by securesystemslib', function () {
  this.timeout(60000);
  let python: string;

  before(() => {
    python = findPython();
  });
  after(cleanupTempDirs);

  const cases: { type: KeyType; options: Partial<InitOptions> }[] = [
    { type: 'ed25519', options: { bins: 16 } },
    { type: 'ecdsa-sha2-nistp256', options: {} },
    // RSA keys are slow to make: one key for each role.
    {
      type: 'rsassa-pss-sha256',
      options: { keyCounts: { root: 1, targets: 1 }, thresholds: { root: 1 } },
    },
  ];
  const repos = new Map<KeyType, TestRepo>();

  for (const c of cases) {
    describe(`with ${c.type} keys`, () => {
      it('recomputes every key id and verifies every signature', async () => {
        const t = await publishedRepo(c.type, c.options);
        repos.set(c.type, t);

        const summary = await check(python, t.dir);

        assert.deepEqual(summary.failures, []);
        // 2 roots, 3 timestamps (plus timestamp.json), 3 snapshots, the
        // targets roles: every file was read.
        assert.ok(summary.files >= 12, `files: ${summary.files}`);
        assert.ok(summary.keyids > 0, 'key ids were recomputed');
        assert.ok(summary.signatures > 0, 'signatures were verified');
        assert.deepEqual(Object.keys(summary.signaturesByScheme), [c.type]);
        assert.ok(summary.thresholds > 0, 'thresholds were checked');
        // Three targets under two consistent names each.
        assert.equal(summary.targets, 6);
        assert.ok(summary.metaChecks > 0, 'snapshot and roles were matched');
      });
    });
  }

  describe('when a published file is tampered with', () => {
    const cases: {
      name: string;
      tamper: (dir: string) => Promise<void>;
      reports: RegExp;
    }[] = [
      {
        name: 'a byte inside signed of a delegated role',
        async tamper(dir) {
          const file = join(dir, 'metadata', '2.rollouts.json');
          const text = await readFile(file, 'utf8');
          const changed = text.replace('"length":', '"length":1');
          assert.notEqual(changed, text);
          await writeFile(file, changed);
        },
        reports:
          /^2\.rollouts\.json: invalid signature by [0-9a-f]{64} \(ed25519\)$/m,
      },
      {
        name: 'a byte of a target file',
        async tamper(dir) {
          const meta = JSON.parse(
            await readFile(join(dir, 'metadata', '2.rollouts.json'), 'utf8'),
          ) as {
            signed: { targets: Record<string, { hashes: { sha256: string } }> };
          };
          const digest = meta.signed.targets['rollouts/wave-1'].hashes.sha256;
          const file = join(dir, 'targets', 'rollouts', `${digest}.wave-1`);
          const bytes = await readFile(file);
          bytes[0] ^= 0x20;
          await writeFile(file, bytes);
        },
        reports: /target rollouts\/wave-1: sha256 does not match/,
      },
      {
        name: 'a key id in root',
        async tamper(dir) {
          const file = join(dir, 'metadata', '1.root.json');
          const doc = JSON.parse(await readFile(file, 'utf8')) as {
            signed: { keys: Record<string, { keyval: { public: string } }> };
          };
          const [first] = Object.values(doc.signed.keys);
          first.keyval.public = first.keyval.public.replace(/^./, (ch) =>
            ch === 'a' ? 'b' : 'a',
          );
          await writeFile(file, JSON.stringify(doc));
        },
        reports:
          /^1\.root\.json: key id [0-9a-f]{64} recomputes as [0-9a-f]{64}$/m,
      },
    ];

    for (const c of cases) {
      it(`reports ${c.name}`, async () => {
        const t = repos.get('ed25519') ?? (await publishedRepo('ed25519', {}));
        const copy = join(await tempDir(), 'repo');
        await cp(t.dir, copy, { recursive: true });
        await c.tamper(copy);

        const summary = await check(python, copy);

        assert.ok(
          summary.failures.some((f) => c.reports.test(f)),
          `expected a failure matching ${String(c.reports)}, got:\n` +
            summary.failures.join('\n'),
        );
      });
    }
  });
});
