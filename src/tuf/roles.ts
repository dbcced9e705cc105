/**
 * Role names and the fixed shape of a tufota repository. Top-level roles are
 * the four the TUF specification defines; `releases` and `rollouts` are the
 * delegations every tufota repository starts with.
 */

export const ROOT = 'root';
export const TARGETS = 'targets';
export const SNAPSHOT = 'snapshot';
export const TIMESTAMP = 'timestamp';
export const RELEASES = 'releases';
export const ROLLOUTS = 'rollouts';

export const TOP_LEVEL_ROLES = [ROOT, TARGETS, SNAPSHOT, TIMESTAMP] as const;
export type TopLevelRole = (typeof TOP_LEVEL_ROLES)[number];

/** Roles whose keys are meant to stay offline. */
export const OFFLINE_ROLES: readonly string[] = [ROOT, TARGETS];

/** The path patterns each starting delegation is trusted for. */
export const DELEGATED_PATHS: Readonly<Record<string, string[]>> = {
  [RELEASES]: ['images/*'],
  [ROLLOUTS]: ['rollouts/*'],
};

// Role names become file names (`N.NAME.json`) and URL path segments, so
// they are kept to characters that need no escaping anywhere.
const ROLE_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function isValidRoleName(name: string): boolean {
  return ROLE_NAME.test(name);
}

export function isTopLevelRole(name: string): name is TopLevelRole {
  return (TOP_LEVEL_ROLES as readonly string[]).includes(name);
}
