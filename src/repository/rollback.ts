/**
 * Signs that metadata/ is older than what was once published there: a
 * folder restored from a backup, or files copied back by hand. Publishing on
 * top of it would overwrite versioned files clients already hold, and every
 * client that saw the newer versions would refuse all later updates.
 *
 * A publish killed part-way leaves at most one unreferenced version above
 * the current one of each role it was writing, and never a kept timestamp
 * above timestamp.json (that copy is written after it), so those are the
 * limits here.
 */
import type { PublishedRecord } from './layout.js';

const VERSIONED = /^(\d+)\.([a-z0-9][a-z0-9-]*)\.json$/;

export interface CurrentVersions {
  root: number;
  timestamp: number;
  snapshot: number;
  /** Targets roles to the version the current snapshot lists. */
  roles: Record<string, number>;
}

/** Reasons to believe `names` (metadata/ file names) hold a rollback. */
export function rollbackSigns(
  names: readonly string[],
  current: CurrentVersions,
  record: PublishedRecord | undefined,
): string[] {
  const signs: string[] = [];
  for (const name of names) {
    const match = VERSIONED.exec(name);
    if (!match) continue;
    const version = Number(match[1]);
    const role = match[2];
    if (role === 'root') continue; // the chain itself is the newest root
    if (role === 'timestamp') {
      if (version > current.timestamp) {
        signs.push(
          `${name} is kept but timestamp.json is version ${current.timestamp}`,
        );
      }
      continue;
    }
    const listed = role === 'snapshot' ? current.snapshot : current.roles[role];
    if (listed !== undefined && version >= listed + 2) {
      signs.push(`${name} exists but the current ${role} is version ${listed}`);
    }
  }
  if (record) {
    for (const role of ['root', 'snapshot', 'timestamp'] as const) {
      if (current[role] < record[role]) {
        signs.push(
          `${role} is version ${current[role]}, ${record[role]} was published`,
        );
      }
    }
  }
  return signs;
}
