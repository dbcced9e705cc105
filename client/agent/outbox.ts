/**
 * The device's outbox: events waiting for the server, on disk before
 * `add` returns, each with its `eventId` and `seq` fixed there and then,
 * so a re-send is always the same event.
 *
 * Files, in the outbox folder: a `Journal` of its own (the same
 * fdatasynced JSON lines, torn-line repair and seq recovery as the
 * agent's journal), and `sent.json`, the highest seq the server has
 * acknowledged, replaced durably after each acknowledgement. An event
 * leaves the outbox only by that record; a crash before it is written
 * sends the event again, which the server answers as a duplicate.
 *
 * Bounded by the journal's rotation: a device offline long enough to
 * fill every file loses its oldest unsent events, and logs how many. One
 * process owns the folder.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import {
  DEVICE_EVENT_TYPES,
  MAX_BATCH_BYTES,
  TEXT_LIMITS,
  eventProblem,
  type DeviceEvent,
  type DeviceEventType,
  type EventTextField,
} from './events.js';
import { Journal, type JournalEntry } from './journal.js';
import {
  readRegularFile,
  removeStaleTemps,
  writeFileDurable,
} from './state.js';

const log = logger.child({ module: 'client/agent/outbox' });

const TEXT_FIELDS = Object.keys(TEXT_LIMITS) as EventTextField[];

/** An event as the agent reports it; the outbox adds id, seq and time. */
export type EventInput = { type: DeviceEventType } & {
  [field in EventTextField]?: string | undefined;
};

export interface OutboxOptions {
  dir: string;
  /** Size of one file before it rotates. Default 256 KiB. */
  fileBytes?: number;
  /** Files kept; with the size, the outbox's bound. Default 16. */
  files?: number;
  /** The clock events are stamped with. */
  now?: () => Date;
}

/** `text` cut to `limit` code units, marked with an ellipsis. */
function clamp(text: string, limit: number): string {
  if (text.length <= limit) return text;
  let cut = text.slice(0, limit - 1);
  // Never leave half of a surrogate pair at the end.
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** The event an outbox entry holds. */
function eventOf(entry: JournalEntry): DeviceEvent {
  const event: Record<string, unknown> = {
    eventId: entry.eventId,
    seq: entry.seq,
    type: entry.event,
    time: entry.time,
  };
  for (const field of TEXT_FIELDS) {
    if (entry[field] !== undefined) event[field] = entry[field];
  }
  return event as unknown as DeviceEvent;
}

/** The seq `sent.json` records; 0 when missing or unreadable. */
async function readSent(file: string): Promise<number> {
  let text: string;
  try {
    text = await readRegularFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new ClientError('REPORT', `cannot read ${file}`, { cause: err });
  }
  try {
    const seq = (JSON.parse(text) as { seq?: unknown }).seq;
    if (Number.isSafeInteger(seq) && (seq as number) >= 0) return seq as number;
  } catch {
    // Taken as unreadable below.
  }
  log.warn(
    { file },
    'sent.json is unreadable; sending the whole outbox again (the server ' +
      'answers what it has as duplicates)',
  );
  return 0;
}

export class Outbox {
  readonly dir: string;
  readonly #journal: Journal;
  readonly #sentFile: string;
  readonly #now: () => Date;
  #sent: number;
  /** The first seq of the last gap logged, so it is logged once. */
  #gapSeen = 0;

  private constructor(journal: Journal, sent: number, now: () => Date) {
    this.dir = journal.dir;
    this.#journal = journal;
    this.#sentFile = join(journal.dir, 'sent.json');
    this.#sent = sent;
    this.#now = now;
  }

  /** Opens the outbox in `dir` (made if missing) with what it holds. */
  static async open(options: OutboxOptions): Promise<Outbox> {
    const now = options.now ?? (() => new Date());
    const journal = await Journal.open({
      dir: options.dir,
      maxBytes: options.fileBytes ?? 256 * 1024,
      files: options.files ?? 16,
      now,
    });
    const sentFile = join(journal.dir, 'sent.json');
    await removeStaleTemps(sentFile);
    let sent = await readSent(sentFile);
    if (sent > journal.lastSeq) {
      log.warn(
        { sent, lastSeq: journal.lastSeq },
        'the outbox holds less than was sent (lost or replaced); ' +
          'counting from what it holds',
      );
      sent = journal.lastSeq;
    }
    return new Outbox(journal, sent, now);
  }

  /** The seq of the newest event queued; 0 before any. */
  get lastSeq(): number {
    return this.#journal.lastSeq;
  }

  /** The highest seq acknowledged (or dropped as refused). */
  get sent(): number {
    return this.#sent;
  }

  /** Events queued and not yet acknowledged. */
  get pending(): number {
    return this.lastSeq - this.#sent;
  }

  /**
   * Queues an event and resolves once it is on disk. Text longer than
   * its limit is cut and marked with `…`; an event the server would
   * refuse anyway is refused here, before it can wait in the outbox.
   */
  async add(input: EventInput): Promise<DeviceEvent> {
    if (!(DEVICE_EVENT_TYPES as readonly string[]).includes(input.type)) {
      throw new ClientError('REPORT', `unknown event type "${input.type}"`);
    }
    const fields: Partial<Record<EventTextField, string>> = {};
    for (const field of TEXT_FIELDS) {
      const value = input[field];
      if (value !== undefined) {
        fields[field] = clamp(String(value), TEXT_LIMITS[field]);
      }
    }
    const eventId = randomUUID();
    const problem = eventProblem({
      eventId,
      seq: this.lastSeq + 1,
      type: input.type,
      time: this.#now().toISOString(),
      ...fields,
    });
    if (problem) throw new ClientError('REPORT', `not queued: ${problem}`);
    return eventOf(
      await this.#journal.append(input.type, { eventId, ...fields }),
    );
  }

  /**
   * The oldest unacknowledged events, ascending, at most `limit` and no
   * more than fit one batch's bytes.
   */
  async head(limit: number): Promise<DeviceEvent[]> {
    const entries = await this.#journal.list(this.#sent, limit);
    if (entries.length === 0) {
      if (this.#sent < this.lastSeq) {
        // Only unreadable lines are left between here and the end.
        log.warn(
          { from: this.#sent + 1, to: this.lastSeq },
          'no readable event left in the outbox; skipping to its end',
        );
        await this.markSent(this.lastSeq);
      }
      return [];
    }
    const first = entries[0].seq;
    if (first > this.#sent + 1 && this.#gapSeen !== first) {
      this.#gapSeen = first;
      log.warn(
        { lost: first - this.#sent - 1, from: this.#sent + 1, to: first - 1 },
        'events missing from the outbox (rotated out while the server ' +
          'was out of reach, or unreadable); sending what follows',
      );
    }
    const batch: DeviceEvent[] = [];
    let bytes = 2;
    for (const entry of entries) {
      const event = eventOf(entry);
      const size = Buffer.byteLength(JSON.stringify(event)) + 1;
      if (batch.length > 0 && bytes + size > MAX_BATCH_BYTES) break;
      batch.push(event);
      bytes += size;
    }
    return batch;
  }

  /** Records every event up to `seq` as acknowledged, durably. */
  async markSent(seq: number): Promise<void> {
    await writeFileDurable(
      this.#sentFile,
      `${JSON.stringify({ format: 1, seq })}\n`,
    );
    this.#sent = Math.max(this.#sent, seq);
  }

  async close(): Promise<void> {
    await this.#journal.close();
  }
}
