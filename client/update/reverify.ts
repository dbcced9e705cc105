/**
 * The privileged install step's own check of what it is about to write:
 * the TUF chain verified again, with tuf-js, from a root this step keeps
 * itself, over the metadata files the network step cached. No network:
 * the cached files are served to tuf-js as if fetched, so every rule
 * applies as in a refresh (signatures and thresholds from the step's own
 * root on, versions never going back from what this step saw last,
 * expiry by this machine's clock, the key table check), and the target's
 * length and hashes are then taken from that verified view, not from the
 * network step's record.
 *
 * The network step writes both the record and the cache; only the check
 * through tuf-js makes the cache worth reading.
 */
import { constants } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import type { Fetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { ClientError } from '../errors.js';
import { listTargets } from './listing.js';
import { createUpdater } from './updater.js';

/** Stands in for the metadata URL; nothing is ever fetched from it. */
const CACHE_URL = 'https://cached-metadata.invalid/metadata';

/**
 * A tuf-js fetcher over the network step's metadata folder: `N.root.json`
 * from its root archive, any other `N.ROLE.json` from the `ROLE.json`
 * tuf-js kept there. A file that is not there answers 404, which ends
 * tuf-js's walk through root versions as a server's 404 would.
 */
export class CacheFetcher implements Fetcher {
  readonly #dir: string;
  readonly #owner: number | undefined;
  readonly #readAs: <T>(read: () => Promise<T>) => Promise<T>;

  /**
   * `owner`, when given, is the uid every cached file must belong to: a
   * hard link to another user's file placed in the cache is refused.
   */
  constructor(
    metadataDir: string,
    owner?: number,
    readAs: <T>(read: () => Promise<T>) => Promise<T> = (read) => read(),
  ) {
    this.#dir = metadataDir;
    this.#owner = owner;
    this.#readAs = readAs;
  }

  #file(url: string): string {
    const prefix = `${CACHE_URL}/`;
    const name = url.startsWith(prefix) ? url.slice(prefix.length) : '';
    if (!/^[A-Za-z0-9%_.-]+\.json$/.test(name) || name.startsWith('.')) {
      throw new DownloadHTTPError(`no cached file for ${url}`, 404);
    }
    if (/^\d+\.root\.json$/.test(name)) return join(this.#dir, 'roots', name);
    return join(this.#dir, name.replace(/^\d+\./, ''));
  }

  downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    // With the owner's rights when given: the kernel then refuses what
    // the owner could not read, whatever link or race sits in the folder.
    return this.#readAs(() => this.#read(url, maxLength));
  }

  async #read(url: string, maxLength: number): Promise<Buffer> {
    const file = this.#file(url);
    // The folder is another user's: never through a link, never a FIFO
    // (which would hold the open), only a regular file of the owner's.
    let handle: FileHandle;
    try {
      handle = await open(
        file,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new DownloadHTTPError(`${file} is not cached`, 404);
      }
      throw new ClientError('INTEGRITY', `cannot read ${file} safely`, {
        cause: err,
      });
    }
    try {
      const info = await handle.stat();
      if (
        !info.isFile() ||
        (this.#owner !== undefined && info.uid !== this.#owner)
      ) {
        throw new ClientError(
          'INTEGRITY',
          `${file} is not a regular file of the network step's own`,
        );
      }
      if (info.size > maxLength) {
        throw new ClientError(
          'INTEGRITY',
          `${file} is ${info.size} bytes, past the ${maxLength} allowed`,
        );
      }
      const bytes = Buffer.alloc(info.size);
      const { bytesRead } = await handle.read(bytes, 0, info.size, 0);
      return bytes.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  downloadFile<T>(): Promise<T> {
    return Promise.reject(
      new ClientError('STATE', 'the cached metadata holds no target files'),
    );
  }
}

export interface CachedTargetCheck {
  /** This step's own trusted metadata: its root.json, and what tuf-js keeps. */
  trustedDir: string;
  /** The network step's metadata folder (with `roots/`). */
  cacheDir: string;
  /** The uid its files must belong to, when that is another user. */
  cacheOwner?: number;
  /** Runs each read of the cache, e.g. with the owner's rights. */
  readAs?: <T>(read: () => Promise<T>) => Promise<T>;
  targetPath: string;
  length: number;
  hashes: Record<string, string>;
  /** Where releases live; a path elsewhere is refused. Default `images/`. */
  prefix?: string;
}

/** What the install step's own view holds. */
export interface CachedView {
  /** The recorded target, as the verified metadata lists it. */
  target: TargetFile;
  /** Every verified target under the prefix, for the device's own choice. */
  listed: TargetFile[];
}

/**
 * The target as the verified metadata lists it at `targetPath`, when that
 * has exactly the given length and hashes. Throws `ClientError('INTEGRITY')`
 * when it lists something else or nothing; any other error (expired
 * metadata, a cache that does not verify) is for a later try.
 */
export async function checkCachedTarget(
  check: CachedTargetCheck,
): Promise<CachedView> {
  const prefix = check.prefix ?? 'images/';
  if (!check.targetPath.startsWith(prefix)) {
    throw new ClientError(
      'INTEGRITY',
      `${check.targetPath} is not a release: releases live under ${prefix}`,
    );
  }
  const root = await lstat(join(check.trustedDir, 'root.json')).catch(
    () => undefined,
  );
  if (!root?.isFile()) {
    throw new ClientError(
      'STATE',
      `${check.trustedDir} holds no trusted root of its own: run ` +
        '"tufota-device init --root FILE" with the rights of the install step',
    );
  }
  const updater = createUpdater({
    metadataDir: check.trustedDir,
    metadataBaseUrl: CACHE_URL,
    fetcher: new CacheFetcher(check.cacheDir, check.cacheOwner, check.readAs),
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(check.targetPath);
  if (!info) {
    throw new ClientError(
      'INTEGRITY',
      `${check.targetPath} is not listed by the verified metadata`,
    );
  }
  const listed = Object.entries(info.hashes).map(
    ([name, value]) => `${name}:${value.toLowerCase()}`,
  );
  const recorded = Object.entries(check.hashes).map(
    ([name, value]) => `${name}:${value.toLowerCase()}`,
  );
  const same =
    info.length === check.length &&
    listed.length === recorded.length &&
    listed.every((h) => recorded.includes(h));
  if (!same) {
    throw new ClientError(
      'INTEGRITY',
      `the recorded ${check.targetPath} (${check.length} bytes) does not ` +
        `match the verified metadata (${info.length} bytes, ` +
        `${listed.join(', ')})`,
    );
  }
  return { target: info, listed: await listTargets(updater, prefix) };
}
