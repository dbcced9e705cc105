/**
 * The server over HTTPS with a private CA from `tufota tls init`, and a
 * device that pins that CA and nothing else: refresh, download, and a
 * download cut off halfway and resumed with a range request.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile, appendFile } from 'node:fs/promises';
import { get } from 'node:https';
import { join } from 'node:path';
import { PinnedFetcher } from '../../client/update/pinned-fetcher.js';
import { loadTlsMaterial, tlsPaths } from '../../src/server/tls.js';
import { runCli } from '../helpers/cli.js';
import { newClient } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeTlsFolder } from '../helpers/tls.js';

const IMAGE = Buffer.alloc(4 * 1024 * 1024);
for (let i = 0; i < IMAGE.length; i += 4)
  IMAGE.writeUInt32LE((i * 2654435761) >>> 0, i);

/** GET with the pinned CA; stops reading after `stopAfter` bytes. */
function fetchPart(
  url: string,
  ca: string,
  headers: Record<string, string>,
  stopAfter = Infinity,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { ca, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
        });
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= stopAfter) {
          // The network drops: the connection is torn down mid-body.
          res.destroy();
          req.destroy();
          done();
        }
      });
      res.on('end', done);
      res.on('error', () => undefined);
    });
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
  });
}

describe('tufota serve over HTTPS with a pinned CA', () => {
  let t: TestRepo;
  let server: TestServer;
  let ca: string;

  before(async () => {
    t = await createTestRepo();
    await release(t, { 'images/fw.img': IMAGE });
    const tlsDir = join(t.base, 'tls');
    await makeTlsFolder(tlsDir);
    const paths = tlsPaths(tlsDir);
    ca = await readFile(paths.caCert, 'utf8');
    server = await startTestServer(t, {
      tls: await loadTlsMaterial(paths.serverCert, paths.serverKey),
    });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  it('lets the tuf-js client refresh and download through the pinned CA', async () => {
    const client = await newClient(
      t.dir,
      server,
      undefined,
      new PinnedFetcher({ ca }),
    );
    const info = await client.updater.getTargetInfo('images/fw.img');
    assert.ok(info);
    const dest = join(client.targetDir, 'fw.img');
    await client.updater.downloadTarget(info, dest);
    assert.ok((await readFile(dest)).equals(IMAGE));
  });

  it('refuses the server when the device pins another CA', async () => {
    const other = await tempDir();
    await makeTlsFolder(other);
    const otherCa = await readFile(tlsPaths(other).caCert, 'utf8');
    const client = await newClient(
      t.dir,
      server,
      undefined,
      new PinnedFetcher({ ca: otherCa }),
    );
    await assert.rejects(
      client.updater.refresh(),
      /certificate|self[- ]signed|unable to verify/i,
    );
  });

  it('refuses plain http unless asked for', async () => {
    const fetcher = new PinnedFetcher({ ca });
    await assert.rejects(
      fetcher.fetch('http://127.0.0.1:1/metadata/1.root.json'),
      /plain http is refused/,
    );
  });

  it('resumes a download cut off halfway to a byte-identical, verified file', async () => {
    const client = await newClient(
      t.dir,
      server,
      undefined,
      new PinnedFetcher({ ca }),
    );
    const info = await client.updater.getTargetInfo('images/fw.img');
    assert.ok(info);
    const sha256 = info.hashes.sha256;
    const url = `${server.targetsUrl}/images/${sha256}.fw.img`;
    const partial = join(client.targetDir, 'fw.img.partial');

    const first = await fetchPart(url, ca, {}, IMAGE.length / 2);
    assert.equal(first.status, 200);
    assert.ok(
      first.body.length >= IMAGE.length / 2 && first.body.length < IMAGE.length,
    );
    const etag = String(first.headers.etag);
    await writeFile(partial, first.body);

    const rest = await fetchPart(url, ca, {
      Range: `bytes=${first.body.length}-`,
      'If-Range': etag,
    });
    assert.equal(rest.status, 206);
    assert.equal(
      rest.headers['content-range'],
      `bytes ${first.body.length}-${IMAGE.length - 1}/${IMAGE.length}`,
    );
    await appendFile(partial, rest.body);
    const whole = await readFile(partial);
    assert.equal(whole.length, info.length);
    assert.equal(createHash('sha256').update(whole).digest('hex'), sha256);
    assert.ok(whole.equals(IMAGE));
  });

  it('will not start without a certificate unless plain HTTP is asked for', async () => {
    const none = await runCli([
      '--dir',
      t.dir,
      'serve',
      '--tls-dir',
      join(t.base, 'no-tls'),
      '--port',
      '0',
    ]);
    assert.equal(none.code, 1);
    assert.match(
      none.err,
      /no TLS certificate .*tufota tls init.*--insecure-http/,
    );
    const both = await runCli([
      '--dir',
      t.dir,
      'serve',
      '--insecure-http',
      '--cert',
      'a',
      '--key',
      'b',
    ]);
    assert.equal(both.code, 1);
    assert.match(both.err, /--insecure-http takes no --cert/);
  });
});
