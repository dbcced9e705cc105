/**
 * Downloading a target image after tuf-js has verified the metadata that
 * lists it (`Updater.getTargetInfo`): streamed to disk with bounded memory,
 * resumed across restarts, retried with backoff, and checked against the
 * listed length and every listed hash before it reaches its destination.
 *
 * Nothing the server says is trusted beyond deciding what to do next: a
 * resumed answer is taken only as the exact continuation of the part
 * (206, `Content-Range` starting at the part's size, total the target's
 * length, the same ETag), bytes past the target's length are never
 * written, and the image is renamed into place only once its length and
 * hashes match. Anything else starts over from byte 0 or fails cleanly.
 */
import { posix } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import { backOff } from 'exponential-backoff';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { checkableAlgorithms } from './digests.js';
import { checkTransport } from './http.js';
import { PartialDownload } from './partial.js';
import { retryHint, Transfer } from './transfer.js';

const log = logger.child({ module: 'client/update/download' });

export interface DownloadOptions {
  /** The target, as verified by `Updater.getTargetInfo`. */
  target: TargetFile;
  /** Where targets are served: the Updater's `targetBaseUrl`. */
  targetBaseUrl: string;
  /**
   * Whether target names carry their hash (root's `consistent_snapshot`);
   * tufota always publishes so. Default true.
   */
  consistentSnapshot?: boolean;
  /** The device's state folder; partial downloads go in `downloads/`. */
  stateDir: string;
  /** Where the verified image is renamed to. */
  destination: string;
  /** PEM of the CA the server's certificate must chain to (https). */
  ca?: string | string[];
  /** Accept `http:` URLs; for tests only. */
  allowHttp?: boolean;
  userAgent?: string;
  /** Until an answer's headers arrive. Default 30 s. */
  connectTimeoutMs?: number;
  /** Without a byte of body. Default 30 s. */
  stallTimeoutMs?: number;
  /** Requests tried, counting the first. Default 8. */
  maxAttempts?: number;
  /** The backoff's first delay before full jitter. Default 1 s. */
  startingDelayMs?: number;
  /** The backoff's cap before full jitter. Default 60 s. */
  maxDelayMs?: number;
  /** The longest `Retry-After` obeyed; longer ones wait this. Default 10 min. */
  maxRetryAfterMs?: number;
  /** Called with bytes on disk and the target's length as they grow. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The URL tuf-js itself would fetch `target` from: under consistent
 * snapshots the name is prefixed with the first listed hash.
 */
export function targetUrl(
  targetBaseUrl: string,
  target: Pick<TargetFile, 'path' | 'hashes'>,
  consistentSnapshot = true,
): string {
  // Both come from signed metadata, but a compromised releases key must
  // not steer the device to other paths on the server.
  const segments = target.path.split('/');
  if (segments.some((seg) => seg === '' || seg === '.' || seg === '..')) {
    throw new ClientError(
      'INTEGRITY',
      `target path ${JSON.stringify(target.path)} has an empty, . or .. segment`,
    );
  }
  const first = Object.values(target.hashes)[0];
  if (consistentSnapshot && !/^[0-9a-fA-F]{32,128}$/.test(first ?? '')) {
    throw new ClientError(
      'INTEGRITY',
      `${target.path}: its first hash is not hexadecimal`,
    );
  }
  let path = target.path;
  if (consistentSnapshot) {
    const { dir, base } = posix.parse(path);
    const name = `${Object.values(target.hashes)[0]}.${base}`;
    path = dir ? `${dir}/${name}` : name;
  }
  const base = targetBaseUrl.endsWith('/')
    ? targetBaseUrl
    : `${targetBaseUrl}/`;
  // Each segment encoded, so a ? or # in a signed name stays in the path.
  const encoded = path.split('/').map(encodeURIComponent).join('/');
  return new URL(base + encoded).toString();
}

/**
 * Downloads `options.target` to `options.destination` and returns that
 * path once the file there has the target's length and every listed hash.
 *
 * Throws a `ClientError`: `DOWNLOAD` when the transfer fails for good (a
 * 404 or 403, a refused URL, attempts used up, a local file error), and
 * `INTEGRITY` when the bytes do not match after one fresh start from byte
 * 0; then nothing is left at the destination and the part is removed.
 */
export async function downloadTarget(
  options: DownloadOptions,
): Promise<string> {
  const o = {
    consistentSnapshot: true,
    allowHttp: false,
    connectTimeoutMs: 30_000,
    stallTimeoutMs: 30_000,
    maxAttempts: 8,
    startingDelayMs: 1000,
    maxDelayMs: 60_000,
    maxRetryAfterMs: 600_000,
    ...options,
  };
  const { target } = o;
  const url = targetUrl(o.targetBaseUrl, target, o.consistentSnapshot);
  checkTransport(url, { ca: o.ca, allowHttp: o.allowHttp, code: 'DOWNLOAD' });
  if (checkableAlgorithms(target.hashes).length === 0) {
    throw new ClientError(
      'INTEGRITY',
      `${target.path}: none of its hashes (${Object.keys(target.hashes).join(', ')}) can be checked`,
    );
  }
  const key = target.hashes.sha256 ?? Object.values(target.hashes)[0];
  const part = await PartialDownload.open(o.stateDir, key, target.length);
  const transfer = new Transfer(o, url, part);
  const started = Date.now();
  log.info(
    { url: transfer.shown, target: target.path, length: target.length },
    'download',
  );

  let gaveUp = false;
  const retry = async (err: unknown, attempt: number): Promise<boolean> => {
    const hint = retryHint(err);
    if (!hint || hint.permanent) return false;
    if (attempt >= o.maxAttempts) {
      gaveUp = true;
      return false;
    }
    const message = err instanceof Error ? err.message : String(err);
    log.warn(
      { url: transfer.shown, attempt, err: message },
      'attempt failed; retrying',
    );
    if (hint.retryAfterMs !== undefined) {
      // On top of the backoff's own delay: at least what the server asked.
      const wait = Math.min(hint.retryAfterMs, o.maxRetryAfterMs);
      log.info({ url: transfer.shown, wait }, 'waiting as Retry-After asks');
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    return true;
  };
  try {
    await backOff(() => transfer.attempt(), {
      numOfAttempts: o.maxAttempts,
      startingDelay: o.startingDelayMs,
      maxDelay: o.maxDelayMs,
      timeMultiple: 2,
      jitter: 'full',
      retry,
    });
    await part.moveTo(o.destination);
  } catch (err) {
    // A part with bytes in it waits for the next try; an empty one is
    // only clutter.
    await part.removeIfEmpty().catch(() => undefined);
    const message = err instanceof Error ? err.message : String(err);
    log.error(
      { url: transfer.shown, target: target.path, err: message },
      'download failed',
    );
    if (err instanceof ClientError && !(gaveUp && err.code === 'DOWNLOAD')) {
      throw err;
    }
    const after = gaveUp ? ` (gave up after ${o.maxAttempts} attempts)` : '';
    throw new ClientError(
      'DOWNLOAD',
      `${err instanceof ClientError ? '' : `${target.path}: `}${message}${after}`,
      { cause: err },
    );
  } finally {
    await transfer.close();
  }
  log.info(
    {
      url: transfer.shown,
      destination: o.destination,
      received: transfer.received,
      ms: Date.now() - started,
    },
    'downloaded and verified',
  );
  return o.destination;
}
