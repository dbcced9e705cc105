/**
 * The admin API: every route refused without a valid token of the right
 * scope, bad bodies and target names refused with nothing stored, and the
 * routes doing their work when allowed.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { revokeToken } from '../../src/server/tokens.js';
import { readKeyFile } from '../../src/keys/keyfile.js';
import { signFile } from '../../src/repository/signing.js';
import { cliOk } from '../helpers/cli.js';
import { newClient } from '../helpers/client.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import {
  httpRequest,
  jsonOf,
  startTestServer,
  type Answer,
  type TestServer,
} from '../helpers/server.js';
import {
  KeyBox,
  passphrases,
  serverKeyring,
} from '../helpers/signing-events.js';
import { hashTree } from '../helpers/tree.js';

interface Route {
  method: string;
  path: string;
  body?: string;
  /** A scope that may not call it; none when every scope may. */
  wrong?: 'releases' | 'rollouts';
}

const ROUTES: Route[] = [
  {
    method: 'POST',
    path: '/api/v1/targets?path=images/new.img',
    body: 'new',
    wrong: 'rollouts',
  },
  {
    method: 'POST',
    path: '/api/v1/targets?path=rollouts/stable.json',
    body: '{}',
    wrong: 'releases',
  },
  {
    method: 'DELETE',
    path: '/api/v1/targets/images/fw.img',
    wrong: 'rollouts',
  },
  { method: 'POST', path: '/api/v1/publish', body: '{}' },
  { method: 'GET', path: '/api/v1/status' },
  { method: 'GET', path: '/api/v1/signing-events', wrong: 'releases' },
  {
    method: 'POST',
    path: '/api/v1/signing-events/root/signatures',
    body: '{"keyid":"a","sig":"b"}',
    wrong: 'rollouts',
  },
  { method: 'GET', path: '/api/v1/settings' },
  {
    method: 'PUT',
    path: '/api/v1/settings',
    body: '{"maxUploadBytes":1}',
    wrong: 'releases',
  },
];

describe('admin API', () => {
  let t: TestRepo;
  let server: TestServer;
  let keys: KeyBox;
  let releasesToken: string;
  let adminToken: string;

  const call = (
    route: { method: string; path: string; body?: string | Buffer },
    token?: string,
    headers: Record<string, string> = {},
  ): Promise<Answer> =>
    httpRequest(server.url, route.path, {
      method: route.method,
      body: route.body,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(route.body !== undefined && !route.path.includes('/targets?')
          ? { 'Content-Type': 'application/json' }
          : {}),
        ...headers,
      },
    });

  before(async () => {
    t = await createTestRepo();
    keys = new KeyBox(t);
    await release(t, { 'images/fw.img': 'first image' });
    // The server holds the online keys only, as in production.
    await (await serverKeyring(keys)).close();
    server = await startTestServer(t, {
      keysDirs: [join(t.base, 'server-keys')],
      maxUploadBytes: 64 * 1024,
    });
    releasesToken = await server.token('releases');
    adminToken = await server.token('admin');
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  describe('when the caller may not call the route', () => {
    const callers: [string, () => Promise<string | undefined>, number][] = [
      ['no token', () => Promise.resolve(undefined), 401],
      ['a malformed token', () => Promise.resolve('not-a-token'), 401],
      [
        'a token of the right form that was never issued',
        () => Promise.resolve(`tfk_${'0'.repeat(12)}_${'A'.repeat(43)}`),
        401,
      ],
      [
        'a revoked admin token',
        async () => {
          const token = await server.token('admin');
          await revokeToken(server.store, token.split('_')[1]);
          return token;
        },
        401,
      ],
      [
        'an issued token with one character changed',
        async () => {
          const token = await server.token('admin');
          return token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
        },
        401,
      ],
    ];
    for (const route of ROUTES) {
      for (const [who, token, status] of callers) {
        it(`${route.method} ${route.path} with ${who}: ${status}, nothing changed`, async () => {
          const before = await hashTree(t.dir);
          const a = await call(route, await token());
          assert.equal(a.status, status, a.body.toString());
          assert.match(String(jsonOf(a).error), /token/);
          if (status === 401)
            assert.match(String(a.headers['www-authenticate']), /^Bearer/);
          const after = await hashTree(t.dir);
          delete before['.tufota/server/state.json'];
          delete after['.tufota/server/state.json'];
          assert.deepEqual(after, before);
        });
      }
      if (route.wrong) {
        const wrong = route.wrong;
        it(`${route.method} ${route.path} with a ${wrong} token: 403, nothing changed`, async () => {
          const token = await server.token(wrong);
          const before = await hashTree(t.dir);
          const a = await call(route, token);
          assert.equal(a.status, 403, a.body.toString());
          assert.match(String(jsonOf(a).error), /lacks the scope/);
          assert.deepEqual(await hashTree(t.dir), before);
        });
      }
    }
  });

  describe('bad bodies and target names', () => {
    const names = [
      '../escape.img',
      'images/../../escape.img',
      '/etc/passwd',
      'images/%2e%2e',
      'images/f%C3%AFrmware.img',
      'images/fw%00.img',
      'images/%E2%80%AEgmi.exe',
      'images/%EF%BC%8E%EF%BC%8E',
      'images/a%5Cb.img',
      'images/.hidden',
      '',
    ];
    for (const name of names) {
      it(`refuses an upload to "${decodeURIComponent(name)}" and stores nothing`, async () => {
        const before = await hashTree(t.dir);
        const a = await call(
          { method: 'POST', path: `/api/v1/targets?path=${name}`, body: 'x' },
          releasesToken,
        );
        assert.equal(a.status, 400, a.body.toString());
        assert.match(String(jsonOf(a).error), /target path/);
        assert.deepEqual(await hashTree(t.dir), before);
      });
    }
    for (const name of [
      '..%2F.tufota%2Fconfig.json',
      'images%2F..%2F..%2Fx',
      '%2Fetc%2Fpasswd',
      'images/%ff',
    ]) {
      it(`refuses DELETE of "${name}"`, async () => {
        const before = await hashTree(t.dir);
        const a = await call(
          { method: 'DELETE', path: `/api/v1/targets/${name}` },
          releasesToken,
        );
        assert.ok([400, 404].includes(a.status), `${a.status}`);
        assert.deepEqual(await hashTree(t.dir), before);
      });
    }

    const oversized: [string, Record<string, string>][] = [
      ['with its Content-Length', {}],
      ['sent chunked, without a length', { 'Transfer-Encoding': 'chunked' }],
    ];
    for (const [how, headers] of oversized) {
      it(`refuses an upload over the size limit ${how} (413) and leaves no copy`, async () => {
        const before = await hashTree(t.dir);
        const a = await call(
          {
            method: 'POST',
            path: '/api/v1/targets?path=images/big.img',
            body: Buffer.alloc(200 * 1024),
          },
          releasesToken,
          headers,
        ).catch((err: NodeJS.ErrnoException) => {
          // The server may close the socket before the client has sent all.
          assert.match(String(err.code), /EPIPE|ECONNRESET/);
          return undefined;
        });
        if (a) assert.equal(a.status, 413, a.body.toString());
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(
          await readdir(join(t.dir, '.tufota', 'server', 'uploads')),
          [],
        );
        assert.deepEqual(await hashTree(t.dir), before);
      });
    }

    it('refuses an upload whose sha256 is not the one named', async () => {
      const before = await hashTree(t.dir);
      const a = await call(
        {
          method: 'POST',
          path: `/api/v1/targets?path=images/x.img&sha256=${'0'.repeat(64)}`,
          body: 'x',
        },
        releasesToken,
      );
      assert.equal(a.status, 400);
      assert.match(String(jsonOf(a).error), /sha256 is [0-9a-f]{64}, not/);
      assert.deepEqual(await hashTree(t.dir), before);
    });

    const bodies: [string, string, number, RegExp][] = [
      ['malformed JSON', '{"resign": [', 400, /not valid JSON/],
      ['a JSON list', '[1, 2]', 400, /JSON object/],
      [
        'resign that is not a list of names',
        '{"resign": "timestamp"}',
        400,
        /list of role names/,
      ],
      [
        'a body over 64 KiB',
        JSON.stringify({ resign: ['x'.repeat(70_000)] }),
        413,
        /too large/,
      ],
    ];
    for (const [what, body, status, message] of bodies) {
      it(`refuses a publish with ${what} (${status})`, async () => {
        const before = await hashTree(t.dir);
        const a = await call(
          { method: 'POST', path: '/api/v1/publish', body },
          releasesToken,
        );
        assert.equal(a.status, status, a.body.toString());
        assert.match(String(jsonOf(a).error), message);
        assert.deepEqual(await hashTree(t.dir), before);
      });
    }

    it('refuses release fields that are not valid', async () => {
      const a = await call(
        {
          method: 'POST',
          path: '/api/v1/targets?path=images/y.img&version=not-a-version',
          body: 'y',
        },
        releasesToken,
      );
      assert.equal(a.status, 400);
      assert.match(String(jsonOf(a).error), /version/);
    });
  });

  describe('when allowed', () => {
    it('uploads, lists, removes and publishes, and a device follows', async () => {
      const image = Buffer.alloc(50_000, 7);
      const up = await call(
        {
          method: 'POST',
          path: '/api/v1/targets?path=images/fw-2.img&version=2.0.0&hardware=rpi4,rpi5',
          body: image,
        },
        releasesToken,
      );
      assert.equal(up.status, 201, up.body.toString());
      assert.equal(jsonOf(up).role, 'releases');
      assert.equal(jsonOf(up).length, image.length);
      const again = await call(
        {
          method: 'POST',
          path: '/api/v1/targets?path=images/fw-2.img&version=2.0.0&hardware=rpi4,rpi5',
          body: image,
        },
        releasesToken,
      );
      assert.equal(again.status, 200);
      assert.equal(jsonOf(again).unchanged, true);
      const other = await call(
        {
          method: 'POST',
          path: '/api/v1/targets?path=images/fw-2.img',
          body: 'other',
        },
        releasesToken,
      );
      assert.equal(other.status, 400);
      assert.match(String(jsonOf(other).error), /already listed/);

      const removed = await call(
        { method: 'DELETE', path: '/api/v1/targets/images/fw.img' },
        releasesToken,
      );
      assert.equal(removed.status, 200, removed.body.toString());
      const published = await call(
        { method: 'POST', path: '/api/v1/publish', body: '{}' },
        releasesToken,
      );
      assert.equal(published.status, 200, published.body.toString());
      const versions = jsonOf(published).versions as Record<string, number>;
      assert.ok(versions.releases);
      // /healthz shows what is served now, not the last scheduled check.
      const health = jsonOf(await httpRequest(server.url, '/healthz')) as {
        roles: { role: string; version: number }[];
      };
      assert.equal(
        health.roles.find((r) => r.role === 'timestamp')?.version,
        versions.timestamp,
      );

      const client = await newClient(t.dir, server);
      const info = await client.updater.getTargetInfo('images/fw-2.img');
      assert.ok(info);
      assert.deepEqual(info.custom, {
        version: '2.0.0',
        hardware: ['rpi4', 'rpi5'],
      });
      assert.equal(
        await client.updater.getTargetInfo('images/fw.img'),
        undefined,
      );
      const dest = join(client.targetDir, 'fw-2.img');
      await client.updater.downloadTarget(info, dest);
      assert.ok((await readFile(dest)).equals(image));

      const state = await server.store.read();
      assert.ok(state.uploads.some((u) => u.path === 'images/fw-2.img'));
      const status = await call(
        { method: 'GET', path: '/api/v1/status' },
        releasesToken,
      );
      assert.equal(status.status, 200);
      assert.ok(
        (jsonOf(status).roles as { role: string }[]).some(
          (r) => r.role === 'timestamp',
        ),
      );
    });

    it('lets a rollouts token change rollouts/ only', async () => {
      const token = await server.token('rollouts');
      const a = await call(
        {
          method: 'POST',
          path: '/api/v1/targets?path=rollouts/stable.json',
          body: '{"stage":1}',
        },
        token,
      );
      assert.equal(a.status, 201, a.body.toString());
      assert.equal(jsonOf(a).role, 'rollouts');
    });

    it('takes a detached signature for a staged root only when it verifies', async () => {
      const at = ['--dir', t.dir, '--keys', t.keysDir];
      await cliOk([...at, 'root', 'edit', '--threshold', 'root=3'], {
        TUFOTA_PASSPHRASE: TEST_PASSPHRASE,
      });
      const listed = await call(
        { method: 'GET', path: '/api/v1/signing-events' },
        adminToken,
      );
      assert.equal(listed.status, 200);
      const [event] = jsonOf(listed).events as {
        role: string;
        version: number;
        previous: { unsigned: string[] };
        signed: { version: number };
      }[];
      assert.equal(event.role, 'root');
      assert.equal(event.signed.version, 2);
      assert.equal(event.previous.unsigned.length, 3);

      // A holder signs a copy offline; only the signature travels.
      const copy = join(t.base, 'holder-root.json');
      await copyFile(join(t.dir, '.tufota', 'staged', 'root.json'), copy);
      const keyFile = await readKeyFile(await keys.path('root-1'));
      await signFile(copy, keyFile, passphrases);
      const signed = JSON.parse(await readFile(copy, 'utf8')) as {
        signatures: { keyid: string; sig: string }[];
      };
      const { keyid, sig } = signed.signatures[0];
      const route = (body: unknown) => ({
        method: 'POST',
        path: '/api/v1/signing-events/root/signatures',
        body: JSON.stringify(body),
      });
      const flipped = sig.slice(0, -2) + (sig.endsWith('00') ? '11' : '00');
      const staged = join(t.dir, '.tufota', 'staged', 'root.json');
      const stagedBefore = await readFile(staged);
      for (const [body, message] of [
        [{ keyid, sig: flipped }, /does not verify/],
        [
          { keyid: await keys.id('timestamp'), sig },
          /not a key whose signature counts/,
        ],
        [{ keyid, sig: 'zz' }, /hex/],
        [{ keyid }, /both strings/],
      ] as const) {
        const a = await call(route(body), adminToken);
        assert.equal(a.status, 400, a.body.toString());
        assert.match(String(jsonOf(a).error), message);
        assert.ok((await readFile(staged)).equals(stagedBefore));
      }
      const none = await call(
        {
          method: 'POST',
          path: '/api/v1/signing-events/targets/signatures',
          body: JSON.stringify({ keyid, sig }),
        },
        adminToken,
      );
      assert.equal(none.status, 404);

      const ok = await call(route({ keyid, sig }), adminToken);
      assert.equal(ok.status, 201, ok.body.toString());
      const result = jsonOf(ok) as { previous: { signed: string[] } };
      assert.deepEqual(result.previous.signed, [keyid]);
      const onDisk = JSON.parse(await readFile(staged, 'utf8')) as {
        signatures: { keyid: string }[];
      };
      assert.deepEqual(
        onDisk.signatures.map((s) => s.keyid),
        [keyid],
      );
    });
  });
});
