/**
 * A tuf-js fetcher over HTTPS that trusts only the CA the device pins, not
 * the system's store: a device talks to its own update server, and a
 * certificate any public CA would issue for that name must not be enough.
 * Plain `http:` URLs are refused unless asked for (tests, a lab).
 *
 * tuf-js verifies every byte it is given; this only decides whom to talk
 * to, and gives up on a connection that stalls.
 */
import { Readable } from 'node:stream';
import { BaseFetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { pinnedGet } from './http.js';

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
    const timeout = this.#options.timeout ?? 30_000;
    const res = await pinnedGet(url, {
      ca: this.#options.ca,
      allowHttp: this.#options.allowHttp,
      headers: { 'User-Agent': this.#options.userAgent ?? 'tufota-device' },
      connectTimeoutMs: timeout,
      stallTimeoutMs: timeout,
      code: 'TRANSPORT',
    });
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      res.resume();
      throw new DownloadHTTPError('Failed to download', status);
    }
    return Readable.toWeb(res) as ReadableStream<Uint8Array<ArrayBuffer>>;
  }
}
