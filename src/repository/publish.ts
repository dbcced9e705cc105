/**
 * Publishing: every changed role gets a new version signed by the keys the
 * keyring holds for it, then a new snapshot and timestamp. Everything is
 * signed and its thresholds checked in memory before the first byte is
 * written, and files go out in the order clients read them backwards:
 * targets roles, snapshot, root, and `timestamp.json` last. A client only
 * reaches new files through the new timestamp, so a publish cut off at any
 * point leaves the previous publication whole.
 */
import {
  MetaFile,
  Metadata,
  Root,
  Snapshot,
  Targets,
  Timestamp,
} from '@tufjs/models';
import { unlink } from 'node:fs/promises';
import {
  BadInputError,
  BadStagedFileError,
  UnsignedMetadataError,
  describeError,
} from '../errors.js';
import { logger } from '../log.js';
import {
  expiresAt,
  expiryKeyFor,
  msUntil,
  type ExpiryPolicies,
} from '../tuf/expiry.js';
import {
  roleKeysFor,
  targetsToJSON,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import { sharedKey } from './key-edit.js';
import { stagedRootPath } from './signing.js';
import { stagedTargetsPath } from './targets-event.js';
import type { Repository } from './repository.js';
import { checkDraft } from './draft-check.js';
import {
  acceptStagedRoot,
  acceptStagedTargets,
  applyTargetsEvent,
  currentStagedRoot,
  currentStagedTargets,
  keysChanged,
} from './publish-staged.js';
import {
  cleanTemporaries,
  keepTimestampCopy,
  signWithThresholds,
  snapshotMetaFor,
  writePublication,
} from './publish-write.js';

const log = logger.child({ module: 'repository/publish' });

export interface PublishOptions {
  /** Roles to re-sign as a new version even without changes. */
  resign?: string[];
  /**
   * Publish the rest when a staged root or targets is not ready (short of
   * signatures, or refused), leaving it staged; it is listed in `pending`.
   * Without it, such a staged file fails the whole publish.
   */
  leaveStaged?: boolean;
  now?: Date;
}

export interface PublishResult {
  published: boolean;
  /** Role name to its new version. */
  versions: Record<string, number>;
  /** Drafts that were dropped because they changed nothing. */
  unchanged: string[];
  /** Staged signing events left for later (with `leaveStaged`). */
  pending: PendingStaged[];
}

export interface PendingStaged {
  role: string;
  version: number;
  reason: string;
  /** Key ids whose signatures would have been enough. */
  missing: string[];
}

function withinRefresh(
  expires: string,
  role: string,
  expiry: ExpiryPolicies,
  now: Date,
): boolean {
  return msUntil(expires, now) <= expiry[expiryKeyFor(role)].refreshWindow;
}

function sameContent(a: Targets, b: Targets): boolean {
  // Version and expiry are set at signing; only what they list matters.
  const strip = (t: Targets) => {
    const json = targetsToJSON(t);
    delete json.version;
    delete json.expires;
    return JSON.stringify(json);
  };
  return strip(a) === strip(b);
}

/**
 * Publishes the drafts of `repo`, plus new snapshot and timestamp versions.
 * With nothing changed, only online roles inside their refresh window are
 * re-signed; with nothing due either, nothing is written.
 */
export async function publish(
  repo: Repository,
  options: PublishOptions = {},
): Promise<PublishResult> {
  try {
    return await publishOnce(repo, options);
  } finally {
    // A staged targets role stands in for the working copies of the roles
    // it rekeys during one publish only.
    repo.forgetOverrides();
  }
}

async function publishOnce(
  repo: Repository,
  options: PublishOptions,
): Promise<PublishResult> {
  const now = options.now ?? new Date();
  const expiry = repo.config.expiry;
  const resign = new Set(options.resign ?? []);
  for (const role of resign) {
    if (
      role !== ROOT &&
      role !== SNAPSHOT &&
      role !== TIMESTAMP &&
      repo.publishedVersion(role) === undefined
    ) {
      throw new BadInputError(`--resign ${role}: no such published role`);
    }
  }
  const expires = (role: string) =>
    expiresAt(now, expiry[expiryKeyFor(role)].period);

  // Which targets roles get a new version.
  const unchanged: string[] = [];
  const changedTargets: string[] = [];
  for (const role of repo.pendingRoles()) {
    const draft = await repo.workingTargets(role);
    const published =
      repo.publishedVersion(role) !== undefined
        ? (await repo.publishedTargets(role)).signed
        : undefined;
    if (published && !resign.has(role) && sameContent(draft, published)) {
      unchanged.push(role);
      continue;
    }
    await checkDraft(repo, role, draft, published);
    changedTargets.push(role);
  }
  for (const role of resign) {
    if (role !== ROOT && role !== SNAPSHOT && role !== TIMESTAMP) {
      if (!changedTargets.includes(role)) changedTargets.push(role);
    }
  }

  // A publish cut short after its new root: this one finishes it, signing
  // under the newest root whatever that root's key changes call for.
  const finishing = repo.unfinishedRoot;
  if (finishing && resign.has(ROOT)) {
    throw new BadInputError(
      `the last publish was cut short after root v${repo.root.signed.version}; ` +
        'run "tufota publish" to finish it before --resign root',
    );
  }
  // Root: re-signed only on request here; root edits are signing events.
  let newRoot: Metadata<Root> | undefined;
  if (resign.has(ROOT)) {
    const current = repo.root.signed;
    newRoot = new Metadata(
      new Root({
        keys: current.keys,
        roles: current.roles,
        consistentSnapshot: current.consistentSnapshot,
        specVersion: current.specVersion,
        unrecognizedFields: current.unrecognizedFields,
        version: current.version + 1,
        expires: expires(ROOT),
      }),
    );
    const oldKeys = roleKeysFor(current, ROOT) as RoleKeys;
    const newKeys = roleKeysFor(newRoot.signed, ROOT) as RoleKeys;
    await signWithThresholds(ROOT, newRoot, repo.keyring, [oldKeys, newKeys]);
  }
  const pending: PendingStaged[] = [];
  // With `leaveStaged`, a signing event still short of signatures (or
  // refused) waits, and the rest publishes: a ceremony that takes days
  // must not stop the timestamp from being renewed.
  const orLeave = async <T>(
    role: string,
    md: Metadata<AnySigned>,
    accept: () => Promise<T>,
  ): Promise<T | undefined> => {
    try {
      return await accept();
    } catch (err) {
      const waits =
        err instanceof UnsignedMetadataError || err instanceof BadInputError;
      if (!options.leaveStaged || !waits) throw err;
      pending.push({
        role,
        version: md.signed.version,
        reason: describeError(err),
        missing: err instanceof UnsignedMetadataError ? err.missing : [],
      });
      return undefined;
    }
  };
  // A staged file that does not even parse waits too, named as pending.
  const readOrLeave = async <T>(
    role: string,
    read: () => Promise<T | undefined>,
  ): Promise<T | undefined> => {
    try {
      return await read();
    } catch (err) {
      if (!options.leaveStaged || !(err instanceof BadStagedFileError)) {
        throw err;
      }
      pending.push({
        role,
        version: 0,
        reason: describeError(err),
        missing: [],
      });
      return undefined;
    }
  };
  let staged = await readOrLeave(ROOT, () => currentStagedRoot(repo));
  if (staged && finishing) {
    const waiting = staged;
    await orLeave(ROOT, waiting, () => {
      throw new BadInputError(
        `the last publish was cut short after root ` +
          `v${repo.root.signed.version}; finish it with "tufota publish ` +
          `--leave-staged" before publishing root v${waiting.signed.version}`,
      );
    });
    staged = undefined;
  }
  if (staged) {
    if (newRoot) {
      throw new BadInputError(
        'a root change is staged; publish it before --resign root',
      );
    }
    const stagedRoot = staged;
    newRoot = await orLeave(ROOT, stagedRoot, async () => {
      const accepted = await acceptStagedRoot(repo, stagedRoot, now);
      onlineKeysAtHand(repo, accepted.signed);
      return accepted;
    });
    if (!newRoot) staged = undefined;
  }
  const root = newRoot?.signed ?? repo.root.signed;
  // The root the current publication was signed under.
  const base = finishing?.signed ?? repo.root.signed;
  const rootChanges =
    (staged !== undefined && newRoot !== undefined) || finishing !== undefined;
  const rotated = (role: string) =>
    rootChanges && keysChanged(base, root, role);
  // Roles whose keys changed must be signed anew by their new keys: a
  // client that sees the new root discards what the old keys signed
  // (specification 5.3.11).
  if (rotated(TARGETS) && !changedTargets.includes(TARGETS)) {
    changedTargets.push(TARGETS);
  }
  let stagedTargets = await readOrLeave(TARGETS, () =>
    currentStagedTargets(repo),
  );
  if (stagedTargets) {
    const md = stagedTargets;
    const accepted = await orLeave(TARGETS, md, async () => {
      await acceptStagedTargets(repo, md, root, now);
      return true;
    });
    if (!accepted) stagedTargets = undefined;
  }
  if (stagedTargets) {
    // Signed by its key holders as it is; never re-signed here.
    changedTargets.splice(
      0,
      changedTargets.length,
      ...changedTargets.filter((r) => r !== TARGETS),
    );
    for (const role of await applyTargetsEvent(repo, stagedTargets)) {
      if (!changedTargets.includes(role)) changedTargets.push(role);
    }
  }
  if (newRoot || stagedTargets) {
    // Staged files may be edited by hand; the edits refuse this already.
    const delegated = (stagedTargets ?? (await repo.publishedTargets(TARGETS)))
      .signed.delegations;
    const shared = sharedKey(root.keys, delegated?.keys ?? {});
    if (shared) {
      throw new BadInputError(
        `key ${shared.a} would serve both a top-level role and a role ` +
          'targets delegates to; a key may serve one role only',
      );
    }
  }
  const snapshotDue =
    changedTargets.length > 0 ||
    stagedTargets !== undefined ||
    resign.has(SNAPSHOT) ||
    rotated(SNAPSHOT) ||
    withinRefresh(repo.snapshot.signed.expires, SNAPSHOT, expiry, now);
  const timestampDue =
    snapshotDue ||
    newRoot !== undefined ||
    finishing !== undefined ||
    resign.has(TIMESTAMP) ||
    withinRefresh(repo.timestamp.signed.expires, TIMESTAMP, expiry, now);

  if (!timestampDue) {
    await repo.forgetPublishedDrafts(unchanged, new Map());
    return { published: false, versions: {}, unchanged, pending };
  }

  // Every key this run signs with is unlocked up front, side by side where
  // no person has to type a passphrase.
  const needed = new Set<string>();
  for (const role of changedTargets) {
    for (const key of (await repo.workingTrust(role, root)).keys) {
      needed.add(key.keyID);
    }
  }
  for (const role of snapshotDue ? [SNAPSHOT, TIMESTAMP] : [TIMESTAMP]) {
    for (const keyid of root.roles[role]?.keyIDs ?? []) needed.add(keyid);
  }
  await repo.keyring?.trySignersFor([...needed]);

  // Sign every changed targets role; all thresholds are checked before any
  // file is written, so one role short of signatures stops the whole run.
  const targets = new Map<string, Metadata<Targets>>();
  const failures: UnsignedMetadataError[] = [];
  for (const role of changedTargets.sort()) {
    const working = await repo.workingTargets(role);
    const version = (repo.publishedVersion(role) ?? 0) + 1;
    const md = new Metadata(
      new Targets({
        version,
        expires: expires(role),
        specVersion: working.specVersion,
        targets: working.targets,
        delegations: working.delegations,
        unrecognizedFields: working.unrecognizedFields,
      }),
    );
    try {
      await signWithThresholds(role, md, repo.keyring, [
        await repo.workingTrust(role, root),
      ]);
    } catch (err) {
      if (err instanceof UnsignedMetadataError) {
        failures.push(err);
        continue;
      }
      throw err;
    }
    targets.set(role, md);
  }
  if (stagedTargets) targets.set(TARGETS, stagedTargets);
  if (failures.length > 0) {
    const first = failures[0];
    throw new UnsignedMetadataError(
      first.role,
      failures.map((f) => f.message).join('\n'),
      failures.flatMap((f) => f.missing),
    );
  }

  const meta = { ...repo.snapshot.signed.meta };
  for (const [role, md] of targets) {
    meta[`${role}.json`] = new MetaFile({ version: md.signed.version });
  }
  const snapshot = snapshotDue
    ? new Metadata(
        new Snapshot({
          version: repo.snapshot.signed.version + 1,
          expires: expires(SNAPSHOT),
          specVersion: repo.snapshot.signed.specVersion,
          meta,
        }),
      )
    : repo.snapshot;
  if (snapshotDue) {
    await signWithThresholds(SNAPSHOT, snapshot, repo.keyring, [
      roleKeysFor(root, SNAPSHOT) as RoleKeys,
    ]);
  }
  const timestamp = new Metadata(
    new Timestamp({
      version: repo.timestamp.signed.version + 1,
      expires: expires(TIMESTAMP),
      specVersion: repo.timestamp.signed.specVersion,
      snapshotMeta: snapshotMetaFor(snapshot),
    }),
  );
  await signWithThresholds(TIMESTAMP, timestamp, repo.keyring, [
    roleKeysFor(root, TIMESTAMP) as RoleKeys,
  ]);

  await cleanTemporaries(repo.layout);
  await keepTimestampCopy(repo);
  await writePublication(
    repo.layout,
    {
      root: newRoot,
      targets,
      snapshot: snapshotDue ? snapshot : repo.snapshot,
      timestamp,
    },
    repo.root.signed.version,
  );
  if (staged) await unlink(stagedRootPath(repo.layout)).catch(() => undefined);
  if (stagedTargets) {
    await unlink(stagedTargetsPath(repo.layout)).catch(() => undefined);
  }
  // Only once timestamp.json is in place are the drafts spent.
  await repo.forgetPublishedDrafts(
    [...changedTargets, ...unchanged, ...(stagedTargets ? [TARGETS] : [])],
    targets,
  );
  await repo.reload();

  const versions: Record<string, number> = {};
  for (const [role, md] of targets) versions[role] = md.signed.version;
  if (newRoot) versions[ROOT] = newRoot.signed.version;
  if (snapshotDue) versions[SNAPSHOT] = snapshot.signed.version;
  versions[TIMESTAMP] = timestamp.signed.version;
  log.info({ versions }, 'published');
  return { published: true, versions, unchanged, pending };
}

/**
 * A new root that moves timestamp or snapshot to keys this server does not
 * hold could be published, but then nothing could sign under it: refused
 * here, before anything is written, so `--leave-staged` keeps it waiting.
 */
function onlineKeysAtHand(repo: Repository, next: Root): void {
  if (!repo.keyring) return;
  for (const role of [TIMESTAMP, SNAPSHOT]) {
    if (!keysChanged(repo.root.signed, next, role)) continue;
    const trust = roleKeysFor(next, role) as RoleKeys;
    const held = trust.keys.filter((k) => repo.keyring?.has(k.keyID)).length;
    if (held < trust.threshold) {
      throw new BadInputError(
        `the staged root gives ${role} keys this server holds ${held} of ` +
          `(${trust.threshold} needed); put the new ${role} key files in a ` +
          '--keys folder before publishing it',
      );
    }
  }
}
