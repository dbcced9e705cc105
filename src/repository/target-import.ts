/**
 * Copies a target file into the repository while hashing it, reading the
 * source once. The copy is stored under both `SHA256.NAME` and
 * `SHA512.NAME` (hard links): clients build the name from whichever listed
 * hash they take first, and not all take the same one.
 */
import { TargetFile } from '@tufjs/models';
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BadInputError } from '../errors.js';
import { consistentTargetPath } from '../tuf/paths.js';
import { tempPathFor } from './atomic.js';

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
    let input;
    try {
      // A buffer sized to the file reads a small target in one call, where
      // a stream would allocate a full 1 MiB buffer for each read.
      input = await open(source, 'r');
      const { size } = await input.stat();
      const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(size + 1, CHUNK)));
      for (;;) {
        const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        sha256.update(chunk);
        sha512.update(chunk);
        length += bytesRead;
        await out.write(chunk);
      }
    } catch (err) {
      throw new BadInputError(`cannot read target file ${source}`, {
        cause: err,
      });
    } finally {
      await input?.close().catch(() => undefined);
    }
    await out.sync();
    await out.close();
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
