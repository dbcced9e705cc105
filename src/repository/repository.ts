/**
 * The repository as its writer sees it: the published metadata, verified as
 * it is loaded (published.ts says in which order and against what), and the
 * unsigned drafts of roles changed since.
 *
 * A role is always verified before its content goes into a new version, so
 * nothing that fails a check is ever re-signed. The snapshot lists versions
 * only, not hashes, so re-signing it vouches for no role's content and does
 * not load every role: a forged role file that no write touches is found by
 * `tufota verify`, and clients refuse it.
 */
import type { Metadata } from '@tufjs/models';
import {
  MetadataKind,
  type Root,
  type Targets,
  type Snapshot,
  type TargetFile,
  type Timestamp,
} from '@tufjs/models';
import { mkdir, readFile, readdir, stat, unlink } from 'node:fs/promises';
import {
  BadInputError,
  CorruptMetadataError,
  NoDelegationError,
  NotFoundError,
  describeError,
} from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { logger } from '../log.js';
import { binIndexFor, binName } from '../tuf/bins.js';
import { checkTargetPath, consistentTargetPath } from '../tuf/paths.js';
import {
  copyTargets,
  roleKeysFor,
  targetsFromJSON,
  targetsToJSON,
  type RoleKeys,
} from '../tuf/metadata.js';
import { TARGETS } from '../tuf/roles.js';
import { fsyncDir, writeFileAtomic, writeFilesTogether } from './atomic.js';
import { dirname, join } from 'node:path';
import { Layout, readConfig, type RepositoryConfig } from './layout.js';
import { mapLimit } from './limit.js';
import { RepositoryLock } from './lock.js';
import { PublishedState } from './published.js';
import { cleanInterruptedImport, importTarget } from './target-import.js';

const log = logger.child({ module: 'repository' });

export interface OpenOptions {
  /** Take the writer lock; needed for any change. */
  lock?: boolean;
  keyring?: Keyring;
}

export interface TargetInput {
  source: string;
  path: string;
  custom?: Record<string, unknown>;
}

export interface AddedTarget {
  role: string;
  target: TargetFile;
  /** Other content was listed under the path before. */
  replaced: boolean;
  /** The same content and custom data were listed already: no change. */
  unchanged: boolean;
}

export interface ListedTarget {
  role: string;
  target: TargetFile;
  /** True when the entry is in a draft not yet published. */
  pending: boolean;
}

/** Target copies in flight at once during a batch import. */
const IMPORT_CONCURRENCY = 16;
/** Metadata and draft files written at once (each fsynced). */
const WRITE_CONCURRENCY = 8;

export class Repository {
  readonly layout: Layout;
  readonly config: RepositoryConfig;
  readonly keyring?: Keyring;
  readonly #lock?: RepositoryLock;

  #published!: PublishedState;
  #loaded = false;
  readonly #drafts = new Map<string, Targets>();
  #draftNames = new Set<string>();
  readonly #unsaved = new Set<string>();
  readonly #overrides = new Set<string>();

  private constructor(
    layout: Layout,
    config: RepositoryConfig,
    keyring: Keyring | undefined,
    lock: RepositoryLock | undefined,
  ) {
    this.layout = layout;
    this.config = config;
    this.keyring = keyring;
    this.#lock = lock;
  }

  /** Opens a published repository; with `lock`, as its only writer. */
  static async open(
    dir: string,
    options: OpenOptions = {},
  ): Promise<Repository> {
    const layout = new Layout(dir);
    const config = await readConfig(layout);
    const lock = options.lock ? new RepositoryLock(layout.lock) : undefined;
    await lock?.acquire();
    const repo = new Repository(layout, config, options.keyring, lock);
    try {
      await repo.#loadPublished();
      await repo.#scanDrafts();
      if (lock) await cleanInterruptedImport(layout);
    } catch (err) {
      await lock?.release();
      throw err;
    }
    return repo;
  }

  async close(): Promise<void> {
    await this.#lock?.release();
  }

  // ---- published state -------------------------------------------------

  get root(): Metadata<Root> {
    return this.#published.root;
  }

  /** Every published root, version 1 first. */
  /** See PublishedState#unfinishedRoot. */
  get unfinishedRoot(): Metadata<Root> | undefined {
    return this.#published.unfinishedRoot;
  }

  get rootHistory(): readonly Metadata<Root>[] {
    return this.#published.roots;
  }

  get timestamp(): Metadata<Timestamp> {
    return this.#published.timestamp;
  }

  get snapshot(): Metadata<Snapshot> {
    return this.#published.snapshot;
  }

  /** The published version of a targets role, as the snapshot lists it. */
  publishedVersion(role: string): number | undefined {
    return this.#published.version(role);
  }

  /** Names of every targets role the snapshot lists. */
  publishedRoles(): string[] {
    return this.#published.roles();
  }

  /** Loads and verifies the published version of a targets role. */
  async publishedTargets(role: string): Promise<Metadata<Targets>> {
    return this.#published.targets(role);
  }

  async #loadPublished(): Promise<void> {
    const next = await PublishedState.load(this.layout, (role) =>
      this.delegatorOf(role, 'published'),
    );
    // Roles whose version did not change need not be read again.
    if (this.#loaded) next.adopt(this.#published);
    this.#published = next;
    this.#loaded = true;
  }

  // ---- drafts --------------------------------------------------------------

  async #scanDrafts(): Promise<void> {
    let names: string[] = [];
    try {
      names = await readdir(this.layout.drafts);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.#draftNames = new Set(
      names
        .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
        .map((n) => n.slice(0, -'.json'.length)),
    );
  }

  /** Roles with changes not yet published. */
  pendingRoles(): string[] {
    return [...new Set([...this.#draftNames, ...this.#unsaved])].sort();
  }

  hasDraft(role: string): boolean {
    return (
      this.#draftNames.has(role) ||
      (this.#drafts.has(role) && !this.#overrides.has(role))
    );
  }

  async #loadDraft(role: string): Promise<Targets | undefined> {
    const loaded = this.#drafts.get(role);
    if (loaded) return loaded;
    if (!this.#draftNames.has(role)) return undefined;
    const path = this.layout.draftFile(role);
    let signed: Targets;
    try {
      const json = JSON.parse(await readFile(path, 'utf8')) as Parameters<
        typeof Targets.fromJSON
      >[0];
      // The library keeps whatever `_type` it is given; a draft of a
      // targets role must say so, or it would be signed as something else.
      if (json._type !== MetadataKind.Targets) {
        throw new Error(
          `its _type is ${JSON.stringify(json._type)}, not targets`,
        );
      }
      signed = targetsFromJSON(json);
    } catch (err) {
      throw new CorruptMetadataError(
        `draft ${path} is unreadable (${describeError(err)}); remove it ` +
          `with "tufota discard ${role}"`,
        { cause: err },
      );
    }
    this.#drafts.set(role, signed);
    return signed;
  }

  /**
   * The role as the next publish would sign it: its draft if there is one,
   * else the published version.
   */
  async workingTargets(role: string): Promise<Targets> {
    return (
      (await this.#loadDraft(role)) ??
      (await this.publishedTargets(role)).signed
    );
  }

  /** A draft to change: a copy of the published role if none exists yet. */
  async #editable(role: string): Promise<Targets> {
    const draft = await this.#loadDraft(role);
    if (draft) return draft;
    const copy = copyTargets((await this.publishedTargets(role)).signed);
    this.#drafts.set(role, copy);
    return copy;
  }

  /**
   * Writes every draft changed in memory, all or none: a failure leaves the
   * drafts on disk as they were and forgets the unsaved changes.
   */
  async saveDrafts(): Promise<void> {
    if (this.#unsaved.size === 0) return;
    const roles = [...this.#unsaved];
    try {
      await mkdir(this.layout.drafts, { recursive: true });
      await writeFilesTogether(
        roles.flatMap((role) => {
          const draft = this.#drafts.get(role);
          return draft
            ? [
                {
                  path: this.layout.draftFile(role),
                  data: JSON.stringify(targetsToJSON(draft)),
                },
              ]
            : [];
        }),
        WRITE_CONCURRENCY,
      );
    } catch (err) {
      this.#forgetUnsaved();
      throw err;
    }
    for (const role of roles) this.#draftNames.add(role);
    this.#unsaved.clear();
  }

  /** Drops in-memory changes that were never saved; disk is the truth. */
  #forgetUnsaved(): void {
    for (const role of this.#unsaved) this.#drafts.delete(role);
    this.#unsaved.clear();
  }

  /** Drops drafts: the named roles, or all of them. */
  async discardDrafts(roles?: string[]): Promise<string[]> {
    // The role that owns the hashed bins stands for its bins too: a user
    // who added images/* to it finds the drafts in the bins.
    const bins = this.config.bins;
    const expand = (role: string) =>
      bins && role === bins.parent
        ? [
            ...(this.hasDraft(role) || this.#unsaved.has(role) ? [role] : []),
            ...this.pendingRoles().filter((r) => this.#binParentOf(r) === role),
          ]
        : [role];
    const names = roles
      ? [...new Set(roles.flatMap(expand))]
      : this.pendingRoles();
    for (const role of roles ?? []) {
      if (expand(role).length === 0) {
        throw new NotFoundError(`${role} has no draft, nor have its bins`);
      }
    }
    for (const role of names) {
      if (!this.hasDraft(role) && !this.#unsaved.has(role)) {
        throw new NotFoundError(`${role} has no draft`);
      }
    }
    for (const role of names) {
      await unlink(this.layout.draftFile(role)).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
      this.#drafts.delete(role);
      this.#draftNames.delete(role);
      this.#unsaved.delete(role);
    }
    if (names.length > 0)
      await fsyncDir(this.layout.drafts).catch(() => undefined);
    return names;
  }

  /** @internal Used by publishing once a draft has gone out. */
  async forgetPublishedDrafts(
    roles: string[],
    published: Map<string, Metadata<Targets>>,
  ): Promise<void> {
    await mapLimit(roles, WRITE_CONCURRENCY, async (role) => {
      await unlink(this.layout.draftFile(role)).catch(() => undefined);
      this.#drafts.delete(role);
      this.#draftNames.delete(role);
      this.#unsaved.delete(role);
    });
    for (const [role, md] of published) this.#published.remember(role, md);
    if (roles.length > 0)
      await fsyncDir(this.layout.drafts).catch(() => undefined);
  }

  /**
   * @internal Publishing a signing event: `signed` stands in as the role's
   * working copy for this publish only, never saved as a draft.
   */
  useWorking(role: string, signed: Targets): void {
    this.#drafts.set(role, signed);
    this.#overrides.add(role);
  }

  /** @internal Drops what `useWorking` set; drafts on disk load again. */
  forgetOverrides(): void {
    for (const role of this.#overrides) this.#drafts.delete(role);
    this.#overrides.clear();
  }

  /** @internal Reloads the published state after a publish. */
  async reload(): Promise<void> {
    await this.#loadPublished();
  }

  // ---- delegation tree ---------------------------------------------------

  #binParentOf(role: string): string | undefined {
    const bins = this.config.bins;
    if (bins && role.startsWith(`${bins.parent}-bin-`)) return bins.parent;
    return undefined;
  }

  /**
   * The role that delegates to `role`. Bins are known from the settings;
   * any other role is looked up through the delegation tree from targets.
   */
  async delegatorOf(
    role: string,
    from: 'published' | 'working' = 'working',
  ): Promise<string> {
    const binParent = this.#binParentOf(role);
    if (binParent) return binParent;
    const get = (name: string) =>
      from === 'published'
        ? this.publishedTargets(name).then((m) => m.signed)
        : this.workingTargets(name);
    const queue = [TARGETS];
    const seen = new Set<string>();
    while (queue.length > 0) {
      const parent = queue.shift() as string;
      if (seen.has(parent)) continue;
      seen.add(parent);
      const children = (await get(parent)).delegations?.roles ?? {};
      if (role in children) return parent;
      for (const child of Object.keys(children)) {
        if (!this.#binParentOf(child)) queue.push(child);
      }
    }
    throw new NotFoundError(`no role delegates to ${role}`);
  }

  /** The keys and threshold the working delegator assigns to `role`. */
  async workingTrust(role: string, root: Root): Promise<RoleKeys> {
    if (role === TARGETS) {
      const keys = roleKeysFor(root, TARGETS);
      if (!keys) throw new CorruptMetadataError('root has no targets role');
      return keys;
    }
    const parent = await this.delegatorOf(role);
    const keys = roleKeysFor(await this.workingTargets(parent), role);
    if (!keys)
      throw new NotFoundError(`${parent} does not delegate to ${role}`);
    return keys;
  }

  /**
   * The role a target path belongs in: the delegation chain a client would
   * follow for it, down to the last role that delegates no further.
   */
  async ownerOf(path: string): Promise<string> {
    checkTargetPath(path);
    let role = TARGETS;
    for (let depth = 0; depth < 32; depth++) {
      const bins = this.config.bins;
      if (bins && role === bins.parent) {
        return binName(bins, binIndexFor(bins, path));
      }
      const signed = await this.workingTargets(role);
      const delegated = Object.values(signed.delegations?.roles ?? {});
      const next = delegated.find((d) => d.isDelegatedPath(path));
      if (next) {
        role = next.name;
        continue;
      }
      if (role === TARGETS) {
        const patterns = delegated
          .map((d) => `${d.name}: ${(d.paths ?? []).join(' ')}`)
          .join('; ');
        throw new NoDelegationError(
          `no role is trusted for target path "${path}" (${patterns})`,
        );
      }
      return role;
    }
    throw new NoDelegationError(`delegations for "${path}" nest too deep`);
  }

  // ---- targets -------------------------------------------------------------

  /**
   * Copies files into the repository and lists them in the roles that own
   * their paths. Nothing is listed unless every file was copied: a bad file
   * in a batch leaves the drafts as they were.
   */
  async addTargets(
    inputs: readonly TargetInput[],
    onProgress?: (done: number, total: number) => void,
    options: { replace?: boolean } = {},
  ): Promise<AddedTarget[]> {
    const seen = new Set<string>();
    for (const input of inputs) {
      if (seen.has(input.path)) {
        throw new BadInputError(`target path ${input.path} is given twice`);
      }
      seen.add(input.path);
    }
    const owners: string[] = [];
    for (const input of inputs) {
      const owner = await this.ownerOf(input.path);
      owners.push(owner);
    }
    // Unreadable sources are refused before anything is copied.
    await mapLimit(inputs, 32, async (input) => {
      const info = await stat(input.source).catch((err: unknown) => {
        const why = (err as NodeJS.ErrnoException).code ?? String(err);
        throw new BadInputError(
          `cannot read target file ${input.source} (${why})`,
          { cause: err },
        );
      });
      if (!info.isFile()) {
        throw new BadInputError(`target file ${input.source} is not a file`);
      }
    });
    // A marker names the folders this batch writes into, so that after a
    // kill -9 the next writer removes the partial copies left there.
    const targetDirs = [
      ...new Set(
        inputs.map((i) =>
          dirname(join(this.layout.targets, consistentTargetPath(i.path, 'x'))),
        ),
      ),
    ];
    await mkdir(this.layout.state, { recursive: true });
    await writeFileAtomic(
      this.layout.importing,
      JSON.stringify({ dirs: targetDirs }),
    );
    let done = 0;
    const dirs = new Set<string>();
    const known = new Set<string>();
    // Names this batch brought into targets/; removed again if it fails, so
    // a refused batch leaves the served folder as it found it.
    const created: string[] = [];
    const out = [];
    try {
      // Each copy ends in an fsync, and the disk, not the CPU, sets the
      // pace: enough copies in flight keep the libuv pool (4 threads by
      // default) and the disk's write queue full. Each holds at most a
      // 1 MiB buffer.
      const imported = await mapLimit(
        inputs,
        IMPORT_CONCURRENCY,
        async (input) => {
          const result = await importTarget(
            this.layout.targets,
            input.source,
            input.path,
            input.custom,
            { knownDirs: known },
          );
          result.dirs.forEach((d) => dirs.add(d));
          created.push(...result.created);
          onProgress?.(++done, inputs.length);
          return result.target;
        },
      );
      for (const dir of dirs) await fsyncDir(dir);

      // Judged once the content is known: the same bytes and custom data
      // again change nothing, other content under a listed path must be
      // asked for, since devices may already hold that path's old bytes.
      for (let i = 0; i < imported.length; i++) {
        const role = owners[i];
        const target = imported[i];
        const listed = (await this.workingTargets(role)).targets[target.path];
        if (listed?.equals(target)) {
          out.push({ role, target, replaced: false, unchanged: true });
          continue;
        }
        if (listed && !options.replace) {
          throw new BadInputError(
            `${target.path} is already listed in ${role} with other content ` +
              `(sha256 ${listed.hashes.sha256?.slice(0, 16)}…); use --replace ` +
              'to list new content under that path',
          );
        }
        const draft = await this.#editable(role);
        draft.targets[target.path] = target;
        this.#unsaved.add(role);
        out.push({
          role,
          target,
          replaced: listed !== undefined,
          unchanged: false,
        });
      }
      await this.saveDrafts();
    } catch (err) {
      this.#forgetUnsaved();
      await Promise.all(created.map((f) => unlink(f).catch(() => undefined)));
      for (const dir of dirs) await fsyncDir(dir).catch(() => undefined);
      await unlink(this.layout.importing).catch(() => undefined);
      throw err;
    }
    await unlink(this.layout.importing).catch(() => undefined);
    log.info({ count: out.length }, 'targets added to drafts');
    return out;
  }

  /**
   * Unlists a target. The file stays in targets/: published versions that
   * list it remain valid for clients that hold them.
   */
  async removeTarget(path: string): Promise<string> {
    if (!path.includes('/')) {
      throw new NotFoundError(
        `${path} is not a target path; target paths have a folder, ` +
          `e.g. images/${path}`,
      );
    }
    const role = await this.ownerOf(path);
    const working = await this.workingTargets(role);
    if (!(path in working.targets)) {
      throw new NotFoundError(`target ${path} is not listed in ${role}`);
    }
    const draft = await this.#editable(role);
    delete draft.targets[path];
    this.#unsaved.add(role);
    await this.saveDrafts();
    return role;
  }

  /** Every target of every role, as the next publish would sign them. */
  async listTargets(): Promise<ListedTarget[]> {
    const names = new Set([...this.publishedRoles(), ...this.pendingRoles()]);
    const out: ListedTarget[] = [];
    for (const role of [...names].sort()) {
      const signed = await this.workingTargets(role);
      const drafted = this.hasDraft(role);
      // In a drafted role only what the draft adds or changes is pending;
      // what it carries over unchanged is published already.
      const published =
        drafted && this.publishedRoles().includes(role)
          ? (await this.publishedTargets(role)).signed.targets
          : {};
      for (const target of Object.values(signed.targets)) {
        const before = published[target.path] as TargetFile | undefined;
        const pending =
          drafted &&
          (!before ||
            JSON.stringify(before.toJSON()) !==
              JSON.stringify(target.toJSON()));
        out.push({ role, target, pending });
      }
    }
    return out.sort((a, b) => a.target.path.localeCompare(b.target.path));
  }
}
