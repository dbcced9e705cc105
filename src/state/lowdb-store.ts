/**
 * The default `StateStore`: one JSON file through lowdb. lowdb's own file
 * adapter renames without fsync, so this one writes through the
 * repository's durable write (temp file, fsync, rename, folder fsync): a
 * crash leaves the old state or the new, never a torn file.
 */
import { Low, type Adapter } from 'lowdb';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { deviceIdProblem } from '../../client/agent/events.js';
import { CorruptStateError, LockedError } from '../errors.js';
import { logger } from '../log.js';
import { writeFileAtomic } from '../repository/atomic.js';
import { RepositoryLock } from '../repository/lock.js';
import {
  SCOPES,
  emptyState,
  settingProblem,
  type ServerState,
  type StateStore,
} from './store.js';

const log = logger.child({ module: 'state/lowdb-store' });

/** How long `update` waits for another process's update to finish. */
const LOCK_WAIT_MS = 5000;

function corrupt(file: string, why: string): CorruptStateError {
  return new CorruptStateError(
    `server state ${file} ${why}; restore it from a backup or move it ` +
      'away (tokens must then be issued again)',
  );
}

/** Checks the shape of what was read, so a hand edit fails by name. */
function checkState(file: string, value: unknown): ServerState {
  const state = value as Partial<ServerState> | null;
  if (typeof state !== 'object' || state === null || Array.isArray(state)) {
    throw corrupt(file, 'does not hold a JSON object');
  }
  for (const key of ['tokens', 'uploads', 'signatures', 'devices'] as const) {
    if (state[key] !== undefined && !Array.isArray(state[key])) {
      throw corrupt(file, `has a "${key}" that is not a list`);
    }
  }
  for (const token of state.tokens ?? []) {
    const t = token as unknown as Record<string, unknown>;
    if (
      typeof t.id !== 'string' ||
      typeof t.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(t.sha256) ||
      !Array.isArray(t.scopes) ||
      !t.scopes.every((s) => (SCOPES as readonly unknown[]).includes(s))
    ) {
      throw corrupt(file, `has a malformed token record ${String(t.id)}`);
    }
  }
  for (const device of state.devices ?? []) {
    const d = device as unknown as Record<string, unknown>;
    // Events are checked when they arrive; each one is not read again here.
    if (
      typeof d.id !== 'string' ||
      deviceIdProblem(d.id) !== undefined ||
      typeof d.credentialId !== 'string' ||
      typeof d.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(d.sha256) ||
      !Array.isArray(d.events)
    ) {
      throw corrupt(file, `has a malformed device record ${String(d.id)}`);
    }
  }
  const settings = (state.settings ?? {}) as Record<string, unknown>;
  if (typeof settings !== 'object' || Array.isArray(settings)) {
    throw corrupt(file, 'has "settings" that are not an object');
  }
  for (const [name, v] of Object.entries(settings)) {
    const problem = settingProblem(name, v);
    if (problem) throw corrupt(file, `has a bad setting: ${problem}`);
  }
  return { ...emptyState(), ...state };
}

class DurableJSONFile implements Adapter<ServerState> {
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  async read(): Promise<ServerState | null> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw corrupt(this.#file, 'is not valid JSON');
    }
    return checkState(this.#file, parsed);
  }

  async write(data: ServerState): Promise<void> {
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#file, JSON.stringify(data, null, 2) + '\n', {
      mode: 0o600,
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LowdbStateStore implements StateStore {
  readonly file: string;
  readonly #db: Low<ServerState>;
  readonly #lock: RepositoryLock;
  /** Updates of this process, one at a time, before the file lock. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.file = file;
    this.#db = new Low(new DurableJSONFile(file), emptyState());
    this.#lock = new RepositoryLock(`${file}.lock`);
  }

  async read(): Promise<ServerState> {
    await this.#db.read();
    return structuredClone(this.#db.data);
  }

  update<T>(change: (state: ServerState) => T): Promise<T> {
    const run = this.#queue.then(() => this.#locked(change));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #locked<T>(change: (state: ServerState) => T): Promise<T> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await this.#lock.acquire();
        break;
      } catch (err) {
        if (!(err instanceof LockedError) || Date.now() > deadline) throw err;
        log.debug({ file: this.file }, 'state locked; waiting');
        await sleep(20 + Math.random() * 30);
      }
    }
    try {
      await this.#db.read();
      const result = change(this.#db.data);
      await this.#db.write();
      return result;
    } finally {
      await this.#lock.release();
    }
  }
}
