/**
 * Revoking a compromised key: every role that trusts it loses it (and gets
 * a replacement when one is given), as staged signing events. Once they are
 * signed, `tufota publish` re-signs every role the key signed: a new root
 * is published, roles whose keys changed are signed by their new keys, and
 * a rekeyed role that owns hashed bins takes every bin with it.
 */
import { BadInputError, NotFoundError, describeError } from '../errors.js';
import { publicIdentity } from '../tuf/metadata.js';
import type { Key, Metadata, Root, Targets } from '../tuf/models.js';
import { TARGETS } from '../tuf/roles.js';
import type { KeyEdit } from './key-edit.js';
import type { Repository } from './repository.js';
import { prepareRootEdit, readStagedRoot, stagedRootPath } from './signing.js';
import {
  prepareTargetsEdit,
  readStagedTargets,
  stagedTargetsPath,
} from './targets-event.js';

export interface RevocationPlan {
  keyid: string;
  /** The roles that trusted the key, as `ROLE` or `targets/ROLE`. */
  roles: string[];
  root?: Metadata<Root>;
  targets?: Metadata<Targets>;
  /** Where each staged file goes. */
  paths: { root: string; targets: string };
}

function holders(
  roles: Record<string, { keyIDs: string[] }>,
  keyid: string,
): string[] {
  return Object.entries(roles)
    .filter(([, r]) => r.keyIDs.includes(keyid))
    .map(([name]) => name);
}

/**
 * Plans the revocation of the key whose id is or starts with `prefix`,
 * against the staged files where there are some, else the published ones.
 * Nothing is written.
 */
export async function planRevocation(
  repo: Repository,
  prefix: string,
  replacement?: Key,
): Promise<RevocationPlan> {
  const root = (await readStagedRoot(repo.layout))?.signed ?? repo.root.signed;
  const targets =
    (await readStagedTargets(repo.layout))?.signed ??
    (await repo.publishedTargets(TARGETS)).signed;
  const delegationKeys = targets.delegations?.keys ?? {};
  const ids = [
    ...new Set([...Object.keys(root.keys), ...Object.keys(delegationKeys)]),
  ].filter((id) => prefix.length > 0 && id.startsWith(prefix));
  if (ids.length === 0) {
    throw new NotFoundError(
      `no role trusts a key whose id starts with ${prefix}`,
    );
  }
  if (ids.length > 1) {
    throw new BadInputError(
      `${prefix} is the start of ${ids.length} key ids; give more of it`,
    );
  }
  const keyid = ids[0];
  // Re-adding the revoked key (or its public key under another id) would
  // stage a "revocation" that still trusts it.
  const revoked = root.keys[keyid] ?? delegationKeys[keyid];
  if (
    replacement &&
    (replacement.keyID === keyid ||
      publicIdentity(replacement) === publicIdentity(revoked))
  ) {
    throw new BadInputError(
      `the replacement for ${keyid.slice(0, 8)} is that same key; give a ` +
        'new key',
    );
  }
  const topLevel = holders(root.roles, keyid);
  const delegated = holders(targets.delegations?.roles ?? {}, keyid);
  if (replacement && topLevel.length + delegated.length > 1) {
    throw new BadInputError(
      `key ${keyid} serves ${[...topLevel, ...delegated].join(' and ')}; ` +
        'a replacement can stand in for one role only: revoke without one, ' +
        'then add keys with "root edit" and "targets edit"',
    );
  }
  const editFor = (roles: string[]): KeyEdit => ({
    removeKeys: roles.map((role) => ({ role, keyid })),
    addKeys: replacement
      ? roles.map((role) => ({ role, key: replacement }))
      : [],
  });
  const explain = (err: unknown): never => {
    // A replacement is suggested only when none was given: when one was,
    // the problem may be the replacement itself.
    const hint = replacement
      ? ''
      : '; give a replacement with --replace-with or --generate';
    throw new BadInputError(
      `revoking ${keyid.slice(0, 8)}: ${describeError(err)}${hint}`,
      { cause: err },
    );
  };
  const plan: RevocationPlan = {
    keyid,
    roles: [...topLevel, ...delegated.map((r) => `${TARGETS}/${r}`)],
    paths: {
      root: stagedRootPath(repo.layout),
      targets: stagedTargetsPath(repo.layout),
    },
  };
  if (topLevel.length > 0) {
    plan.root = await prepareRootEdit(repo, editFor(topLevel)).catch(explain);
  }
  // A targets key's removal means targets must be signed again by what
  // remains; with the targets keys offline, that is a signing event too.
  if (delegated.length > 0 || topLevel.includes(TARGETS)) {
    plan.targets = await prepareTargetsEdit(repo, editFor(delegated)).catch(
      explain,
    );
  }
  return plan;
}
