/**
 * One GET to the update server, as the device makes every request: over
 * HTTPS trusting only the CA it pins (never the system's store), plain
 * HTTP only when asked for (tests, a lab), with a deadline for the answer
 * to start and one for a body that stops flowing. Shared by the metadata
 * fetcher (pinned-fetcher.ts) and the image download (download.ts).
 */
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { ClientError, type ClientErrorCode } from '../errors.js';

export interface PinnedGetOptions {
  /** PEM of the CA (or CAs) the server's certificate must chain to. */
  ca?: string | string[];
  /** Accept `http:` URLs too; for tests only. */
  allowHttp?: boolean;
  headers?: Record<string, string>;
  /** Milliseconds from the request until the status line and headers. */
  connectTimeoutMs: number;
  /** Milliseconds without a byte on the connection once the body flows. */
  stallTimeoutMs: number;
  /** A connection of its own, not one kept alive from an earlier request. */
  freshConnection?: boolean;
  /** The code of the errors this raises itself. */
  code: ClientErrorCode;
}

/**
 * Refuses a URL the device must not fetch: anything but `https:`, plain
 * `http:` unless allowed, `https:` without a pinned CA (node would fall
 * back to the system's store).
 */
export function checkTransport(
  url: string,
  options: Pick<PinnedGetOptions, 'ca' | 'allowHttp' | 'code'>,
): void {
  const { protocol } = new URL(url);
  if (protocol === 'http:') {
    if (options.allowHttp) return;
    throw new ClientError(
      options.code,
      `${url}: plain http is refused; the device pins a CA for https`,
    );
  }
  if (protocol !== 'https:') {
    throw new ClientError(options.code, `${url}: only https URLs are fetched`);
  }
  const ca = options.ca;
  if (ca === undefined || ca.length === 0) {
    throw new ClientError(
      options.code,
      `${url}: no pinned CA given; the system's store is not trusted`,
    );
  }
}

/**
 * GETs `url` and resolves with the response once its headers arrive,
 * whatever the status; the caller reads or discards the body. Errors of
 * the connection (refused, TLS, reset) reject as node raises them; the
 * two deadlines reject, or end the body, with a `ClientError`.
 */
export function pinnedGet(
  url: string,
  options: PinnedGetOptions,
): Promise<IncomingMessage> {
  checkTransport(url, options);
  const plain = url.startsWith('http:');
  const { connectTimeoutMs, stallTimeoutMs, code } = options;
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      clearTimeout(deadline);
      res.setTimeout(stallTimeoutMs, () =>
        res.destroy(
          new ClientError(
            code,
            `${url}: stalled, no data for ${stallTimeoutMs} ms`,
          ),
        ),
      );
      resolve(res);
    };
    const common = {
      headers: options.headers,
      ...(options.freshConnection ? { agent: false as const } : {}),
    };
    const req = plain
      ? httpGet(url, common, onResponse)
      : httpsGet(url, { ...common, ca: options.ca }, onResponse);
    // Unlike the socket's idle timeout, a deadline: a server that trickles
    // a byte of TLS handshake at a time must not hold the device forever.
    const deadline = setTimeout(
      () =>
        req.destroy(
          new ClientError(
            code,
            `${url}: no answer within ${connectTimeoutMs} ms`,
          ),
        ),
      connectTimeoutMs,
    );
    req.on('error', (err) => {
      clearTimeout(deadline);
      reject(err);
    });
  });
}

/**
 * Milliseconds a `Retry-After` value asks to wait (delay-seconds or an
 * HTTP date), or undefined when absent or unreadable.
 */
export function retryAfterMs(
  value: string | undefined,
  now = Date.now(),
): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
