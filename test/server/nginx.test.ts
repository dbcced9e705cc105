/**
 * docs/serving.md's nginx block, run as written (paths and ports put in)
 * by Debian's nginx over HTTPS with a CA from tls init: the tuf-js client
 * pinning that CA refreshes and downloads through it, the headers and
 * refusals are the ones the page promises, and an upload and a publish
 * through the proxied admin API reach a device. A change to the block
 * is a change to what this runs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { PinnedFetcher } from '../../client/update/pinned-fetcher.js';
import { tlsPaths } from '../../src/server/tls.js';
import { newClient } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeTlsFolder } from '../helpers/tls.js';

const NGINX = '/usr/sbin/nginx';
const DOC = new URL('../../docs/serving.md', import.meta.url);

const IMAGE = Buffer.alloc(3 * 1024 * 1024 + 17);
for (let i = 0; i < IMAGE.length; i++) IMAGE[i] = (i * 31 + (i >> 9)) & 255;
const SHA256 = createHash('sha256').update(IMAGE).digest('hex');

/** The one nginx block marked `<!-- serving: nginx -->` in the page. */
function nginxBlock(markdown: string): string {
  const found = /<!-- serving: nginx -->\n+```nginx\n([\s\S]*?)\n```/.exec(
    markdown,
  );
  assert.ok(found, 'docs/serving.md has its marked nginx block');
  return found[1];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function get(
  port: number,
  ca: string,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
  body?: Buffer,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        ca,
        agent: false,
        method: options.method ?? 'GET',
        headers: options.headers,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('docs/serving.md: Debian nginx serving the repository', () => {
  let t: TestRepo;
  let tufota: TestServer;
  let nginx: ChildProcess | undefined;
  let port: number;
  let ca: string;
  let urls: { metadataUrl: string; targetsUrl: string };
  let nginxLog = '';

  before(async function () {
    assert.ok(
      existsSync(NGINX),
      `${NGINX} is missing: install Debian's nginx-light (.ci/run does)`,
    );
    t = await createTestRepo();
    await release(t, { 'images/fw.img': IMAGE });
    const tls = join(t.base, 'tls');
    await makeTlsFolder(tls);
    ca = await readFile(tlsPaths(tls).caCert, 'utf8');
    tufota = await startTestServer(t);
    port = await freePort();

    const block = nginxBlock(await readFile(DOC, 'utf8'))
      .replace('listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`)
      .replaceAll('/etc/tufota/tls', tls)
      .replaceAll('/srv/tufota/repo', t.dir)
      .replaceAll('http://127.0.0.1:8080', tufota.url);
    assert.ok(!/\b8080\b|\/srv\/|\/etc\/tufota/.test(block), block);
    const prefix = join(t.base, 'nginx');
    await mkdir(prefix);
    const conf = join(prefix, 'nginx.conf');
    // Workers drop to nobody when started by root; the test folders are
    // private to the user running the suite.
    const user = process.getuid?.() === 0 ? 'user root;\n' : '';
    await writeFile(
      conf,
      `${user}worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${block}
}
`,
    );
    nginx = spawn(NGINX, ['-p', prefix, '-c', conf, '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    nginx.stderr?.on('data', (c: Buffer) => (nginxLog += c.toString()));
    for (let i = 0; ; i++) {
      const up = await get(port, ca, '/metadata/timestamp.json').then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      if (i > 100 || nginx.exitCode !== null) {
        const errors = await readFile(join(prefix, 'error.log'), 'utf8').catch(
          () => '',
        );
        assert.fail(`nginx did not start: ${nginxLog}${errors}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    urls = {
      metadataUrl: `https://127.0.0.1:${port}/metadata`,
      targetsUrl: `https://127.0.0.1:${port}/targets`,
    };
  });

  /** What a device pinning the CA gets for `path`, from 1.root.json on. */
  const download = async (path: string): Promise<Buffer> => {
    const client = await newClient(
      t.dir,
      urls,
      undefined,
      new PinnedFetcher({ ca }),
    );
    await client.updater.refresh();
    const info = await client.updater.getTargetInfo(path);
    assert.ok(info, `${path} is listed`);
    const file = await client.updater.downloadTarget(
      info,
      join(client.targetDir, 'image'),
    );
    return readFile(file);
  };

  after(async () => {
    nginx?.kill('SIGTERM');
    await tufota?.close();
    await cleanupTempDirs();
  });

  it('lets the tuf-js client, pinning the CA, refresh and download', async () => {
    assert.ok((await download('images/fw.img')).equals(IMAGE));
  });

  it('sends the cache headers the page promises', async () => {
    const expectations: [string, string][] = [
      ['/metadata/timestamp.json', 'no-cache'],
      ['/metadata/root.json', 'no-cache'],
      ['/metadata/1.root.json', 'public, max-age=31536000, immutable'],
      ['/metadata/1.snapshot.json', 'public, max-age=31536000, immutable'],
      [
        `/targets/images/${SHA256}.fw.img`,
        'public, max-age=31536000, immutable',
      ],
    ];
    for (const [path, cache] of expectations) {
      const reply = await get(port, ca, path);
      assert.equal(reply.status, 200, path);
      assert.equal(reply.headers['cache-control'], cache, path);
    }
    const json = await get(port, ca, '/metadata/timestamp.json');
    assert.equal(json.headers['content-type'], 'application/json');
    const missing = await get(port, ca, '/metadata/999.root.json');
    assert.equal(missing.status, 404);
    assert.equal(
      missing.headers['cache-control'],
      undefined,
      'a missing version is never cached as immutable',
    );
  });

  it('answers ranges and refuses ones past the end', async () => {
    const path = `/targets/images/${SHA256}.fw.img`;
    const start = 1024 * 1024 - 3;
    const end = 2 * 1024 * 1024 + 5;
    const part = await get(port, ca, path, {
      headers: { Range: `bytes=${start}-${end}` },
    });
    assert.equal(part.status, 206);
    assert.equal(
      part.headers['content-range'],
      `bytes ${start}-${end}/${IMAGE.length}`,
    );
    assert.ok(part.body.equals(IMAGE.subarray(start, end + 1)));
    const etag = (await get(port, ca, path, { method: 'HEAD' })).headers
      .etag as string;
    const stale = await get(port, ca, path, {
      headers: { Range: 'bytes=0-9', 'If-Range': '"not-the-tag"' },
    });
    assert.equal(stale.status, 200, 'a changed tag gets the whole file');
    const fresh = await get(port, ca, path, {
      headers: { Range: 'bytes=0-9', 'If-Range': etag },
    });
    assert.equal(fresh.status, 206);
    const past = await get(port, ca, path, {
      headers: { Range: `bytes=${IMAGE.length}-` },
    });
    assert.equal(past.status, 416);
  });

  it('serves nothing outside the two folders, no dot-files and no links', async () => {
    await writeFile(join(t.dir, 'metadata', '.tmp-half'), 'half written');
    await symlink(
      join(t.dir, '.tufota', 'config.json'),
      join(t.dir, 'targets', 'images', `${'0'.repeat(64)}.link`),
    );
    for (const path of [
      '/.tufota/config.json',
      '/.tufota/server/state.json',
      '/metadata/../.tufota/config.json',
      '/metadata/%2e%2e/.tufota/config.json',
      '/metadata/.tmp-half',
      `/targets/images/${'0'.repeat(64)}.link`,
      '/',
    ]) {
      const reply = await get(port, ca, path);
      assert.ok(
        reply.status === 403 || reply.status === 404 || reply.status === 400,
        `${path}: ${reply.status}`,
      );
      assert.ok(!reply.body.toString().includes('"expires"'), path);
      assert.ok(!reply.body.toString().includes('half written'), path);
    }
  });

  it('passes /healthz, an upload and a publish to tufota serve, and the device follows', async () => {
    const health = await get(port, ca, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(
      (JSON.parse(health.body.toString()) as { ok: boolean }).ok,
      true,
    );

    const token = await tufota.token('releases');
    const auth = { Authorization: `Bearer ${token}` };
    const refused = await get(port, ca, '/api/v1/publish', { method: 'POST' });
    assert.equal(refused.status, 401, 'no token, through the proxy too');
    const next = Buffer.from('firmware 2.0 '.repeat(100_000));
    const upload = await get(
      port,
      ca,
      '/api/v1/targets?path=images/fw2.img&version=2.0.0',
      {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/octet-stream' },
      },
      next,
    );
    assert.equal(upload.status, 201, upload.body.toString());
    const published = await get(port, ca, '/api/v1/publish', {
      method: 'POST',
      headers: auth,
    });
    assert.equal(published.status, 200, published.body.toString());

    const got = await download('images/fw2.img');
    assert.ok(got.equals(next), 'the upload is served after the publish');
  });
});
