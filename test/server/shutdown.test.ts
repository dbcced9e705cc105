/**
 * Graceful shutdown of `tufota serve` as a real process: on SIGTERM or
 * SIGINT it stops taking connections at once, lets a large download in
 * flight finish whole, logs that it stopped and exits with 0.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { connect } from 'node:net';
import { requireBuild } from '../helpers/cli.js';
import { cleanupTempDirs, createTestRepo } from '../helpers/fixtures.js';
import { release } from '../helpers/release.js';
import { killServers, serveProcess } from '../helpers/serve-process.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
/** Slow enough that the download outlasts the signal by about two seconds. */
const READ_RATE = 24 * MiB;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Download {
  /** Bytes read so far. */
  received(): number;
  body: Promise<Buffer>;
}

/** GETs `url` on its own connection, reading at most `rate` bytes a second. */
function slowDownload(url: string, rate: number): Download {
  let received = 0;
  const body = new Promise<Buffer>((resolve, reject) => {
    const started = Date.now();
    const req = get(url, { agent: false }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET ${url}: ${res.statusCode}`));
        res.resume();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        const ahead = (received / rate) * 1000 - (Date.now() - started);
        if (ahead > 0) {
          res.pause();
          setTimeout(() => res.resume(), ahead);
        }
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  return { received: () => received, body };
}

/**
 * Whether a TCP connection to `port` is refused (true) or accepted. A
 * reset counts as refused: a connection that reached the backlog just as
 * the listener closed is reset by the kernel, not served.
 */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET'
        ? resolve(true)
        : reject(err),
    );
  });
}

/** The `msg` of every pino line in `text`. */
function logMessages(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => (JSON.parse(line) as { msg?: string }).msg ?? '');
}

describe('tufota serve stopped by a signal', () => {
  let dir: string;
  let keysDir: string;
  let image: Buffer;
  let path: string;

  before(async function () {
    this.timeout(60_000);
    requireBuild();
    const t = await createTestRepo();
    ({ dir, keysDir } = t);
    image = randomBytes(SIZE);
    await release(t, { 'images/big.img': image });
    const sha256 = createHash('sha256').update(image).digest('hex');
    path = `/targets/images/${sha256}.big.img`;
  });
  after(async () => {
    killServers();
    await cleanupTempDirs();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal} refuses new connections, finishes the download in flight and exits 0`, async function () {
      this.timeout(60_000);
      const server = await serveProcess(dir, keysDir, { TUFOTA_LOG: 'info' });
      const port = Number(new URL(server.url).port);
      const download = slowDownload(`${server.url}${path}`, READ_RATE);
      while (download.received() < 8 * MiB) await sleep(5);

      server.process.kill(signal);
      const signalled = Date.now();
      let exitedAt: number | undefined;
      const exit = server.exited.then((how) => {
        exitedAt = Date.now();
        return how;
      });

      // The listener closes within moments; the download is still going.
      let shut = false;
      while (!shut && Date.now() - signalled < 2000) {
        shut = await refused(port);
        if (!shut) await sleep(10);
      }
      assert.ok(shut, 'a new connection was still accepted 2 s on');
      const atRefusal = download.received();
      assert.ok(atRefusal < SIZE, `${atRefusal} bytes already read`);

      const body = await download.body;
      const finished = Date.now();
      assert.equal(body.length, SIZE);
      assert.ok(body.equals(image), 'the download is byte-identical');
      assert.ok(
        finished - signalled > 1000,
        `the download ended ${finished - signalled} ms after ${signal}`,
      );

      const how = await exit;
      assert.deepEqual(how, { code: 0, signal: null }, server.stderr());
      const lag = (exitedAt as number) - finished;
      assert.ok(lag < 3000, `exited ${lag} ms after the download ended`);
      const messages = logMessages(server.stderr());
      assert.ok(messages.includes('server stopped'), server.stderr());
    });
  }
});
