/**
 * The server's only way to change the repository. Changes run one at a
 * time in this process, and each takes the repository's writer lock for
 * its duration, so an upload, a publish through the API, the periodic
 * refresh and a `tufota` command run by hand never make two versions with
 * one number. A lock held by another process is waited for briefly, then
 * reported as `LockedError` (the API answers 409 with Retry-After).
 */
import { LockedError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { logger } from '../log.js';
import { Repository } from '../repository/repository.js';

const log = logger.child({ module: 'server/writer' });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WriterOptions {
  /** How long to wait for another process's lock; default 10 s. */
  lockWaitMs?: number;
}

export class RepositoryWriter {
  readonly dir: string;
  readonly keyring: Keyring;
  readonly #lockWaitMs: number;
  #queue: Promise<unknown> = Promise.resolve();
  #busy = 0;

  constructor(dir: string, keyring: Keyring, options: WriterOptions = {}) {
    this.dir = dir;
    this.keyring = keyring;
    this.#lockWaitMs = options.lockWaitMs ?? 10_000;
  }

  /** Runs `change` on the repository opened as its only writer. */
  run<T>(change: (repo: Repository) => Promise<T>): Promise<T> {
    this.#busy++;
    const next = this.#queue.then(() => this.#locked(change));
    this.#queue = next.catch(() => undefined);
    return next.finally(() => this.#busy--);
  }

  /** Opens the repository without the lock, to read it. */
  read(): Promise<Repository> {
    return Repository.open(this.dir, { keyring: this.keyring });
  }

  /** Resolves once every change queued so far has finished. */
  async idle(): Promise<void> {
    while (this.#busy > 0) await this.#queue;
  }

  async #locked<T>(change: (repo: Repository) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.#lockWaitMs;
    let repo: Repository;
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      try {
        repo = await Repository.open(this.dir, {
          lock: true,
          keyring: this.keyring,
        });
        break;
      } catch (err) {
        if (!(err instanceof LockedError) || Date.now() + wait > deadline) {
          throw err;
        }
        log.info({ wait }, 'repository locked by another writer; waiting');
        await sleep(wait);
      }
    }
    try {
      return await change(repo);
    } finally {
      await repo.close();
    }
  }
}
