/**
 * Copies a target file into the repository while hashing it, reading the
 * source once. The copy is stored under both `SHA256.NAME` and
 * `SHA512.NAME` (hard links): clients build the name from whichever listed
 * hash they take first, and not all take the same one.
 */
import { TargetFile } from '@tufjs/models';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import {
  link,
  lstat,
  mkdir,
  open,
  readFile,
  readdir,
  realpath,
  rename,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { BadInputError, TargetWriteError } from '../errors.js';
import { consistentTargetPath } from '../tuf/paths.js';
import { TEMP_PREFIX, tempPathFor } from './atomic.js';
import type { Layout } from './layout.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'repository/target-import' });

type JSONValue = NonNullable<
  ConstructorParameters<typeof TargetFile>[0]['unrecognizedFields']
>[string];

export interface ImportedTarget {
  target: TargetFile;
  /** Folders written into, to be fsynced once per batch. */
  dirs: string[];
  /** Stored names that did not exist before this import. */
  created: string[];
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Read size for target files: whole for small ones, 1 MiB pieces else. */
const CHUNK = 1 << 20;

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);
}

function readError(source: string, err: unknown): BadInputError {
  return new BadInputError(
    `cannot read target file ${source} (${errnoOf(err)})`,
    { cause: err },
  );
}

function writeError(source: string, path: string, err: unknown): Error {
  return err instanceof TargetWriteError
    ? err
    : new TargetWriteError(source, path, err);
}

/**
 * Opens a target source for reading and checks, on the open handle, that it
 * is a regular file. Checking a path and then opening it leaves a window in
 * which it can be swapped for a FIFO (an open that blocks, with the writer
 * lock held) or a device such as /dev/zero (a copy without end); O_NONBLOCK
 * keeps the open itself from waiting on a FIFO.
 */
async function openRegularFile(source: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(source, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw readError(source, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new BadInputError(`target file ${source} is not a regular file`);
    }
    return handle;
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err instanceof BadInputError ? err : readError(source, err);
  }
}

export async function importTarget(
  targetsDir: string,
  source: string,
  targetPath: string,
  custom?: Record<string, unknown>,
  options: { knownDirs?: Set<string> } = {},
): Promise<ImportedTarget> {
  const sha256 = createHash('sha256');
  const sha512 = createHash('sha512');
  let length = 0;

  const dest256 = join(targetsDir, consistentTargetPath(targetPath, 'x'));
  const dir = dirname(dest256);
  // A batch makes each folder once; mkdir of every target's folder costs
  // two system calls per file for nothing.
  if (!options.knownDirs?.has(dir)) {
    await mkdir(dir, { recursive: true });
    options.knownDirs?.add(dir);
  }
  const temp = tempPathFor(join(dir, 'target'));
  const out = await open(temp, 'wx', 0o644);
  try {
    let input: FileHandle | undefined;
    try {
      input = await openRegularFile(source);
      // Only the size seen on the open handle is read: a file that grows
      // meanwhile is cut there, and what is hashed is exactly what is
      // copied. A buffer sized to the file reads a small target in one
      // call, where a stream would allocate a full 1 MiB for each read.
      const { size } = await input.stat();
      const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(size, CHUNK)));
      while (length < size) {
        const want = Math.min(buffer.length, size - length);
        let bytesRead: number;
        try {
          ({ bytesRead } = await input.read(buffer, 0, want, null));
        } catch (err) {
          throw readError(source, err);
        }
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        sha256.update(chunk);
        sha512.update(chunk);
        length += bytesRead;
        try {
          // A write cut short (a disk filling up) is carried on, so that it
          // ends in an error instead of a stored file shorter than hashed.
          for (let at = 0; at < chunk.length;) {
            const { bytesWritten } = await out.write(
              chunk,
              at,
              chunk.length - at,
            );
            if (bytesWritten === 0) throw new Error('nothing written');
            at += bytesWritten;
          }
        } catch (err) {
          throw writeError(source, temp, err);
        }
      }
    } finally {
      await input?.close().catch(() => undefined);
    }
    try {
      await out.sync();
      await out.close();
    } catch (err) {
      throw writeError(source, temp, err);
    }
  } catch (err) {
    await out.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  const hashes = {
    sha256: sha256.digest('hex'),
    sha512: sha512.digest('hex'),
  };
  const name256 = join(
    targetsDir,
    consistentTargetPath(targetPath, hashes.sha256),
  );
  const name512 = join(
    targetsDir,
    consistentTargetPath(targetPath, hashes.sha512),
  );
  // Content-addressed names that already exist hold these very bytes and
  // are replaced in place; only new names are reported as created.
  const created: string[] = [];
  for (const name of [name256, name512]) {
    if (!(await exists(name))) created.push(name);
  }
  const temp512 = tempPathFor(name512);
  await link(temp, temp512);
  await rename(temp512, name512);
  await rename(temp, name256);

  const target = new TargetFile({
    path: targetPath,
    length,
    hashes,
    // custom holds only values checked by tuf/custom.ts.
    unrecognizedFields: custom
      ? { custom: custom as Record<string, JSONValue> }
      : {},
  });
  return { target, dirs: [dir], created };
}

/** Removes partial copies a killed `targets add` left behind. */
export async function cleanInterruptedImport(layout: Layout): Promise<void> {
  let dirs: string[];
  try {
    const doc = JSON.parse(await readFile(layout.importing, 'utf8')) as {
      dirs?: unknown;
    };
    dirs = Array.isArray(doc.dirs)
      ? doc.dirs.filter((d): d is string => typeof d === 'string')
      : [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    dirs = [];
  }
  const targetsRoot = await realpath(layout.targets).catch(
    () => layout.targets,
  );
  for (const listed of dirs) {
    // Only real folders inside targets/ are touched, whatever the marker
    // says: the path is resolved first, so a link cannot lead out.
    const dir = await realpath(listed).catch(() => undefined);
    if (dir === undefined) continue;
    const rel = relative(targetsRoot, dir);
    if (rel.startsWith('..') || isAbsolute(rel)) continue;
    const names = await readdir(dir).catch(() => [] as string[]);
    const partial = names.filter((n) => n.startsWith(TEMP_PREFIX));
    for (const name of partial) {
      await unlink(join(dir, name)).catch(() => undefined);
    }
    if (partial.length > 0) {
      log.warn({ dir, files: partial.length }, 'removed partial copies');
    }
  }
  await unlink(layout.importing).catch(() => undefined);
}
