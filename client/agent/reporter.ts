/**
 * The device's reports to the server: events queued in the outbox
 * (outbox.ts) are sent in order, in batches, to `POST
 * /api/v1/devices/ID/events` with the device's own credential, over HTTPS
 * trusting only the pinned CA (report-post.ts, which also says what an
 * answer means).
 *
 * Rules it keeps:
 * - Batches go one at a time in ascending seq, each the current head of
 *   the outbox; events leave it only once the server counted every one
 *   of them as accepted or duplicate. A lost answer means the batch goes
 *   again, and the server, keyed by event id, stores it once.
 * - A failed request is retried with exponential backoff and full jitter
 *   (exponential-backoff, capped; `Retry-After` honoured on top), for as
 *   long as it takes: no event is given up for a network's sake. 401 and
 *   403 are retried too, logged as errors: a device must not lose its
 *   events while its credential is being fixed.
 * - A batch the server refuses as bad (400, 409, 413) is sent in halves
 *   until the one event it refuses is found; that event is dropped with
 *   an error logged (the journal still holds the step), so one bad event
 *   cannot hold back every later one.
 */
import { backOff } from 'exponential-backoff';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { checkTransport } from '../update/http.js';
import {
  MAX_BATCH_EVENTS,
  deviceIdProblem,
  type DeviceEvent,
} from './events.js';
import { Outbox, type EventInput } from './outbox.js';
import { deliverBatch, deliveryHint } from './report-post.js';

export type { EventInput } from './outbox.js';

const log = logger.child({ module: 'client/agent/reporter' });

export interface ReporterOptions {
  /** The device's state folder; the outbox is its `outbox/` folder. */
  stateDir: string;
  /** The server's base URL, e.g. `https://updates.example.com:8443`. */
  serverUrl: string;
  deviceId: string;
  /** The `tfd_...` credential `tufota device add` printed. */
  credential: string;
  /** PEM of the CA the server's certificate must chain to. */
  ca?: string | string[];
  /** Accept an `http:` server URL; for tests only. */
  allowHttp?: boolean;
  /** Most events per batch, 1 to 100. Default 50. */
  batchSize?: number;
  /** Milliseconds for one request and its answer. Default 30 s. */
  timeoutMs?: number;
  /** The backoff's first delay before full jitter. Default 1 s. */
  startingDelayMs?: number;
  /** The backoff's cap before full jitter. Default 5 min. */
  maxDelayMs?: number;
  /** Longest `Retry-After` obeyed. Default 10 min. */
  maxRetryAfterMs?: number;
  /** Size of one outbox file before it rotates. Default 256 KiB. */
  outboxFileBytes?: number;
  /** Outbox files kept; with the size, the outbox's bound. Default 16. */
  outboxFiles?: number;
  /** The clock events are stamped with. */
  now?: () => Date;
}

type Settings = ReporterOptions &
  Required<
    Pick<
      ReporterOptions,
      | 'batchSize'
      | 'timeoutMs'
      | 'startingDelayMs'
      | 'maxDelayMs'
      | 'maxRetryAfterMs'
    >
  >;

/** What the reporter has done since it was opened. */
export interface ReporterStats {
  /** Requests made. */
  attempts: number;
  /** Requests that did not end in an acknowledgement. */
  failures: number;
  /** Events the server stored, and those it already had. */
  accepted: number;
  duplicates: number;
  /** Events the server refused, dropped from the outbox. */
  dropped: number;
  /** Why the last failed request failed. */
  lastError?: string;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** The outbox and the loop that delivers it. */
export class Reporter {
  /** Where batches are posted. */
  readonly url: string;
  readonly #o: Settings;
  readonly #outbox: Outbox;
  /** The batch size in force; halved while a refused event is sought. */
  #limit: number;
  /** The batch of the last request. */
  #batch: DeviceEvent[] = [];
  #stats: ReporterStats = {
    attempts: 0,
    failures: 0,
    accepted: 0,
    duplicates: 0,
    dropped: 0,
  };
  #loop: Promise<void> | undefined;
  #inFlight: Promise<void> = Promise.resolve();
  readonly #abort = new AbortController();
  #closed = false;
  #wake: (() => void) | undefined;
  #stopWaiting: (() => void) | undefined;
  #waiters: Waiter[] = [];

  private constructor(options: Settings, url: string, outbox: Outbox) {
    this.#o = options;
    this.url = url;
    this.#outbox = outbox;
    this.#limit = options.batchSize;
  }

  /**
   * Opens the outbox in `stateDir/outbox/` (made if missing) with what a
   * reporter before this one left unsent. Sends nothing until `start`.
   */
  static async open(options: ReporterOptions): Promise<Reporter> {
    const o: Settings = {
      batchSize: 50,
      timeoutMs: 30_000,
      startingDelayMs: 1000,
      maxDelayMs: 300_000,
      maxRetryAfterMs: 600_000,
      ...options,
    };
    const idProblem = deviceIdProblem(o.deviceId);
    if (idProblem) throw new ClientError('CONFIG', idProblem);
    const size = o.batchSize;
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_BATCH_EVENTS) {
      throw new ClientError(
        'CONFIG',
        `a batch holds 1 to ${MAX_BATCH_EVENTS} events, not ${size}`,
      );
    }
    const base = o.serverUrl.replace(/\/+$/, '');
    const url = `${base}/api/v1/devices/${encodeURIComponent(o.deviceId)}/events`;
    checkTransport(url, { ca: o.ca, allowHttp: o.allowHttp, code: 'CONFIG' });
    const outbox = await Outbox.open({
      dir: join(o.stateDir, 'outbox'),
      fileBytes: o.outboxFileBytes,
      files: o.outboxFiles,
      now: o.now,
    });
    log.debug(
      { url, sent: outbox.sent, lastSeq: outbox.lastSeq },
      'outbox opened',
    );
    return new Reporter(o, url, outbox);
  }

  /** What was sent, failed and dropped since opening. */
  get stats(): ReporterStats {
    return { ...this.#stats };
  }

  /** Events queued and not yet acknowledged. */
  get pending(): number {
    return this.#outbox.pending;
  }

  /**
   * Queues an event; it is on disk, with its id and seq, when this
   * resolves (see `Outbox.add`).
   */
  async enqueue(input: EventInput): Promise<DeviceEvent> {
    if (this.#closed) throw new ClientError('REPORT', 'the reporter is closed');
    const event = await this.#outbox.add(input);
    this.#wake?.();
    return event;
  }

  /** The agent's `EventSink`: queues the event. */
  async add(input: EventInput): Promise<void> {
    await this.enqueue(input);
  }

  /** Starts delivering in the background; calling it again does nothing. */
  start(): void {
    if (this.#closed || this.#loop) return;
    this.#loop = this.#run().catch((err: unknown) => {
      log.error({ err }, 'the report loop stopped');
    });
  }

  /**
   * Resolves once every event queued so far is acknowledged; starts the
   * loop if it is not running. Rejects after `timeoutMs`, if given, and
   * when the reporter closes first.
   */
  flush(timeoutMs?: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new ClientError('REPORT', 'the reporter is closed'),
      );
    }
    this.start();
    const seq = this.#outbox.lastSeq;
    if (this.#outbox.sent >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { seq, resolve, reject };
      this.#waiters.push(waiter);
      if (timeoutMs === undefined) return;
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        const why = this.#stats.lastError ?? 'no answer yet';
        reject(
          new ClientError(
            'REPORT',
            `events up to seq ${seq} not acknowledged within ${timeoutMs} ms; ` +
              `last failure: ${why}`,
          ),
        );
      }, timeoutMs);
      waiter.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
      waiter.reject = (err) => {
        clearTimeout(timer);
        reject(err);
      };
    });
  }

  /**
   * Stops delivering and closes the outbox; what is unsent stays for the
   * next reporter. A request in flight is cut (its batch, if the server
   * stored it, comes back as duplicates next time). Resolves once no
   * request is in flight; a backoff wait still running then ends by
   * itself and sends nothing.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const unsent = new ClientError(
      'REPORT',
      `the reporter closed with ${this.pending} events unsent`,
    );
    for (const waiter of this.#waiters.splice(0)) waiter.reject(unsent);
    this.#wake?.();
    this.#stopWaiting?.();
    this.#abort.abort(unsent);
    await this.#inFlight;
    await this.#outbox.close();
    log.debug({ pending: this.pending }, 'reporter closed');
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      if (this.#outbox.pending <= 0) {
        await this.#idle();
        continue;
      }
      try {
        await backOff(() => this.#attempt(), {
          numOfAttempts: Number.POSITIVE_INFINITY,
          startingDelay: this.#o.startingDelayMs,
          maxDelay: this.#o.maxDelayMs,
          timeMultiple: 2,
          jitter: 'full',
          retry: (err: unknown, attempt: number) => this.#retry(err, attempt),
        });
      } catch (err) {
        if (this.#closed) break;
        await this.#refused(err);
      }
    }
  }

  /** Waits for `enqueue` or `close`. */
  async #idle(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      if (this.#closed || this.#outbox.pending > 0) resolve();
    });
    this.#wake = undefined;
  }

  #attempt(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new ClientError('REPORT', 'the reporter closed'));
    }
    const attempt = this.#sendBatch();
    this.#inFlight = attempt.catch(() => undefined);
    return attempt;
  }

  /** Sends the head of the outbox; on an acknowledgement, lets it go. */
  async #sendBatch(): Promise<void> {
    const batch = await this.#outbox.head(this.#limit);
    if (batch.length === 0) {
      this.#settleWaiters();
      return;
    }
    this.#batch = batch;
    this.#stats.attempts++;
    const { accepted, duplicates } = await deliverBatch(this.url, batch, {
      credential: this.#o.credential,
      ca: this.#o.ca,
      timeoutMs: this.#o.timeoutMs,
      signal: this.#abort.signal,
    });
    const last = batch[batch.length - 1].seq;
    await this.#outbox.markSent(last);
    this.#settleWaiters();
    this.#stats.accepted += accepted;
    this.#stats.duplicates += duplicates;
    this.#limit = this.#o.batchSize;
    log.debug(
      { from: batch[0].seq, to: last, accepted, duplicates },
      'events delivered',
    );
  }

  /** Resolves the `flush` callers whose events are all acknowledged. */
  #settleWaiters(): void {
    const sent = this.#outbox.sent;
    const done = this.#waiters.filter((w) => w.seq <= sent);
    this.#waiters = this.#waiters.filter((w) => w.seq > sent);
    for (const waiter of done) waiter.resolve();
  }

  async #retry(err: unknown, attempt: number): Promise<boolean> {
    if (this.#closed) return false;
    this.#stats.failures++;
    this.#stats.lastError = message(err);
    const hint = deliveryHint(err) ?? {};
    if (hint.refused) return false;
    log.warn(
      { attempt, pending: this.pending, err: message(err) },
      'events not delivered; retrying',
    );
    if (hint.retryAfterMs !== undefined) {
      // On top of the backoff's own delay: at least what the server asked.
      const wait = Math.min(hint.retryAfterMs, this.#o.maxRetryAfterMs);
      log.info({ wait }, 'waiting as Retry-After asks');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#stopWaiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#stopWaiting = undefined;
    }
    return !this.#closed;
  }

  /** A batch the server refused: halve it, or drop its one event. */
  async #refused(err: unknown): Promise<void> {
    const batch = this.#batch;
    if (batch.length === 0) return;
    if (batch.length > 1) {
      this.#limit = Math.max(1, Math.floor(batch.length / 2));
      log.warn(
        { from: batch[0].seq, events: batch.length, err: message(err) },
        'batch refused; sending smaller ones to find the refused event',
      );
      return;
    }
    const [event] = batch;
    log.error(
      { seq: event.seq, eventId: event.eventId, err: message(err) },
      'the server refuses this event; dropped from the outbox (the ' +
        'journal keeps the step)',
    );
    this.#stats.dropped++;
    await this.#outbox.markSent(event.seq);
    this.#settleWaiters();
  }
}
