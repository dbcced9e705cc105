/**
 * Keeps the online roles fresh while the server runs. On every check the
 * refresher publishes with `--leave-staged` semantics: timestamp and
 * snapshot are re-signed once inside their refresh window (by default half
 * the timestamp's period), and so is any delegated role whose keys this
 * server holds. A signing event waiting for offline signatures never stops
 * the refresh. A failed refresh (a key missing, a full disk) is logged as
 * an error every time and kept for `/healthz`; the next check tries again.
 */
import { describeError } from '../errors.js';
import { logger } from '../log.js';
import { publish, type PublishResult } from '../repository/publish.js';
import { repositoryStatus, type RoleStatus } from '../repository/status.js';
import type { Repository } from '../repository/repository.js';
import { isTopLevelRole, SNAPSHOT, TIMESTAMP } from '../tuf/roles.js';
import type { RepositoryWriter } from './writer.js';

const log = logger.child({ module: 'server/refresh' });

/** Checks at least this often, however long the refresh windows are. */
const MAX_CHECK_MS = 60_000;
const MIN_CHECK_MS = 200;

export interface RefreshHealth {
  /** When the last check ran and whether it succeeded. */
  lastCheck?: { at: string; ok: boolean; error?: string };
  /** When a check last published something. */
  lastPublish?: { at: string; versions: Record<string, number> };
  /** Per role of the publication: time left and whether keys are here. */
  roles: (RoleStatus & { canSign: boolean; online: boolean })[];
  /** Signing events waiting for offline signatures. */
  pending: PublishResult['pending'];
}

/**
 * How often to check: a quarter of the shortest refresh window of the
 * online roles, within 200 ms and a minute, so a role is re-signed well
 * before the window's end.
 */
export function checkInterval(repo: Repository): number {
  const windows = [TIMESTAMP, SNAPSHOT, 'delegated'] as const;
  const shortest = Math.min(
    ...windows.map((k) => repo.config.expiry[k].refreshWindow),
  );
  return Math.max(MIN_CHECK_MS, Math.min(MAX_CHECK_MS, shortest / 4));
}

export class Refresher {
  readonly #writer: RepositoryWriter;
  readonly #onPublished: () => Promise<void>;
  #interval: number | undefined;
  #timer?: NodeJS.Timeout;
  #running?: Promise<void>;
  #stopped = false;
  health: RefreshHealth = { roles: [], pending: [] };

  constructor(
    writer: RepositoryWriter,
    onPublished: () => Promise<void>,
    options: { intervalMs?: number } = {},
  ) {
    this.#writer = writer;
    this.#onPublished = onPublished;
    this.#interval = options.intervalMs;
  }

  /** Runs one check now, then on the interval until `stop`. */
  async start(): Promise<void> {
    await this.check();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.check().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, this.#interval ?? MAX_CHECK_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One refresh: publish what is due, then record the repository's health. */
  async check(): Promise<void> {
    const at = new Date().toISOString();
    try {
      const result = await this.#writer.run(async (repo) => {
        this.#interval ??= checkInterval(repo);
        const due = await this.#dueDelegated(repo);
        const published = await publish(repo, {
          leaveStaged: true,
          resign: due,
        });
        await this.#record(repo);
        return published;
      });
      this.health.pending = result.pending;
      this.health.lastCheck = { at, ok: true };
      if (result.published) {
        this.health.lastPublish = { at, versions: result.versions };
        log.info({ versions: result.versions }, 'online roles refreshed');
        await this.#onPublished();
      }
    } catch (err) {
      this.health.lastCheck = { at, ok: false, error: describeError(err) };
      log.error({ err }, 'refresh failed; roles may expire');
      // The roles' time left is still worth showing when signing failed.
      await this.#writer
        .read()
        .then((repo) => this.#record(repo))
        .catch((e: unknown) => log.error({ err: e }, 'cannot read status'));
    }
  }

  /**
   * Records the repository's health again now, after a publish made
   * outside the refresh (the admin API), so /healthz shows the versions
   * being served rather than those of the last scheduled check.
   */
  async recordHealth(): Promise<void> {
    await this.#record(await this.#writer.read());
  }

  /** Delegated roles in their refresh window whose keys are at hand. */
  async #dueDelegated(repo: Repository): Promise<string[]> {
    const status = await repositoryStatus(repo);
    return status.roles
      .filter((r) => !isTopLevelRole(r.role) && r.needsRefresh)
      .filter((r) => this.#held(r) >= r.threshold)
      .map((r) => r.role);
  }

  #held(role: RoleStatus): number {
    return role.keyids.filter((k) => this.#writer.keyring.has(k)).length;
  }

  async #record(repo: Repository): Promise<void> {
    const status = await repositoryStatus(repo);
    this.health.roles = status.roles.map((r) => ({
      ...r,
      canSign: this.#held(r) >= r.threshold,
      online: r.role === TIMESTAMP || r.role === SNAPSHOT,
    }));
  }
}
