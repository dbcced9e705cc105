/**
 * A download in progress, kept in the state folder across restarts and
 * reboots: `downloads/SHA256-LENGTH.part` holds the bytes received so far
 * and `downloads/SHA256-LENGTH.json` the URL they came from and the ETag
 * the server gave them, which a resumed request must name in `If-Range`.
 *
 * The name comes from the target's verified hash and length, so a part
 * can only ever continue into the image it was started for; a changed
 * release is a different name. The sidecar is written (temp file, fsync,
 * rename, folder fsync) before the first byte of a new body, so a part is
 * never resumed under an ETag that did not produce it.
 */
import { constants } from 'node:fs';
import {
  copyFile,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'client/update/partial' });

/** What the sidecar remembers about the part's bytes. */
export interface PartSource {
  url: string;
  /** The strong ETag of the answer the bytes came from, if it had one. */
  etag?: string;
}

/** Opens and fsyncs a folder, so a rename or unlink in it is durable. */
export async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class PartialDownload {
  readonly dir: string;
  /** The bytes received so far. */
  readonly part: string;
  /** The part's `PartSource`, as JSON. */
  readonly sidecar: string;

  private constructor(dir: string, key: string) {
    this.dir = dir;
    this.part = join(dir, `${key}.part`);
    this.sidecar = join(dir, `${key}.json`);
  }

  /**
   * The partial download of the target with hash `digest` and `length`,
   * under `stateDir`/downloads (made if missing). The digest must be hex:
   * it becomes a file name.
   */
  static async open(
    stateDir: string,
    digest: string,
    length: number,
  ): Promise<PartialDownload> {
    if (!/^[0-9a-f]{32,128}$/i.test(digest)) {
      throw new ClientError('DOWNLOAD', `target hash ${digest} is not hex`);
    }
    const dir = join(stateDir, 'downloads');
    await mkdir(dir, { recursive: true });
    return new PartialDownload(dir, `${digest.toLowerCase()}-${length}`);
  }

  /** Bytes in the part; 0 when there is none. */
  async size(): Promise<number> {
    try {
      return (await stat(this.part)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }

  /** The sidecar, or undefined when missing or unreadable. */
  async source(): Promise<PartSource | undefined> {
    let text: string;
    try {
      text = await readFile(this.sidecar, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const json = JSON.parse(text) as Partial<PartSource>;
      if (typeof json.url !== 'string') return undefined;
      const etag = typeof json.etag === 'string' ? json.etag : undefined;
      return { url: json.url, etag };
    } catch {
      return undefined;
    }
  }

  /** Replaces the sidecar durably. */
  async remember(source: PartSource): Promise<void> {
    const tmp = `${this.sidecar}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(source));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.sidecar);
    await syncFolder(this.dir);
  }

  /** Empties the part (creating it if missing). */
  async truncate(): Promise<void> {
    await writeFile(this.part, '', { mode: 0o600 });
  }

  /** Removes the part and its sidecar, durably. */
  async remove(): Promise<void> {
    await rm(this.part, { force: true });
    await this.forget();
  }

  /** Removes the part and its sidecar if the part holds no byte. */
  async removeIfEmpty(): Promise<void> {
    if ((await this.size()) === 0) await this.remove();
  }

  /** Removes the sidecar alone (once the part has been renamed away). */
  async forget(): Promise<void> {
    await rm(this.sidecar, { force: true });
    await rm(`${this.sidecar}.tmp`, { force: true });
    await syncFolder(this.dir);
  }

  /**
   * Renames the (verified) part to `destination` and fsyncs its folder,
   * then drops the sidecar.
   */
  async moveTo(destination: string): Promise<void> {
    const folder = dirname(destination);
    await mkdir(folder, { recursive: true });
    try {
      await rename(this.part, destination);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      log.info(
        { destination },
        'destination on another file system; copying the image',
      );
      const tmp = `${destination}.tmp-${process.pid}`;
      await copyFile(this.part, tmp);
      const handle = await open(tmp, 'r');
      await handle.sync().finally(() => handle.close());
      await rename(tmp, destination);
      await rm(this.part, { force: true });
    }
    await syncFolder(folder);
    await this.forget();
  }
}
