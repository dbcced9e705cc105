/**
 * What a repository's roles look like right now: versions, keys, thresholds,
 * valid signatures and time to expiry, with roles inside their refresh
 * window flagged.
 */
import { expiryKeyFor, msUntil } from '../tuf/expiry.js';
import {
  roleKeysFor,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import type { Metadata } from '../tuf/models.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import type { Repository } from './repository.js';

export interface RoleStatus {
  role: string;
  version: number;
  expires: string;
  /** Milliseconds until expiry; negative once expired. */
  expiresIn: number;
  expired: boolean;
  needsRefresh: boolean;
  keyids: string[];
  threshold: number;
  /** Key ids with a valid signature on the published version. */
  signedBy: string[];
  /** Whether unpublished changes are waiting in a draft. */
  pending: boolean;
}

export interface RepositoryStatus {
  dir: string;
  now: string;
  roles: RoleStatus[];
  pending: string[];
}

function describe(
  role: string,
  md: Metadata<AnySigned>,
  trust: RoleKeys,
  repo: Repository,
  now: Date,
): RoleStatus {
  const expiresIn = msUntil(md.signed.expires, now);
  const window = repo.config.expiry[expiryKeyFor(role)].refreshWindow;
  const result = verifyRole(role, md, trust);
  return {
    role,
    version: md.signed.version,
    expires: md.signed.expires,
    expiresIn,
    expired: expiresIn <= 0,
    needsRefresh: expiresIn <= window,
    keyids: trust.keys.map((k) => k.keyID),
    threshold: trust.threshold,
    signedBy: result.signed,
    pending: repo.hasDraft(role),
  };
}

export async function repositoryStatus(
  repo: Repository,
  now = new Date(),
): Promise<RepositoryStatus> {
  const root = repo.root.signed;
  const rootKeys = (role: string) => roleKeysFor(root, role) as RoleKeys;
  const roles: RoleStatus[] = [
    describe(ROOT, repo.root, rootKeys(ROOT), repo, now),
    describe(TIMESTAMP, repo.timestamp, rootKeys(TIMESTAMP), repo, now),
    describe(SNAPSHOT, repo.snapshot, rootKeys(SNAPSHOT), repo, now),
  ];
  // Delegators before the roles they delegate to, as clients walk them.
  const order = repo
    .publishedRoles()
    .sort((a, b) =>
      a === TARGETS ? -1 : b === TARGETS ? 1 : a.localeCompare(b),
    );
  for (const role of order) {
    const md = await repo.publishedTargets(role);
    let trust: RoleKeys;
    if (role === TARGETS) {
      trust = rootKeys(TARGETS);
    } else {
      const parent = await repo.delegatorOf(role, 'published');
      const parentMd = await repo.publishedTargets(parent);
      trust = roleKeysFor(parentMd.signed, role) as RoleKeys;
    }
    roles.push(describe(role, md, trust, repo, now));
  }
  return {
    dir: repo.layout.root,
    now: now.toISOString(),
    roles,
    pending: repo.pendingRoles(),
  };
}
