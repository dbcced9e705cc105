/**
 * Target files as the server reads them: open handles kept for reuse, and
 * the buffers their bytes pass through on the way to a socket.
 *
 * A target file is named by its hash, so its content cannot change while
 * the name stays: a handle opened once serves every later request for the
 * same name. Re-opening per request (a realpath, an open, an fstat and a
 * close, each a trip through libuv's thread pool) cost about a fifth of
 * the ranged-read rate, and so did a fresh megabyte buffer per response.
 * Handles are checked again after `recheckMs`, so a file the repository
 * removes stops being served within that time, and at most `maxOpen` are
 * kept, least recently used going first.
 */
import { constants } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join, sep } from 'node:path';

/** Bytes read and written at a time, and the size of pooled buffers. */
export const CHUNK = 1024 * 1024;
/** Pooled buffers kept for reuse; more in flight are allocated and dropped. */
const POOL_MAX = 16;
/** A client that reads nothing for this long loses its connection. */
const STALL_MS = 60_000;

interface Entry {
  handle: FileHandle;
  size: number;
  checkedAt: number;
  refs: number;
  retired: boolean;
}

/** A target file held open for one response; `release` when done. */
export interface OpenTarget {
  handle: FileHandle;
  size: number;
  release(): void;
}

export interface TargetFilesOptions {
  maxOpen?: number;
  recheckMs?: number;
  now?: () => number;
}

export class TargetFiles {
  private readonly entries = new Map<string, Entry>();
  private readonly pool: Buffer[] = [];
  private realRoot: Promise<string> | undefined;
  private readonly maxOpen: number;
  private readonly recheckMs: number;
  private readonly now: () => number;

  constructor(
    private readonly targetsDir: string,
    options: TargetFilesOptions = {},
  ) {
    this.maxOpen = options.maxOpen ?? 256;
    this.recheckMs = options.recheckMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * The regular file at `segments` below the targets folder, opened, or
   * undefined if there is none or the path leaves the folder through a
   * link. The caller checks the segments' form first.
   */
  async acquire(segments: string[]): Promise<OpenTarget | undefined> {
    const root = await (this.realRoot ??= realpath(this.targetsDir));
    const path = join(root, ...segments);
    let entry = this.entries.get(path);
    if (entry && this.now() - entry.checkedAt >= this.recheckMs) {
      this.retire(path, entry);
      entry = undefined;
    }
    if (!entry) {
      entry = await this.openChecked(root, path);
      if (!entry) return undefined;
      const raced = this.entries.get(path);
      if (raced) this.retire(path, raced);
      this.entries.set(path, entry);
      this.evict();
    } else {
      // Map order is the eviction order: move to the young end.
      this.entries.delete(path);
      this.entries.set(path, entry);
    }
    const held = entry;
    held.refs++;
    let released = false;
    return {
      handle: held.handle,
      size: held.size,
      release: () => {
        if (released) return;
        released = true;
        held.refs--;
        if (held.retired && held.refs === 0) void held.handle.close();
      },
    };
  }

  private async openChecked(
    root: string,
    path: string,
  ): Promise<Entry | undefined> {
    // A folder inside targets/ that is a link to elsewhere would otherwise
    // pass every check on the name; O_NOFOLLOW covers the last segment.
    const real = await realpath(path).catch(() => undefined);
    if (real !== path || !real.startsWith(root + sep)) return undefined;
    const handle = await open(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW,
    ).catch(() => undefined);
    if (!handle) return undefined;
    const info = await handle.stat().catch(() => undefined);
    if (!info?.isFile()) {
      await handle.close();
      return undefined;
    }
    return {
      handle,
      size: info.size,
      checkedAt: this.now(),
      refs: 0,
      retired: false,
    };
  }

  private retire(path: string, entry: Entry): void {
    if (this.entries.get(path) === entry) this.entries.delete(path);
    entry.retired = true;
    if (entry.refs === 0) void entry.handle.close();
  }

  private evict(): void {
    for (const [path, entry] of this.entries) {
      if (this.entries.size <= this.maxOpen) break;
      this.retire(path, entry);
    }
  }

  /** Number of files held open (for tests and health). */
  get openCount(): number {
    return this.entries.size;
  }

  /**
   * Sends bytes `start..end` of `target` as the response body, a chunk at
   * a time, waiting while the socket is full. Resolves when the last byte
   * is handed over or the response is gone; rejects when the file reads
   * short (the response is then destroyed, so the client sees a cut body
   * and never a wrong one).
   */
  async send(
    res: ServerResponse,
    target: OpenTarget,
    start: number,
    end: number,
  ): Promise<void> {
    let position = start;
    while (position <= end) {
      if (res.destroyed) return;
      const length = Math.min(CHUNK, end - position + 1);
      const buffer = this.pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
      let done = 0;
      try {
        while (done < length) {
          const { bytesRead } = await target.handle.read(
            buffer,
            done,
            length - done,
            position + done,
          );
          if (bytesRead === 0) break;
          done += bytesRead;
        }
      } catch (err) {
        this.giveBack(buffer);
        res.destroy();
        throw err;
      }
      if (done < length) {
        this.giveBack(buffer);
        res.destroy();
        throw new Error(
          `target file ended at byte ${position + done}, before ${end + 1}`,
        );
      }
      position += length;
      // The buffer is reused only once the socket has taken its bytes.
      const chunk = buffer.subarray(0, length);
      if (position > end) {
        res.end(chunk, () => this.giveBack(buffer));
        return;
      }
      if (!res.write(chunk, () => this.giveBack(buffer))) {
        if (!(await drained(res))) {
          res.destroy();
          return;
        }
      }
    }
  }

  private giveBack(buffer: Buffer): void {
    if (this.pool.length < POOL_MAX) this.pool.push(buffer);
  }

  /** Closes every handle not in use; those in use close on release. */
  close(): void {
    for (const [path, entry] of this.entries) this.retire(path, entry);
  }
}

/** True once `res` can take more, false if it closed or stalled. */
function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => finish(true);
    const onClose = () => finish(false);
    const timer = setTimeout(() => finish(false), STALL_MS);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}
