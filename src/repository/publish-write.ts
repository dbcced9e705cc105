/**
 * Signing against thresholds, and writing a publication to disk in the
 * order that keeps clients safe; also the repairs a cut-short write needs.
 */
import type {
  Metadata,
  Root,
  Snapshot,
  Targets,
  Timestamp,
} from '@tufjs/models';
import { MetaFile } from '@tufjs/models';
import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { UnsignedMetadataError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { logger } from '../log.js';
import {
  addSignature,
  requireThreshold,
  serializeMetadata,
  verifyRole,
  type AnySigned,
  type RoleKeys,
} from '../tuf/metadata.js';
import { TEMP_PREFIX, fsyncDir, writeFileAtomic } from './atomic.js';
import { checkpoint } from './faults.js';
import { writePublishedRecord, type Layout } from './layout.js';
import { mapLimit } from './limit.js';
import type { Repository } from './repository.js';

/** Targets roles written at once; each write is fsynced. */
const WRITE_CONCURRENCY = 8;

const log = logger.child({ module: 'repository/publish-write' });

/**
 * Signs `md` afresh with every available key any of `trust` names, then
 * checks each threshold. A new root passes `trust` twice: the previous
 * root's root role and its own.
 */
export async function signWithThresholds(
  role: string,
  md: Metadata<AnySigned>,
  keyring: Keyring | undefined,
  trust: RoleKeys[],
): Promise<void> {
  md.signatures = {};
  const keyids = trust.flatMap((t) => t.keys.map((k) => k.keyID));
  // A key that will not open does not stop the run while the others still
  // reach every threshold; when they do not, the key that would not open
  // is what the user needs to hear about.
  const { signers, failures } = keyring
    ? await keyring.trySignersFor(keyids)
    : { signers: [], failures: [] };
  for (const signer of signers) await addSignature(md, signer);
  for (const t of trust) {
    const result = verifyRole(role, md, t);
    if (!result.verified && failures.length > 0) throw failures[0].error;
    if (result.verified && failures.length > 0) {
      log.warn(
        { role, unopened: failures.map((f) => f.keyid) },
        'signed without keys that would not open',
      );
    }
    if (!result.verified) {
      log.warn(
        {
          role,
          threshold: result.threshold,
          signed: result.signed.length,
          missing: result.unsigned,
        },
        'refusing to publish a role below its threshold',
      );
    }
    if (
      !result.verified &&
      keyring &&
      !t.keys.some((k) => keyring.has(k.keyID))
    ) {
      // Often just a folder not named: say where keys were looked for.
      const where = keyring.dirs.join(', ') || 'no folder';
      throw new UnsignedMetadataError(
        role,
        `${role} has ${result.signed.length} of ${result.threshold} required ` +
          `signatures, and none of its keys is in the keys folders (${where}); ` +
          'name the folder holding them with --keys',
        result.unsigned,
      );
    }
    requireThreshold(result);
  }
}

/** What one publication writes; `root` only when root changes. */
export interface Publication {
  root?: Metadata<Root>;
  targets: Map<string, Metadata<Targets>>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

/** Writes a publication in the order that keeps clients safe. */
export async function writePublication(
  layout: Layout,
  pub: Publication,
  currentRoot: number,
): Promise<void> {
  const rootVersion = pub.root?.signed.version ?? currentRoot;
  await mkdir(layout.metadata, { recursive: true });
  const file = (name: string) => layout.metadataFile(name);

  // Targets roles are new files no client can reach before the snapshot
  // names them, so they go out a few at a time (hundreds of bins at one
  // fsync each); all are written before the snapshot starts.
  await mapLimit([...pub.targets], WRITE_CONCURRENCY, async ([role, md]) => {
    await checkpoint(`publish:${role}`);
    await writeFileAtomic(
      file(`${md.signed.version}.${role}.json`),
      serializeMetadata(md),
      { deferDirSync: true },
    );
  });
  await checkpoint('publish:snapshot');
  await writeFileAtomic(
    file(`${pub.snapshot.signed.version}.snapshot.json`),
    serializeMetadata(pub.snapshot),
    { deferDirSync: true },
  );
  await fsyncDir(layout.metadata);

  if (pub.root) {
    // A new root is visible to clients the moment it exists (they probe for
    // N+1.root.json), so it goes after everything it may need.
    await checkpoint('publish:root');
    const bytes = serializeMetadata(pub.root);
    await writeFileAtomic(file(`${pub.root.signed.version}.root.json`), bytes, {
      deferDirSync: true,
    });
    await writeFileAtomic(file('root.json'), bytes);
  }

  // The versioned timestamp is history for auditors; clients only ever
  // read timestamp.json, replaced here last and in one rename.
  // timestamp.json goes first: the kept copy is history, and a kept copy
  // newer than timestamp.json must only ever mean a rolled-back folder.
  await checkpoint('publish:timestamp');
  const tsBytes = serializeMetadata(pub.timestamp);
  await writeFileAtomic(file('timestamp.json'), tsBytes);
  await writeFileAtomic(
    file(`${pub.timestamp.signed.version}.timestamp.json`),
    tsBytes,
  );
  await writePublishedRecord(layout, {
    root: rootVersion,
    snapshot: pub.snapshot.signed.version,
    timestamp: pub.timestamp.signed.version,
  });
  await checkpoint('publish:done');
}

/** A snapshot MetaFile for the timestamp: version, length and sha256. */
export function snapshotMetaFor(md: Metadata<Snapshot>): MetaFile {
  const bytes = serializeMetadata(md);
  return new MetaFile({
    version: md.signed.version,
    length: bytes.length,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  });
}

/**
 * A publish killed between timestamp.json and its kept copy leaves the
 * history one short; the next publish puts the copy back.
 */
export async function keepTimestampCopy(repo: Repository): Promise<void> {
  const name = `${repo.timestamp.signed.version}.timestamp.json`;
  try {
    await stat(repo.layout.metadataFile(name));
  } catch {
    log.warn({ file: name }, 'restoring the kept copy of the timestamp');
    await writeFileAtomic(
      repo.layout.metadataFile(name),
      serializeMetadata(repo.timestamp),
    );
  }
}

/** Removes temporary files a killed writer left in metadata/. */
export async function cleanTemporaries(layout: Layout): Promise<void> {
  let names: string[];
  try {
    names = await readdir(layout.metadata);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) {
      log.info({ file: name }, 'removing a temporary file left by a crash');
      await unlink(layout.metadataFile(name)).catch(() => undefined);
    }
  }
}
