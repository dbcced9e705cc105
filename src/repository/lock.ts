/**
 * The repository's writer lock. Every command that changes drafts or
 * publishes holds it, so two writers never both make version N+1.
 *
 * The lock file is made whole before it appears: the holder's record is
 * written to a temporary file and hard-linked to the lock name, which fails
 * if the name exists. A lock whose holder no longer runs on this host is
 * taken over, but only under a second, short-lived lock (`lock.takeover`)
 * and only if the lock file still holds the same dead record when re-read
 * there; so of several writers that find one dead lock, exactly one wins.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { LockedError } from '../errors.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'repository/lock' });

/** How long a takeover guard may sit before it is taken for debris. */
const GUARD_MAX_AGE = 10_000;

interface LockRecord {
  pid: number;
  host: string;
  since: string;
  /** Tells two records of one process apart. */
  nonce: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function newRecord(): string {
  const record: LockRecord = {
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
    nonce: randomBytes(8).toString('hex'),
  };
  return JSON.stringify(record);
}

function parseRecord(raw: string | undefined): LockRecord | undefined {
  if (raw === undefined) return undefined;
  try {
    const parsed = JSON.parse(raw) as Partial<LockRecord>;
    if (typeof parsed.pid === 'number' && typeof parsed.host === 'string') {
      return parsed as LockRecord;
    }
  } catch {
    // Only files written before records were linked in whole can be torn.
  }
  return undefined;
}

async function readRaw(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Creates `path` holding `content`, or returns false if it exists. */
async function createWhole(path: string, content: string): Promise<boolean> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.new`;
  await writeFile(temp, content, { flag: 'wx' });
  try {
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

function isStale(record: LockRecord | undefined): boolean {
  return (
    record !== undefined && record.host === hostname() && !isAlive(record.pid)
  );
}

export class RepositoryLock {
  readonly path: string;
  #record?: string;

  constructor(path: string) {
    this.path = path;
  }

  async acquire(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const record = newRecord();
      if (await createWhole(this.path, record)) {
        this.#record = record;
        return;
      }
      const raw = await readRaw(this.path);
      if (raw === undefined) continue; // released meanwhile
      const holder = parseRecord(raw);
      if (isStale(holder) || holder === undefined) {
        await this.#takeOver(raw);
        continue;
      }
      throw new LockedError(
        `the repository is locked by process ${holder.pid} on ${holder.host} ` +
          `since ${holder.since} (${this.path}); wait for it to finish`,
      );
    }
    throw new LockedError(
      `could not take the repository lock ${this.path}: other writers keep ` +
        `taking it, or ${this.path}.takeover was left behind (it is cleared ` +
        'once it is 10 seconds old)',
    );
  }

  /** Removes a dead holder's lock if it is still exactly `seen`. */
  async #takeOver(seen: string): Promise<void> {
    const guard = `${this.path}.takeover`;
    if (!(await createWhole(guard, newRecord()))) {
      // Someone else is taking over right now. A guard is held for a few
      // milliseconds, so one whose holder died, or that names nobody and
      // has sat for a while, is debris and is cleared.
      const raw = await readRaw(guard);
      const holder = parseRecord(raw);
      const old = await stat(guard).then(
        (info) => Date.now() - info.mtimeMs > GUARD_MAX_AGE,
        () => false,
      );
      if (
        isStale(holder) ||
        (old && (holder === undefined || holder.host !== hostname()))
      ) {
        log.warn({ guard }, 'clearing a takeover guard left behind');
        await unlink(guard).catch(() => undefined);
      }
      return;
    }
    try {
      if ((await readRaw(this.path)) === seen) {
        const holder = parseRecord(seen);
        log.warn(
          { lock: this.path, pid: holder?.pid, since: holder?.since },
          holder
            ? 'taking over a lock left by a process that is gone'
            : 'taking over an unreadable lock file',
        );
        await unlink(this.path);
      }
    } finally {
      await unlink(guard).catch(() => undefined);
    }
  }

  async release(): Promise<void> {
    const mine = this.#record;
    if (mine === undefined) return;
    this.#record = undefined;
    // Never remove a lock that is no longer ours.
    if ((await readRaw(this.path)) === mine) {
      await unlink(this.path).catch(() => undefined);
    }
  }
}
