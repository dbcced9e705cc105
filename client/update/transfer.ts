/**
 * One target's transfer from the server into its part file: the attempts
 * that `downloadTarget` (download.ts) retries, each continuing from what
 * is on disk, taking an answer only as `judgeAnswer` (answer.ts) allows,
 * writing no byte past the target's length, and ending with the length
 * and every listed hash checked.
 *
 * A failed attempt throws a `ClientError` carrying a `Hint` for the retry
 * loop: whether asking again can help, and how long the server asked to
 * wait.
 */
import { open } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { judgeAnswer } from './answer.js';
import { TargetDigests } from './digests.js';
import type { DownloadOptions } from './download.js';
import { pinnedGet } from './http.js';
import { PartWriter } from './part-writer.js';
import type { PartialDownload } from './partial.js';

const log = logger.child({ module: 'client/update/transfer' });

/** A URL as logs and messages show it: no credentials, no query. */
function shown(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  u.search = '';
  return u.toString();
}

/** How the retry loop treats a failed attempt. */
export interface Hint {
  /** Trying again cannot help (404, 403, a second integrity failure). */
  permanent?: boolean;
  retryAfterMs?: number;
}

const hints = new WeakMap<object, Hint>();

/** How to treat `err` from an attempt; undefined: never retried. */
export function retryHint(err: unknown): Hint | undefined {
  return typeof err === 'object' && err !== null ? hints.get(err) : undefined;
}

function failure(
  message: string,
  hint: Hint = {},
  cause?: unknown,
): ClientError {
  const err = new ClientError('DOWNLOAD', message, { cause });
  hints.set(err, hint);
  return err;
}

/** The options with every default filled in. */
export type Settings = DownloadOptions &
  Required<
    Pick<
      DownloadOptions,
      | 'connectTimeoutMs'
      | 'stallTimeoutMs'
      | 'maxAttempts'
      | 'startingDelayMs'
      | 'maxDelayMs'
      | 'maxRetryAfterMs'
    >
  >;

/** A refused certificate: asking again will not change it. */
function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_|TLS/.test(code)
  );
}

/** One target's transfer: the state its attempts share. */
export class Transfer {
  readonly #o: Settings;
  readonly #url: string;
  readonly #part: PartialDownload;
  readonly #length: number;
  readonly #digests: TargetDigests;
  #etag: string | undefined;
  #integrityFailures = 0;
  /** The URL as logs and messages show it. */
  readonly shown: string;
  /** Body bytes received over the network, for the closing log line. */
  received = 0;

  constructor(options: Settings, url: string, part: PartialDownload) {
    this.#o = options;
    this.#url = url;
    this.shown = shown(url);
    this.#part = part;
    this.#length = options.target.length;
    this.#digests = new TargetDigests(options.target.hashes);
  }

  /** One attempt: continue from what is on disk, then verify. */
  async attempt(): Promise<void> {
    const offset = await this.#resumePoint();
    if (offset < this.#length) await this.#request(offset);
    await this.#verify();
  }

  /** Ends the hashing thread; the transfer is not used after. */
  close(): Promise<void> {
    return this.#digests.close();
  }

  /**
   * The part's size once it is known to be a usable prefix, with the
   * digests brought to it; a part that cannot be resumed is emptied.
   */
  async #resumePoint(): Promise<number> {
    const source = await this.#part.source();
    let size = await this.#part.size();
    // A complete part needs no request, only the check of its hashes;
    // a partial one needs the ETag its bytes came under.
    const partial = size > 0 && size < this.#length;
    const reason =
      size > this.#length
        ? 'the part is longer than the target'
        : partial && source?.url !== this.#url
          ? 'the part came from another URL, or its record is lost'
          : partial && !source?.etag
            ? 'the server gave no strong ETag to resume against'
            : undefined;
    if (reason) {
      await this.#restart(reason);
      size = 0;
    } else if (size === 0) {
      await this.#part.truncate();
    }
    this.#etag = source?.etag;
    if (this.#digests.bytes !== size) {
      // A new process, or an attempt whose last write failed: the digests
      // are rebuilt from the disk, never trusted from memory.
      await this.#digests.rehash(this.#part.part, size);
      if (size > 0) log.info({ url: this.shown, from: size }, 'resuming');
    }
    this.#o.onProgress?.(size, this.#length);
    return size;
  }

  /** Empties the part, logging why. */
  async #restart(reason: string): Promise<void> {
    log.warn({ url: this.shown, reason }, 'starting over from byte 0');
    await this.#part.truncate();
    this.#digests.reset();
    this.#o.onProgress?.(0, this.#length);
  }

  /** One GET from `offset`, its body written to the part. */
  async #request(offset: number): Promise<void> {
    const headers: Record<string, string> = {
      'User-Agent': this.#o.userAgent ?? 'tufota-device',
      'Accept-Encoding': 'identity',
    };
    if (offset > 0 && this.#etag) {
      headers.Range = `bytes=${offset}-`;
      headers['If-Range'] = this.#etag;
    }
    let res: IncomingMessage;
    try {
      res = await pinnedGet(this.#url, {
        ca: this.#o.ca,
        allowHttp: this.#o.allowHttp,
        headers,
        connectTimeoutMs: this.#o.connectTimeoutMs,
        stallTimeoutMs: this.#o.stallTimeoutMs,
        freshConnection: true,
        code: 'DOWNLOAD',
      });
    } catch (err) {
      throw this.#wrap(err, 'request failed');
    }
    try {
      const from = await this.#take(res, offset);
      await this.#receive(res, from);
    } finally {
      res.destroy();
    }
  }

  /** Acts on the verdict on `res`; returns where its body goes. */
  async #take(res: IncomingMessage, offset: number): Promise<number> {
    const verdict = judgeAnswer(res.statusCode ?? 0, res.headers, {
      offset,
      length: this.#length,
      etag: this.#etag,
    });
    switch (verdict.kind) {
      case 'continue':
        return offset;
      case 'whole':
        if (verdict.ignoredRange) {
          await this.#restart('the server sent the whole file, not the range');
        }
        this.#etag = verdict.etag;
        await this.#part.remember({ url: this.#url, etag: verdict.etag });
        return 0;
      case 'restart':
        await this.#restart(verdict.problem);
        throw failure(`${this.shown}: ${verdict.problem}`);
      case 'fail':
        throw failure(`${this.shown}: ${verdict.problem}`, verdict);
    }
  }

  /**
   * Writes the body into the part from `offset` (part-writer.ts). Bytes
   * past the target's length are never written: a server sending more
   * fails the attempt.
   */
  async #receive(res: IncomingMessage, offset: number): Promise<void> {
    const writer = await PartWriter.open(
      this.#part.part,
      offset,
      this.#digests,
      (position) => this.#o.onProgress?.(position, this.#length),
    );
    let error: unknown;
    let overflow = false;
    try {
      for await (const data of res) {
        let chunk = data as Buffer;
        this.received += chunk.length;
        const room = this.#length - writer.position - writer.pending;
        if (chunk.length > room) {
          chunk = chunk.subarray(0, room);
          overflow = true;
        }
        await writer.push(chunk);
        if (overflow) break;
      }
    } catch (err) {
      error = err;
    }
    // What arrived before the connection failed is kept for the resume.
    await writer.close();
    const position = writer.position;

    if (writer.error !== undefined) {
      throw failure(
        `${this.#part.part}: cannot write: ${writer.error.message}`,
        { permanent: true },
        writer.error,
      );
    }
    if (overflow) {
      throw failure(
        `${this.shown}: the server sent more than the target's ${this.#length} bytes; cut off there`,
      );
    }
    if (error !== undefined) {
      throw this.#wrap(error, `connection lost at byte ${position}`);
    }
    if (position < this.#length) {
      throw failure(
        `${this.shown}: the answer ended at byte ${position} of ${this.#length}`,
      );
    }
  }

  /**
   * Checks the complete part: fsynced, its size the target's length, and
   * every listed hash. A mismatch removes the part and its sidecar.
   */
  async #verify(): Promise<void> {
    const file = await open(this.#part.part, 'r');
    let size: number;
    try {
      await file.sync();
      size = (await file.stat()).size;
    } finally {
      await file.close();
    }
    const mismatch =
      size !== this.#length || this.#digests.bytes !== this.#length
        ? { algorithm: 'length', expected: this.#length, actual: size }
        : await this.#digests.mismatch();
    if (!mismatch) return;

    this.#integrityFailures++;
    const target = this.#o.target.path;
    log.warn(
      { url: this.shown, target, ...mismatch },
      'integrity failure; part removed',
    );
    await this.#part.remove();
    this.#digests.reset();
    const { algorithm, expected, actual } = mismatch;
    const err = new ClientError(
      'INTEGRITY',
      `${target} from ${this.shown}: ${algorithm} mismatch, expected ${expected}, got ${actual}`,
    );
    // One fresh download may follow a part spoiled on disk (a power cut
    // mid-write); a second mismatch is the server's doing.
    hints.set(err, { permanent: this.#integrityFailures > 1 });
    throw err;
  }

  /** `err` as a DOWNLOAD error naming the URL, unless it already is one. */
  #wrap(err: unknown, what: string): ClientError {
    if (err instanceof ClientError) {
      // The deadlines of http.ts: a slow or silent server may recover.
      if (!hints.has(err)) hints.set(err, {});
      return err;
    }
    const message = err instanceof Error ? err.message : String(err);
    return failure(
      `${this.shown}: ${what}: ${message}`,
      { permanent: isCertificateError(err) },
      err,
    );
  }
}
