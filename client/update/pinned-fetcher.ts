/**
 * A tuf-js fetcher over HTTPS that trusts only the CA the device pins, not
 * the system's store: a device talks to its own update server, and a
 * certificate any public CA would issue for that name must not be enough.
 * Plain `http:` URLs are refused unless asked for (tests, a lab).
 *
 * tuf-js verifies every byte it is given; this only decides whom to talk
 * to, and gives up on a connection that stalls.
 */
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { Readable } from 'node:stream';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { ClientError } from '../errors.js';

export interface PinnedFetcherOptions {
  /** PEM of the CA (or CAs) the server's certificate must chain to. */
  ca: string | string[];
  /** Milliseconds without a byte before a download is given up. */
  timeout?: number;
  userAgent?: string;
  /** Accept `http:` URLs too; for tests only. */
  allowHttp?: boolean;
}

export class PinnedFetcher extends BaseFetcher {
  readonly #options: PinnedFetcherOptions;

  constructor(options: PinnedFetcherOptions) {
    super();
    this.#options = options;
  }

  async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const { protocol } = new URL(url);
    const plain = protocol === 'http:';
    if (!plain && protocol !== 'https:') {
      throw new ClientError('TRANSPORT', `${url}: only https URLs are fetched`);
    }
    if (plain && !this.#options.allowHttp) {
      throw new ClientError(
        'TRANSPORT',
        `${url}: plain http is refused; the device pins a CA for https`,
      );
    }
    const timeout = this.#options.timeout ?? 30_000;
    const headers = {
      'User-Agent': this.#options.userAgent ?? 'tufota-device',
    };
    return await new Promise((resolve, reject) => {
      const onResponse = (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          res.resume();
          reject(new DownloadHTTPError('Failed to download', status));
          return;
        }
        res.setTimeout(timeout, () =>
          res.destroy(new ClientError('TRANSPORT', `${url}: stalled`)),
        );
        resolve(Readable.toWeb(res) as ReadableStream<Uint8Array<ArrayBuffer>>);
      };
      const req = plain
        ? httpGet(url, { headers, timeout }, onResponse)
        : httpsGet(url, { headers, timeout, ca: this.#options.ca }, onResponse);
      req.on('timeout', () =>
        req.destroy(new ClientError('TRANSPORT', `${url}: no answer`)),
      );
      req.on('error', reject);
    });
  }
}
