/**
 * Durable small-file writes for the slot installer's own file (the trial
 * note): temporary file, fsync, rename, folder fsync, so the file holds
 * the old bytes or the new. The agent's files use it too (through
 * `client/agent/state.ts`); it lives here because `client/slots/` may
 * import nothing of the project, and the agent may import the slots.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  open,
  readdir,
  rename,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Opening flags for files in a folder another user may change: never
 * through a link at the last step, never waiting on a FIFO (a FIFO opened
 * to write with no reader fails at once; one opened to read is refused by
 * its type below).
 */
export const SAFE_READ =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
export const SAFE_APPEND =
  constants.O_WRONLY |
  constants.O_APPEND |
  constants.O_CREAT |
  constants.O_NOFOLLOW |
  constants.O_NONBLOCK;

/** Opens `path` with `flags`; throws unless it is a regular file. */
export async function openRegular(
  path: string,
  flags: number,
  mode?: number,
): Promise<FileHandle> {
  const handle = await open(path, flags, mode);
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw Object.assign(new Error(`${path} is not a regular file`), {
      code: 'ENOTREGULAR',
    });
  }
  return handle;
}

/**
 * A regular file's text, read with SAFE_READ, refused past `maxBytes`
 * (the small records kept in a state folder are far below the default).
 */
export async function readRegularFile(
  path: string,
  maxBytes = 1024 * 1024,
): Promise<string> {
  const handle = await openRegular(path, SAFE_READ);
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) {
      throw Object.assign(
        new Error(`${path} is ${size} bytes, more than ${maxBytes} allowed`),
        { code: 'ETOOBIG' },
      );
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

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
    `${tempPrefix(path)}${randomBytes(6).toString('hex')}`,
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

function tempPrefix(path: string): string {
  return `.tmp-${basename(path)}.`;
}

/**
 * Removes temporary files a cut `writeFileDurable(path)` left. Only for a
 * file one process owns, as the installer owns its note.
 */
export async function removeStaleTemps(path: string): Promise<void> {
  const prefix = tempPrefix(path);
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    await unlink(join(dirname(path), name)).catch(() => undefined);
  }
}
