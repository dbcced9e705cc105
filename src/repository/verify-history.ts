/**
 * Checks every published version that is kept, not only the current ones:
 * each `N.ROLE.json` must parse as that role's metadata with version N and
 * carry a threshold of signatures from keys that some version of its
 * delegator trusted (some root in the chain, for top-level roles). Which
 * delegator version was current when a file was signed is not recorded, so
 * any version of the delegator vouches for it: this finds forged and
 * corrupted history, not a key that signed after it was revoked.
 */
import { readFile, readdir } from 'node:fs/promises';
import { describeError } from '../errors.js';
import {
  parseMetadata,
  roleKeysFor,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import { MetadataKind, type Metadata, type Root } from '../tuf/models.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import { TEMP_PREFIX } from './atomic.js';
import type { Layout } from './layout.js';

const VERSIONED = /^(\d+)\.([a-z0-9][a-z0-9-]*)\.json$/;

function kindOf(role: string): MetadataKind {
  if (role === TIMESTAMP) return MetadataKind.Timestamp;
  if (role === SNAPSHOT) return MetadataKind.Snapshot;
  return MetadataKind.Targets;
}

export interface HistoryReport {
  files: number;
  problems: string[];
}

export async function verifyHistory(
  layout: Layout,
  roots: readonly Metadata<Root>[],
): Promise<HistoryReport> {
  const problems: string[] = [];
  const names = (await readdir(layout.metadata)).sort();
  const newestRoot = roots[roots.length - 1];

  const parsed = new Map<
    string,
    { version: number; md: Metadata<AnySigned> }[]
  >();
  let files = 0;
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX) || name === 'timestamp.json') continue;
    if (name === 'root.json') {
      const copy = await readFile(layout.metadataFile(name));
      const newest = await readFile(
        layout.metadataFile(`${newestRoot.signed.version}.root.json`),
      );
      if (!copy.equals(newest)) {
        problems.push(
          `root.json differs from ${newestRoot.signed.version}.root.json, ` +
            'the newest root',
        );
      }
      continue;
    }
    const match = VERSIONED.exec(name);
    if (!match) {
      problems.push(`${name}: not a file a TUF repository publishes`);
      continue;
    }
    const [, versionText, role] = match;
    if (role === ROOT) {
      // The chain was walked from 1 until the first missing version; a
      // root file beyond that gap is not part of it.
      if (Number(versionText) > roots.length) {
        problems.push(
          `${name}: not part of the root chain ` +
            `(${roots.length + 1}.root.json is missing)`,
        );
      }
      continue;
    }
    files++;
    const version = Number(versionText);
    let md: Metadata<AnySigned>;
    try {
      md = parseMetadata(
        kindOf(role) as MetadataKind.Targets,
        await readFile(layout.metadataFile(name)),
        name,
      );
    } catch (err) {
      problems.push(describeError(err));
      continue;
    }
    if (md.signed.type !== kindOf(role)) {
      problems.push(`${name}: is of type ${md.signed.type}`);
      continue;
    }
    if (md.signed.version !== version) {
      problems.push(`${name}: has version ${md.signed.version}`);
      continue;
    }
    const list = parsed.get(role) ?? [];
    list.push({ version, md });
    parsed.set(role, list);
  }

  // Every version is kept, so each role's versions run from 1 without a
  // gap. (Rolled-back versions are judged by rollback.ts.)
  for (const [role, versions] of parsed) {
    const have = new Set(versions.map((v) => v.version));
    const newest = Math.max(...have);
    for (let v = 1; v < newest; v++) {
      if (!have.has(v))
        problems.push(`${v}.${role}.json is missing from the kept versions`);
    }
  }

  // Who may have signed each role: every root for top-level roles, every
  // kept version of a delegator for the roles it delegates to.
  const trusted = new Map<string, RoleKeys[]>();
  const addTrust = (role: string, keys: RoleKeys | undefined) => {
    if (!keys) return;
    const list = trusted.get(role) ?? [];
    list.push(keys);
    trusted.set(role, list);
  };
  for (const root of roots) {
    for (const role of [TARGETS, SNAPSHOT, TIMESTAMP]) {
      addTrust(role, roleKeysFor(root.signed, role));
    }
  }
  for (const versions of parsed.values()) {
    for (const { md } of versions) {
      if (md.signed.type !== MetadataKind.Targets) continue;
      const signed = md.signed;
      for (const child of Object.keys(signed.delegations?.roles ?? {})) {
        addTrust(child, roleKeysFor(signed, child));
      }
    }
  }

  for (const [role, versions] of parsed) {
    const candidates = trusted.get(role) ?? [];
    for (const { version, md } of versions) {
      const ok = candidates.some((keys) => verifyRole(role, md, keys).verified);
      if (!ok) {
        problems.push(
          `${version}.${role}.json: no kept version of its delegator ` +
            'trusts enough of the keys that signed it',
        );
      }
    }
  }
  return { files, problems };
}
