/**
 * The server killed with SIGKILL while it takes uploads and publishes, then
 * started again: the repository stays valid for a client after every kill,
 * and no upload the server acknowledged is lost. Half the rounds kill at a
 * random moment; the other half wait for the publish to take the writer
 * lock and kill inside it, so kills mid-publish are certain, not lucky.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Layout } from '../../src/repository/layout.js';
import { Repository } from '../../src/repository/repository.js';
import { verifyRepository } from '../../src/repository/verify.js';
import { defaultStateFile } from '../../src/server/server.js';
import { createToken } from '../../src/server/tokens.js';
import { LowdbStateStore } from '../../src/state/lowdb-store.js';
import { requireBuild } from '../helpers/cli.js';
import { newClient, reopen } from '../helpers/client.js';
import { cleanupTempDirs, createTestRepo } from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import { killServers, serveProcess } from '../helpers/serve-process.js';
import { httpRequest } from '../helpers/server.js';
import {
  serveRepository,
  type StaticServer,
} from '../helpers/static-server.js';

/** The pid the writer lock names, or undefined when nobody holds it. */
function lockHolder(lockFile: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

/**
 * Polls every millisecond until `child` holds the writer lock, then sends
 * SIGKILL 0-20 ms later. Returns a function that stops the polling.
 */
function killInsideLock(lockFile: string, child: ChildProcess): () => void {
  const poll = setInterval(() => {
    if (lockHolder(lockFile) !== child.pid) return;
    clearInterval(poll);
    setTimeout(() => child.kill('SIGKILL'), Math.random() * 20);
  }, 1);
  return () => clearInterval(poll);
}

describe('the server killed by SIGKILL during uploads and publishes', () => {
  let reader: StaticServer | undefined;
  before(requireBuild);
  // A failed round must not leave a server behind to keep mocha running.
  after(async () => {
    killServers();
    await reader?.close();
    await cleanupTempDirs();
  });

  it('leaves a valid repository each time and loses no acknowledged upload', async function () {
    this.timeout(300_000);
    const t = await createTestRepo();
    await release(t, { 'images/base.img': 'base image' });
    const { token } = await createToken(
      new LowdbStateStore(defaultStateFile(t.dir)),
      'crash test',
      ['releases'],
    );
    reader = await serveRepository(t.dir);
    const client = await newClient(t.dir, reader);
    const acknowledged = new Map<string, string>();
    const runs: string[] = [];
    const ROUNDS = 12;
    const lockFile = new Layout(t.dir).lock;
    let killedInsidePublish = 0;

    for (let round = 0; round < ROUNDS; round++) {
      const child = await serveProcess(t.dir, t.keysDir);
      const auth = { Authorization: `Bearer ${token}` };
      // Two uploads and a publish in flight. Even rounds kill anywhere in
      // them; odd rounds kill while the publish holds the writer lock.
      const inPublish = round % 2 === 1;
      const delay = Math.floor(Math.random() * 250);
      const timer = inPublish
        ? undefined
        : setTimeout(() => child.process.kill('SIGKILL'), delay);
      let stopWatch = () => {};
      let stage = 'upload 0';
      const work = (async () => {
        for (let i = 0; i < 2; i++) {
          stage = `upload ${i}`;
          const path = `images/round${round}-${i}.img`;
          const body = randomBytes(
            200_000 + Math.floor(Math.random() * 300_000),
          );
          const answer = await httpRequest(
            child.url,
            `/api/v1/targets?path=${path}`,
            {
              method: 'POST',
              headers: auth,
              body,
            },
          );
          assert.equal(answer.status, 201, answer.body.toString());
          acknowledged.set(
            path,
            createHash('sha256').update(body).digest('hex'),
          );
        }
        stage = 'publish';
        if (inPublish) stopWatch = killInsideLock(lockFile, child.process);
        const published = await httpRequest(child.url, '/api/v1/publish', {
          method: 'POST',
          headers: { ...auth, 'Content-Type': 'application/json' },
          body: '{}',
        });
        assert.equal(published.status, 200, published.body.toString());
        return 'finished';
      })().catch((err: unknown) => {
        if (
          child.process.exitCode === null &&
          child.process.signalCode === null
        ) {
          const e = err as NodeJS.ErrnoException;
          if (
            !/ECONNRESET|ECONNREFUSED|EPIPE|socket hang up/.test(
              `${e.code} ${e.message}`,
            )
          )
            throw err;
        }
        return `cut during ${stage}`;
      });
      const outcome = await work;
      clearTimeout(timer);
      stopWatch();
      child.process.kill('SIGKILL');
      await child.exited;
      // A lock left naming the dead server: it died holding it. In an odd
      // round the uploads were done, so only the publish held it.
      const diedLocked = lockHolder(lockFile) === child.process.pid;
      if (inPublish && diedLocked) killedInsidePublish++;
      runs.push(
        `round ${round}: ` +
          (inPublish ? 'kill inside the publish' : `kill after ${delay} ms`) +
          `, work ${outcome}, died holding the lock: ${diedLocked}`,
      );
      const where = runs.join('\n');

      const report = await verifyRepository(t.dir);
      assert.deepEqual(report.problems, [], where);
      await reopen(client.metadataDir, client.targetDir, reader).refresh();
      // Acknowledged means listed: published, or in a draft the next
      // publish signs.
      const repo = await Repository.open(t.dir);
      const listed = new Map(
        (await repo.listTargets()).map((l) => [
          l.target.path,
          l.target.hashes.sha256,
        ]),
      );
      for (const [path, sha256] of acknowledged) {
        assert.equal(
          listed.get(path),
          sha256,
          `${where}\n${path} was acknowledged`,
        );
      }
    }

    // A last start, a publish through the API, and the device gets it all.
    const child = await serveProcess(t.dir, t.keysDir);
    try {
      const published = await httpRequest(child.url, '/api/v1/publish', {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${token}`,
          'Content-Type': 'application/json',
        },
        body: '{}',
      });
      assert.equal(published.status, 200, published.body.toString());
    } finally {
      child.process.kill('SIGTERM');
      await child.exited;
    }
    assert.ok(acknowledged.size > 0, runs.join('\n'));
    // At least 4 of the 6 odd rounds must have cut a publish in the middle.
    assert.ok(killedInsidePublish >= 4, runs.join('\n'));
    const updater = reopen(client.metadataDir, client.targetDir, reader);
    for (const [path, sha256] of acknowledged) {
      const info = await updater.getTargetInfo(path);
      assert.ok(info, `${path} is published`);
      const dest = join(client.targetDir, path.replace('/', '_'));
      await updater.downloadTarget(info, dest);
      const got = createHash('sha256')
        .update(await readFile(dest))
        .digest('hex');
      assert.equal(got, sha256);
    }
  });
});
