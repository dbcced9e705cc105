/**
 * The stand-in installer until the A/B slot installer exists: it checks
 * the image against the deployment's length and hashes once more (the
 * installing step trusts no earlier step), then copies it durably into
 * `DIR/VERSION/image` and reports the deployment committed.
 *
 * It has no slots, no boot counting and no rollback, so it cannot keep a
 * device bootable; it exists so the update cycle, the journal and the
 * reports can run end to end on any machine. The slot installer replaces
 * it behind the same `Installer` interface.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import type { Installer } from './agent.js';
import type { Deployment } from './state.js';
import { fsyncDir } from './state.js';

const VERSION = /^[0-9A-Za-z.+-]{1,64}$/;

/** Length and every listed hash of the file at `path`, or what differs. */
export async function checkImage(
  path: string,
  length: number,
  hashes: Readonly<Record<string, string>>,
): Promise<string | undefined> {
  const algorithms = Object.keys(hashes).filter((a) =>
    ['sha256', 'sha512'].includes(a),
  );
  if (algorithms.length === 0) return 'no sha256 or sha512 hash is listed';
  const digests = algorithms.map((a) => createHash(a));
  let size = 0;
  for await (const chunk of createReadStream(path, {
    highWaterMark: 1024 * 1024,
  })) {
    const bytes = chunk as Buffer;
    size += bytes.length;
    if (size > length) return `longer than its ${length} bytes`;
    for (const d of digests) d.update(bytes);
  }
  if (size !== length) return `${size} bytes, not ${length}`;
  for (const [i, a] of algorithms.entries()) {
    const actual = digests[i].digest('hex');
    const expected = hashes[a].toLowerCase();
    if (actual !== expected) return `${a} is ${actual}, not ${expected}`;
  }
  return undefined;
}

export class FolderInstaller implements Installer {
  constructor(readonly dir: string) {}

  async install(image: string, deployment: Deployment): Promise<'committed'> {
    if (!VERSION.test(deployment.version)) {
      throw new ClientError(
        'STATE',
        `version "${deployment.version}" cannot name a folder`,
      );
    }
    const problem = await checkImage(
      image,
      deployment.length,
      deployment.hashes,
    );
    if (problem) {
      throw new ClientError(
        'INTEGRITY',
        `${deployment.targetPath}: the image to install is ${problem}`,
      );
    }
    const folder = join(this.dir, deployment.version);
    await mkdir(folder, { recursive: true });
    const temp = join(folder, `.image.${deployment.id}.tmp`);
    await rm(temp, { force: true });
    await copyFile(image, temp);
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(folder, 'image'));
    await fsyncDir(folder);
    return 'committed';
  }
}
