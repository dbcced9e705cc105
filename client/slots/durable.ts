/**
 * Durable small-file writes for the slot installer's own files (the trial
 * note). This is a copy of `writeFileDurable` in `client/agent/state.ts`,
 * kept here because `client/slots/` may import nothing of the project,
 * and the agent is the one part it must not lean on: temporary file,
 * fsync, rename, folder fsync, so a file holds the old bytes or the new.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Makes renames and new names in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `path` with `data`: after a crash, the old bytes or the new. */
export async function writeFileDurable(
  path: string,
  data: string | Buffer,
): Promise<void> {
  const temp = join(
    dirname(path),
    `.tmp-${basename(path)}.${randomBytes(6).toString('hex')}`,
  );
  let handle: FileHandle | undefined = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}
