/**
 * `tufota token create|revoke` against a running server sharing the state
 * file: a token printed by the command opens the admin API for its scopes
 * only, whether it was made before the server started or while it runs, a
 * revocation takes effect at once, and the state file holds a hash of each
 * token, never the token or its secret.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { defaultStateFile } from '../../src/server/server.js';
import { cliJson, cliOk } from '../helpers/cli.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  httpRequest,
  startTestServer,
  type TestServer,
} from '../helpers/server.js';

const TOKEN = /tfk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/g;

/** The one token in a command's text output. */
function tokenIn(out: string): string {
  const found = out.match(TOKEN) ?? [];
  assert.equal(found.length, 1, out);
  return found[0];
}

/** The same token id with its secret's last character changed. */
function tampered(token: string): string {
  return token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
}

/** Status of an upload of a few bytes to `path` with `token`. */
async function upload(
  server: TestServer,
  token: string,
  path: string,
): Promise<number> {
  const answer = await httpRequest(server.url, `/api/v1/targets?path=${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
    body: `content of ${path}`,
  });
  return answer.status;
}

describe('tufota token', () => {
  let t: TestRepo;
  let at: string[];

  before(async () => {
    t = await createTestRepo();
    at = ['--dir', t.dir];
  });
  after(cleanupTempDirs);

  describe('create', () => {
    it('prints a token the server accepts for its scope, made before or while it runs', async () => {
      const before = tokenIn(
        await cliOk([
          ...at,
          'token',
          'create',
          '--scope',
          'releases',
          '--name',
          'ci',
        ]),
      );
      const server = await startTestServer(t);
      try {
        const during = await cliJson<{ token: string; scopes: string[] }>([
          ...at,
          'token',
          'create',
          '--scope',
          'rollouts',
          '--name',
          'rollout tool',
        ]);
        assert.deepEqual(during.scopes, ['rollouts']);

        const cases = [
          { token: before, path: 'images/a.img', status: 201 },
          { token: before, path: 'rollouts/a.json', status: 403 },
          { token: during.token, path: 'rollouts/b.json', status: 201 },
          { token: during.token, path: 'images/b.img', status: 403 },
          // The right id with a wrong secret.
          { token: tampered(before), path: 'images/c.img', status: 401 },
        ];
        for (const c of cases) {
          assert.equal(
            await upload(server, c.token, c.path),
            c.status,
            `${c.token.slice(0, 16)}... ${c.path}`,
          );
        }
      } finally {
        await server.close();
      }
    });

    it('keeps only a hash of each token in the state file', async () => {
      const made = [
        tokenIn(await cliOk([...at, 'token', 'create', '--scope', 'admin'])),
        (
          await cliJson<{ token: string }>([
            ...at,
            'token',
            'create',
            '--scope',
            'releases,rollouts',
          ])
        ).token,
      ];
      const file = await readFile(defaultStateFile(t.dir));
      const text = file.toString('latin1');
      for (const token of made) {
        // The secret is base64url, so it may hold `_` itself.
        const secret = token.slice('tfk_'.length + 12 + 1);
        const raw = Buffer.from(secret, 'base64url');
        for (const copy of [
          token,
          secret,
          raw.toString('hex'),
          raw.toString('base64'),
        ]) {
          assert.ok(!text.includes(copy), `the state file holds ${copy}`);
        }
        assert.ok(!file.includes(raw), 'the state file holds the raw secret');
        const hash = createHash('sha256').update(token).digest('hex');
        assert.ok(text.includes(hash), 'the hash is what is kept');
      }
      // Nor does a listing show one.
      const listed = await cliOk([...at, 'token', 'list']);
      assert.equal(listed.match(TOKEN), null, listed);
    });
  });

  describe('revoke', () => {
    it('shuts a token out of the running server at once', async () => {
      const server = await startTestServer(t);
      try {
        const issued = await cliJson<{ token: string; id: string }>([
          ...at,
          'token',
          'create',
          '--scope',
          'releases',
        ]);
        assert.equal(await upload(server, issued.token, 'images/d.img'), 201);
        await cliOk([...at, 'token', 'revoke', issued.id]);
        assert.equal(await upload(server, issued.token, 'images/e.img'), 401);
      } finally {
        await server.close();
      }
    });
  });
});
