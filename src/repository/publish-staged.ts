/**
 * Signing events at publish time: a staged root or targets role is taken
 * as its holders signed it, once its thresholds are met, and what its new
 * keys call for (re-signed roles, rekeyed bins) is worked out here.
 */
import type { Metadata, Root, Targets } from '@tufjs/models';
import { unlink } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { logger } from '../log.js';
import {
  addSignature,
  requireThreshold,
  roleKeysFor,
  targetsToJSON,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import { ROOT, TARGETS } from '../tuf/roles.js';
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
import type { Repository } from './repository.js';

const log = logger.child({ module: 'repository/publish-staged' });

/**
 * The staged root, unless it is the root already published: a publish
 * killed after writing the new root but before removing the staged file
 * leaves that behind, and it must not block every later publish.
 */
export async function currentStagedRoot(
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
export async function currentStagedTargets(
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
export async function acceptStagedTargets(
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
  const shared = sharedKey(staged.signed.delegations?.keys ?? {}, root.keys);
  if (shared) {
    throw new BadInputError(
      `the staged targets gives key ${shared.a} to a delegated role while ` +
        `root v${root.version} has it for a top-level role; a key may serve ` +
        'one role only',
    );
  }
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
export async function applyTargetsEvent(
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
export function dropStraySignatures(
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

export function keysChanged(before: Root, after: Root, role: string): boolean {
  const ids = (r: Root) => JSON.stringify(r.roles[role]?.toJSON() ?? null);
  return ids(before) !== ids(after);
}

/**
 * A staged root is published only as the very next version, with a
 * threshold of valid signatures from the published root's keys and from
 * its own; keys this keyring holds add their signatures first.
 */
export async function acceptStagedRoot(
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
