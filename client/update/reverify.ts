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
import { lstat, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Fetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { ClientError } from '../errors.js';
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

  constructor(metadataDir: string) {
    this.#dir = metadataDir;
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

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const file = this.#file(url);
    // Read without following a link: the folder is another user's.
    const info = await lstat(file).catch(() => undefined);
    if (!info?.isFile()) {
      throw new DownloadHTTPError(`${file} is not cached`, 404);
    }
    if (info.size > maxLength) {
      throw new ClientError(
        'INTEGRITY',
        `${file} is ${info.size} bytes, past the ${maxLength} allowed`,
      );
    }
    const handle = await open(file, 'r');
    try {
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
  targetPath: string;
  length: number;
  hashes: Record<string, string>;
}

/**
 * Resolves when the verified metadata lists `targetPath` with exactly the
 * given length and hashes. Throws `ClientError('INTEGRITY')` when it lists
 * something else or nothing; any other error (expired metadata, a cache
 * that does not verify) is for a later try.
 */
export async function checkCachedTarget(
  check: CachedTargetCheck,
): Promise<void> {
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
    fetcher: new CacheFetcher(check.cacheDir),
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
}
