/**
 * The published repository as a writer trusts it, loaded in the order the
 * specification's client workflow uses.
 *
 * The root is walked from `1.root.json` up, each version checked against the
 * one before and itself. `timestamp.json` is checked against that root, the
 * snapshot against the timestamp's length and hashes and against the root,
 * and each targets role (loaded only when needed) against its delegator. A
 * folder older than what was last published is refused (see rollback.ts).
 * Expiry is not checked: refreshing expired roles is a writer's job.
 */
import { readFile, readdir } from 'node:fs/promises';
import { CorruptMetadataError, NotFoundError } from '../errors.js';
import {
  parseMetadata,
  requireThreshold,
  roleKeysFor,
  verifyRole,
  type RoleKeys,
} from '../tuf/metadata.js';
import {
  MetadataKind,
  type Metadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '../tuf/models.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import { readPublishedRecord, type Layout } from './layout.js';
import { rollbackSigns } from './rollback.js';

/** Finds the role that delegates to `role` in the published tree. */
export type DelegatorLookup = (role: string) => Promise<string>;

function keysOf(root: Root, role: string): RoleKeys {
  const keys = roleKeysFor(root, role);
  if (!keys) {
    throw new CorruptMetadataError(`root v${root.version} has no ${role} role`);
  }
  return keys;
}

async function readBytes(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CorruptMetadataError(`${what} is missing (${path})`, {
        cause: err,
      });
    }
    throw new CorruptMetadataError(`cannot read ${what} (${path})`, {
      cause: err,
    });
  }
}

function checkedVersion(
  md: { signed: { version: number } },
  expected: number,
  what: string,
): void {
  if (md.signed.version !== expected) {
    throw new CorruptMetadataError(
      `${what} has version ${md.signed.version}, expected ${expected}`,
    );
  }
}

function requireSigned(
  role: string,
  md: Metadata<Root | Targets | Snapshot | Timestamp>,
  keys: RoleKeys,
  source: string,
): void {
  try {
    requireThreshold(verifyRole(role, md, keys));
  } catch (err) {
    throw new CorruptMetadataError(
      `published ${source} fails its signature check: ` +
        (err instanceof Error ? err.message : String(err)),
      { cause: err },
    );
  }
}

export class PublishedState {
  /** Every published root, version 1 first. */
  readonly roots: readonly Metadata<Root>[];
  readonly timestamp: Metadata<Timestamp>;
  readonly snapshot: Metadata<Snapshot>;
  readonly #layout: Layout;
  readonly #delegatorOf: DelegatorLookup;
  readonly #roles = new Map<string, Metadata<Targets>>();

  private constructor(
    layout: Layout,
    delegatorOf: DelegatorLookup,
    roots: Metadata<Root>[],
    timestamp: Metadata<Timestamp>,
    snapshot: Metadata<Snapshot>,
  ) {
    this.#layout = layout;
    this.#delegatorOf = delegatorOf;
    this.roots = roots;
    this.timestamp = timestamp;
    this.snapshot = snapshot;
  }

  static async load(
    layout: Layout,
    delegatorOf: DelegatorLookup,
  ): Promise<PublishedState> {
    // Specification 5.3: every root version is checked by its predecessor's
    // keys and threshold and by its own.
    const roots: Metadata<Root>[] = [];
    for (let version = 1; ; version++) {
      const name = `${version}.root.json`;
      let bytes: Buffer;
      try {
        bytes = await readFile(layout.metadataFile(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
        throw new CorruptMetadataError(`cannot read ${name}`, { cause: err });
      }
      const md = parseMetadata(MetadataKind.Root, bytes, name);
      checkedVersion(md, version, name);
      const previous = roots[roots.length - 1] ?? md;
      for (const trusted of [previous, md]) {
        const keys = roleKeysFor(trusted.signed, ROOT);
        if (!keys) throw new CorruptMetadataError(`${name} has no root role`);
        requireSigned(ROOT, md, keys, name);
      }
      roots.push(md);
    }
    if (roots.length === 0) {
      throw new CorruptMetadataError(
        `no published root in ${layout.metadata} (1.root.json is missing)`,
      );
    }
    const root = roots[roots.length - 1];
    const previous = roots.length > 1 ? roots[roots.length - 2] : undefined;
    // A publish cut short after writing a new root, before the timestamp,
    // leaves roles signed under the root before it; while that root's keys
    // still verify them, they are taken as they are, and the next publish
    // re-signs them under the new root (`unfinishedRoot`).
    let unfinished = false;
    // Only a publish that wrote a root it never recorded as published can
    // have been cut short; otherwise files the previous root's keys signed
    // are planted (with a key since rotated away, say) and must fail.
    const record = await readPublishedRecord(layout);
    const cutShort =
      previous !== undefined &&
      record !== undefined &&
      record.root < root.signed.version;
    const checkUnder = (
      role: string,
      md: Metadata<Root | Targets | Snapshot | Timestamp>,
      source: string,
    ) => {
      try {
        requireSigned(role, md, keysOf(root.signed, role), source);
      } catch (err) {
        if (!previous || !cutShort) throw err;
        try {
          requireSigned(role, md, keysOf(previous.signed, role), source);
        } catch {
          throw err;
        }
        unfinished = true;
      }
    };

    // Specification 5.4 and 5.5: timestamp, then the snapshot it names.
    const tsBytes = await readBytes(
      layout.metadataFile('timestamp.json'),
      'timestamp.json',
    );
    const timestamp = parseMetadata(
      MetadataKind.Timestamp,
      tsBytes,
      'timestamp.json',
    );
    checkUnder(TIMESTAMP, timestamp, 'timestamp.json');
    const snapMeta = timestamp.signed.snapshotMeta;
    const snapName = `${snapMeta.version}.snapshot.json`;
    const snapBytes = await readBytes(layout.metadataFile(snapName), snapName);
    try {
      snapMeta.verify(snapBytes);
    } catch (err) {
      throw new CorruptMetadataError(
        `${snapName} does not match the length or hashes in timestamp.json`,
        { cause: err },
      );
    }
    const snapshot = parseMetadata(MetadataKind.Snapshot, snapBytes, snapName);
    checkedVersion(snapshot, snapMeta.version, snapName);
    checkUnder(SNAPSHOT, snapshot, snapName);
    const targetsVersion = snapshot.signed.meta['targets.json']?.version;
    if (targetsVersion === undefined) {
      throw new CorruptMetadataError(`${snapName} does not list targets`);
    }
    const targetsName = `${targetsVersion}.targets.json`;
    const targets = parseMetadata(
      MetadataKind.Targets,
      await readBytes(layout.metadataFile(targetsName), targetsName),
      targetsName,
    );
    checkedVersion(targets, targetsVersion, targetsName);
    checkUnder(TARGETS, targets, targetsName);

    const state = new PublishedState(
      layout,
      delegatorOf,
      roots,
      timestamp,
      snapshot,
    );
    state.unfinishedRoot = unfinished ? previous : undefined;
    state.#roles.set(TARGETS, targets);
    await state.#refuseRollback();
    return state;
  }

  get root(): Metadata<Root> {
    return this.roots[this.roots.length - 1];
  }

  /**
   * The root before the newest, when the newest was written by a publish
   * that was cut short: timestamp, snapshot or targets are still signed
   * under this one. Undefined when the publication is whole.
   */
  unfinishedRoot?: Metadata<Root>;

  /**
   * A metadata/ folder restored from an old copy would have the next
   * publish overwrite versioned files that clients already hold, and
   * clients that saw newer versions would refuse every update after it.
   */
  async #refuseRollback(): Promise<void> {
    const roles: Record<string, number> = {};
    for (const [name, meta] of Object.entries(this.snapshot.signed.meta)) {
      roles[name.replace(/\.json$/, '')] = meta.version;
    }
    const signs = rollbackSigns(
      await readdir(this.#layout.metadata),
      {
        root: this.root.signed.version,
        snapshot: this.snapshot.signed.version,
        timestamp: this.timestamp.signed.version,
        roles,
      },
      await readPublishedRecord(this.#layout),
    );
    if (signs.length === 0) return;
    throw new CorruptMetadataError(
      `the published metadata is older than what this repository last ` +
        `published (${signs.slice(0, 3).join('; ')}): ` +
        `${this.#layout.metadata} was rolled back or restored from an old ` +
        'copy; put the newest metadata back before writing',
    );
  }

  /** The published version of a targets role, as the snapshot lists it. */
  version(role: string): number | undefined {
    return this.snapshot.signed.meta[`${role}.json`]?.version;
  }

  /** Names of every targets role the snapshot lists. */
  roles(): string[] {
    return Object.keys(this.snapshot.signed.meta).map((n) =>
      n.replace(/\.json$/, ''),
    );
  }

  /** Loads and verifies the published version of a targets role. */
  async targets(role: string): Promise<Metadata<Targets>> {
    const cached = this.#roles.get(role);
    if (cached) return cached;
    const version = this.version(role);
    if (version === undefined) {
      throw new NotFoundError(`role ${role} is not in the published snapshot`);
    }
    const name = `${version}.${role}.json`;
    const bytes = await readBytes(this.#layout.metadataFile(name), name);
    const md = parseMetadata(MetadataKind.Targets, bytes, name);
    checkedVersion(md, version, name);
    requireSigned(role, md, await this.#trustFor(role), name);
    this.#roles.set(role, md);
    return md;
  }

  async #trustFor(role: string): Promise<RoleKeys> {
    const parent = role === TARGETS ? undefined : await this.#delegatorOf(role);
    const keys = parent
      ? roleKeysFor((await this.targets(parent)).signed, role)
      : roleKeysFor(this.root.signed, TARGETS);
    if (!keys) {
      throw new CorruptMetadataError(
        `${parent ?? 'root'} does not delegate to ${role}`,
      );
    }
    return keys;
  }

  /** Keeps a role this process just signed and wrote. */
  remember(role: string, md: Metadata<Targets>): void {
    this.#roles.set(role, md);
  }

  /** Takes over the roles `older` loaded whose version has not changed. */
  adopt(older: PublishedState): void {
    for (const [role, md] of older.#roles) {
      if (this.version(role) === md.signed.version && !this.#roles.has(role)) {
        this.#roles.set(role, md);
      }
    }
  }
}
