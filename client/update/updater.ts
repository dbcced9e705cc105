/**
 * The device's TUF client: the tuf-js `Updater`, fetching through
 * `KeyTableFetcher` so that every root and targets file it downloads is
 * held to tufota's key table rules before tuf-js verifies it.
 */
import { Updater, type UpdaterOptions } from 'tuf-js';
import { defaultConfig } from 'tuf-js/dist/config.js';
import { DefaultFetcher } from 'tuf-js/dist/fetcher.js';
import { KeyTableFetcher } from './fetcher.js';

export type { UpdaterOptions };

/**
 * An `Updater` for `options`. `options.fetcher`, when given, does the
 * downloads in place of tuf-js's own fetcher (built from `options.config`
 * as tuf-js builds it); either way the key table check wraps it.
 */
export function createUpdater(
  options: UpdaterOptions & { rootArchive?: string },
): Updater {
  const config = { ...defaultConfig, ...options.config };
  // tuf-js types retry options with @types/retry, which is not installed;
  // the value goes to its fetcher as tuf-js itself would pass it.
  const retry = (config.fetchRetries ?? config.fetchRetry) as
    number | boolean | undefined;
  const inner =
    options.fetcher ??
    new DefaultFetcher({
      userAgent: `tufota-device ${config.userAgent ?? ''}`.trim(),
      timeout: config.fetchTimeout,
      retry,
    });
  const { rootArchive, ...updaterOptions } = options;
  return new Updater({
    ...updaterOptions,
    fetcher: new KeyTableFetcher(inner, options.metadataBaseUrl, {
      rootArchive,
    }),
  });
}
