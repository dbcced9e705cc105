/**
 * Checks a published repository the way a client would, starting from
 * `1.root.json` and trusting nothing else: the root chain, timestamp,
 * snapshot, every targets role reached through delegations, expiry, and
 * every listed target file's length and hashes. Unlike a client it does not
 * stop at the first fault; it lists every problem it finds.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NotARepositoryError, describeError } from '../errors.js';
import {
  parseMetadata,
  publicIdentity,
  roleKeysFor,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import {
  MetadataKind,
  type DelegatedRole,
  type Metadata,
  type Root,
  type TargetFile,
  type Targets,
} from '../tuf/models.js';
import { expiresProblem } from '../tuf/expiry.js';
import { consistentTargetPath } from '../tuf/paths.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from '../tuf/roles.js';
import { Layout, readPublishedRecord } from './layout.js';
import { mapLimit } from './limit.js';
import { rollbackSigns } from './rollback.js';
import { verifyHistory } from './verify-history.js';

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  rootVersion: number;
  roles: number;
  targets: number;
  targetBytes: number;
  /** Kept versioned files checked, beyond the root chain. */
  historyFiles: number;
}

export interface VerifyOptions {
  now?: Date;
  /** Skip hashing target files (metadata checks only). */
  skipTargets?: boolean;
  /** Skip checking the kept versions that are no longer current. */
  skipHistory?: boolean;
}

async function tryRead(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function hashFile(
  path: string,
): Promise<{ length: number; sha256: string; sha512: string } | undefined> {
  const sha256 = createHash('sha256');
  const sha512 = createHash('sha512');
  let length = 0;
  try {
    for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
      sha256.update(chunk);
      sha512.update(chunk);
      length += chunk.length;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return { length, sha256: sha256.digest('hex'), sha512: sha512.digest('hex') };
}

export async function verifyRepository(
  dir: string,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const layout = new Layout(dir);
  const now = options.now ?? new Date();
  const problems: string[] = [];
  const report: VerifyReport = {
    ok: false,
    problems,
    rootVersion: 0,
    roles: 0,
    targets: 0,
    targetBytes: 0,
    historyFiles: 0,
  };
  const parse = <K extends MetadataKind>(
    kind: K,
    bytes: Buffer,
    name: string,
  ) => {
    try {
      return parseMetadata(
        kind as MetadataKind.Root,
        bytes,
        name,
      ) as Metadata<AnySigned>;
    } catch (err) {
      problems.push(describeError(err));
      return undefined;
    }
  };
  const checkSigned = (
    role: string,
    md: Metadata<AnySigned>,
    trust: RoleKeys | undefined,
    name: string,
  ): void => {
    if (!trust) {
      problems.push(`${name}: no keys are trusted for ${role}`);
      return;
    }
    const result = verifyRole(role, md, trust);
    if (!result.verified) {
      problems.push(
        `${name}: ${result.signed.length} of ${result.threshold} required ` +
          `valid signatures (missing: ${result.unsigned.join(', ') || 'none'})`,
      );
    }
  };
  const checkExpiry = (md: Metadata<AnySigned>, name: string) => {
    const bad = expiresProblem(md.signed.expires, now);
    if (bad) problems.push(`${name}: ${bad}`);
    else if (md.signed.isExpired(now)) {
      problems.push(`${name}: expired at ${md.signed.expires}`);
    }
  };
  const checkType = (
    md: Metadata<AnySigned>,
    kind: MetadataKind,
    name: string,
  ) => {
    if (md.signed.type !== kind) {
      problems.push(`${name}: is of type ${md.signed.type}, expected ${kind}`);
    }
    if (!/^1\.\d+(\.\d+)?$/.test(md.signed.specVersion)) {
      problems.push(
        `${name}: spec_version ${md.signed.specVersion} is not 1.x`,
      );
    }
  };

  try {
    await stat(layout.metadata);
  } catch {
    throw new NotARepositoryError(
      `${dir} holds no published repository (no ${layout.metadata} folder)`,
    );
  }

  // 5.3: the root chain from version 1.
  let root: Metadata<Root> | undefined;
  const roots: Metadata<Root>[] = [];
  for (let version = 1; ; version++) {
    const name = `${version}.root.json`;
    const bytes = await tryRead(layout.metadataFile(name));
    if (!bytes) break;
    const md = parse(MetadataKind.Root, bytes, name) as
      Metadata<Root> | undefined;
    if (!md) break;
    checkType(md, MetadataKind.Root, name);
    if (md.signed.version !== version) {
      problems.push(`${name}: has version ${md.signed.version}`);
    }
    if (root)
      checkSigned(
        ROOT,
        md,
        roleKeysFor(root.signed, ROOT),
        `${name} (by previous root)`,
      );
    checkSigned(ROOT, md, roleKeysFor(md.signed, ROOT), name);
    if (!md.signed.consistentSnapshot) {
      problems.push(`${name}: consistent_snapshot is off`);
    }
    // Clients that count key ids would count such a key twice.
    const identities = new Map<string, string>();
    for (const key of Object.values(md.signed.keys)) {
      const other = identities.get(publicIdentity(key));
      if (other) {
        problems.push(
          `${name}: lists one public key under two ids, ${other} and ${key.keyID}`,
        );
      }
      identities.set(publicIdentity(key), key.keyID);
    }
    root = md;
    roots.push(md);
    report.rootVersion = version;
  }
  if (!root) {
    problems.push('1.root.json is missing or unreadable');
    return report;
  }
  checkExpiry(root, `${report.rootVersion}.root.json`);

  // 5.4: timestamp.
  const tsBytes = await tryRead(layout.metadataFile('timestamp.json'));
  if (!tsBytes) {
    problems.push('timestamp.json is missing');
    return report;
  }
  const timestamp = parse(MetadataKind.Timestamp, tsBytes, 'timestamp.json');
  if (!timestamp || timestamp.signed.type !== MetadataKind.Timestamp) {
    if (timestamp)
      checkType(timestamp, MetadataKind.Timestamp, 'timestamp.json');
    return report;
  }
  checkSigned(
    TIMESTAMP,
    timestamp,
    roleKeysFor(root.signed, TIMESTAMP),
    'timestamp.json',
  );
  checkExpiry(timestamp, 'timestamp.json');

  // 5.5: the snapshot the timestamp names, by version, length and hashes.
  const snapMeta = timestamp.signed.snapshotMeta;
  const snapName = `${snapMeta.version}.snapshot.json`;
  const snapBytes = await tryRead(layout.metadataFile(snapName));
  if (!snapBytes) {
    problems.push(`${snapName} (named by timestamp.json) is missing`);
    return report;
  }
  try {
    snapMeta.verify(snapBytes);
  } catch (err) {
    problems.push(
      `${snapName}: does not match timestamp.json: ${describeError(err)}`,
    );
  }
  const snapshot = parse(MetadataKind.Snapshot, snapBytes, snapName);
  if (!snapshot || snapshot.signed.type !== MetadataKind.Snapshot) {
    if (snapshot) checkType(snapshot, MetadataKind.Snapshot, snapName);
    return report;
  }
  checkSigned(SNAPSHOT, snapshot, roleKeysFor(root.signed, SNAPSHOT), snapName);
  checkExpiry(snapshot, snapName);
  if (snapshot.signed.version !== snapMeta.version) {
    problems.push(`${snapName}: has version ${snapshot.signed.version}`);
  }
  const meta = snapshot.signed.meta;
  if (!meta['targets.json'])
    problems.push(`${snapName}: does not list targets.json`);

  // 5.6: every targets role, reached from targets through delegations. A
  // target is only checked where a client following the paths would look.
  const visited = new Set<string>();
  const targetChecks: { role: string; target: TargetFile }[] = [];
  const walk = async (
    role: string,
    trust: RoleKeys | undefined,
    inherited: DelegatedRole[],
  ): Promise<void> => {
    if (visited.has(role)) return;
    visited.add(role);
    const entry = meta[`${role}.json`];
    if (!entry) {
      problems.push(`${snapName}: does not list delegated role ${role}`);
      return;
    }
    const name = `${entry.version}.${role}.json`;
    const bytes = await tryRead(layout.metadataFile(name));
    if (!bytes) {
      problems.push(`${name} (listed in ${snapName}) is missing`);
      return;
    }
    try {
      entry.verify(bytes);
    } catch (err) {
      problems.push(
        `${name}: does not match ${snapName}: ${describeError(err)}`,
      );
    }
    const md = parse(MetadataKind.Targets, bytes, name) as
      Metadata<Targets> | undefined;
    if (!md) return;
    checkType(md, MetadataKind.Targets, name);
    if (md.signed.version !== entry.version) {
      problems.push(`${name}: has version ${md.signed.version}`);
    }
    checkSigned(role, md, trust, name);
    checkExpiry(md, name);
    report.roles++;
    for (const target of Object.values(md.signed.targets)) {
      const reachable = inherited.every((d) => d.isDelegatedPath(target.path));
      if (!reachable) {
        problems.push(
          `${name}: lists ${target.path}, which its delegation does not cover`,
        );
        continue;
      }
      targetChecks.push({ role, target });
    }
    for (const child of Object.values(md.signed.delegations?.roles ?? {})) {
      await walk(child.name, roleKeysFor(md.signed, child.name), [
        ...inherited,
        child,
      ]);
    }
  };
  await walk(TARGETS, roleKeysFor(root.signed, TARGETS), []);
  for (const listed of Object.keys(meta)) {
    const role = listed.replace(/\.json$/, '');
    if (!visited.has(role)) {
      problems.push(`${snapName}: lists ${role}, which no role delegates to`);
    }
  }

  if (!options.skipHistory) {
    const history = await verifyHistory(layout, roots);
    report.historyFiles = history.files;
    problems.push(...history.problems);
  }
  const roles: Record<string, number> = {};
  for (const [name, entry] of Object.entries(meta)) {
    roles[name.replace(/\.json$/, '')] = entry.version;
  }
  try {
    const signs = rollbackSigns(
      await readdir(layout.metadata),
      {
        root: root.signed.version,
        snapshot: snapshot.signed.version,
        timestamp: timestamp.signed.version,
        roles,
      },
      await readPublishedRecord(layout),
    );
    for (const sign of signs) problems.push(`rolled back: ${sign}`);
  } catch (err) {
    problems.push(describeError(err));
  }

  report.targets = targetChecks.length;
  if (!options.skipTargets) {
    await mapLimit(targetChecks, 8, async ({ role, target }) => {
      report.targetBytes += target.length;
      // Both hash names are usually links to one file: hash each file once.
      const byInode = new Map<string, Awaited<ReturnType<typeof hashFile>>>();
      for (const [algorithm, digest] of Object.entries(target.hashes)) {
        const path = join(
          layout.targets,
          consistentTargetPath(target.path, digest),
        );
        const info = await stat(path).catch(() => undefined);
        const inode = info ? `${info.dev}:${info.ino}` : path;
        const seen = byInode.has(inode);
        if (!seen) byInode.set(inode, await hashFile(path));
        const found = byInode.get(inode);
        const name = `${algorithm} name ${path}`;
        if (!found) {
          problems.push(`target ${target.path} (${role}): ${name} is missing`);
          continue;
        }
        // One file under two names is one problem, reported once.
        if (seen) continue;
        const actual = (found as Record<string, unknown>)[algorithm];
        if (found.length !== target.length) {
          problems.push(
            `target ${target.path} (${role}): ${found.length} bytes on disk, ` +
              `${target.length} listed (${path})`,
          );
        } else if (actual !== undefined && actual !== digest) {
          problems.push(
            `target ${target.path} (${role}): ${algorithm} mismatch (${path})`,
          );
        }
      }
    });
  }
  report.ok = problems.length === 0;
  return report;
}
