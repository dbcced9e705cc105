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

export const TEMP_PREFIX = '.tmp-';

export function tempPathFor(path: string): string {
  const suffix = randomBytes(6).toString('hex');
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${suffix}`);
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
