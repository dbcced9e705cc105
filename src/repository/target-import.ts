/**
 * Copies a target file into the repository while hashing it, reading the
 * source once. The copy is stored under both `SHA256.NAME` and
 * `SHA512.NAME` (hard links): clients build the name from whichever listed
 * hash they take first, and not all take the same one.
 */
import { TargetFile } from '@tufjs/models';

type JSONValue = NonNullable<
  ConstructorParameters<typeof TargetFile>[0]['unrecognizedFields']
>[string];
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BadInputError } from '../errors.js';
import { consistentTargetPath } from '../tuf/paths.js';
import { tempPathFor } from './atomic.js';

export interface ImportedTarget {
  target: TargetFile;
  /** Folders written into, to be fsynced once per batch. */
  dirs: string[];
}

export async function importTarget(
  targetsDir: string,
  source: string,
  targetPath: string,
  custom?: Record<string, unknown>,
): Promise<ImportedTarget> {
  const sha256 = createHash('sha256');
  const sha512 = createHash('sha512');
  let length = 0;

  const dest256 = join(targetsDir, consistentTargetPath(targetPath, 'x'));
  const dir = dirname(dest256);
  await mkdir(dir, { recursive: true });
  const temp = tempPathFor(join(dir, 'target'));
  const out = await open(temp, 'wx', 0o644);
  try {
    let input;
    try {
      input = createReadStream(source, { highWaterMark: 1 << 20 });
      for await (const chunk of input as AsyncIterable<Buffer>) {
        sha256.update(chunk);
        sha512.update(chunk);
        length += chunk.length;
        await out.write(chunk);
      }
    } catch (err) {
      throw new BadInputError(`cannot read target file ${source}`, {
        cause: err,
      });
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
  return { target, dirs: [dir] };
}
