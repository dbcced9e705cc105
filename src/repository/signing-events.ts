/**
 * The staged signing events of a repository as one list, and detached
 * signatures added to them: what `tufota signing status` prints and what
 * the server's signing-events API returns and takes.
 */
import { BadInputError, NotFoundError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import {
  roleKeysFor,
  serializeMetadata,
  verifyRole,
  type RoleKeys,
} from '../tuf/metadata.js';
import {
  Metadata,
  Signature,
  type Key,
  type Root,
  type Targets,
} from '../tuf/models.js';
import { ROOT, TARGETS } from '../tuf/roles.js';
import type { Repository } from './repository.js';
import {
  readStagedRoot,
  rootSigningStatus,
  stagedRootPath,
  type RootSigningStatus,
} from './signing.js';
import {
  readStagedTargets,
  stagedTargetsPath,
  targetsSigningStatus,
  type TargetsSigningStatus,
} from './targets-event.js';

export type StagedEvent =
  | ({ role: 'root' } & RootSigningStatus)
  | ({ role: 'targets' } & TargetsSigningStatus);

export interface StagedEvents {
  root?: { md: Metadata<Root>; status: RootSigningStatus };
  targets?: { md: Metadata<Targets>; status: TargetsSigningStatus };
}

/** The staged root and targets, if any, with who has signed them. */
export async function stagedEvents(
  repo: Repository,
  now = new Date(),
): Promise<StagedEvents> {
  const root = await readStagedRoot(repo.layout);
  const targets = await readStagedTargets(repo.layout);
  const out: StagedEvents = {};
  if (root) {
    out.root = { md: root, status: rootSigningStatus(repo.root.signed, root) };
  }
  if (targets) {
    // A staged targets publishes under the staged root, if there is one.
    out.targets = {
      md: targets,
      status: targetsSigningStatus(
        root?.signed ?? repo.root.signed,
        (await repo.publishedTargets(TARGETS)).signed,
        targets,
        now,
      ),
    };
  }
  return out;
}

/** The keys whose signatures count for the staged `role`. */
function signingKeys(repo: Repository, events: StagedEvents, role: string) {
  const keys = new Map<string, Key>();
  const add = (trust: RoleKeys) => {
    for (const key of trust.keys) keys.set(key.keyID, key);
  };
  if (role === ROOT && events.root) {
    add(roleKeysFor(repo.root.signed, ROOT) as RoleKeys);
    add(roleKeysFor(events.root.md.signed, ROOT) as RoleKeys);
  } else if (role === TARGETS && events.targets) {
    const root = events.root?.md.signed ?? repo.root.signed;
    add(roleKeysFor(root, TARGETS) as RoleKeys);
  }
  return keys;
}

/**
 * Adds one detached signature to the staged `role` after checking it: the
 * key must be one whose signature counts for that file, and the signature
 * must verify over its canonical content. Needs the writer lock.
 */
export async function addStagedSignature(
  repo: Repository,
  role: string,
  keyid: string,
  sig: string,
): Promise<StagedEvent> {
  if (role !== ROOT && role !== TARGETS) {
    throw new NotFoundError(
      `${role} has no signing events; only root and targets are staged`,
    );
  }
  const events = await stagedEvents(repo);
  const event = role === ROOT ? events.root : events.targets;
  if (!event) throw new NotFoundError(`no ${role} is staged`);
  const key = signingKeys(repo, events, role).get(keyid);
  if (!key) {
    throw new BadInputError(
      `key ${keyid} is not a key whose signature counts for the staged ` +
        `${role} v${event.md.signed.version}`,
    );
  }
  if (!/^[0-9a-f]{2,1024}$/.test(sig)) {
    throw new BadInputError('sig must be the signature in lower-case hex');
  }
  const signature = new Signature({ keyID: keyid, sig });
  const alone = new Metadata(event.md.signed, { [keyid]: signature });
  if (!verifyRole(role, alone, { keys: [key], threshold: 1 }).verified) {
    throw new BadInputError(
      `the signature by key ${keyid} does not verify over the staged ` +
        `${role} v${event.md.signed.version}`,
    );
  }
  event.md.signatures[keyid] = signature;
  const path =
    role === ROOT
      ? stagedRootPath(repo.layout)
      : stagedTargetsPath(repo.layout);
  await writeFileAtomic(path, serializeMetadata(event.md));
  const updated = await stagedEvents(repo);
  return role === ROOT
    ? { role: 'root', ...updated.root!.status }
    : { role: 'targets', ...updated.targets!.status };
}

/** The events as a list, for printing and for the API. */
export function eventList(events: StagedEvents): StagedEvent[] {
  return [
    ...(events.root ? [{ role: 'root' as const, ...events.root.status }] : []),
    ...(events.targets
      ? [{ role: 'targets' as const, ...events.targets.status }]
      : []),
  ];
}
