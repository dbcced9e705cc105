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
import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import {
  BadInputError,
  CorruptMetadataError,
  UnsignedMetadataError,
  describeError,
} from '../errors.js';
import { consistentTargetPath, checkTargetPath } from '../tuf/paths.js';
import { checkCustom } from '../tuf/custom.js';
import { join } from 'node:path';
import type { Keyring } from '../keys/keyring.js';
import { logger } from '../log.js';
import {
  expiresAt,
  expiryKeyFor,
  msUntil,
  type ExpiryPolicies,
} from '../tuf/expiry.js';
import {
  addSignature,
  requireThreshold,
  roleKeysFor,
  serializeMetadata,
  targetsToJSON,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import { sharedKey } from './key-edit.js';
import { checkStagedRoot, readStagedRoot, stagedRootPath } from './signing.js';
import {
  checkStagedTargets,
  readStagedTargets,
  rekeyBins,
  rekeyedRoles,
  stagedTargetsPath,
} from './targets-event.js';
import { canonicalBytes } from '../tuf/canonical.js';
import { TEMP_PREFIX, fsyncDir, writeFileAtomic } from './atomic.js';
import { checkpoint } from './faults.js';
import { writePublishedRecord, type Layout } from './layout.js';
import { mapLimit } from './limit.js';
import type { Repository } from './repository.js';

const log = logger.child({ module: 'repository/publish' });

/** Targets roles written at once; each write is fsynced. */
const WRITE_CONCURRENCY = 8;

/**
 * Signs `md` afresh with every available key any of `trust` names, then
 * checks each threshold. A new root passes `trust` twice: the previous
 * root's root role and its own.
 */
export async function signWithThresholds(
  role: string,
  md: Metadata<AnySigned>,
  keyring: Keyring | undefined,
  trust: RoleKeys[],
): Promise<void> {
  md.signatures = {};
  const keyids = trust.flatMap((t) => t.keys.map((k) => k.keyID));
  // A key that will not open does not stop the run while the others still
  // reach every threshold; when they do not, the key that would not open
  // is what the user needs to hear about.
  const { signers, failures } = keyring
    ? await keyring.trySignersFor(keyids)
    : { signers: [], failures: [] };
  for (const signer of signers) await addSignature(md, signer);
  for (const t of trust) {
    const result = verifyRole(role, md, t);
    if (!result.verified && failures.length > 0) throw failures[0].error;
    if (result.verified && failures.length > 0) {
      log.warn(
        { role, unopened: failures.map((f) => f.keyid) },
        'signed without keys that would not open',
      );
    }
    if (!result.verified) {
      log.warn(
        {
          role,
          threshold: result.threshold,
          signed: result.signed.length,
          missing: result.unsigned,
        },
        'refusing to publish a role below its threshold',
      );
    }
    requireThreshold(result);
  }
}

/** What one publication writes; `root` only when root changes. */
export interface Publication {
  root?: Metadata<Root>;
  targets: Map<string, Metadata<Targets>>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

/** Writes a publication in the order that keeps clients safe. */
export async function writePublication(
  layout: Layout,
  pub: Publication,
  currentRoot: number,
): Promise<void> {
  const rootVersion = pub.root?.signed.version ?? currentRoot;
  await mkdir(layout.metadata, { recursive: true });
  const file = (name: string) => layout.metadataFile(name);

  // Targets roles are new files no client can reach before the snapshot
  // names them, so they go out a few at a time (hundreds of bins at one
  // fsync each); all are written before the snapshot starts.
  await mapLimit([...pub.targets], WRITE_CONCURRENCY, async ([role, md]) => {
    await checkpoint(`publish:${role}`);
    await writeFileAtomic(
      file(`${md.signed.version}.${role}.json`),
      serializeMetadata(md),
      { deferDirSync: true },
    );
  });
  await checkpoint('publish:snapshot');
  await writeFileAtomic(
    file(`${pub.snapshot.signed.version}.snapshot.json`),
    serializeMetadata(pub.snapshot),
    { deferDirSync: true },
  );
  await fsyncDir(layout.metadata);

  if (pub.root) {
    // A new root is visible to clients the moment it exists (they probe for
    // N+1.root.json), so it goes after everything it may need.
    await checkpoint('publish:root');
    const bytes = serializeMetadata(pub.root);
    await writeFileAtomic(file(`${pub.root.signed.version}.root.json`), bytes, {
      deferDirSync: true,
    });
    await writeFileAtomic(file('root.json'), bytes);
  }

  // The versioned timestamp is history for auditors; clients only ever
  // read timestamp.json, replaced here last and in one rename.
  // timestamp.json goes first: the kept copy is history, and a kept copy
  // newer than timestamp.json must only ever mean a rolled-back folder.
  await checkpoint('publish:timestamp');
  const tsBytes = serializeMetadata(pub.timestamp);
  await writeFileAtomic(file('timestamp.json'), tsBytes);
  await writeFileAtomic(
    file(`${pub.timestamp.signed.version}.timestamp.json`),
    tsBytes,
  );
  await writePublishedRecord(layout, {
    root: rootVersion,
    snapshot: pub.snapshot.signed.version,
    timestamp: pub.timestamp.signed.version,
  });
  await checkpoint('publish:done');
}

/** A snapshot MetaFile for the timestamp: version, length and sha256. */
export function snapshotMetaFor(md: Metadata<Snapshot>): MetaFile {
  const bytes = serializeMetadata(md);
  return new MetaFile({
    version: md.signed.version,
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  });
}

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
  let staged = await currentStagedRoot(repo);
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
    newRoot = await orLeave(ROOT, stagedRoot, () =>
      acceptStagedRoot(repo, stagedRoot, now),
    );
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
  let stagedTargets = await currentStagedTargets(repo);
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
 * The staged root, unless it is the root already published: a publish
 * killed after writing the new root but before removing the staged file
 * leaves that behind, and it must not block every later publish.
 */
async function currentStagedRoot(
  repo: Repository,
): Promise<Metadata<Root> | undefined> {
  const staged = await readStagedRoot(repo.layout);
  if (!staged) return undefined;
  const published = repo.rootHistory[staged.signed.version - 1];
  if (
    published &&
    canonicalBytes(published.signed.toJSON()).equals(
      canonicalBytes(staged.signed.toJSON()),
    )
  ) {
    log.warn(
      { version: staged.signed.version },
      'removing a staged root that is already published',
    );
    await unlink(stagedRootPath(repo.layout)).catch(() => undefined);
    return undefined;
  }
  return staged;
}

/**
 * The staged targets role, unless it is the one already published (left
 * behind by a publish killed before it removed the staged file).
 */
async function currentStagedTargets(
  repo: Repository,
): Promise<Metadata<Targets> | undefined> {
  const staged = await readStagedTargets(repo.layout);
  if (!staged) return undefined;
  const published = await repo.publishedTargets(TARGETS);
  if (
    published.signed.version === staged.signed.version &&
    canonicalBytes(targetsToJSON(published.signed)).equals(
      canonicalBytes(targetsToJSON(staged.signed)),
    )
  ) {
    log.warn(
      { version: staged.signed.version },
      'removing a staged targets role that is already published',
    );
    await unlink(stagedTargetsPath(repo.layout)).catch(() => undefined);
    return undefined;
  }
  return staged;
}

/**
 * A staged targets role is published as signed, once it carries a
 * threshold of valid signatures from the targets keys of the root it is
 * published under; keys this keyring holds add theirs first.
 */
async function acceptStagedTargets(
  repo: Repository,
  staged: Metadata<Targets>,
  root: Root,
  now: Date,
): Promise<void> {
  if (repo.hasDraft(TARGETS)) {
    throw new BadInputError(
      'targets has a draft and a staged edit; discard one of them',
    );
  }
  const published = (await repo.publishedTargets(TARGETS)).signed;
  checkStagedTargets(published, staged, now);
  const trust = roleKeysFor(root, TARGETS) as RoleKeys;
  if (repo.keyring) {
    // Keys whose signature is missing or does not verify (a damaged copy
    // merged in): the keyring's signature replaces a bad one.
    const wanted = verifyRole(TARGETS, staged, trust).unsigned;
    const { signers } = await repo.keyring.trySignersFor(wanted);
    for (const signer of signers) await addSignature(staged, signer);
  }
  dropStraySignatures(staged, [trust]);
  requireThreshold({
    ...verifyRole(TARGETS, staged, trust),
    role: `targets v${staged.signed.version}`,
  });
}

/**
 * Makes the staged targets role the working one and returns the roles its
 * new delegations require re-signed: each rekeyed role and, when the role
 * owning the hashed bins is one, every bin with its delegation rekeyed.
 */
async function applyTargetsEvent(
  repo: Repository,
  staged: Metadata<Targets>,
): Promise<string[]> {
  const published = (await repo.publishedTargets(TARGETS)).signed;
  repo.useWorking(TARGETS, staged.signed);
  const roles = rekeyedRoles(published, staged.signed);
  const bins = repo.config.bins;
  if (bins && roles.includes(bins.parent)) {
    const parent = await repo.workingTargets(bins.parent);
    const names = Object.keys(parent.delegations?.roles ?? {}).filter((n) =>
      n.startsWith(`${bins.parent}-bin-`),
    );
    const trust = roleKeysFor(staged.signed, bins.parent) as RoleKeys;
    repo.useWorking(bins.parent, rekeyBins(parent, names, trust));
    roles.push(...names);
  }
  return roles;
}

/**
 * Removes signatures by keys no trust set names: a holder who signed with
 * a key the event did not need adds nothing, and the published file should
 * not carry it.
 */
function dropStraySignatures(
  md: Metadata<AnySigned>,
  trust: readonly RoleKeys[],
): void {
  const trusted = new Set(trust.flatMap((t) => t.keys.map((k) => k.keyID)));
  for (const keyid of Object.keys(md.signatures)) {
    if (!trusted.has(keyid)) {
      log.info({ keyid }, 'dropping a signature by a key nothing trusts');
      delete md.signatures[keyid];
    }
  }
}

function keysChanged(before: Root, after: Root, role: string): boolean {
  const ids = (r: Root) => JSON.stringify(r.roles[role]?.toJSON() ?? null);
  return ids(before) !== ids(after);
}

/**
 * A staged root is published only as the very next version, with a
 * threshold of valid signatures from the published root's keys and from
 * its own; keys this keyring holds add their signatures first.
 */
async function acceptStagedRoot(
  repo: Repository,
  staged: Metadata<Root>,
  now: Date,
): Promise<Metadata<Root>> {
  const expected = repo.root.signed.version + 1;
  checkStagedRoot(repo.root.signed, staged, now);
  const trust = [
    roleKeysFor(repo.root.signed, ROOT) as RoleKeys,
    roleKeysFor(staged.signed, ROOT) as RoleKeys,
  ];
  if (repo.keyring) {
    const wanted = [
      ...new Set(trust.flatMap((t) => verifyRole(ROOT, staged, t).unsigned)),
    ];
    const { signers } = await repo.keyring.trySignersFor(wanted);
    for (const signer of signers) await addSignature(staged, signer);
  }
  dropStraySignatures(staged, trust);
  const labels = [
    `root v${expected} by the keys of root v${expected - 1}`,
    `root v${expected} by its own keys`,
  ];
  trust.forEach((t, i) =>
    requireThreshold({ ...verifyRole(ROOT, staged, t), role: labels[i] }),
  );
  return staged;
}

/**
 * Drafts are plain files on the writer's disk; before one is signed, every
 * entry that differs from the published role is held to the rules the
 * commands that write drafts follow: a valid path, owned by this role
 * through the delegations, stored under both hash names at its length. A
 * draft may not change delegations, which no draft-writing command does.
 */
async function checkDraft(
  repo: Repository,
  role: string,
  draft: Targets,
  published: Targets | undefined,
): Promise<void> {
  const refuse = (why: string) => {
    throw new CorruptMetadataError(
      `the draft of ${role} ${why}; drop it with "tufota discard ${role}"`,
    );
  };
  const delegations = (t: Targets | undefined) =>
    JSON.stringify(t?.delegations?.toJSON() ?? null);
  if (delegations(draft) !== delegations(published)) {
    refuse('changes delegations');
  }
  const extras = (t: Targets | undefined) =>
    JSON.stringify(t?.unrecognizedFields ?? {});
  // @tufjs/models keeps unknown fields, `_type` among them, and writes them
  // over its own: a draft may carry no field the published role lacks.
  if (extras(draft) !== extras(published)) refuse('adds fields to the role');
  const changed = Object.entries(draft.targets).filter(([path, target]) => {
    const before = published?.targets[path];
    return !(before && before.equals(target));
  });
  // A bulk import changes every entry of hundreds of bins: the stat calls
  // run side by side, the path checks are cheap.
  await mapLimit(changed, 64, async ([path, target]) => {
    try {
      checkTargetPath(path);
    } catch (err) {
      refuse(`lists a bad path: ${describeError(err)}`);
    }
    if ((await repo.ownerOf(path).catch(() => undefined)) !== role) {
      refuse(`lists ${path}, which the delegations do not give to ${role}`);
    }
    const algorithms = Object.keys(target.hashes).sort().join(',');
    if (algorithms !== 'sha256,sha512') {
      refuse(`lists ${path} with hashes ${algorithms}, not sha256 and sha512`);
    }
    const fields = Object.keys(target.unrecognizedFields);
    if (fields.some((f) => f !== 'custom')) {
      refuse(
        `lists ${path} with fields other than custom: ${fields.join(', ')}`,
      );
    }
    if (target.unrecognizedFields.custom !== undefined) {
      try {
        checkCustom(target.unrecognizedFields.custom);
      } catch (err) {
        refuse(`lists ${path} with bad ${describeError(err)}`);
      }
    }
    // Both names every client may build, at the listed length.
    for (const digest of [target.hashes.sha256, target.hashes.sha512]) {
      const file = join(
        repo.layout.targets,
        consistentTargetPath(path, digest),
      );
      const info = await stat(file).catch(() => undefined);
      if (!info || info.size !== target.length) {
        refuse(
          `lists ${path}, but ${file} is missing or not ${target.length} bytes`,
        );
      }
    }
  });
}

/**
 * A publish killed between timestamp.json and its kept copy leaves the
 * history one short; the next publish puts the copy back.
 */
async function keepTimestampCopy(repo: Repository): Promise<void> {
  const name = `${repo.timestamp.signed.version}.timestamp.json`;
  try {
    await stat(repo.layout.metadataFile(name));
  } catch {
    log.warn({ file: name }, 'restoring the kept copy of the timestamp');
    await writeFileAtomic(
      repo.layout.metadataFile(name),
      serializeMetadata(repo.timestamp),
    );
  }
}

/** Removes temporary files a killed writer left in metadata/. */
async function cleanTemporaries(layout: Layout): Promise<void> {
  let names: string[];
  try {
    names = await readdir(layout.metadata);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) {
      log.info({ file: name }, 'removing a temporary file left by a crash');
      await unlink(layout.metadataFile(name)).catch(() => undefined);
    }
  }
}
