/**
 * The device's image download against a real tufota server on 127.0.0.1,
 * reached through a proxy that misbehaves (test/helpers/bad-proxy.ts).
 * Every case ends in one of two ways, and each says which: the image at
 * its destination, byte for byte, with the listed hashes; or a refusal
 * with nothing at the destination and the part either gone or a true
 * prefix of the image, ready to resume.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TargetFile } from '@tufjs/models';
import { ClientError, type ClientErrorCode } from '../../../client/errors.js';
import {
  downloadTarget,
  targetUrl,
  type DownloadOptions,
} from '../../../client/update/download.js';
import { checkableAlgorithms } from '../../../client/update/digests.js';
import { retryAfterMs } from '../../../client/update/http.js';
import { PinnedFetcher } from '../../../client/update/pinned-fetcher.js';
import { loadTlsMaterial, tlsPaths } from '../../../src/server/tls.js';
import {
  BadProxy,
  type Plan,
  type ProxyRecord,
} from '../../helpers/bad-proxy.js';
import { newClient } from '../../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../../helpers/fixtures.js';
import { release } from '../../helpers/release.js';
import { startTestServer, type TestServer } from '../../helpers/server.js';
import { makeTlsFolder } from '../../helpers/tls.js';

const CHILD = fileURLToPath(
  new URL('../../helpers/download-child.ts', import.meta.url),
);
const MIB = 1024 * 1024;
const LEN = 4 * MIB;
const HALF = LEN / 2;
const IMAGE = Buffer.alloc(LEN);
for (let i = 0; i < LEN; i += 4) IMAGE.writeUInt32LE((i * 2654435761) >>> 0, i);

/** Small timeouts and delays, so a case takes well under a second. */
const FAST = {
  allowHttp: true,
  connectTimeoutMs: 500,
  stallTimeoutMs: 300,
  maxAttempts: 5,
  startingDelayMs: 10,
  maxDelayMs: 50,
  maxRetryAfterMs: 2000,
};

/** A target fetched and verified by tuf-js from `server`. */
async function targetInfo(
  t: TestRepo,
  server: TestServer,
  fetcher?: PinnedFetcher,
): Promise<TargetFile> {
  const client = await newClient(t.dir, server, undefined, fetcher);
  const info = await client.updater.getTargetInfo('images/fw.img');
  assert.ok(info, 'the release lists images/fw.img');
  return info;
}

/** A fresh state folder and destination, and where the part would be. */
async function device(info: TargetFile) {
  const base = await tempDir('tufota-device-');
  const stateDir = join(base, 'state');
  const downloads = join(stateDir, 'downloads');
  return {
    stateDir,
    downloads,
    part: join(downloads, `${info.hashes.sha256}-${info.length}.part`),
    destination: join(base, 'slot', 'fw.img'),
  };
}

type Outcome = 'image' | ClientErrorCode;

/** How `run` ended: the image, or the code of the ClientError it threw. */
async function outcomeOf(run: Promise<string>): Promise<{
  outcome: Outcome;
  error?: ClientError;
}> {
  try {
    await run;
    return { outcome: 'image' };
  } catch (err) {
    assert.ok(err instanceof ClientError, `a ClientError, not ${String(err)}`);
    return { outcome: err.code, error: err };
  }
}

/** The image is at `destination`, whole, and nothing is left behind. */
async function assertImage(
  info: TargetFile,
  at: Awaited<ReturnType<typeof device>>,
): Promise<void> {
  const bytes = await readFile(at.destination);
  assert.ok(bytes.equals(IMAGE), 'byte-identical image');
  for (const algorithm of ['sha256', 'sha512']) {
    const digest = createHash(algorithm).update(bytes).digest('hex');
    assert.equal(digest, info.hashes[algorithm], algorithm);
  }
  assert.deepEqual(await readdir(at.downloads), [], 'no part left behind');
}

/** Nothing at the destination; the part gone or a prefix of the image. */
async function assertRefused(
  at: Awaited<ReturnType<typeof device>>,
  part: 'removed' | 'prefix',
): Promise<void> {
  assert.ok(!existsSync(at.destination), 'nothing at the destination');
  if (part === 'removed') {
    assert.deepEqual(await readdir(at.downloads), [], 'part removed');
    return;
  }
  const kept = await readFile(at.part);
  assert.ok(kept.length > 0 && kept.length < LEN, 'a partial part kept');
  assert.ok(kept.equals(IMAGE.subarray(0, kept.length)), 'a true prefix');
}

interface Case {
  name: string;
  plan: Plan;
  outcome: Outcome;
  /** After a refusal: is the part removed, or kept to resume? */
  part?: 'removed' | 'prefix';
  check(records: ProxyRecord[], error?: ClientError): void;
}

const cutFirst =
  (then: ReturnType<Plan>): Plan =>
  (i) =>
    i === 0 ? { dropAfter: HALF } : then;

const CASES: Case[] = [
  {
    name: 'drops the connection halfway',
    plan: cutFirst({}),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 2);
      assert.equal(records[1].range, `bytes=${HALF}-`);
      assert.equal(records[1].status, 206);
      assert.equal(records[1].sent, LEN - HALF, 'only the rest fetched');
    },
  },
  {
    name: 'answers the resumed range with a 200 and the whole file',
    plan: cutFirst({ stripRange: true }),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 2);
      assert.equal(records[1].range, `bytes=${HALF}-`);
      assert.equal(records[1].status, 200);
      assert.equal(records[1].sent, LEN, 'started over with that body');
    },
  },
  {
    name: 'changes the ETag mid-download',
    plan: cutFirst({ etag: '"another-etag"' }),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 3);
      assert.equal(records[1].status, 206, 'a 206 under another ETag...');
      assert.equal(records[2].range, undefined, '...is a restart from 0');
      assert.equal(records[2].status, 200);
    },
  },
  {
    name: 'answers with a Content-Range that starts elsewhere',
    plan: cutFirst({ shiftRange: 4096 }),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 3);
      assert.equal(records[1].status, 206);
      assert.equal(records[2].range, undefined, 'a restart, not an append');
      assert.equal(records[2].status, 200);
    },
  },
  {
    name: 'sends endless data after the image',
    plan: () => ({ endless: true }),
    outcome: 'image',
    check(records) {
      // Cut off at the length; the complete part needs no second request.
      assert.equal(records.length, 1);
      assert.ok(records[0].sent > LEN, 'the proxy sent more than the image');
    },
  },
  {
    name: 'stalls halfway',
    plan: (i) => (i === 0 ? { stallAfter: HALF } : {}),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 2);
      assert.equal(records[1].range, `bytes=${HALF}-`);
    },
  },
  {
    name: 'never answers the first request',
    plan: (i) => (i === 0 ? { noAnswer: true } : {}),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 2);
      assert.equal(records[1].range, undefined);
    },
  },
  {
    name: 'answers 503 with Retry-After: 1',
    plan: (i) => (i === 0 ? { status: 503, retryAfter: '1' } : {}),
    outcome: 'image',
    check(records) {
      assert.equal(records.length, 2);
      const waited = records[1].at - records[0].at;
      assert.ok(waited >= 1000, `waited ${waited} ms, at least 1 s`);
    },
  },
  {
    name: 'flips a byte of the image',
    plan: () => ({ flipAt: 123_457 }),
    outcome: 'INTEGRITY',
    part: 'removed',
    check(records, error) {
      assert.equal(records.length, 2, 'one fresh start, then refused');
      assert.match(
        error?.message ?? '',
        /images\/fw\.img from http:.*: sha256 mismatch, expected [0-9a-f]{64}, got [0-9a-f]{64}/,
      );
    },
  },
  {
    name: 'answers 404',
    plan: () => ({ status: 404 }),
    outcome: 'DOWNLOAD',
    part: 'removed',
    check(records, error) {
      assert.equal(records.length, 1, 'not retried');
      assert.match(error?.message ?? '', /fw\.img: the server answered 404/);
    },
  },
  {
    name: 'cuts every connection after 256 KiB',
    plan: () => ({ dropAfter: 256 * 1024 }),
    outcome: 'DOWNLOAD',
    part: 'prefix',
    check(records, error) {
      assert.equal(records.length, FAST.maxAttempts);
      assert.match(error?.message ?? '', /gave up after 5 attempts/);
    },
  },
];

describe('downloadTarget', () => {
  let t: TestRepo;
  let server: TestServer;
  let proxy: BadProxy;
  let info: TargetFile;

  before(async () => {
    t = await createTestRepo();
    await release(t, { 'images/fw.img': IMAGE });
    server = await startTestServer(t);
    proxy = await BadProxy.start(server.url);
    info = await targetInfo(t, server);
  });
  after(async () => {
    await proxy.close();
    await server.close();
    await cleanupTempDirs();
  });

  const options = (
    at: Awaited<ReturnType<typeof device>>,
    more: Partial<DownloadOptions> = {},
  ): DownloadOptions => ({
    target: info,
    targetBaseUrl: proxy.targetsUrl,
    stateDir: at.stateDir,
    destination: at.destination,
    ...FAST,
    ...more,
  });

  describe('through a proxy that misbehaves', () => {
    for (const c of CASES) {
      const ends = c.outcome === 'image' ? 'the image' : `${c.outcome} refusal`;
      it(`when it ${c.name}: ends with ${ends}`, async () => {
        proxy.use(c.plan);
        const at = await device(info);
        const progress: number[] = [];
        const { outcome, error } = await outcomeOf(
          downloadTarget(
            options(at, { onProgress: (done) => progress.push(done) }),
          ),
        );
        assert.equal(outcome, c.outcome, error?.message);
        if (outcome === 'image') {
          await assertImage(info, at);
          assert.equal(progress.at(-1), LEN, 'progress ends at 100%');
        } else {
          await assertRefused(at, c.part ?? 'removed');
        }
        c.check(proxy.records, error);
      });
    }
  });

  describe('when the target lists no hash node can compute', () => {
    it('refuses it before any request', async () => {
      proxy.use(() => ({}));
      const at = await device(info);
      const odd = TargetFile.fromJSON(info.path, {
        length: info.length,
        hashes: { 'sha-none': info.hashes.sha256 },
      });
      const { outcome, error } = await outcomeOf(
        downloadTarget(options(at, { target: odd })),
      );
      assert.equal(outcome, 'INTEGRITY');
      assert.match(error?.message ?? '', /none of its hashes \(sha-none\)/);
      assert.equal(proxy.records.length, 0);
    });
  });

  describe('when the device process is killed mid-download', () => {
    /** Runs the download in a child node process. */
    const child = (at: Awaited<ReturnType<typeof device>>) => {
      const { target, ...rest } = options(at);
      const input = {
        ...rest,
        target: { path: target.path, ...target.toJSON() },
      };
      const proc = spawn(
        process.execPath,
        ['--import', 'tsx', CHILD, JSON.stringify(input)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<{ code: number | null; out: string }>((r) =>
        proc.on('exit', (code) => r({ code, out })),
      );
      return { proc, exited };
    };

    it('resumes in a new process from the bytes on disk', async () => {
      const at = await device(info);
      proxy.use(() => ({ bytesPer10ms: 64 * 1024 }));
      const first = child(at);
      for (;;) {
        const size = await stat(at.part).then(
          (s) => s.size,
          () => 0,
        );
        if (size >= MIB) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      first.proc.kill('SIGKILL');
      assert.equal((await first.exited).code, null, 'killed, not finished');
      const onDisk = (await stat(at.part)).size;
      assert.ok(onDisk >= MIB && onDisk < LEN, `${onDisk} bytes on disk`);

      proxy.use(() => ({}));
      const second = await child(at).exited;
      assert.equal(second.code, 0, second.out);
      assert.equal(proxy.records[0].range, `bytes=${onDisk}-`);
      const fetched = proxy.sentSince(0);
      assert.equal(fetched, LEN - onDisk, 'only what was missing');
      assert.ok(fetched < LEN);
      await assertImage(info, at);
    });
  });

  describe('over HTTPS with a pinned CA', () => {
    let tlsRepo: TestRepo;
    let tlsServer: TestServer;
    let ca: string;
    let tlsInfo: TargetFile;

    before(async () => {
      tlsRepo = await createTestRepo();
      await release(tlsRepo, { 'images/fw.img': IMAGE });
      const dir = join(tlsRepo.base, 'tls');
      await makeTlsFolder(dir);
      const paths = tlsPaths(dir);
      ca = await readFile(paths.caCert, 'utf8');
      tlsServer = await startTestServer(tlsRepo, {
        tls: await loadTlsMaterial(paths.serverCert, paths.serverKey),
      });
      tlsInfo = await targetInfo(tlsRepo, tlsServer, new PinnedFetcher({ ca }));
    });
    after(() => tlsServer.close());

    const over = (
      at: Awaited<ReturnType<typeof device>>,
      more: Partial<DownloadOptions>,
    ) =>
      downloadTarget({
        ...FAST,
        target: tlsInfo,
        targetBaseUrl: tlsServer.targetsUrl,
        stateDir: at.stateDir,
        destination: at.destination,
        allowHttp: false,
        ...more,
      });

    it('downloads the image from a server the pinned CA certifies', async () => {
      const at = await device(tlsInfo);
      assert.equal(await over(at, { ca }), at.destination);
      await assertImage(tlsInfo, at);
    });

    it('refuses a server certified by another CA, without retrying', async () => {
      const other = await tempDir();
      await makeTlsFolder(other);
      const otherCa = await readFile(tlsPaths(other).caCert, 'utf8');
      const at = await device(tlsInfo);
      const { outcome, error } = await outcomeOf(over(at, { ca: otherCa }));
      assert.equal(outcome, 'DOWNLOAD');
      assert.match(
        error?.message ?? '',
        /https:.*fw\.img: request failed: .*(certificate|self[- ]signed|unable to verify)/i,
      );
      assert.doesNotMatch(error?.message ?? '', /gave up after/);
      assert.ok(!existsSync(at.destination));
    });

    it('refuses https without a pinned CA, and plain http unless allowed', async () => {
      const at = await device(tlsInfo);
      await assert.rejects(over(at, {}), /no pinned CA given/);
      await assert.rejects(
        over(at, { targetBaseUrl: server.targetsUrl }),
        (err: ClientError) =>
          err.code === 'DOWNLOAD' && /plain http is refused/.test(err.message),
      );
    });
  });
});

describe('targetUrl', () => {
  it('prefixes the name with the first listed hash, as tuf-js does', () => {
    const target = {
      path: 'images/a.img',
      hashes: {
        sha256:
          'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
        sha512: 'cd',
      },
    };
    assert.equal(
      targetUrl('https://h/targets', target),
      'https://h/targets/images/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.a.img',
    );
    assert.equal(
      targetUrl('https://h/targets/', target, false),
      'https://h/targets/images/a.img',
    );
  });
});

describe('targetUrl, given hostile signed metadata', () => {
  const hash = 'b'.repeat(64);
  for (const path of [
    'images/../../etc/x',
    '../x',
    'images//x',
    '/x',
    'images/./x',
  ]) {
    it(`refuses the path ${path}`, () => {
      assert.throws(
        () =>
          targetUrl('https://h/targets', { path, hashes: { sha256: hash } }),
        (err: unknown) =>
          err instanceof ClientError && err.code === 'INTEGRITY',
      );
    });
  }
  it('refuses a first hash that is not hexadecimal', () => {
    assert.throws(
      () =>
        targetUrl('https://h/targets', {
          path: 'images/a.img',
          hashes: { sha256: '../../../admin?' },
        }),
      /not hexadecimal/,
    );
  });
  it('keeps ? and # inside the path', () => {
    assert.equal(
      targetUrl('https://h/targets', {
        path: 'images/a?b#c.img',
        hashes: { sha256: hash },
      }),
      `https://h/targets/images/${hash}.a%3Fb%23c.img`,
    );
  });
  it('counts md5 and sha1 as no checkable hash', () => {
    assert.deepEqual(checkableAlgorithms({ md5: 'x', sha1: 'y' }), []);
    assert.deepEqual(checkableAlgorithms({ md5: 'x', sha512: 'z' }), [
      'sha512',
    ]);
  });
});

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(retryAfterMs('7', now), 7000);
    assert.equal(retryAfterMs('Tue, 01 Jan 2030 00:00:09 GMT', now), 9000);
    assert.equal(retryAfterMs('soon', now), undefined);
    assert.equal(retryAfterMs(undefined, now), undefined);
  });
});
