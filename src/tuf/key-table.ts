/**
 * A table of keys and the roles that trust them: root's `keys` and
 * `roles`, or a targets role's delegations. Pure, so the device client
 * checks what it fetches by the same rules the repository publishes by.
 */
import { comparableKey, publicIdentity } from './metadata.js';
import type { Key } from './models.js';

export interface KeyTable {
  keys: Record<string, Key>;
  roles: Record<string, { keyIDs: string[]; threshold: number }>;
}

/**
 * What any key table must be for its file to publish: every role's key ids
 * listed in the key map, each threshold reachable, every key of a kind
 * that can be compared, no public key under two ids. Returns the first problem, worded to follow "the staged file ...".
 */
export function keyTableProblem(table: KeyTable): string | undefined {
  for (const [name, role] of Object.entries(table.roles)) {
    const present = role.keyIDs.filter((id) => Object.hasOwn(table.keys, id));
    if (present.length < role.threshold || role.threshold < 1) {
      return (
        `gives ${name} a threshold of ${role.threshold} with ` +
        `${present.length} keys`
      );
    }
  }
  const identities = new Map<string, string>();
  for (const key of Object.values(table.keys)) {
    if (!comparableKey(key)) {
      return (
        `lists key ${key.keyID} (${key.keyType}, ${key.scheme}), which is ` +
        'not an ed25519, P-256 or RSA key in a form that can be told apart ' +
        'from the others'
      );
    }
    const identity = publicIdentity(key);
    const other = identities.get(identity);
    if (other) {
      return `lists one public key under two ids, ${other} and ${key.keyID}`;
    }
    identities.set(identity, key.keyID);
  }
  return undefined;
}
