/**
 * What the server answers for `/metadata/...`, held in memory.
 *
 * A view is built from one read of `timestamp.json` and the snapshot it
 * names, and swapped whole when the repository publishes, so a request is
 * answered without a filesystem call and never from a mix of two
 * publications. It serves a versioned file only up to the version the
 * current publication reaches: a publish cut short leaves `N+1.ROLE.json`
 * files that no timestamp names yet and that the next publish overwrites,
 * and a cache told they are immutable must never see them. A new root
 * counts as soon as its file exists, since clients probe for it.
 *
 * Current files are read when the view is built; older versions are read
 * on first request and kept (they never change) up to a byte budget.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../log.js';

const log = logger.child({ module: 'server/metadata-view' });

/** Bytes of older metadata versions kept in memory. */
const CACHE_BUDGET = 64 * 1024 * 1024;

export interface ServedFile {
  body: Buffer;
  /** Strong: the sha256 of the bytes. */
  etag: string;
  /** Versioned names never change once published; the rest do. */
  immutable: boolean;
}

const VERSIONED = /^([1-9][0-9]{0,9})\.([A-Za-z0-9_+-][A-Za-z0-9._+-]*)\.json$/;

function served(body: Buffer, immutable: boolean): ServedFile {
  const etag = `"${createHash('sha256').update(body).digest('hex')}"`;
  return { body, etag, immutable };
}

function versionsIn(json: unknown): Map<string, number> {
  const meta = (json as { signed?: { meta?: Record<string, unknown> } }).signed
    ?.meta;
  const out = new Map<string, number>();
  for (const [name, info] of Object.entries(meta ?? {})) {
    const version = (info as { version?: unknown } | null)?.version;
    if (name.endsWith('.json') && typeof version === 'number') {
      out.set(name.slice(0, -'.json'.length), version);
    }
  }
  return out;
}

export class MetadataView {
  readonly dir: string;
  /** Newest version of each role this view may serve. */
  readonly #limits: Map<string, number>;
  readonly #current = new Map<string, ServedFile>();
  readonly #older: Map<string, ServedFile>;
  #olderBytes = 0;
  readonly timestampVersion: number;

  private constructor(
    dir: string,
    limits: Map<string, number>,
    timestampVersion: number,
    older: Map<string, ServedFile>,
  ) {
    this.dir = dir;
    this.#limits = limits;
    this.timestampVersion = timestampVersion;
    this.#older = older;
  }

  /**
   * Reads the publication `dir` holds now. `previous` hands over the older
   * versions it had read, which are the same bytes in the new view.
   */
  static async load(
    dir: string,
    previous?: MetadataView,
  ): Promise<MetadataView> {
    const timestampBytes = await readFile(join(dir, 'timestamp.json'));
    const timestamp = JSON.parse(timestampBytes.toString('utf8')) as unknown;
    const snapshotVersion = versionsIn(timestamp).get('snapshot');
    const timestampVersion = (timestamp as { signed?: { version?: unknown } })
      .signed?.version;
    if (snapshotVersion === undefined || typeof timestampVersion !== 'number') {
      throw new Error(`${dir}/timestamp.json names no snapshot version`);
    }
    const snapshotBytes = await readFile(
      join(dir, `${snapshotVersion}.snapshot.json`),
    );
    const limits = versionsIn(JSON.parse(snapshotBytes.toString('utf8')));
    limits.set('snapshot', snapshotVersion);
    limits.set('timestamp', timestampVersion);
    let newestRoot = 0;
    for (const name of await readdir(dir)) {
      const m = VERSIONED.exec(name);
      if (m && m[2] === 'root') newestRoot = Math.max(newestRoot, Number(m[1]));
    }
    limits.set('root', newestRoot);

    const view = new MetadataView(
      dir,
      limits,
      timestampVersion,
      previous ? previous.#older : new Map<string, ServedFile>(),
    );
    view.#olderBytes = previous ? previous.#olderBytes : 0;
    view.#current.set('timestamp.json', served(timestampBytes, false));
    view.#current.set(
      `${snapshotVersion}.snapshot.json`,
      served(snapshotBytes, true),
    );
    const rootBytes = await readFile(join(dir, `${newestRoot}.root.json`));
    view.#current.set(`${newestRoot}.root.json`, served(rootBytes, true));
    view.#current.set('root.json', served(rootBytes, false));
    // The current targets roles, so a device's whole refresh is in memory.
    await Promise.all(
      [...limits]
        .filter(([role]) => !['root', 'snapshot', 'timestamp'].includes(role))
        .map(async ([role, version]) => {
          const name = `${version}.${role}.json`;
          const body = await readFile(join(dir, name)).catch(() => undefined);
          if (body) view.#current.set(name, served(body, true));
        }),
    );
    return view;
  }

  /** Whether `name` is something this publication may serve. */
  allows(name: string): boolean {
    if (name === 'timestamp.json' || name === 'root.json') return true;
    const m = VERSIONED.exec(name);
    if (!m) return false;
    const limit = this.#limits.get(m[2]);
    return limit !== undefined && Number(m[1]) <= limit;
  }

  /** The file for `name`, or undefined when it is not served. */
  async get(name: string): Promise<ServedFile | undefined> {
    const current = this.#current.get(name) ?? this.#older.get(name);
    if (current) return current;
    if (!this.allows(name)) return undefined;
    let body: Buffer;
    try {
      body = await readFile(join(this.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        log.error({ name, err }, 'cannot read a metadata file');
      }
      return undefined;
    }
    const file = served(body, true);
    if (this.#olderBytes + body.length <= CACHE_BUDGET) {
      this.#older.set(name, file);
      this.#olderBytes += body.length;
    }
    return file;
  }
}
