/**
 * Signing events for root: a change to root is staged as the next version,
 * unsigned, in `.tufota/staged/root.json`; key holders sign copies of that
 * file on their own machines (`tufota sign`, which needs no repository),
 * copies are merged, and `tufota publish` takes the staged root once it
 * carries a threshold of signatures from the previous root's keys and from
 * its own, as the specification requires of every new root.
 *
 * The targets role's signing events are in `targets-event.ts`; both use
 * `tufota sign` and `signing merge` from here.
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, realpath, stat, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  BadInputError,
  BadPassphraseError,
  BadStagedFileError,
  CorruptMetadataError,
  describeError,
} from '../errors.js';
import type { KeyFile } from '../keys/keyfile.js';
import { unsealPrivateKey } from '../keys/keyfile.js';
import { InMemorySigner } from '../keys/keygen.js';
import type { PassphraseSource } from '../keys/passphrase.js';
import { canonicalBytes } from '../tuf/canonical.js';
import {
  DEFAULT_EXPIRY,
  expiresAt,
  expiresProblem,
  expiryKeyFor,
  msUntil,
} from '../tuf/expiry.js';
import {
  addSignature,
  parseMetadata,
  roleKeysFor,
  serializeMetadata,
  signedToJSON,
  verifyRole,
  type AnySigned,
  type SigningKey,
  type RoleKeys,
  type VerificationResult,
} from '../tuf/metadata.js';
import { Metadata, MetadataKind, Role, Root, type Key } from '../tuf/models.js';
import { ROOT, TARGETS, TOP_LEVEL_ROLES } from '../tuf/roles.js';
import { fsyncDir, writeFileAtomic } from './atomic.js';
import {
  applyKeyEdit,
  keyExtrasProblem,
  keyIdProblem,
  keyTableProblem,
  sharedKey,
  type KeyEdit,
} from './key-edit.js';
import type { Layout } from './layout.js';
import type { Repository } from './repository.js';

/** Larger than any role tuf-js accepts (targets roles: 5 MB). */
const MAX_METADATA_BYTES = 16 * 1024 * 1024;

export function stagedRootPath(layout: Layout): string {
  return join(layout.state, 'staged', 'root.json');
}

/**
 * Drops staged signing events (`root`, `targets`, or both when `roles` is
 * empty) with the signatures they collected. Returns the roles dropped.
 */
export async function discardStaged(
  layout: Layout,
  roles: readonly string[],
): Promise<string[]> {
  const paths: Record<string, string> = {
    root: stagedRootPath(layout),
    targets: join(layout.state, 'staged', 'targets.json'),
  };
  for (const role of roles) {
    if (!Object.hasOwn(paths, role)) {
      throw new BadInputError(
        `${role}: only root and targets have signing events`,
      );
    }
  }
  const dropped = [];
  for (const role of roles.length > 0 ? roles : Object.keys(paths)) {
    const gone = await rm(paths[role], { recursive: true }).then(
      () => true,
      (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      },
    );
    if (gone) dropped.push(role);
  }
  if (dropped.length > 0) await fsyncDir(dirname(paths.root));
  return dropped;
}

/**
 * A staged file's bytes, or undefined when there is none. Only a regular
 * file of metadata size is read: a pipe left there would hang every
 * publish while it holds the writer lock.
 */
export async function readStagedFile(
  path: string,
): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const info = await handle.stat();
    const role = basename(path, '.json');
    if (!info.isFile() || info.size > MAX_METADATA_BYTES) {
      throw new BadStagedFileError(
        `${path} is not a regular file of at most ${MAX_METADATA_BYTES} ` +
          `bytes; drop it with "tufota signing discard ${role}"`,
      );
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Parses a staged file of `role`; one that does not parse (damaged, or
 * not metadata at all) is a BadStagedFileError saying how to drop it.
 */
export function parseStaged<T>(role: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new BadStagedFileError(
      `${describeError(err)}; drop it with "tufota signing discard ${role}"`,
      { cause: err },
    );
  }
}

/** The staged root, or undefined when no root change is staged. */
export async function readStagedRoot(
  layout: Layout,
): Promise<Metadata<Root> | undefined> {
  const path = stagedRootPath(layout);
  const bytes = await readStagedFile(path);
  return (
    bytes &&
    parseStaged(ROOT, () => parseMetadata(MetadataKind.Root, bytes, path))
  );
}

export interface RootEdit extends KeyEdit {
  /** Expiry period of the new root, in milliseconds. */
  period?: number;
  now?: Date;
}

/**
 * The next root with `edit` applied to the staged root if there is one,
 * else to the published root. Nothing is written: `stageMetadata` does
 * that once the caller has stored any keys the edit adds. Any edit drops
 * the signatures the staged file had: they covered other content.
 */
export async function prepareRootEdit(
  repo: Repository,
  edit: RootEdit,
): Promise<Metadata<Root>> {
  const base = (await readStagedRoot(repo.layout))?.signed ?? repo.root.signed;
  const table = applyKeyEdit(
    {
      keys: base.keys,
      roles: Object.fromEntries(
        Object.entries(base.roles).map(([n, r]) => [
          n,
          { keyIDs: r.keyIDs, threshold: r.threshold },
        ]),
      ),
    },
    edit,
    TOP_LEVEL_ROLES,
    'top-level role',
  );
  // Against the staged targets too: both will publish together.
  const stagedTargets = await readStagedFile(
    join(repo.layout.state, 'staged', 'targets.json'),
  );
  const delegated = stagedTargets
    ? parseStaged(TARGETS, () =>
        parseMetadata(MetadataKind.Targets, stagedTargets, 'staged targets'),
      ).signed.delegations
    : (await repo.publishedTargets(TARGETS)).signed.delegations;
  const shared = sharedKey(table.keys, delegated?.keys ?? {});
  if (shared) {
    throw new BadInputError(
      `key ${shared.a} already serves a role targets delegates to; a key ` +
        'may serve one role only',
    );
  }
  const now = edit.now ?? new Date();
  const period = edit.period ?? repo.config.expiry.root.period;
  return new Metadata(
    new Root({
      version: repo.root.signed.version + 1,
      specVersion: base.specVersion,
      expires: expiresAt(now, period),
      consistentSnapshot: base.consistentSnapshot,
      keys: table.keys,
      roles: Object.fromEntries(
        Object.entries(table.roles).map(([n, r]) => [n, new Role(r)]),
      ),
      unrecognizedFields: base.unrecognizedFields,
    }),
  );
}

/** Writes a staged file for key holders to sign. */
export async function stageMetadata(
  path: string,
  md: Metadata<AnySigned>,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, serializeMetadata(md));
}

/** `prepareRootEdit`, then stages the result. */
export async function editRoot(
  repo: Repository,
  edit: RootEdit,
): Promise<Metadata<Root>> {
  const staged = await prepareRootEdit(repo, edit);
  await stageMetadata(stagedRootPath(repo.layout), staged);
  return staged;
}

/**
 * What a staged root must be before anyone's signature publishes it, since
 * the file may have been edited by hand: the next version, not expired, the
 * four top-level roles and nothing else, consistent snapshots on, every
 * threshold reachable, no public key under two ids, no fields the published
 * root lacks.
 */
export function checkStagedRoot(
  published: Root,
  staged: Metadata<Root>,
  now: Date,
): void {
  const refuse = (why: string) => {
    throw new BadInputError(
      `the staged root ${why}; stage it again with "tufota root edit"`,
    );
  };
  const root = staged.signed;
  if (root.version !== published.version + 1) {
    refuse(
      `is version ${root.version}; the next root must be version ` +
        `${published.version + 1}, with no number skipped`,
    );
  }
  const badExpiry = expiresProblem(root.expires, now);
  if (badExpiry) refuse(`says ${badExpiry}`);
  if (root.isExpired(now)) refuse(`expired at ${root.expires}`);
  if (!root.consistentSnapshot) refuse('turns consistent snapshots off');
  const roleNames = Object.keys(root.roles).sort().join(',');
  if (roleNames !== [...TOP_LEVEL_ROLES].sort().join(',')) {
    refuse(`has the roles ${roleNames}, not exactly the four top-level ones`);
  }
  const table = { keys: root.keys, roles: root.roles };
  const problem =
    keyTableProblem(table) ??
    keyIdProblem(root.keys) ??
    keyExtrasProblem(table);
  if (problem) refuse(problem);
  const roleOfKey = new Map<string, string>();
  for (const [name, role] of Object.entries(root.roles)) {
    for (const id of role.keyIDs) {
      const other = roleOfKey.get(id);
      if (other && other !== name) {
        refuse(`gives key ${id} to both ${other} and ${name}`);
      }
      roleOfKey.set(id, name);
    }
  }
  if (root.specVersion !== published.specVersion) {
    refuse(`changes spec_version to ${root.specVersion}`);
  }
  for (const [name, role] of Object.entries(root.roles)) {
    if (Object.keys(role.unrecognizedFields ?? {}).length > 0) {
      refuse(`adds fields to the ${name} role`);
    }
  }
  const extras = (r: Root) =>
    JSON.stringify(Object.keys(r.unrecognizedFields).sort());
  if (extras(root) !== extras(published)) refuse('adds fields to root');
}

export interface RootSigningStatus {
  version: number;
  /** Against the published root's root role. */
  previous: VerificationResult;
  /** Against the staged root's own root role. */
  own: VerificationResult;
  /** Why publish would refuse the staged root whatever its signatures. */
  problem?: string;
  ready: boolean;
}

/** Who has signed the staged root, and who is still needed, both ways. */
export function rootSigningStatus(
  published: Root,
  staged: Metadata<Root>,
  now = new Date(),
): RootSigningStatus {
  const previous = verifyRole(
    ROOT,
    staged,
    roleKeysFor(published, ROOT) as RoleKeys,
  );
  const own = verifyRole(
    ROOT,
    staged,
    roleKeysFor(staged.signed, ROOT) as RoleKeys,
  );
  let problem: string | undefined;
  const same =
    staged.signed.version === published.version &&
    canonicalBytes(staged.signed.toJSON()).equals(
      canonicalBytes(published.toJSON()),
    );
  if (same) {
    // A publish cut short before it removed the staged file.
    problem = `root v${published.version} is already published; the next publish removes the staged file`;
  } else {
    try {
      checkStagedRoot(published, staged, now);
    } catch (err) {
      problem = describeError(err);
    }
  }
  return {
    version: staged.signed.version,
    previous,
    own,
    problem,
    ready: previous.verified && own.verified && !problem,
  };
}

function kindOf(json: unknown): MetadataKind {
  const type = (json as { signed?: { _type?: unknown } }).signed?._type;
  if (
    type === MetadataKind.Root ||
    type === MetadataKind.Targets ||
    type === MetadataKind.Snapshot ||
    type === MetadataKind.Timestamp
  ) {
    return type;
  }
  throw new CorruptMetadataError(
    `not TUF metadata (signed._type is ${String(type)})`,
  );
}

/** Reads any metadata file, whatever its role. */
export async function readAnyMetadata(
  path: string,
): Promise<Metadata<AnySigned>> {
  const info = await stat(path).catch((err: unknown) => {
    throw new BadInputError(`cannot read ${path}`, { cause: err });
  });
  if (!info.isFile()) throw new BadInputError(`${path} is not a regular file`);
  if (info.size > MAX_METADATA_BYTES) {
    throw new BadInputError(
      `${path} is ${info.size} bytes; metadata files are at most ` +
        `${MAX_METADATA_BYTES} bytes`,
    );
  }
  const bytes = await readFile(path).catch((err: unknown) => {
    throw new BadInputError(`cannot read ${path}`, { cause: err });
  });
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CorruptMetadataError(`${path} is not valid JSON`, { cause: err });
  }
  return parseMetadata(kindOf(json) as MetadataKind.Root, bytes, path);
}

export interface SignFileOptions {
  /** Sign even if the file expires in the past or within its window. */
  force?: boolean;
  now?: Date;
}

/**
 * Reads a file to sign and checks it by this machine's clock: a file that
 * expires in the past or within its refresh window means the clock or the
 * file is wrong, and signing it anyway takes `force`.
 */
async function readForSigning(
  path: string,
  options: SignFileOptions,
): Promise<Metadata<AnySigned>> {
  const md = await readAnyMetadata(path);
  const now = options.now ?? new Date();
  const badExpiry = expiresProblem(md.signed.expires, now);
  if (badExpiry) {
    // Not a clock question: no --force signs a date clients disagree on.
    throw new BadInputError(`${path}: ${badExpiry}`);
  }
  const left = msUntil(md.signed.expires, now);
  const window = DEFAULT_EXPIRY[expiryKeyFor(md.signed.type)].refreshWindow;
  if (!options.force && left <= window) {
    throw new BadInputError(
      `${path} expires ${md.signed.expires}, ` +
        (left <= 0 ? 'in the past' : 'within its refresh window') +
        ` by this machine's clock (${now.toISOString()}); check the clock, ` +
        'or sign anyway with --force',
    );
  }
  return md;
}

async function writeSigned(
  path: string,
  md: Metadata<AnySigned>,
  signer: SigningKey,
): Promise<Metadata<AnySigned>> {
  await addSignature(md, signer);
  // Through a link, the signature goes to the file it points at.
  await writeFileAtomic(await realpath(path), serializeMetadata(md));
  return md;
}

/**
 * Adds one signature to a metadata file with one key file: what a key
 * holder runs on an air-gapped machine holding only these two files. The
 * clock is checked before any passphrase is asked for.
 */
export async function signFile(
  path: string,
  keyFile: KeyFile,
  passphrases: PassphraseSource,
  options: SignFileOptions = {},
): Promise<Metadata<AnySigned>> {
  const md = await readForSigning(path, options);
  const label = `${keyFile.label || 'key'} ${keyFile.key.keyID.slice(0, 8)}`;
  let lastError: unknown;
  for (let attempt = 0; ; attempt++) {
    const passphrase = await passphrases.forKey(label, attempt);
    if (passphrase === undefined) break;
    let signer: InMemorySigner;
    try {
      signer = new InMemorySigner(await unsealPrivateKey(keyFile, passphrase));
    } catch (err) {
      if (!(err instanceof BadPassphraseError)) throw err;
      lastError = err;
      continue;
    }
    return writeSigned(path, md, signer);
  }
  throw lastError instanceof BadPassphraseError
    ? lastError
    : new BadPassphraseError(`no passphrase opened ${keyFile.path}`);
}

/** `signFile` with a key that is already a signer (a hardware token). */
export async function signFileWith(
  path: string,
  signer: SigningKey,
  options: SignFileOptions = {},
): Promise<Metadata<AnySigned>> {
  return writeSigned(path, await readForSigning(path, options), signer);
}

/** The key `keyid` as the signed content itself lists it (root only). */
function keyNamedIn(signed: AnySigned, keyid: string): Key | undefined {
  if (signed.type !== MetadataKind.Root) return undefined;
  const keys = signed.keys;
  return Object.hasOwn(keys, keyid) ? keys[keyid] : undefined;
}

export interface MergeResult {
  md: Metadata<AnySigned>;
  /**
   * Key ids whose copies carry different signatures that could not be
   * checked here (a key neither the file nor `knownKeys` lists): the first
   * file's signature was kept, and publish will say if it is bad.
   */
  undecided: string[];
}

/**
 * Merges the signatures of copies of one staged file into the first. The
 * copies must carry the very same signed content. `knownKeys` (say, the
 * published root's) settle copies that disagree on a key the file itself
 * does not list.
 */
export async function mergeSignatures(
  paths: readonly string[],
  knownKeys: readonly Key[] = [],
): Promise<MergeResult> {
  if (paths.length < 2) {
    throw new BadInputError('signing merge needs two or more files');
  }
  const [first, ...others] = await Promise.all(paths.map(readAnyMetadata));
  const known = new Map(knownKeys.map((k) => [k.keyID, k]));
  const undecided: string[] = [];
  const content = canonicalBytes(signedToJSON(first.signed));
  others.forEach((md, i) => {
    if (!canonicalBytes(signedToJSON(md.signed)).equals(content)) {
      throw new BadInputError(
        `${paths[i + 1]} signs other content than ${paths[0]}; only copies ` +
          'of one staged file can be merged',
      );
    }
    for (const [keyid, sig] of Object.entries(md.signatures)) {
      const held = first.signatures[keyid];
      if (!held || held.sig === sig.sig) {
        first.signatures[keyid] = sig;
        continue;
      }
      // Two copies disagree on one key's signature: one was damaged or
      // tampered with, or the key signed twice (ECDSA and RSA-PSS
      // signatures differ each time). Keep one the key verifies.
      const key = keyNamedIn(first.signed, keyid) ?? known.get(keyid);
      if (!key) {
        undecided.push(keyid);
        continue;
      }
      const valid = (candidate: typeof sig) =>
        verifyRole(
          'merge',
          new Metadata(first.signed, { [keyid]: candidate }),
          { keys: [key], threshold: 1 },
        ).verified;
      if (valid(held)) continue;
      if (!valid(sig)) {
        throw new BadInputError(
          `${paths[0]} and ${paths[i + 1]} carry different signatures by ` +
            `key ${keyid}, and neither verifies; have that holder sign a ` +
            'fresh copy',
        );
      }
      first.signatures[keyid] = sig;
    }
  });
  await writeFileAtomic(paths[0], serializeMetadata(first));
  return { md: first, undecided };
}
