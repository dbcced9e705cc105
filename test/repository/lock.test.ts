import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { LockedError } from '../../src/errors.js';
import { RepositoryLock } from '../../src/repository/lock.js';
import { Repository } from '../../src/repository/repository.js';
import { CLI_PASSPHRASE, runCli } from '../helpers/cli.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { hashTree } from '../helpers/tree.js';

/** The pid of a process that has run, exited and been reaped. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  assert.equal(child.status, 0);
  return child.pid;
}

function lockRecord(pid: number, host = hostname()): string {
  return JSON.stringify({ pid, host, since: '2020-01-01T00:00:00.000Z' });
}

describe('the repository writer lock', () => {
  let t: TestRepo;
  let lockPath: string;

  before(async () => {
    t = await createTestRepo();
    lockPath = join(t.dir, '.tufota', 'lock');
  });
  after(cleanupTempDirs);

  afterEach(async () => {
    // Each test leaves the repository unlocked for the next one.
    assert.equal(existsSync(lockPath), false, 'lock released');
    await Promise.resolve();
  });

  describe('when a writer holds it', () => {
    it('refuses a second writer with LockedError naming the holder', async () => {
      const first = await t.open();
      try {
        await assert.rejects(
          Repository.open(t.dir, { lock: true }),
          (err: unknown) => {
            assert.ok(err instanceof LockedError, String(err));
            assert.equal(err.code, 'LOCKED');
            assert.match(
              err.message,
              new RegExp(
                `locked by process ${process.pid} on ${hostname()} since \\d{4}-`,
              ),
            );
            assert.ok(err.message.includes(lockPath), err.message);
            return true;
          },
        );
        const holder = JSON.parse(await readFile(lockPath, 'utf8')) as {
          pid: number;
        };
        assert.equal(
          holder.pid,
          process.pid,
          'the first writer still holds it',
        );
      } finally {
        await first.close();
      }
      const second = await Repository.open(t.dir, { lock: true });
      await second.close();
    });

    it('lets readers open the repository without the lock', async () => {
      const writer = await t.open();
      try {
        const reader = await Repository.open(t.dir);
        assert.equal(reader.timestamp.signed.version, 1);
      } finally {
        await writer.close();
      }
    });

    it('gives exactly one of two simultaneous writers the lock', async () => {
      const a = new RepositoryLock(lockPath);
      const b = new RepositoryLock(lockPath);
      const results = await Promise.allSettled([a.acquire(), b.acquire()]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1, 'one winner');
      assert.ok(lost[0].reason instanceof LockedError);
      await a.release();
      await b.release();
    });

    it('makes a CLI write fail with exit 1 and the holder in the message', async () => {
      const writer = await t.open();
      const before = await hashTree(t.base);
      try {
        const file = join(t.base, 'fw.bin');
        await writeFile(file, 'firmware');
        const after = await hashTree(t.base);
        const result = await runCli(['--dir', t.dir, 'targets', 'add', file], {
          TUFOTA_PASSPHRASE: CLI_PASSPHRASE,
        });
        assert.equal(result.code, 1);
        assert.match(
          result.err,
          new RegExp(
            `error: the repository is locked by process ${process.pid} `,
          ),
        );
        assert.deepEqual(await hashTree(t.base), after, 'nothing changed');
        assert.ok(Object.keys(after).length > Object.keys(before).length);
      } finally {
        await writer.close();
      }
    });
  });

  describe('when a lock file is left behind', () => {
    it('takes over a lock left by a dead process on this host', async () => {
      const pid = deadPid();
      await writeFile(lockPath, lockRecord(pid));
      const repo = await t.open();
      try {
        const holder = JSON.parse(await readFile(lockPath, 'utf8')) as {
          pid: number;
        };
        assert.equal(holder.pid, process.pid, 'the lock now names us');
      } finally {
        await repo.close();
      }
    });

    it('lets only one of several simultaneous writers take over a dead lock', async () => {
      // All of them see the dead holder; the takeover must not let a slower
      // one delete the lock a faster one has just made. The race is timing
      // dependent, so it is run many times.
      const pid = deadPid();
      const doubled: number[] = [];
      for (let round = 0; round < 200; round++) {
        await writeFile(lockPath, lockRecord(pid));
        const locks = [0, 1, 2].map(() => new RepositoryLock(lockPath));
        const results = await Promise.allSettled(locks.map((l) => l.acquire()));
        const won = results.filter((r) => r.status === 'fulfilled').length;
        if (won !== 1) doubled.push(won);
        for (const lock of locks) await lock.release();
        await unlink(lockPath).catch(() => undefined);
      }
      assert.deepEqual(
        doubled,
        [],
        'rounds in which more than one writer held the lock at once',
      );
    });

    it('does not take over a lock whose process still runs', async () => {
      // Our parent (mocha's shell or runner) is alive for the whole test.
      await writeFile(lockPath, lockRecord(process.ppid));
      try {
        await assert.rejects(
          Repository.open(t.dir, { lock: true }),
          new RegExp(`locked by process ${process.ppid} on ${hostname()}`),
        );
        assert.equal(
          await readFile(lockPath, 'utf8'),
          lockRecord(process.ppid),
        );
      } finally {
        await unlink(lockPath);
      }
    });

    it('does not take over a lock held on another host', async () => {
      const record = lockRecord(deadPid(), 'some-other-host.example');
      await writeFile(lockPath, record);
      try {
        await assert.rejects(
          Repository.open(t.dir, { lock: true }),
          (err: unknown) =>
            err instanceof LockedError &&
            /on some-other-host\.example since 2020-01-01/.test(err.message),
        );
        assert.equal(await readFile(lockPath, 'utf8'), record, 'left alone');
      } finally {
        await unlink(lockPath);
      }
    });

    it('takes over a lock file that names nobody at once', async () => {
      // Records are linked in whole, so no writer of ours leaves such a file
      // in passing; an unreadable one is debris.
      await writeFile(lockPath, '');
      const repo = await Repository.open(t.dir, { lock: true });
      try {
        assert.match(await readFile(lockPath, 'utf8'), /"pid":/);
      } finally {
        await repo.close();
      }
    });

    it('takes over a lock file that names nobody once it is old', async () => {
      // A writer killed between creating the file and writing its record.
      await writeFile(lockPath, '');
      const past = new Date(Date.now() - 60_000);
      await utimes(lockPath, past, past);
      const repo = await t.open();
      try {
        const holder = JSON.parse(await readFile(lockPath, 'utf8')) as {
          pid: number;
        };
        assert.equal(holder.pid, process.pid);
      } finally {
        await repo.close();
      }
    });
  });
});
