/**
 * The server killed with SIGKILL while it takes uploads and publishes, at
 * random moments, then started again: the repository stays valid for a
 * client after every kill, and no upload the server acknowledged is lost.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository } from '../../src/repository/repository.js';
import { verifyRepository } from '../../src/repository/verify.js';
import { defaultStateFile } from '../../src/server/server.js';
import { createToken } from '../../src/server/tokens.js';
import { LowdbStateStore } from '../../src/state/lowdb-store.js';
import { DIST_BIN, requireBuild } from '../helpers/cli.js';
import { newClient, reopen } from '../helpers/client.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
} from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import { httpRequest } from '../helpers/server.js';
import { serveRepository } from '../helpers/static-server.js';

interface Child {
  process: ChildProcess;
  url: string;
  exited: Promise<void>;
}

/** `tufota serve` as a real process; resolves once it listens. */
function serve(dir: string, keys: string): Promise<Child> {
  const child = spawn(
    process.execPath,
    [
      DIST_BIN,
      '--dir',
      dir,
      '--keys',
      keys,
      '--json',
      'serve',
      '--insecure-http',
      '--port',
      '0',
    ],
    {
      env: {
        ...process.env,
        NODE_ENV: 'test',
        TUFOTA_PASSPHRASE: TEST_PASSPHRASE,
        TUFOTA_LOG: 'silent',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<void>((resolve) =>
    child.on('close', () => resolve()),
  );
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        const brace = out.indexOf('}');
        if (brace > 0) {
          const { url } = JSON.parse(out.slice(0, brace + 1)) as {
            url: string;
          };
          resolve({ process: child, url, exited });
        } else if (line) reject(new Error(`unexpected output: ${line}`));
      }
    });
    child.on('close', (code) =>
      reject(new Error(`serve exited ${code}: ${err}`)),
    );
  });
}

describe('the server killed by SIGKILL during uploads and publishes', () => {
  before(requireBuild);
  after(cleanupTempDirs);

  it('leaves a valid repository each time and loses no acknowledged upload', async function () {
    this.timeout(300_000);
    const t = await createTestRepo();
    await release(t, { 'images/base.img': 'base image' });
    const { token } = await createToken(
      new LowdbStateStore(defaultStateFile(t.dir)),
      'crash test',
      ['releases'],
    );
    const reader = await serveRepository(t.dir);
    const client = await newClient(t.dir, reader);
    const acknowledged = new Map<string, string>();
    const runs: string[] = [];
    const ROUNDS = 12;

    for (let round = 0; round < ROUNDS; round++) {
      const child = await serve(t.dir, t.keysDir);
      const auth = { Authorization: `Bearer ${token}` };
      // Two uploads and a publish in flight; the kill lands anywhere in them.
      const delay = Math.floor(Math.random() * 250);
      const timer = setTimeout(() => child.process.kill('SIGKILL'), delay);
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
      child.process.kill('SIGKILL');
      await child.exited;
      runs.push(`round ${round}: kill after ${delay} ms, work ${outcome}`);
      const where = runs.join('\n');

      const report = await verifyRepository(t.dir);
      assert.deepEqual(report.problems, [], where);
      const updater = reopen(client.metadataDir, client.targetDir, reader);
      await updater.refresh();
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
    const child = await serve(t.dir, t.keysDir);
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
    await reader.close();
  });
});
