/**
 * What the server answers devices: the real tuf-js client through it,
 * range and conditional requests, cache headers, and the names it refuses.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  copyFile,
  mkdir,
  readFile,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { newClient } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import {
  httpRequest,
  startTestServer,
  type TestServer,
} from '../helpers/server.js';

const IMAGE = Buffer.alloc(300_000);
for (let i = 0; i < IMAGE.length; i++) IMAGE[i] = (i * 7919) % 251;
const SHA256 = createHash('sha256').update(IMAGE).digest('hex');
const TARGET = `/targets/images/${SHA256}.fw.img`;

describe('tufota serve: what devices read', () => {
  let t: TestRepo;
  let server: TestServer;

  before(async () => {
    t = await createTestRepo();
    await release(t, { 'images/fw.img': IMAGE });
    server = await startTestServer(t);
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  it('lets the real tuf-js client refresh from 1.root.json and download', async () => {
    const client = await newClient(t.dir, server);
    const info = await client.updater.getTargetInfo('images/fw.img');
    assert.ok(info);
    const dest = join(client.targetDir, 'fw.img');
    await client.updater.downloadTarget(info, dest);
    assert.ok((await readFile(dest)).equals(IMAGE));
  });

  describe('cache headers and types', () => {
    const cases: [string, string, string][] = [
      ['/metadata/timestamp.json', 'no-cache', 'application/json'],
      ['/metadata/root.json', 'no-cache', 'application/json'],
      [
        '/metadata/1.root.json',
        'public, max-age=31536000, immutable',
        'application/json',
      ],
      [
        '/metadata/2.snapshot.json',
        'public, max-age=31536000, immutable',
        'application/json',
      ],
      [
        '/metadata/2.releases.json',
        'public, max-age=31536000, immutable',
        'application/json',
      ],
      [
        TARGET,
        'public, max-age=31536000, immutable',
        'application/octet-stream',
      ],
    ];
    for (const [path, cache, type] of cases) {
      it(`${path}: ${cache}, ${type}, strong ETag, exact length`, async () => {
        const a = await httpRequest(server.url, path);
        assert.equal(a.status, 200);
        assert.equal(a.headers['cache-control'], cache);
        assert.equal(a.headers['content-type'], type);
        assert.match(String(a.headers.etag), /^"[0-9a-f]{64}"$/);
        assert.equal(Number(a.headers['content-length']), a.body.length);
        const onDisk = path.startsWith('/targets/')
          ? join(t.dir, 'targets', path.slice('/targets/'.length))
          : join(t.dir, 'metadata', path.slice('/metadata/'.length));
        assert.ok(a.body.equals(await readFile(onDisk)));
      });
    }
    it('uses the content hash in the name as the target ETag', async () => {
      const a = await httpRequest(server.url, TARGET, { method: 'HEAD' });
      assert.equal(a.headers.etag, `"${SHA256}"`);
      assert.equal(Number(a.headers['content-length']), IMAGE.length);
      assert.equal(a.body.length, 0);
    });
  });

  describe('range and conditional requests', () => {
    const etag = `"${SHA256}"`;
    const cases: {
      name: string;
      headers: Record<string, string>;
      status: number;
      range?: [number, number];
    }[] = [
      {
        name: 'a middle range',
        headers: { Range: 'bytes=1000-1999' },
        status: 206,
        range: [1000, 1999],
      },
      {
        name: 'an open-ended range',
        headers: { Range: 'bytes=299000-' },
        status: 206,
        range: [299000, 299999],
      },
      {
        name: 'a suffix range',
        headers: { Range: 'bytes=-10' },
        status: 206,
        range: [299990, 299999],
      },
      {
        name: 'a range past the end, cut to it',
        headers: { Range: 'bytes=299990-400000' },
        status: 206,
        range: [299990, 299999],
      },
      {
        name: 'a range wholly past the end',
        headers: { Range: 'bytes=300000-' },
        status: 416,
      },
      {
        name: 'If-Range with the ETag',
        headers: { Range: 'bytes=0-9', 'If-Range': etag },
        status: 206,
        range: [0, 9],
      },
      {
        name: 'If-Range with another ETag',
        headers: { Range: 'bytes=0-9', 'If-Range': '"other"' },
        status: 200,
      },
      {
        name: 'If-Range with a weak ETag',
        headers: { Range: 'bytes=0-9', 'If-Range': `W/${etag}` },
        status: 200,
      },
      {
        name: 'If-Range with a date',
        headers: { Range: 'bytes=0-9', 'If-Range': new Date().toUTCString() },
        status: 200,
      },
      {
        name: 'two ranges',
        headers: { Range: 'bytes=0-9,100-109' },
        status: 200,
      },
      {
        name: 'a malformed range',
        headers: { Range: 'bytes=abc' },
        status: 200,
      },
      {
        name: 'If-None-Match with the ETag',
        headers: { 'If-None-Match': etag },
        status: 304,
      },
    ];
    for (const c of cases) {
      it(`answers ${c.name} with ${c.status}`, async () => {
        const a = await httpRequest(server.url, TARGET, { headers: c.headers });
        assert.equal(a.status, c.status);
        if (c.status === 206) {
          const [start, end] = c.range!;
          assert.equal(
            a.headers['content-range'],
            `bytes ${start}-${end}/300000`,
          );
          assert.equal(Number(a.headers['content-length']), end - start + 1);
          assert.ok(a.body.equals(IMAGE.subarray(start, end + 1)));
        } else if (c.status === 200) {
          assert.ok(a.body.equals(IMAGE));
        } else if (c.status === 416) {
          assert.equal(a.headers['content-range'], 'bytes */300000');
          assert.equal(a.body.length, 0);
        } else {
          assert.equal(a.body.length, 0);
        }
      });
    }
    it('serves ranges of metadata too', async () => {
      const whole = await httpRequest(server.url, '/metadata/timestamp.json');
      const part = await httpRequest(server.url, '/metadata/timestamp.json', {
        headers: {
          Range: 'bytes=5-14',
          'If-Range': String(whole.headers.etag),
        },
      });
      assert.equal(part.status, 206);
      assert.ok(part.body.equals(whole.body.subarray(5, 15)));
    });
  });

  describe('names it never serves', () => {
    const paths = [
      '/metadata/../.tufota/config.json',
      '/metadata/..%2f.tufota%2fconfig.json',
      '/metadata/%2e%2e%2f.tufota%2fconfig.json',
      '/metadata/.tmp-timestamp.json',
      '/metadata/%00timestamp.json',
      '/metadata/9.root.json',
      '/metadata/3.snapshot.json',
      '/targets/../.tufota/config.json',
      '/targets/images/..%2f..%2f.tufota%2fconfig.json',
      '/targets/images/%2e%2e/%2e%2e/.tufota/config.json',
      '/targets/images/fw.img',
      `/targets/images/.tmp-${SHA256}.fw.img`,
      `/targets//images/${SHA256}.fw.img`,
      `/targets/images/${SHA256}.fw.img%00`,
      '/targets/%ff',
      '/.tufota/config.json',
      '/keys/',
    ];
    for (const path of paths) {
      it(`refuses ${path}`, async () => {
        const a = await httpRequest(server.url, path);
        assert.ok([400, 404].includes(a.status), `${path}: ${a.status}`);
        assert.ok(!a.body.toString().includes('"expiry"'));
      });
    }

    it('refuses a hash-named link that leads out of targets/', async () => {
      const outside = await tempDir();
      const secret = join(outside, 'secret');
      await writeFile(secret, 'not for devices');
      const name = `${'a'.repeat(64)}.leak.img`;
      await symlink(secret, join(t.dir, 'targets', 'images', name));
      const a = await httpRequest(server.url, `/targets/images/${name}`);
      assert.equal(a.status, 404);
      await mkdir(join(outside, 'd'));
      await copyFile(secret, join(outside, 'd', name));
      await symlink(join(outside, 'd'), join(t.dir, 'targets', 'linked'));
      const b = await httpRequest(server.url, `/targets/linked/${name}`);
      assert.equal(b.status, 404);
    });
  });

  it('serves no version newer than the current publication names', async () => {
    // What a publish cut short before timestamp.json leaves behind.
    const meta = join(t.dir, 'metadata');
    await copyFile(
      join(meta, '2.snapshot.json'),
      join(meta, '3.snapshot.json'),
    );
    await copyFile(
      join(meta, '2.releases.json'),
      join(meta, '3.releases.json'),
    );
    for (const name of ['3.snapshot.json', '3.releases.json']) {
      const a = await httpRequest(server.url, `/metadata/${name}`);
      assert.equal(a.status, 404, name);
    }
  });
});

describe('tufota serve: a publish by another process', () => {
  after(cleanupTempDirs);

  it('is served within seconds, without a restart', async () => {
    const t = await createTestRepo();
    const server = await startTestServer(t);
    try {
      const before = await httpRequest(server.url, '/metadata/timestamp.json');
      await release(t, { 'images/new.img': 'new image' });
      const want = (
        JSON.parse(
          await readFile(join(t.dir, 'metadata', 'timestamp.json'), 'utf8'),
        ) as { signed: { version: number } }
      ).signed.version;
      let seen = 0;
      for (let i = 0; i < 40 && seen !== want; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const a = await httpRequest(server.url, '/metadata/timestamp.json');
        seen = (
          JSON.parse(a.body.toString()) as { signed: { version: number } }
        ).signed.version;
      }
      assert.equal(seen, want);
      assert.notEqual(before.headers.etag, undefined);
      const client = await newClient(t.dir, server);
      assert.ok(await client.updater.getTargetInfo('images/new.img'));
    } finally {
      await server.close();
    }
  });
});
