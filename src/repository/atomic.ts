/**
 * Durable file writes. A write that matters goes to a temporary file in the
 * same folder, is fsynced, renamed over its final name and the folder is
 * fsynced, so after a crash the name holds either the old or the new bytes.
 * Temporary names start with `.tmp-` and are never served or read.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { mapLimit } from './limit.js';

export const TEMP_PREFIX = '.tmp-';

/** How much of the final name a temporary name keeps, for people to read. */
const TEMP_NAME_KEEP = 40;

/**
 * `.tmp-<start of the name>.<12 hex>`: at most 58 characters, so a temporary
 * name fits wherever its final name does, however long that is.
 */
export function tempPathFor(path: string): string {
  const suffix = randomBytes(6).toString('hex');
  const name = basename(path).slice(0, TEMP_NAME_KEEP);
  return join(dirname(path), `${TEMP_PREFIX}${name}.${suffix}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface WriteOptions {
  mode?: number;
  /** Fail with EEXIST instead of replacing an existing file. */
  exclusive?: boolean;
  /** Skip the folder fsync; the caller fsyncs the folder once for a batch. */
  deferDirSync?: boolean;
}

export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  options: WriteOptions = {},
): Promise<void> {
  const temp = tempPathFor(path);
  let handle: FileHandle | undefined = await open(
    temp,
    'wx',
    options.mode ?? 0o644,
  );
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (options.exclusive) {
      // link() refuses an existing name, which rename() would replace.
      await link(temp, path);
      await unlink(temp);
    } else {
      await rename(temp, path);
    }
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  if (!options.deferDirSync) await fsyncDir(dirname(path));
}

/**
 * Writes several files so that either all of them or none take their new
 * content, as far as a filesystem allows: every temporary file is written
 * and fsynced first (a failure there removes them all and changes nothing),
 * then all are renamed in one quick pass and their folders fsynced.
 */
export async function writeFilesTogether(
  files: readonly { path: string; data: string | Buffer }[],
  concurrency = 8,
): Promise<void> {
  const temps: string[] = [];
  const writeOne = async (file: { path: string; data: string | Buffer }) => {
    const temp = tempPathFor(file.path);
    temps.push(temp);
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(file.data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return temp;
  };
  let prepared: string[];
  try {
    prepared = await mapLimit(files, concurrency, writeOne);
  } catch (err) {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
    throw err;
  }
  for (let i = 0; i < files.length; i++) {
    await rename(prepared[i], files[i].path);
  }
  for (const dir of new Set(files.map((f) => dirname(f.path)))) {
    await fsyncDir(dir);
  }
}
