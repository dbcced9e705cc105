/**
 * The server's log as an operator reads it: one JSON line per request with
 * the URL as the client sent it, admin actions naming the token's id, and
 * never a token, whatever route or refusal it went through.
 */
import assert from 'node:assert/strict';
import { requireBuild } from '../helpers/cli.js';
import { killServers, serveProcess } from '../helpers/serve-process.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { httpRequest } from '../helpers/server.js';
import { createToken } from '../../src/server/tokens.js';
import { LowdbStateStore } from '../../src/state/lowdb-store.js';
import { defaultStateFile } from '../../src/server/server.js';

interface LogLine {
  msg?: string;
  url?: string;
  status?: number;
  tokenId?: string;
  [field: string]: unknown;
}

describe('the request log', () => {
  let t: TestRepo;

  before(async () => {
    requireBuild();
    t = await createTestRepo();
  });
  after(async () => {
    killServers();
    await cleanupTempDirs();
  });

  it('logs the URL as sent and the token id, never the token', async () => {
    const store = new LowdbStateStore(defaultStateFile(t.dir));
    const releases = await createToken(store, 'ci', ['releases']);
    const reader = await createToken(store, 'dashboard', ['rollouts']);
    const server = await serveProcess(t.dir, t.keysDir, {
      TUFOTA_LOG: 'info',
    });
    const { url } = server;
    try {
      const upload = '/api/v1/targets?path=images/log.img&version=1.0.0';
      const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
      const answers = [
        await httpRequest(url, upload, {
          method: 'POST',
          headers: bearer(releases.token),
          body: 'firmware bytes',
        }),
        await httpRequest(url, '/api/v1/targets/images/log.img', {
          method: 'DELETE',
          headers: bearer(reader.token),
        }),
        await httpRequest(url, '/api/v1/publish', {
          method: 'POST',
          headers: bearer(`${releases.token}x`),
        }),
        await httpRequest(url, '/metadata/timestamp.json'),
      ];
      assert.deepEqual(
        answers.map((a) => a.status),
        [201, 403, 401, 200],
      );
    } finally {
      server.process.kill('SIGTERM');
      await server.exited;
    }
    const stderr = server.stderr();

    const lines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
    for (const secret of [releases.token, reader.token]) {
      assert.ok(!stderr.includes(secret), 'a token reached the log');
      const tail = secret.slice(-16);
      assert.ok(!stderr.includes(tail), 'part of a token reached the log');
    }
    // One line per request when it ends; the API adds its own lines with
    // the reason for a refusal.
    const requests = lines.filter(
      (l) => typeof l.status === 'number' && l.msg?.startsWith('request'),
    );
    assert.deepEqual(
      requests.map((l) => [l.url, l.status]),
      [
        ['/api/v1/targets?path=images/log.img&version=1.0.0', 201],
        ['/api/v1/targets/images/log.img', 403],
        ['/api/v1/publish', 401],
        ['/metadata/timestamp.json', 200],
      ],
    );
    const uploaded = lines.find((l) => l.msg === 'target uploaded');
    assert.equal(
      uploaded?.tokenId,
      releases.record.id,
      'who uploaded is named',
    );
    const refused = lines.find((l) => l.msg === 'refused' && l.status === 403);
    assert.ok(
      String(refused?.reason).includes(reader.record.id),
      'the refusal names the token by its id',
    );
    assert.ok(lines.some((l) => l.msg === 'server stopped'));
  });
});
