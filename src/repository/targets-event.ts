/**
 * Signing events for the top-level targets role, whose keys stay offline
 * like root's: `tufota targets edit` stages the next version with the keys
 * or thresholds of the roles it delegates to changed (or nothing changed,
 * to renew its expiry), key holders sign copies with `tufota sign`, and
 * `tufota publish` takes it as signed, once root's targets threshold is
 * met.
 *
 * What a delegated role's new keys mean for the roles below it is done at
 * publish: the role is re-signed by its new keys and, for the role that owns
 * the hashed bins, the bins' delegations follow its keys and every bin is
 * re-signed (see `publish.ts`).
 *
 * A targets edit changes keys and thresholds only. Delegated paths, new
 * delegated roles and target entries of the top-level role stay as
 * published: changing which role owns which path moves targets between
 * roles, which needs its own command.
 */
import { join } from 'node:path';
import { BadInputError, describeError } from '../errors.js';
import { canonicalBytes } from '../tuf/canonical.js';
import { expiresAt, expiresProblem } from '../tuf/expiry.js';
import {
  copyTargets,
  parseMetadata,
  roleKeysFor,
  targetsToJSON,
  verifyRole,
  type RoleKeys,
  type VerificationResult,
} from '../tuf/metadata.js';
import {
  DelegatedRole,
  Delegations,
  Metadata,
  MetadataKind,
  Targets,
  type Root,
} from '../tuf/models.js';
import { TARGETS } from '../tuf/roles.js';
import {
  applyKeyEdit,
  keyExtrasProblem,
  keyIdProblem,
  keyTableProblem,
  sharedKey,
  type KeyEdit,
  type KeyTable,
} from './key-edit.js';
import type { Layout } from './layout.js';
import type { Repository } from './repository.js';
import {
  parseStaged,
  readStagedFile,
  readStagedRoot,
  stageMetadata,
} from './signing.js';

function canonical(value: unknown): string {
  return canonicalBytes(value as Parameters<typeof canonicalBytes>[0]).toString(
    'utf8',
  );
}

export function stagedTargetsPath(layout: Layout): string {
  return join(layout.state, 'staged', 'targets.json');
}

/** The staged targets role, or undefined when none is staged. */
export async function readStagedTargets(
  layout: Layout,
): Promise<Metadata<Targets> | undefined> {
  const path = stagedTargetsPath(layout);
  const bytes = await readStagedFile(path);
  return (
    bytes &&
    parseStaged(TARGETS, () => parseMetadata(MetadataKind.Targets, bytes, path))
  );
}

export interface TargetsEdit extends KeyEdit {
  /** Expiry period of the new version, in milliseconds. */
  period?: number;
  now?: Date;
}

function tableOf(delegations: Delegations | undefined): KeyTable {
  return {
    keys: delegations?.keys ?? {},
    roles: Object.fromEntries(
      Object.entries(delegations?.roles ?? {}).map(([name, r]) => [
        name,
        { keyIDs: r.keyIDs, threshold: r.threshold },
      ]),
    ),
  };
}

/**
 * The next targets version with `edit` applied to the staged one if there
 * is one, else to the published one. Nothing is written; `stageMetadata`
 * does that.
 */
export async function prepareTargetsEdit(
  repo: Repository,
  edit: TargetsEdit,
): Promise<Metadata<Targets>> {
  if (repo.hasDraft(TARGETS)) {
    throw new BadInputError(
      'targets has unpublished changes; publish or discard them before ' +
        'staging a targets edit',
    );
  }
  const published = (await repo.publishedTargets(TARGETS)).signed;
  const base =
    (await readStagedTargets(repo.layout))?.signed ?? copyTargets(published);
  const delegated = Object.keys(base.delegations?.roles ?? {});
  const table = applyKeyEdit(
    tableOf(base.delegations),
    edit,
    delegated,
    'role delegated by targets',
  );
  const delegations = base.delegations
    ? new Delegations({
        keys: table.keys,
        roles: Object.fromEntries(
          Object.entries(base.delegations.roles ?? {}).map(([name, r]) => [
            name,
            new DelegatedRole({
              name,
              keyIDs: table.roles[name].keyIDs,
              threshold: table.roles[name].threshold,
              terminating: r.terminating,
              paths: r.paths,
              pathHashPrefixes: r.pathHashPrefixes,
              unrecognizedFields: r.unrecognizedFields,
            }),
          ]),
        ),
        unrecognizedFields: base.delegations.unrecognizedFields,
      })
    : undefined;
  const root = (await readStagedRoot(repo.layout))?.signed ?? repo.root.signed;
  const shared = sharedKey(table.keys, root.keys);
  if (shared) {
    throw new BadInputError(
      `key ${shared.a} already serves a top-level role in root; a key may ` +
        'serve one role only',
    );
  }
  const now = edit.now ?? new Date();
  return new Metadata(
    new Targets({
      version: published.version + 1,
      specVersion: base.specVersion,
      expires: expiresAt(now, edit.period ?? repo.config.expiry.targets.period),
      targets: base.targets,
      delegations,
      unrecognizedFields: base.unrecognizedFields,
    }),
  );
}

/** `prepareTargetsEdit`, then stages the result. */
export async function editTargets(
  repo: Repository,
  edit: TargetsEdit,
): Promise<Metadata<Targets>> {
  const staged = await prepareTargetsEdit(repo, edit);
  await stageMetadata(stagedTargetsPath(repo.layout), staged);
  return staged;
}

/** A delegation's fields other than its keys and threshold. */
function placement(role: DelegatedRole): string {
  return canonical({
    terminating: role.terminating,
    paths: role.paths ?? null,
    prefixes: role.pathHashPrefixes ?? null,
    extra: role.unrecognizedFields ?? {},
  });
}

/**
 * What a staged targets role must be before anyone's signature publishes
 * it: the next version, not expired, listing the same targets and
 * delegating the same paths to the same roles as the published one, with
 * every threshold reachable and no public key under two ids.
 */
export function checkStagedTargets(
  published: Targets,
  staged: Metadata<Targets>,
  now: Date,
): void {
  const refuse = (why: string) => {
    throw new BadInputError(
      `the staged targets role ${why}; stage it again with ` +
        '"tufota targets edit"',
    );
  };
  const t = staged.signed;
  if (t.version !== published.version + 1) {
    refuse(
      `is version ${t.version}; the next targets must be version ` +
        `${published.version + 1}`,
    );
  }
  const badExpiry = expiresProblem(t.expires, now);
  if (badExpiry) refuse(`says ${badExpiry}`);
  if (t.isExpired(now)) refuse(`expired at ${t.expires}`);
  // Compared canonically: a holder's tool may write keys in another order.
  const entries = (x: Targets) => {
    const json = targetsToJSON(x);
    return canonical({
      targets: json.targets,
      extra: x.unrecognizedFields,
    });
  };
  if (entries(t) !== entries(published)) {
    refuse('lists other targets or fields than the published one');
  }
  const before = published.delegations?.roles ?? {};
  const after = t.delegations?.roles ?? {};
  const names = (r: Record<string, DelegatedRole>) => Object.keys(r).join(',');
  if (names(before) !== names(after)) {
    refuse(`delegates to ${names(after) || 'nobody'}, not ${names(before)}`);
  }
  for (const [name, role] of Object.entries(after)) {
    if (placement(role) !== placement(before[name])) {
      refuse(`changes the paths delegated to ${name}`);
    }
  }
  const extra = (x: Targets) =>
    canonical(x.delegations?.unrecognizedFields ?? {});
  if (t.delegations?.succinctRoles || extra(t) !== extra(published)) {
    refuse('adds fields to its delegations');
  }
  const table = tableOf(t.delegations);
  const problem =
    keyTableProblem(table) ??
    keyIdProblem(table.keys) ??
    keyExtrasProblem(table);
  if (t.specVersion !== published.specVersion) {
    refuse(`changes spec_version to ${t.specVersion}`);
  }
  if (problem) refuse(problem);
}

export interface TargetsSigningStatus {
  version: number;
  own: VerificationResult;
  /** Why publish would refuse the staged file whatever its signatures. */
  problem?: string;
  ready: boolean;
}

/**
 * Who has signed the staged targets, against `root`'s targets role, and
 * whether publish would take it over `published`.
 */
export function targetsSigningStatus(
  root: Root,
  published: Targets,
  staged: Metadata<Targets>,
  now = new Date(),
): TargetsSigningStatus {
  const own = verifyRole(
    TARGETS,
    staged,
    roleKeysFor(root, TARGETS) as RoleKeys,
  );
  let problem: string | undefined;
  try {
    checkStagedTargets(published, staged, now);
  } catch (err) {
    problem = describeError(err);
  }
  return {
    version: staged.signed.version,
    own,
    problem,
    ready: own.verified && !problem,
  };
}

/**
 * The roles `staged` delegates to whose keys or threshold differ from the
 * published delegations: each must be signed anew by its new keys.
 */
export function rekeyedRoles(published: Targets, staged: Targets): string[] {
  const trust = (t: Targets, name: string) => {
    const r = t.delegations?.roles?.[name];
    if (!r) return 'none';
    const keys = r.keyIDs.map(
      (id) => t.delegations?.keys[id]?.toJSON() ?? null,
    );
    return canonical({ ids: [...r.keyIDs].sort(), keys, t: r.threshold });
  };
  return Object.keys(staged.delegations?.roles ?? {}).filter(
    (name) => trust(published, name) !== trust(staged, name),
  );
}

/**
 * `parent` with its delegations to `bins` given the keys and threshold of
 * `trust`: the hashed bins are signed by the keys of the role that owns
 * them, so they follow when that role's keys rotate.
 */
export function rekeyBins(
  parent: Targets,
  bins: readonly string[],
  trust: RoleKeys,
): Targets {
  const copy = copyTargets(parent);
  const roles = copy.delegations?.roles ?? {};
  const rekeyed: Record<string, DelegatedRole> = {};
  for (const [name, r] of Object.entries(roles)) {
    rekeyed[name] = bins.includes(name)
      ? new DelegatedRole({
          name,
          keyIDs: trust.keys.map((k) => k.keyID),
          threshold: trust.threshold,
          terminating: r.terminating,
          paths: r.paths,
          pathHashPrefixes: r.pathHashPrefixes,
          unrecognizedFields: r.unrecognizedFields,
        })
      : r;
  }
  const used = new Set(Object.values(rekeyed).flatMap((r) => r.keyIDs));
  const keys = Object.fromEntries([
    ...Object.entries(copy.delegations?.keys ?? {}).filter(([id]) =>
      used.has(id),
    ),
    ...trust.keys.map((k) => [k.keyID, k] as const),
  ]);
  return new Targets({
    version: copy.version,
    specVersion: copy.specVersion,
    expires: copy.expires,
    targets: copy.targets,
    delegations: new Delegations({
      keys,
      roles: rekeyed,
      unrecognizedFields: copy.delegations?.unrecognizedFields,
    }),
    unrecognizedFields: copy.unrecognizedFields,
  });
}
