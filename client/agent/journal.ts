/**
 * The device's journal: every step of the agent, appended as one JSON line
 * and on disk before `append` returns, so it survives power loss, reboots
 * and failed updates, and reports can be sent from it later.
 *
 * Files, in the journal folder: `journal.jsonl` (the current one) and
 * `journal.1.jsonl` … `journal.{files-1}.jsonl`, older the higher the
 * number. Before an entry would take the current file past `maxBytes`, the
 * files shift up by one (the oldest is overwritten) and a new current file
 * starts; so the journal holds at most about `files × maxBytes` bytes.
 *
 * Rules kept across crashes:
 * - An entry is acknowledged only after its whole line is written and the
 *   file fdatasynced; its `seq` is then never reused.
 * - `seq` grows by one per entry across rotations and restarts: `open`
 *   reads it back from the tail of the newest file that holds an entry.
 * - Power loss can leave the last line torn (no newline, or junk). `open`
 *   truncates the current file to its last complete line; that entry was
 *   never acknowledged, so its seq is given again.
 * - A crash between the renames of a rotation leaves a gap in the numbers
 *   or no current file; both are read as they are.
 *
 * One process owns a journal folder; nothing here locks it.
 */
import { constants } from 'node:fs';
import {
  mkdir,
  rename,
  unlink,
  readdir,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { fsyncDir, openRegular, SAFE_APPEND, SAFE_READ } from './state.js';

const log = logger.child({ module: 'client/agent/journal' });

const NEWLINE = 0x0a;
const CHUNK = 64 * 1024;
/** Longest line an entry may take, whatever `maxBytes` is. */
export const MAX_ENTRY_BYTES = 64 * 1024;

/** Where the journal lives and how much of it is kept. */
export interface JournalOptions {
  dir: string;
  /** Rotate before the current file passes this size. Default 1 MiB. */
  maxBytes?: number;
  /** Files kept, the current one included; at least 2. Default 4. */
  files?: number;
  /** The clock entries are stamped with; seq, not time, orders them. */
  now?: () => Date;
}

/** One line of the journal; callers' fields follow `event`. */
export interface JournalEntry {
  seq: number;
  /** ISO 8601 by the device's clock, which may be absurd. */
  time: string;
  deploymentId?: string;
  event: string;
  [field: string]: unknown;
}

/** What a caller adds to an entry; seq, time and event are the journal's. */
export type JournalFields = { deploymentId?: string } & Record<string, unknown>;

const RESERVED = ['seq', 'time', 'event'];

function fileName(index: number): string {
  return index === 0 ? 'journal.jsonl' : `journal.${index}.jsonl`;
}

function isEntry(value: unknown): value is JournalEntry {
  const v = value as Partial<JournalEntry> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    Number.isSafeInteger(v.seq) &&
    typeof v.time === 'string' &&
    typeof v.event === 'string'
  );
}

function parseLine(line: Buffer): JournalEntry | undefined {
  try {
    const value: unknown = JSON.parse(line.toString('utf8'));
    return isEntry(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

async function openIfExists(
  path: string,
  flags: number,
  maxSize: number,
): Promise<FileHandle | undefined> {
  try {
    const handle = await openRegular(path, flags);
    // Rotation keeps every file near maxBytes: a larger one (a sparse
    // file of terabytes, say) was not written here, and reading back
    // through it for the last line would take hours.
    const { size } = await handle.stat();
    if (size > maxSize) {
      await handle.close();
      throw new ClientError(
        'JOURNAL',
        `${path} is ${size} bytes, more than this journal ever writes`,
      );
    }
    return handle;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Complete lines of a file, newest first, read backwards a chunk at a
 * time so the tail of a large file costs a chunk. The bytes after the last
 * newline are not a line and are never yielded.
 */
async function* linesBackwards(handle: FileHandle): AsyncGenerator<Buffer> {
  // A negative offset makes lastIndexOf search from the end, so never pass one.
  const before = (buf: Buffer, end: number) =>
    end >= 2 ? buf.lastIndexOf(NEWLINE, end - 2) : -1;
  let pos = (await handle.stat()).size;
  let carry = Buffer.alloc(0);
  let pastTail = false;
  while (pos > 0) {
    const len = Math.min(CHUNK, pos);
    pos -= len;
    const chunk = Buffer.alloc(len);
    await handle.read(chunk, 0, len, pos);
    const buf = Buffer.concat([chunk, carry]);
    let end = buf.length;
    if (!pastTail) {
      // Bytes after the last newline are a torn line, not an entry.
      end = buf.lastIndexOf(NEWLINE) + 1;
      if (end === 0) {
        carry = Buffer.alloc(0);
        continue;
      }
      pastTail = true;
    }
    for (let nl = before(buf, end); nl >= 0; nl = before(buf, end)) {
      if (end - nl > 2) yield buf.subarray(nl + 1, end - 1);
      end = nl + 1;
    }
    carry = buf.subarray(0, end);
  }
  if (carry.length > 1) yield carry.subarray(0, carry.length - 1);
}

/** The entries of one file, oldest first, skipping lines that are not. */
async function readEntries(
  path: string,
  maxSize: number,
): Promise<JournalEntry[]> {
  const handle = await openIfExists(path, SAFE_READ, maxSize);
  if (!handle) return [];
  const entries: JournalEntry[] = [];
  let bad = 0;
  try {
    for await (const line of linesBackwards(handle)) {
      const entry = parseLine(line);
      if (entry) entries.push(entry);
      else bad++;
    }
  } finally {
    await handle.close();
  }
  if (bad > 0) {
    log.warn({ file: path, lines: bad }, 'skipping unreadable lines');
  }
  return entries.reverse();
}

/** An open journal; see the module comment for its crash rules. */
export class Journal {
  readonly dir: string;
  readonly maxBytes: number;
  readonly files: number;
  private readonly now: () => Date;
  private handle: FileHandle | undefined;
  private size = 0;
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private broken: Error | undefined;

  private constructor(options: JournalOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? 1024 * 1024;
    this.files = options.files ?? 4;
    this.now = options.now ?? (() => new Date());
    if (!Number.isSafeInteger(this.files) || this.files < 2) {
      throw new ClientError('CONFIG', 'a journal keeps at least 2 files');
    }
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 256) {
      throw new ClientError('CONFIG', 'a journal file holds at least 256 B');
    }
  }

  /**
   * Opens the journal in `dir` (made if missing): repairs a torn last line,
   * removes files past the number kept, and finds the last seq.
   */
  static async open(options: JournalOptions): Promise<Journal> {
    const journal = new Journal(options);
    try {
      await mkdir(journal.dir, { recursive: true });
      await journal.repair();
      await journal.dropExtraFiles();
      journal.seq = await journal.recoverSeq();
      journal.handle = await openRegular(journal.path(0), SAFE_APPEND, 0o600);
      journal.size = (await journal.handle.stat()).size;
      await fsyncDir(journal.dir);
    } catch (err) {
      await journal.handle?.close();
      if (err instanceof ClientError) throw err;
      const what = `cannot open the journal in ${journal.dir}`;
      throw new ClientError('JOURNAL', what, { cause: err });
    }
    log.debug({ dir: journal.dir, seq: journal.seq }, 'journal opened');
    return journal;
  }

  /** The largest file rotation lets this journal write. */
  private get maxFileBytes(): number {
    return this.maxBytes + MAX_ENTRY_BYTES;
  }

  /** The seq of the newest entry; 0 for an empty journal. */
  get lastSeq(): number {
    return this.seq;
  }

  /**
   * Appends an entry and returns it once it is on disk. Appends run one at
   * a time in call order. A failed append leaves no trace and uses no seq.
   */
  append(event: string, fields: JournalFields = {}): Promise<JournalEntry> {
    return this.serial(() => this.appendNow(event, fields));
  }

  /** Entries with a seq above `since`, oldest first, at most `limit`. */
  list(since = 0, limit = Number.POSITIVE_INFINITY): Promise<JournalEntry[]> {
    return this.serial(async () => {
      const found = await this.collect((e) => e[0].seq <= since + 1);
      return found.filter((e) => e.seq > since).slice(0, limit);
    });
  }

  /** The newest `count` entries, oldest first. */
  newest(count: number): Promise<JournalEntry[]> {
    return this.serial(async () => {
      const found = await this.collect((e) => e.length >= count);
      return count > 0 ? found.slice(-count) : [];
    });
  }

  async close(): Promise<void> {
    await this.serial(async () => {
      await this.handle?.close();
      this.handle = undefined;
    });
  }

  private path(index: number): string {
    return join(this.dir, fileName(index));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Cuts the current file after its last complete line. */
  private async repair(): Promise<void> {
    const handle = await openIfExists(
      this.path(0),
      constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      this.maxFileBytes,
    );
    if (!handle) return;
    try {
      const size = (await handle.stat()).size;
      let keep = 0;
      for (let pos = size; pos > 0 && keep === 0;) {
        const len = Math.min(CHUNK, pos);
        pos -= len;
        const chunk = Buffer.alloc(len);
        await handle.read(chunk, 0, len, pos);
        const nl = chunk.lastIndexOf(NEWLINE);
        if (nl >= 0) keep = pos + nl + 1;
      }
      if (keep === size) return;
      await handle.truncate(keep);
      await handle.sync();
      log.warn(
        { file: this.path(0), dropped: size - keep },
        'torn last line after a crash; truncated to the last complete line',
      );
    } finally {
      await handle.close();
    }
  }

  /** Removes rotated files past `files`, as from a larger setting before. */
  private async dropExtraFiles(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      const m = /^journal\.(\d+)\.jsonl$/.exec(name);
      if (!m || Number(m[1]) < this.files) continue;
      log.info(
        { file: name, files: this.files },
        'removing a journal file past the number kept',
      );
      await unlink(join(this.dir, name));
    }
  }

  /** The highest seq in the newest file that holds an entry. */
  private async recoverSeq(): Promise<number> {
    for (let i = 0; i < this.files; i++) {
      const handle = await openIfExists(
        this.path(i),
        SAFE_READ,
        this.maxFileBytes,
      );
      if (!handle) continue;
      try {
        for await (const line of linesBackwards(handle)) {
          const entry = parseLine(line);
          if (entry) return entry.seq;
          log.warn({ file: this.path(i) }, 'skipping an unreadable line');
        }
      } finally {
        await handle.close();
      }
    }
    return 0;
  }

  private async appendNow(
    event: string,
    fields: JournalFields,
  ): Promise<JournalEntry> {
    if (this.broken) {
      const what = 'the journal failed earlier and is closed';
      throw new ClientError('JOURNAL', what, { cause: this.broken });
    }
    if (!this.handle) throw new ClientError('JOURNAL', 'the journal is closed');
    const clash = RESERVED.find((k) => k in fields);
    if (clash) {
      throw new ClientError('JOURNAL', `"${clash}" is set by the journal`);
    }
    const entry: JournalEntry = {
      seq: this.seq + 1,
      time: this.now().toISOString(),
      ...(fields.deploymentId !== undefined && {
        deploymentId: fields.deploymentId,
      }),
      event,
      ...fields,
    };
    let line: Buffer;
    try {
      line = Buffer.from(`${JSON.stringify(entry)}\n`);
    } catch (err) {
      throw new ClientError('JOURNAL', `entry ${event} is not JSON`, {
        cause: err,
      });
    }
    const limit = Math.min(MAX_ENTRY_BYTES, this.maxBytes);
    if (line.length > limit) {
      throw new ClientError(
        'JOURNAL',
        `entry ${event} takes ${line.length} B, more than ${limit} B`,
      );
    }

    if (this.size > 0 && this.size + line.length > this.maxBytes) {
      await this.rotate();
    }
    await this.write(line);
    this.seq = entry.seq;
    return entry;
  }

  /** Writes a whole line and fdatasyncs, or leaves the file as it was. */
  private async write(line: Buffer): Promise<void> {
    const handle = this.handle as FileHandle;
    try {
      for (let off = 0; off < line.length;) {
        const { bytesWritten } = await handle.write(
          line,
          off,
          line.length - off,
        );
        off += bytesWritten;
      }
      await handle.datasync();
      this.size += line.length;
    } catch (err) {
      // A part of a line left behind would glue itself to the next entry.
      try {
        await handle.truncate(this.size);
        await handle.datasync();
      } catch (cut) {
        this.broken = cut as Error;
        log.error({ err: cut }, 'cannot cut a failed append; journal closed');
      }
      throw new ClientError('JOURNAL', 'cannot append to the journal', {
        cause: err,
      });
    }
  }

  private async rotate(): Promise<void> {
    try {
      await this.handle?.close();
      this.handle = undefined;
      for (let i = this.files - 2; i >= 0; i--) {
        try {
          await rename(this.path(i), this.path(i + 1));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      this.handle = await openRegular(this.path(0), SAFE_APPEND, 0o600);
      this.size = 0;
      await fsyncDir(this.dir);
    } catch (err) {
      // Whatever the renames did, appending to the current name goes on.
      if (!this.handle) {
        this.handle = await openRegular(this.path(0), SAFE_APPEND, 0o600);
        this.size = (await this.handle.stat()).size;
      }
      throw new ClientError('JOURNAL', 'cannot rotate the journal', {
        cause: err,
      });
    }
    log.debug({ dir: this.dir, seq: this.seq }, 'journal rotated');
  }

  /**
   * Entries from the newest file back, until `enough` holds for what was
   * gathered (oldest first) or the files run out.
   */
  private async collect(
    enough: (entries: JournalEntry[]) => boolean,
  ): Promise<JournalEntry[]> {
    let found: JournalEntry[] = [];
    for (let i = 0; i < this.files; i++) {
      found = [
        ...(await readEntries(this.path(i), this.maxFileBytes)),
        ...found,
      ];
      if (found.length > 0 && enough(found)) break;
    }
    return found;
  }
}
