/**
 * Target files held open between requests: bytes across chunk borders,
 * removal noticed on the recheck, eviction that never closes a handle in
 * use, links refused, and a file that shrinks cutting the response.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  CHUNK,
  TargetFiles,
  type OpenTarget,
} from '../../src/server/target-files.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

interface Answer {
  body: Buffer;
  complete: boolean;
}

/** A server sending `start..end` of the file at `segments`. */
async function serveRange(
  files: TargetFiles,
  segments: string[],
  start: number,
  end: number,
): Promise<{ answer: Answer; sent: Promise<void> }> {
  let sent!: Promise<void>;
  const server: Server = createServer((_req, res) => {
    sent = (async () => {
      const target = await files.acquire(segments);
      assert.ok(target, 'the file opens');
      try {
        res.writeHead(200, { 'Content-Length': String(end - start + 1) });
        await files.send(res, target, start, end);
      } finally {
        target.release();
      }
    })();
    sent.catch(() => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  try {
    const answer = await new Promise<Answer>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/' }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ body: Buffer.concat(parts), complete: res.complete }),
        );
        res.on('error', () =>
          resolve({ body: Buffer.concat(parts), complete: false }),
        );
      })
        .on('error', reject)
        .end();
    });
    return { answer, sent };
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

describe('TargetFiles', () => {
  let dir: string;
  let image: Buffer;
  const name = ['images', 'a'.repeat(64) + '.fw.img'];

  beforeEach(async () => {
    dir = await tempDir();
    await mkdir(join(dir, 'images'));
    image = randomBytes(2 * CHUNK + 12_345);
    await writeFile(join(dir, ...name), image);
  });
  after(cleanupTempDirs);

  it('sends exactly the asked bytes, across chunk borders', async () => {
    const files = new TargetFiles(dir);
    for (const [start, end] of [
      [0, image.length - 1],
      [CHUNK - 1, 2 * CHUNK + 1],
      [image.length - 1, image.length - 1],
      [5, 5 + CHUNK - 1],
    ]) {
      const { answer, sent } = await serveRange(files, name, start, end);
      await sent;
      assert.ok(answer.complete);
      assert.ok(answer.body.equals(image.subarray(start, end + 1)));
    }
    assert.equal(files.openCount, 1, 'one handle served every request');
    files.close();
  });

  it('keeps serving a removed file only until its recheck', async () => {
    let now = 1_000;
    const files = new TargetFiles(dir, { recheckMs: 500, now: () => now });
    const first = await files.acquire(name);
    first?.release();
    await rm(join(dir, ...name));
    const cached = await files.acquire(name);
    assert.ok(cached, 'within the recheck time the open handle serves');
    cached.release();
    now += 500;
    assert.equal(await files.acquire(name), undefined);
    assert.equal(files.openCount, 0);
  });

  it('closes an evicted handle only once its last user lets go', async () => {
    const files = new TargetFiles(dir, { maxOpen: 1 });
    const other = ['images', 'b'.repeat(64) + '.fw.img'];
    await writeFile(join(dir, ...other), 'other');
    const held = (await files.acquire(name)) as OpenTarget;
    const next = await files.acquire(other);
    next?.release();
    assert.equal(files.openCount, 1);
    const buffer = Buffer.alloc(16);
    await held.handle.read(buffer, 0, 16, 0);
    assert.ok(buffer.equals(image.subarray(0, 16)), 'still readable');
    held.release();
    await new Promise((r) => setImmediate(r));
    await assert.rejects(held.handle.read(buffer, 0, 16, 0), /EBADF|closed/);
  });

  it('refuses a file reached through a linked folder or a link', async () => {
    const outside = await tempDir();
    await writeFile(join(outside, 'c'.repeat(64) + '.x'), 'secret');
    await symlink(outside, join(dir, 'linked'));
    await symlink(
      join(outside, 'c'.repeat(64) + '.x'),
      join(dir, 'images', 'd'.repeat(64) + '.x'),
    );
    const files = new TargetFiles(dir);
    assert.equal(
      await files.acquire(['linked', 'c'.repeat(64) + '.x']),
      undefined,
    );
    assert.equal(
      await files.acquire(['images', 'd'.repeat(64) + '.x']),
      undefined,
    );
    assert.equal(await files.acquire(['images']), undefined, 'a folder');
  });

  it('cuts the response when the file turns out shorter', async () => {
    const files = new TargetFiles(dir);
    const warm = await files.acquire(name);
    warm?.release();
    await truncate(join(dir, ...name), CHUNK + 10);
    const { answer, sent } = await serveRange(files, name, 0, image.length - 1);
    await assert.rejects(sent, /ended at byte/);
    assert.equal(answer.complete, false, 'the client sees a cut body');
    assert.ok(answer.body.length < image.length);
    files.close();
  });
});
