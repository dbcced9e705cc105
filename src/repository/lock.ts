/**
 * The repository's writer lock: one file created with O_EXCL that names its
 * holder. Every command that changes drafts or publishes holds it, so two
 * writers never both make version N+1. A lock left by a process that no
 * longer runs on this host is taken over, and the takeover is logged.
 */
import { hostname } from 'node:os';
import { readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { LockedError } from '../errors.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'repository/lock' });

/** How old an unreadable lock file must be before it is taken over. */
const TORN_LOCK_AGE = 10_000;

interface LockRecord {
  pid: number;
  host: string;
  since: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class RepositoryLock {
  readonly path: string;
  #held = false;

  constructor(path: string) {
    this.path = path;
  }

  async acquire(): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const record: LockRecord = {
        pid: process.pid,
        host: hostname(),
        since: new Date().toISOString(),
      };
      try {
        await writeFile(this.path, JSON.stringify(record), { flag: 'wx' });
        this.#held = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await this.#readHolder();
      if (holder === undefined && (await this.#olderThan(TORN_LOCK_AGE))) {
        // A lock file with no readable holder was torn by a crash between
        // create and write; after a grace period nobody is writing it.
        log.warn({ lock: this.path }, 'taking over a torn lock file');
        await unlink(this.path).catch(() => undefined);
        continue;
      }
      if (holder && holder.host === hostname() && !isAlive(holder.pid)) {
        log.warn(
          { lock: this.path, pid: holder.pid, since: holder.since },
          'taking over a lock left by a process that is gone',
        );
        await unlink(this.path).catch(() => undefined);
        continue;
      }
      const who = holder
        ? `process ${holder.pid} on ${holder.host} since ${holder.since}`
        : 'another process';
      throw new LockedError(
        `the repository is locked by ${who} (${this.path}); ` +
          'wait for it to finish',
      );
    }
    throw new LockedError(`could not take the repository lock ${this.path}`);
  }

  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    await unlink(this.path).catch(() => undefined);
  }

  async #olderThan(ms: number): Promise<boolean> {
    try {
      return Date.now() - (await stat(this.path)).mtimeMs > ms;
    } catch {
      return true;
    }
  }

  async #readHolder(): Promise<LockRecord | undefined> {
    try {
      const parsed = JSON.parse(await readFile(this.path, 'utf8')) as unknown;
      if (
        typeof parsed === 'object' &&
        parsed !== null &&
        typeof (parsed as LockRecord).pid === 'number'
      ) {
        return parsed as LockRecord;
      }
    } catch {
      // A torn lock file names nobody; the caller decides by its age.
    }
    return undefined;
  }
}
