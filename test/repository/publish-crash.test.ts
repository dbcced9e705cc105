import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import { verifyRepository } from '../../src/repository/verify.js';
import { requireBuild, runCli, spawnCli } from '../helpers/cli.js';
import { newClient, reopen, type TestClient } from '../helpers/client.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  serveRepository,
  type StaticServer,
} from '../helpers/static-server.js';

/** One checkpoint of a publish, and the change being published at it. */
interface FaultPoint {
  point: string;
  why: string;
  /** Also changes rollouts, so two targets roles are written. */
  rollouts?: boolean;
  resign?: string[];
  /** The cut comes after timestamp.json: the new publication is live. */
  lands?: boolean;
}

const POINTS: FaultPoint[] = [
  { point: 'publish:releases', why: 'before the changed role' },
  {
    point: 'publish:rollouts',
    why: 'between two changed roles',
    rollouts: true,
  },
  { point: 'publish:snapshot', why: 'before the snapshot' },
  { point: 'publish:root', why: 'before a new root', resign: ['root'] },
  { point: 'publish:timestamp', why: 'before the timestamp' },
  {
    point: 'publish:timestamp',
    why: 'before the timestamp, after a new root',
    resign: ['root'],
  },
  { point: 'publish:done', why: 'after the timestamp', lands: true },
];

/** A repository with fw.bin "v1" published and "v2" waiting in a draft. */
interface Staged {
  t: TestRepo;
  server: StaticServer;
  client: TestClient;
  resign: string[];
}

const env = { TUFOTA_PASSPHRASE: TEST_PASSPHRASE };
const cliAt = (t: TestRepo) => ['--dir', t.dir, '--keys', t.keysDir];

async function addFile(
  t: TestRepo,
  path: string,
  content: string,
): Promise<void> {
  const source = join(t.base, `${path.replace(/\//g, '_')}.src`);
  await writeFile(source, content);
  const repo = await t.open();
  try {
    await repo.addTargets([{ source, path }], undefined, { replace: true });
  } finally {
    await repo.close();
  }
}

let downloads = 0;

/** What a device that restarts and refreshes now downloads for `path`. */
async function clientGets(
  s: Pick<Staged, 'client' | 'server'>,
  path: string,
): Promise<string | undefined> {
  const updater = reopen(s.client.metadataDir, s.client.targetDir, s.server);
  await updater.refresh();
  const info = await updater.getTargetInfo(path);
  if (!info) return undefined;
  const file = join(s.client.targetDir, `download-${++downloads}`);
  await updater.downloadTarget(info, file);
  return readFile(file, 'utf8');
}

async function assertValid(dir: string): Promise<void> {
  const report = await verifyRepository(dir);
  assert.deepEqual(report.problems, [], 'verify finds no problem');
  assert.equal(report.ok, true);
}

async function stage(fault: FaultPoint, staged: Staged[]): Promise<Staged> {
  const t = await createTestRepo();
  await addFile(t, 'images/fw.bin', 'v1');
  const repo = await t.open();
  try {
    await publish(repo);
  } finally {
    await repo.close();
  }
  const server = await serveRepository(t.dir);
  const client = await newClient(t.dir, server);
  const s: Staged = { t, server, client, resign: fault.resign ?? [] };
  staged.push(s);
  assert.equal(await clientGets(s, 'images/fw.bin'), 'v1');
  await addFile(t, 'images/fw.bin', 'v2');
  if (fault.rollouts) await addFile(t, 'rollouts/plan.json', '{"wave":1}');
  return s;
}

/** After the cut: the old publication is whole, or the new one if it landed. */
async function assertAfterCut(s: Staged, fault: FaultPoint): Promise<void> {
  await assertValid(s.t.dir);
  assert.equal(
    await clientGets(s, 'images/fw.bin'),
    fault.lands ? 'v2' : 'v1',
    'what the client downloads after the cut',
  );
}

/** After a publish without the fault: the change is out. */
async function assertPublished(s: Staged, fault: FaultPoint): Promise<void> {
  await assertValid(s.t.dir);
  assert.equal(await clientGets(s, 'images/fw.bin'), 'v2');
  if (fault.rollouts) {
    assert.equal(await clientGets(s, 'rollouts/plan.json'), '{"wave":1}');
  }
  const repo = await Repository.open(s.t.dir);
  assert.deepEqual(repo.pendingRoles(), [], 'no draft is left');
  assert.equal(existsSync(join(s.t.dir, '.tufota', 'lock')), false);
}

describe('publish cut short', function () {
  this.timeout(120_000);
  const staged: Staged[] = [];

  after(async () => {
    for (const s of staged) await s.server.close();
    await cleanupTempDirs();
  });

  describe('by an error at a checkpoint (TUFOTA_FAULT=POINT:error)', () => {
    let saved: string | undefined;
    beforeEach(() => {
      saved = process.env.TUFOTA_FAULT;
    });
    afterEach(() => {
      if (saved === undefined) delete process.env.TUFOTA_FAULT;
      else process.env.TUFOTA_FAULT = saved;
    });

    for (const fault of POINTS) {
      describe(`at ${fault.point}, ${fault.why}`, () => {
        it('throws, keeps the repository valid for clients, and the next publish completes', async () => {
          const s = await stage(fault, staged);
          const timestampPath = join(s.t.dir, 'metadata', 'timestamp.json');
          const timestampBefore = await readFile(timestampPath);

          process.env.TUFOTA_FAULT = `${fault.point}:error`;
          const repo = await s.t.open();
          try {
            await assert.rejects(
              publish(repo, { resign: s.resign }),
              new RegExp(`^Error: ENOSPC: .*\\(fault at ${fault.point}\\)$`),
            );
          } finally {
            await repo.close();
            delete process.env.TUFOTA_FAULT;
          }

          await assertAfterCut(s, fault);
          if (!fault.lands) {
            assert.deepEqual(
              await readFile(timestampPath),
              timestampBefore,
              'timestamp.json is untouched',
            );
          }

          const again = await s.t.open();
          let result;
          try {
            result = await publish(again, { resign: s.resign });
          } finally {
            await again.close();
          }
          if (fault.lands) {
            // The draft is already live; the next publish drops it.
            assert.deepEqual(result, {
              published: false,
              versions: {},
              unchanged: ['releases'],
              pending: [],
            });
          } else {
            assert.equal(result.published, true);
            assert.equal(result.versions.releases, 3);
            if (fault.rollouts) assert.equal(result.versions.rollouts, 2);
            if (fault.resign?.includes('root')) {
              assert.ok(result.versions.root >= 2);
            }
          }
          await assertPublished(s, fault);
        });
      });
    }
  });

  describe('by SIGKILL at a checkpoint (TUFOTA_FAULT=POINT:kill)', () => {
    before(requireBuild);

    for (const fault of POINTS) {
      describe(`at ${fault.point}, ${fault.why}`, () => {
        it('dies by SIGKILL, leaves a valid repository, and publish completes after it', async () => {
          const s = await stage(fault, staged);
          const resign = s.resign.flatMap((r) => ['--resign', r]);
          const killed = await spawnCli([...cliAt(s.t), 'publish', ...resign], {
            env: { ...env, TUFOTA_FAULT: `${fault.point}:kill` },
          });
          assert.equal(killed.signal, 'SIGKILL', killed.stderr);
          assert.ok(
            existsSync(join(s.t.dir, '.tufota', 'lock')),
            'the killed writer left its lock behind',
          );
          await assertAfterCut(s, fault);

          const again = await runCli(
            [...cliAt(s.t), 'publish', ...resign],
            env,
          );
          assert.equal(again.code, 0, again.err);
          if (fault.lands) {
            assert.equal(
              again.out,
              'releases: draft changed nothing; dropped\n' +
                'nothing to publish: no changes and no role due for refresh\n',
            );
          } else {
            assert.match(again.out, /^published releases version 3$/m);
            assert.match(again.out, /^published timestamp version 3$/m);
          }
          await assertPublished(s, fault);
        });
      });
    }
  });

  describe('by SIGKILL at random times while publishing a batch', () => {
    before(requireBuild);

    it('leaves a valid repository that clients refresh from, every time', async function () {
      this.timeout(300_000);
      const t = await createTestRepo();
      const server = await serveRepository(t.dir);
      const client = await newClient(t.dir, server);
      staged.push({ t, server, client, resign: [] });
      const runs: string[] = [];

      // Node alone takes a few hundred ms to start, so the kill window is
      // the length of one uncut publish of a batch, measured here.
      await addFile(t, 'images/warm-up.bin', 'warm-up');
      const started = Date.now();
      const uncut = await spawnCli([...cliAt(t), 'publish'], { env });
      const window = Math.max(300, Math.ceil((Date.now() - started) * 1.1));
      assert.equal(uncut.code, 0, uncut.stderr);

      for (let run = 0; run < 10; run++) {
        const batch = Array.from({ length: 8 }, (_, i) => ({
          path: `images/run${run}-${i}.bin`,
          content: `run ${run} file ${i}`,
        }));
        const sources = [];
        for (const b of batch) {
          const source = join(t.base, `run${run}-${b.path.slice(7)}`);
          await writeFile(source, b.content);
          sources.push({ source, path: b.path });
        }
        const repo = await t.open();
        try {
          await repo.addTargets(sources);
        } finally {
          await repo.close();
        }

        const delay = Math.floor(Math.random() * window);
        const result = await spawnCli([...cliAt(t), 'publish'], {
          env,
          killAfterMs: delay,
        });
        const outcome = result.signal ?? `exit ${result.code}`;
        runs.push(
          `run ${run}: kill after ${delay} of ${window} ms -> ${outcome}`,
        );
        const where = runs.join('\n');
        if (result.signal !== 'SIGKILL') {
          assert.equal(result.code, 0, `${where}\n${result.stderr}`);
        }

        const report = await verifyRepository(t.dir);
        assert.deepEqual(report.problems, [], where);
        // The client follows whatever timestamp.json now names.
        const updater = reopen(client.metadataDir, client.targetDir, server);
        await updater.refresh();
        const published = await Repository.open(t.dir);
        const listed = Object.keys(
          (await published.publishedTargets('releases')).signed.targets,
        );
        for (const path of listed) {
          assert.ok(await updater.getTargetInfo(path), `${where}\n${path}`);
        }
        const clientTimestamp = JSON.parse(
          await readFile(join(client.metadataDir, 'timestamp.json'), 'utf8'),
        ) as { signed: { version: number } };
        assert.equal(
          clientTimestamp.signed.version,
          published.timestamp.signed.version,
          where,
        );
      }

      const last = await runCli([...cliAt(t), 'publish'], env);
      assert.equal(last.code, 0, `${runs.join('\n')}\n${last.err}`);
      await assertValid(t.dir);
      const updater = reopen(client.metadataDir, client.targetDir, server);
      await updater.refresh();
      for (let run = 0; run < 10; run++) {
        for (let i = 0; i < 8; i++) {
          const info = await updater.getTargetInfo(`images/run${run}-${i}.bin`);
          assert.ok(info, `images/run${run}-${i}.bin is published`);
        }
      }
      assert.equal(existsSync(join(t.dir, '.tufota', 'lock')), false);
    });
  });
});
