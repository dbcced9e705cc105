/**
 * Editing a table of keys and roles: root's top-level roles, or the roles a
 * targets role delegates to. Both signing events (`root edit`, `targets
 * edit`) apply the same rules, and both staged files are checked against
 * them again before they publish, since a staged file may be edited by hand.
 */
import { BadInputError } from '../errors.js';
import { publicIdentity } from '../tuf/metadata.js';
import type { Key } from '../tuf/models.js';
import { computeKeyId } from '../tuf/canonical.js';
import type { KeyTable } from '../tuf/key-table.js';

export { keyTableProblem, type KeyTable } from '../tuf/key-table.js';

export interface KeyEdit {
  addKeys?: { role: string; key: Key }[];
  /** A key id or a unique prefix of one. */
  removeKeys?: { role: string; keyid: string }[];
  thresholds?: Record<string, number>;
}

/**
 * Applies `edit` to a copy of `table`. `roleNames` are the roles the edit
 * may touch; `kind` names them in messages ("top-level role").
 */
export function applyKeyEdit(
  table: KeyTable,
  edit: KeyEdit,
  roleNames: readonly string[],
  kind: string,
): KeyTable {
  const keys: Record<string, Key> = { ...table.keys };
  const roles: KeyTable['roles'] = {};
  for (const [name, role] of Object.entries(table.roles)) {
    roles[name] = { keyIDs: [...role.keyIDs], threshold: role.threshold };
  }
  const roleOf = (name: string) => {
    const role = Object.hasOwn(roles, name) ? roles[name] : undefined;
    if (!role || !roleNames.includes(name)) {
      throw new BadInputError(
        `${name} is not a ${kind}; one of ${roleNames.join(', ')}`,
      );
    }
    return role;
  };

  for (const { role, keyid } of edit.removeKeys ?? []) {
    const r = roleOf(role);
    const match = r.keyIDs.filter((id) => id.startsWith(keyid));
    if (keyid.length === 0 || match.length !== 1) {
      throw new BadInputError(
        `--remove-key ${role}=${keyid}: ` +
          `${match.length === 0 ? 'no' : 'more than one'} key of ${role} ` +
          'has that id',
      );
    }
    r.keyIDs = r.keyIDs.filter((id) => id !== match[0]);
  }
  for (const { role, key } of edit.addKeys ?? []) {
    const r = roleOf(role);
    if (r.keyIDs.includes(key.keyID)) {
      throw new BadInputError(`key ${key.keyID} is already a ${role} key`);
    }
    // The same public key under another id would count twice with clients
    // that count key ids (tuf-js does).
    const twin = Object.values(keys).find(
      (k) => k.keyID !== key.keyID && publicIdentity(k) === publicIdentity(key),
    );
    if (twin) {
      throw new BadInputError(
        `key ${key.keyID} is the same public key as ${twin.keyID}, ` +
          'already listed under another id',
      );
    }
    for (const [other, o] of Object.entries(roles)) {
      if (other !== role && o.keyIDs.includes(key.keyID)) {
        throw new BadInputError(
          `key ${key.keyID} is already a ${other} key; a key may serve one ` +
            'role only',
        );
      }
    }
    r.keyIDs.push(key.keyID);
    keys[key.keyID] = key;
  }
  for (const [role, threshold] of Object.entries(edit.thresholds ?? {})) {
    roleOf(role).threshold = threshold;
  }
  for (const [name, r] of Object.entries(roles)) {
    const problem = thresholdProblem(r.keyIDs.length, r.threshold);
    if (problem) throw new BadInputError(`${name}: ${problem}`);
  }
  // Keys no role uses any more are dropped from the key list.
  const used = new Set(Object.values(roles).flatMap((r) => r.keyIDs));
  for (const id of Object.keys(keys)) if (!used.has(id)) delete keys[id];
  return { keys, roles };
}

function thresholdProblem(keys: number, threshold: number): string | undefined {
  if (keys === 0) return 'would be left with no keys';
  if (!Number.isInteger(threshold) || threshold < 1) {
    return 'threshold must be at least 1';
  }
  if (threshold > keys) {
    return (
      `threshold ${threshold} is above its key count ${keys}; the role ` +
      'could never be signed'
    );
  }
  return undefined;
}

/**
 * A key both tables list (by its public key, not its id), or undefined. A
 * key serves one role: a releases key that also signed as targets would
 * let the online release team rewrite the delegations.
 */
export function sharedKey(
  a: Record<string, Key>,
  b: Record<string, Key>,
): { a: string; b: string } | undefined {
  const ids = new Map(Object.values(b).map((k) => [publicIdentity(k), k]));
  for (const key of Object.values(a)) {
    const twin = ids.get(publicIdentity(key));
    if (twin) return { a: key.keyID, b: twin.keyID };
  }
  return undefined;
}

/**
 * A key whose id is not the hash of the key itself, as every key tufota
 * writes has: an id chosen freely could be made to look like another
 * key's in the short form people compare.
 */
export function keyIdProblem(keys: Record<string, Key>): string | undefined {
  for (const [id, key] of Object.entries(keys)) {
    if (computeKeyId(key) !== id) {
      return `lists key ${id}, which is not the hash of its key`;
    }
  }
  return undefined;
}

/**
 * Keys no role uses, and fields tufota never writes inside keys: neither
 * changes what verifies, but a hand-edited file that carries them was
 * not made by an edit, and would publish more than the holders meant to
 * sign.
 */
export function keyExtrasProblem(table: KeyTable): string | undefined {
  const used = new Set(Object.values(table.roles).flatMap((r) => r.keyIDs));
  for (const [id, key] of Object.entries(table.keys)) {
    if (!used.has(id)) return `lists key ${id}, which no role uses`;
    if (Object.keys(key.unrecognizedFields ?? {}).length > 0) {
      return `adds fields to key ${id}`;
    }
  }
  return undefined;
}
