/**
 * One POST of a batch of events, as the device makes it, and what the
 * answer means. The request: HTTPS trusting only the pinned CA (the URL
 * was checked by `checkTransport` in client/update/http.ts, which holds
 * the device's GET), the device's credential as a bearer token, a
 * deadline for the whole exchange, a bounded answer. The answer: a
 * delivery only when it counts every event sent as accepted or
 * duplicate; otherwise an error with a hint for the retry loop, saying
 * whether the server refuses the batch itself (400, 409, 413) and how
 * long it asked to wait.
 */
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { retryAfterMs } from '../update/http.js';
import type { DeviceEvent } from './events.js';

const log = logger.child({ module: 'client/agent/report-post' });

/** Most bytes of an answer read; the server's are a few dozen. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface PostOptions {
  credential: string;
  /** PEM of the CA the server's certificate must chain to. */
  ca?: string | string[];
  /** Milliseconds for the request and its whole answer. */
  timeoutMs: number;
  /** Cuts the request (the reporter closing). */
  signal?: AbortSignal;
}

export interface PostAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** POSTs the JSON `body` to `url`. */
export function postEvents(
  url: string,
  body: string,
  options: PostOptions,
): Promise<PostAnswer> {
  const https = url.startsWith('https:');
  const request = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      fn();
    };
    const onAnswer = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          const what = `${url}: the answer is over ${MAX_ANSWER_BYTES} B`;
          res.destroy(new ClientError('REPORT', what));
        } else {
          chunks.push(chunk);
        }
      });
      res.on('end', () =>
        finish(() =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        ),
      );
      res.on('error', (err) => finish(() => reject(err)));
    };
    const req = request(
      url,
      {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${options.credential}`,
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
        },
        // A connection each time: batches are few, and a kept-alive
        // socket the server has closed would fail a request for nothing.
        agent: false,
        signal: options.signal,
        ...(https ? { ca: options.ca } : {}),
      },
      onAnswer,
    );
    // A deadline, not an idle timeout: a server trickling a byte at a
    // time must not hold the outbox forever.
    const deadline = setTimeout(() => {
      const what = `${url}: no answer within ${options.timeoutMs} ms`;
      req.destroy(new ClientError('REPORT', what));
    }, options.timeoutMs);
    req.on('error', (err) => finish(() => reject(err)));
    req.end(body);
  });
}

/** How the retry loop treats a failed delivery. */
export interface DeliveryHint {
  /** The server refuses the batch itself; sending it again cannot help. */
  refused?: boolean;
  retryAfterMs?: number;
}

const hints = new WeakMap<object, DeliveryHint>();

/** The hint `deliverBatch` gave `err`; undefined for transport errors. */
export function deliveryHint(err: unknown): DeliveryHint | undefined {
  return typeof err === 'object' && err !== null ? hints.get(err) : undefined;
}

function failure(message: string, hint: DeliveryHint = {}): ClientError {
  const err = new ClientError('REPORT', message);
  hints.set(err, hint);
  return err;
}

/** The `error` of a JSON answer, if it has one. */
function answerError(text: string): string | undefined {
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    return typeof error === 'string' ? error.slice(0, 500) : undefined;
  } catch {
    return undefined;
  }
}

/** What the server said of a delivered batch. */
export interface Delivered {
  accepted: number;
  duplicates: number;
}

/**
 * Posts `batch` and resolves only when the answer acknowledges all of
 * it: a 200 from something else (a portal, a misrouted proxy) must not
 * empty the outbox. Anything else throws, with a hint unless the
 * transport itself failed.
 */
export async function deliverBatch(
  url: string,
  batch: DeviceEvent[],
  options: PostOptions,
): Promise<Delivered> {
  const answer = await postEvents(url, JSON.stringify(batch), options);
  const { status, text } = answer;
  if (status >= 200 && status < 300) {
    let said: { accepted?: unknown; duplicates?: unknown } = {};
    try {
      said = JSON.parse(text) as typeof said;
    } catch {
      // Not an acknowledgement; refused below.
    }
    const { accepted, duplicates } = said;
    if (
      Number.isSafeInteger(accepted) &&
      Number.isSafeInteger(duplicates) &&
      (accepted as number) + (duplicates as number) === batch.length
    ) {
      return { accepted: accepted as number, duplicates: duplicates as number };
    }
    throw failure(
      `the answer does not acknowledge the ${batch.length} events sent: ` +
        JSON.stringify(text.slice(0, 200)),
    );
  }

  const said = answerError(text);
  const what = `the server answered ${status}${said ? `: ${said}` : ''}`;
  // Only tufota's own refusal (a JSON error) condemns events: a proxy's
  // or a portal's 400 or 413 page would otherwise empty the outbox.
  if ((status === 400 || status === 409 || status === 413) && said) {
    throw failure(what, { refused: true });
  }
  if (status === 401 || status === 403) {
    log.error({ status, said }, 'the server refuses this device credential');
  }
  throw failure(what, {
    retryAfterMs: retryAfterMs(answer.headers['retry-after']),
  });
}
