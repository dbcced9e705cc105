/**
 * The hashes a target lists, computed as its bytes go by, so an image far
 * larger than memory is checked without a second read.
 */
import { createHash, getHashes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { logger } from '../log.js';

const log = logger.child({ module: 'client/update/digests' });

/** A listed hash whose computed value differs. */
export interface DigestMismatch {
  algorithm: string;
  expected: string;
  actual: string;
}

export class TargetDigests {
  /** Bytes hashed so far. */
  bytes = 0;
  readonly #expected: Record<string, string>;
  readonly #hashes: Map<string, Hash>;

  /**
   * Digests for every algorithm in `expected` that node can compute.
   * Algorithms it cannot are left out and logged; the caller refuses a
   * target none of whose hashes can be checked (`algorithms` is empty).
   */
  constructor(expected: Record<string, string>) {
    this.#expected = expected;
    this.#hashes = new Map();
    const known = new Set(getHashes());
    for (const algorithm of Object.keys(expected)) {
      if (known.has(algorithm)) {
        this.#hashes.set(algorithm, createHash(algorithm));
      } else {
        log.warn({ algorithm }, 'listed hash not computable here; not checked');
      }
    }
  }

  /** The algorithms checked. */
  get algorithms(): string[] {
    return [...this.#hashes.keys()];
  }

  update(chunk: Buffer): void {
    for (const hash of this.#hashes.values()) hash.update(chunk);
    this.bytes += chunk.length;
  }

  /** The first listed hash that differs from what was hashed so far. */
  mismatch(): DigestMismatch | undefined {
    for (const [algorithm, hash] of this.#hashes) {
      // A copy, so the running state stays usable after a failed check.
      const actual = hash.copy().digest('hex');
      const expected = this.#expected[algorithm].toLowerCase();
      if (actual !== expected) return { algorithm, expected, actual };
    }
    return undefined;
  }

  /**
   * Digests of the first `length` bytes of `path`: the state a resumed
   * download continues from, taken from what is on disk rather than from
   * anything remembered, since a crash may have lost the tail of a write.
   */
  static async ofFile(
    expected: Record<string, string>,
    path: string,
    length: number,
  ): Promise<TargetDigests> {
    const digests = new TargetDigests(expected);
    if (length === 0) return digests;
    const stream = createReadStream(path, {
      start: 0,
      end: length - 1,
      highWaterMark: 1024 * 1024,
    });
    for await (const chunk of stream) digests.update(chunk as Buffer);
    return digests;
  }
}
