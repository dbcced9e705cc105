/**
 * The hashes a target lists, computed as its bytes go by, so an image far
 * larger than memory is checked without a second read.
 *
 * The hashing runs on a worker thread: sha512 alone costs more CPU per
 * byte than receiving and writing it, and on the main thread it would
 * halve the download rate. Bytes reach the worker in a small pool of
 * 1 MiB buffers that are moved, not copied, and come back once hashed,
 * so memory stays bounded (the pool) whatever the image's size, and a
 * network faster than the hashing waits for a free buffer.
 */
import { getHashes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { logger } from '../log.js';

const log = logger.child({ module: 'client/update/digests' });

/** Bytes in one buffer of the pool. */
export const BUFFER_SIZE = 1024 * 1024;
const POOL = 4;

/** A listed hash whose computed value differs. */
export interface DigestMismatch {
  algorithm: string;
  expected: string;
  actual: string;
}

/**
 * Hashes strong enough to vouch for an image. md5 and sha1 are left out:
 * a target listing only those has no checkable hash and is refused, since
 * a collision lets two images pass for one.
 */
const STRONG = [
  'sha256',
  'sha384',
  'sha512',
  'sha3-256',
  'sha3-384',
  'sha3-512',
];

/** The strong algorithms of `expected` that node can compute. */
export function checkableAlgorithms(
  expected: Record<string, string>,
): string[] {
  const known = new Set(getHashes());
  return Object.keys(expected).filter(
    (algorithm) => STRONG.includes(algorithm) && known.has(algorithm),
  );
}

// Plain JavaScript, run with `eval`, so the same code works from the
// TypeScript sources and from the build without a second entry file.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { closeSync, openSync, readSync } = require('node:fs');
let algorithms = [];
let hashes = [];
const reset = () => { hashes = algorithms.map((a) => createHash(a)); };
const update = (b) => { for (const h of hashes) h.update(b); };
function hashFile(path, length) {
  reset();
  const fd = openSync(path, 'r');
  const b = Buffer.allocUnsafe(${BUFFER_SIZE});
  try {
    for (let done = 0; done < length; ) {
      const n = readSync(fd, b, 0, Math.min(b.length, length - done), done);
      if (n === 0) throw new Error(path + ' ends before byte ' + length);
      update(b.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}
parentPort.on('message', (m) => {
  try {
    if (m.type === 'init') { algorithms = m.algorithms; reset(); }
    else if (m.type === 'reset') reset();
    else if (m.type === 'data') {
      update(Buffer.from(m.buffer, 0, m.length));
      parentPort.postMessage({ type: 'free', buffer: m.buffer }, [m.buffer]);
    } else if (m.type === 'file') {
      hashFile(m.path, m.length);
      parentPort.postMessage({ type: 'done', id: m.id });
    } else if (m.type === 'digest') {
      const digests = {};
      algorithms.forEach((a, i) => { digests[a] = hashes[i].copy().digest('hex'); });
      parentPort.postMessage({ type: 'done', id: m.id, digests });
    }
  } catch (err) {
    parentPort.postMessage({ type: 'error', id: m.id, message: String(err && err.message || err) });
  }
});
`;

type Reply =
  | { type: 'free'; buffer: ArrayBuffer }
  | { type: 'done'; id: number; digests?: Record<string, string> }
  | { type: 'error'; id?: number; message: string };

interface Pending {
  resolve(digests?: Record<string, string>): void;
  reject(err: Error): void;
}

export class TargetDigests {
  /** Bytes hashed, or handed to the worker to hash, since the start. */
  bytes = 0;
  /** The algorithms checked: those listed that node can compute. */
  readonly algorithms: string[];
  readonly #expected: Record<string, string>;
  readonly #worker: Worker;
  readonly #free: ArrayBuffer[] = [];
  readonly #waiting: (() => void)[] = [];
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #failed: Error | undefined;

  /**
   * Digests for every algorithm in `expected` that node can compute.
   * Algorithms it cannot are left out and logged; the caller refuses a
   * target none of whose hashes can be checked (`algorithms` is empty).
   * Starts a worker thread, which `close` ends.
   */
  constructor(expected: Record<string, string>) {
    this.#expected = expected;
    this.algorithms = checkableAlgorithms(expected);
    for (const algorithm of Object.keys(expected)) {
      if (this.algorithms.includes(algorithm)) continue;
      log.warn({ algorithm }, 'listed hash not computable here; not checked');
    }
    // No inherited --import or loader flags: the worker needs none.
    this.#worker = new Worker(WORKER, { eval: true, execArgv: [] });
    this.#worker.on('message', (reply: Reply) => this.#onReply(reply));
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.postMessage({ type: 'init', algorithms: this.algorithms });
    for (let i = 0; i < POOL; i++) {
      this.#free.push(new ArrayBuffer(BUFFER_SIZE));
    }
  }

  #onReply(reply: Reply): void {
    if (reply.type === 'free') {
      this.#free.push(reply.buffer);
      this.#waiting.shift()?.();
      return;
    }
    const pending =
      reply.id === undefined ? undefined : this.#pending.get(reply.id);
    if (!pending) {
      if (reply.type === 'error') this.#fail(new Error(reply.message));
      return;
    }
    this.#pending.delete(reply.id as number);
    if (reply.type === 'error') pending.reject(new Error(reply.message));
    else pending.resolve(reply.digests);
  }

  #fail(err: Error): void {
    this.#failed = err;
    for (const pending of this.#pending.values()) pending.reject(err);
    this.#pending.clear();
    for (const wake of this.#waiting.splice(0)) wake();
  }

  #ask(message: object): Promise<Record<string, string> | undefined> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id });
    });
  }

  /**
   * A free buffer of `BUFFER_SIZE` bytes to fill, waiting while all are
   * with the worker. Give it back with `update` or `release`.
   */
  async buffer(): Promise<Buffer> {
    while (this.#free.length === 0) {
      if (this.#failed) throw this.#failed;
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    if (this.#failed) throw this.#failed;
    return Buffer.from(this.#free.pop() as ArrayBuffer);
  }

  /** Returns a buffer from `buffer` unused. */
  release(buffer: Buffer): void {
    this.#free.push(buffer.buffer as ArrayBuffer);
    this.#waiting.shift()?.();
  }

  /**
   * Hashes the first `length` bytes of `buffer` (from `buffer`), which
   * moves to the worker and must not be touched again.
   */
  update(buffer: Buffer, length: number): void {
    if (this.#failed) throw this.#failed;
    const arrayBuffer = buffer.buffer as ArrayBuffer;
    this.#worker.postMessage({ type: 'data', buffer: arrayBuffer, length }, [
      arrayBuffer,
    ]);
    this.bytes += length;
  }

  /** Starts over from no bytes. */
  reset(): void {
    this.#worker.postMessage({ type: 'reset' });
    this.bytes = 0;
  }

  /**
   * Starts over from the first `length` bytes of `path`: the state a
   * resumed download continues from, taken from what is on disk rather
   * than from anything remembered, since a crash may have lost the tail
   * of a write.
   */
  async rehash(path: string, length: number): Promise<void> {
    this.bytes = 0;
    await this.#ask({ type: 'file', path, length });
    this.bytes = length;
  }

  /** The first listed hash that differs from what was hashed so far. */
  async mismatch(): Promise<DigestMismatch | undefined> {
    const digests = (await this.#ask({ type: 'digest' })) ?? {};
    for (const algorithm of this.algorithms) {
      const expected = this.#expected[algorithm].toLowerCase();
      const actual = digests[algorithm];
      if (actual !== expected) return { algorithm, expected, actual };
    }
    return undefined;
  }

  /** Ends the worker thread. */
  async close(): Promise<void> {
    await this.#worker.terminate();
  }
}
