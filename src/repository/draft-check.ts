/**
 * What a draft must be before publish signs it: drafts are plain files on
 * the writer's disk, so each one is held to the rules of the commands that
 * write them.
 */
import type { Targets } from '@tufjs/models';
import { stat } from 'node:fs/promises';
import { CorruptMetadataError, describeError } from '../errors.js';
import { consistentTargetPath, checkTargetPath } from '../tuf/paths.js';
import { checkCustom } from '../tuf/custom.js';
import { join } from 'node:path';
import { mapLimit } from './limit.js';
import type { Repository } from './repository.js';

/**
 * Drafts are plain files on the writer's disk; before one is signed, every
 * entry that differs from the published role is held to the rules the
 * commands that write drafts follow: a valid path, owned by this role
 * through the delegations, stored under both hash names at its length. A
 * draft may not change delegations, which no draft-writing command does.
 */
export async function checkDraft(
  repo: Repository,
  role: string,
  draft: Targets,
  published: Targets | undefined,
): Promise<void> {
  const refuse = (why: string) => {
    throw new CorruptMetadataError(
      `the draft of ${role} ${why}; drop it with "tufota discard ${role}"`,
    );
  };
  const delegations = (t: Targets | undefined) =>
    JSON.stringify(t?.delegations?.toJSON() ?? null);
  if (delegations(draft) !== delegations(published)) {
    refuse('changes delegations');
  }
  const extras = (t: Targets | undefined) =>
    JSON.stringify(t?.unrecognizedFields ?? {});
  // @tufjs/models keeps unknown fields, `_type` among them, and writes them
  // over its own: a draft may carry no field the published role lacks.
  if (extras(draft) !== extras(published)) refuse('adds fields to the role');
  const changed = Object.entries(draft.targets).filter(([path, target]) => {
    const before = published?.targets[path];
    return !(before && before.equals(target));
  });
  // A bulk import changes every entry of hundreds of bins: the stat calls
  // run side by side, the path checks are cheap.
  await mapLimit(changed, 64, async ([path, target]) => {
    try {
      checkTargetPath(path);
    } catch (err) {
      refuse(`lists a bad path: ${describeError(err)}`);
    }
    if ((await repo.ownerOf(path).catch(() => undefined)) !== role) {
      refuse(`lists ${path}, which the delegations do not give to ${role}`);
    }
    const algorithms = Object.keys(target.hashes).sort().join(',');
    if (algorithms !== 'sha256,sha512') {
      refuse(`lists ${path} with hashes ${algorithms}, not sha256 and sha512`);
    }
    const fields = Object.keys(target.unrecognizedFields);
    if (fields.some((f) => f !== 'custom')) {
      refuse(
        `lists ${path} with fields other than custom: ${fields.join(', ')}`,
      );
    }
    if (target.unrecognizedFields.custom !== undefined) {
      try {
        checkCustom(target.unrecognizedFields.custom);
      } catch (err) {
        refuse(`lists ${path} with bad ${describeError(err)}`);
      }
    }
    // Both names every client may build, at the listed length.
    for (const digest of [target.hashes.sha256, target.hashes.sha512]) {
      const file = join(
        repo.layout.targets,
        consistentTargetPath(path, digest),
      );
      const info = await stat(file).catch(() => undefined);
      if (!info || info.size !== target.length) {
        refuse(
          `lists ${path}, but ${file} is missing or not ${target.length} bytes`,
        );
      }
    }
  });
}
