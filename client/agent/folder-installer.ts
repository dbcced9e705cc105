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
import { copyFile, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { checkBytes } from '../slots/slot-image.js';
import type { Installer } from './agent.js';
import type { Deployment } from './state.js';
import { fsyncDir } from './state.js';

const VERSION = /^[0-9A-Za-z.+-]{1,64}$/;

/** Length and every listed hash of the file at `path`, or what differs. */
export function checkImage(
  path: string,
  length: number,
  hashes: Readonly<Record<string, string>>,
): Promise<string | undefined> {
  return checkBytes(path, length, hashes, true);
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
