/**
 * Creating a repository: keys for every role, and version 1 of every role in
 * the layout of docs/architecture.md, signed and published in one step.
 */
import type { Key } from '../tuf/models.js';
import {
  DelegatedRole,
  Role,
  Delegations,
  MetaFile,
  Metadata,
  Root,
  Snapshot,
  Targets,
  Timestamp,
} from '../tuf/models.js';

import type { KeyObject } from 'node:crypto';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError, BadInputError } from '../errors.js';
import {
  InMemorySigner,
  generatePrivateKey,
  type KeyType,
} from '../keys/keygen.js';
import type { DEFAULT_SCRYPT } from '../keys/keyfile.js';
import { writeKeyFile } from '../keys/keyfile.js';
import { readKeySpec, type KeySpec } from '../keys/keyref.js';
import { Keyring } from '../keys/keyring.js';
import type { PassphraseSource } from '../keys/passphrase.js';
import {
  binLayout,
  binName,
  binPrefixes,
  type BinLayout,
} from '../tuf/bins.js';
import {
  DEFAULT_EXPIRY,
  EXPIRY_KEYS,
  checkExpiryPolicy,
  expiresAt,
  expiryKeyFor,
  type ExpiryPolicies,
} from '../tuf/expiry.js';
import { SPEC_VERSION } from '../tuf/metadata.js';
import {
  DELEGATED_PATHS,
  RELEASES,
  ROLLOUTS,
  ROOT,
  SNAPSHOT,
  TARGETS,
  TIMESTAMP,
  isTopLevelRole,
} from '../tuf/roles.js';
import { Layout, writeConfig } from './layout.js';
import {
  signWithThresholds,
  snapshotMetaFor,
  writePublication,
} from './publish-write.js';

/** The roles a new repository has keys for, in the order they are made. */
export const KEYED_ROLES = [
  ROOT,
  TARGETS,
  RELEASES,
  ROLLOUTS,
  SNAPSHOT,
  TIMESTAMP,
] as const;
export type KeyedRole = (typeof KEYED_ROLES)[number];

export const DEFAULT_KEY_COUNTS: Record<KeyedRole, number> = {
  root: 3,
  targets: 2,
  releases: 1,
  rollouts: 1,
  snapshot: 1,
  timestamp: 1,
};

/** Roles whose keys live on the server. */
export const ONLINE_ROLES: readonly KeyedRole[] = [
  RELEASES,
  ROLLOUTS,
  SNAPSHOT,
  TIMESTAMP,
];

export const DEFAULT_THRESHOLDS: Record<KeyedRole, number> = {
  root: 2,
  targets: 1,
  releases: 1,
  rollouts: 1,
  snapshot: 1,
  timestamp: 1,
};

export interface InitOptions {
  dir: string;
  keysDir: string;
  passphrases: PassphraseSource;
  /** Seals the keys of online roles, when they get their own passphrase. */
  onlinePassphrases?: PassphraseSource;
  keyTypes?: Partial<Record<KeyedRole, KeyType>>;
  keyCounts?: Partial<Record<KeyedRole, number>>;
  thresholds?: Partial<Record<KeyedRole, number>>;
  /** Existing key files whose public keys a role uses instead of new keys. */
  existingKeys?: Partial<Record<KeyedRole, string[]>>;
  expiry?: Partial<ExpiryPolicies>;
  bins?: number;
  now?: Date;
  /** scrypt cost for new key files; tests lower it. */
  scrypt?: typeof DEFAULT_SCRYPT;
}

export interface CreatedKey {
  role: KeyedRole;
  keyid: string;
  keyType: string;
  /** The key file, for keys made here. */
  path?: string;
}

export interface InitResult {
  layout: Layout;
  keys: CreatedKey[];
  bins?: BinLayout;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export function isKeyedRole(value: string): value is KeyedRole {
  return (KEYED_ROLES as readonly string[]).includes(value);
}

export async function initRepository(
  options: InitOptions,
): Promise<InitResult> {
  const layout = new Layout(options.dir);
  const now = options.now ?? new Date();
  const expiry: ExpiryPolicies = { ...DEFAULT_EXPIRY, ...options.expiry };
  for (const key of EXPIRY_KEYS) checkExpiryPolicy(key, expiry[key]);
  const bins =
    options.bins !== undefined ? binLayout(options.bins, RELEASES) : undefined;

  // Check everything a user gave before generating or writing anything.
  if (await exists(layout.config)) {
    throw new AlreadyExistsError(
      `${layout.root} is already a tufota repository (${layout.config} exists)`,
    );
  }
  if (await exists(layout.metadataFile('timestamp.json'))) {
    throw new AlreadyExistsError(
      `${layout.metadata} already holds a published repository`,
    );
  }
  const counts = { ...DEFAULT_KEY_COUNTS, ...options.keyCounts };
  const thresholds = { ...DEFAULT_THRESHOLDS, ...options.thresholds };
  const existing: Partial<Record<KeyedRole, Key[]>> = {};
  const existingSpecs: Exclude<KeySpec, { kind: 'uri' }>[] = [];
  // A key serves one role: an online timestamp key that also counted toward
  // root's threshold would let whoever takes the server sign a new root.
  const roleOfKey = new Map<string, KeyedRole>();
  for (const role of KEYED_ROLES) {
    const files = options.existingKeys?.[role] ?? [];
    const keys: Key[] = [];
    for (const file of files) {
      // A key file, or the reference file of a key on a hardware token.
      const spec = await readKeySpec(file);
      if (spec.kind === 'uri') {
        throw new BadInputError(
          `--use-key ${role}=${file}: give the reference file that ` +
            '"tufota key generate --pkcs11" wrote, not a URI',
        );
      }
      const key = spec.kind === 'file' ? spec.file.key : spec.ref.key;
      existingSpecs.push(spec);
      if (keys.some((k) => k.keyID === key.keyID)) {
        throw new BadInputError(
          `key ${key.keyID.slice(0, 8)} (${file}) is given twice for ${role}`,
        );
      }
      const other = roleOfKey.get(key.keyID);
      if (other !== undefined) {
        throw new BadInputError(
          `key ${key.keyID} (${file}) is given for both ${other} and ` +
            `${role}; a key may serve one role only, so that no online key ` +
            "counts toward another role's threshold",
        );
      }
      roleOfKey.set(key.keyID, role);
      keys.push(key);
    }
    existing[role] = keys;
    // Existing keys fill part of the role's count; new keys make up the
    // rest, unless more were given than the count.
    if (
      files.length > counts[role] &&
      options.keyCounts?.[role] === undefined
    ) {
      counts[role] = files.length;
    }
  }
  for (const role of KEYED_ROLES) {
    const count = counts[role];
    const threshold = thresholds[role];
    if (!Number.isInteger(count) || count < 1 || count > 64) {
      throw new BadInputError(
        `${role}: key count must be 1 to 64, got ${count}`,
      );
    }
    if (!Number.isInteger(threshold) || threshold < 1) {
      throw new BadInputError(
        `${role}: threshold must be a whole number of at least 1, got ${threshold}`,
      );
    }
    if (threshold > count) {
      throw new BadInputError(
        `${role}: threshold ${threshold} is above its key count ${count}; ` +
          'the role could never be signed',
      );
    }
    if ((existing[role]?.length ?? 0) > count) {
      throw new BadInputError(
        `${role}: ${existing[role]?.length} existing keys given for ${count} keys`,
      );
    }
  }

  const keyring = await Keyring.open(options.keysDir, options.passphrases);
  try {
    // Existing keys sign version 1 too when their passphrase is at hand.
    for (const spec of existingSpecs) {
      if (spec.kind === 'file') keyring.addFile(spec.file);
      else keyring.addRef(spec.ref);
    }

    // New keys stay in memory until every role is signed: a run that fails
    // (an existing key that will not open, a threshold not met) leaves no
    // key files behind.
    const newKeys: {
      path: string;
      label: string;
      privateKey: KeyObject;
      online: boolean;
    }[] = [];
    const created: CreatedKey[] = [];
    const roleKeys = {} as Record<KeyedRole, Key[]>;
    for (const role of KEYED_ROLES) {
      const keys = [...(existing[role] ?? [])];
      for (const key of keys) {
        created.push({ role, keyid: key.keyID, keyType: key.scheme });
      }
      const type = options.keyTypes?.[role] ?? 'ed25519';
      while (keys.length < counts[role]) {
        const privateKey = generatePrivateKey(type);
        const signer = new InMemorySigner(privateKey);
        const path = join(
          options.keysDir,
          `${role}-${keys.length + 1}-${signer.key.keyID.slice(0, 8)}.json`,
        );
        newKeys.push({
          path,
          label: `${role} key ${keys.length + 1}`,
          privateKey,
          online: ONLINE_ROLES.includes(role),
        });
        keyring.addSigner(signer);
        keys.push(signer.key);
        created.push({ role, keyid: signer.key.keyID, keyType: type, path });
      }
      roleKeys[role] = keys;
    }
    // Asked for only when there are new keys to seal (an init that uses only
    // existing keys needs none), and before any key is unlocked for signing.
    const passphrase =
      newKeys.length > 0 ? await options.passphrases.forNewKeys() : '';
    // The server needs the online keys' passphrase at hand; it must not open
    // the offline keys too.
    const onlinePassphrase =
      options.onlinePassphrases && newKeys.some((k) => k.online)
        ? await options.onlinePassphrases.forNewKeys()
        : passphrase;

    const expires = (role: string) =>
      expiresAt(now, expiry[expiryKeyFor(role)].period);
    const keyMap = (keys: Key[]) =>
      Object.fromEntries(keys.map((k) => [k.keyID, k]));
    const roleOf = (role: KeyedRole) =>
      new Role({
        keyIDs: roleKeys[role].map((k) => k.keyID),
        threshold: thresholds[role],
      });

    const root = new Metadata(
      new Root({
        version: 1,
        specVersion: SPEC_VERSION,
        expires: expires(ROOT),
        consistentSnapshot: true,
        keys: keyMap(
          KEYED_ROLES.filter(isTopLevelRole).flatMap((r) => roleKeys[r]),
        ),
        roles: {
          root: roleOf(ROOT),
          targets: roleOf(TARGETS),
          snapshot: roleOf(SNAPSHOT),
          timestamp: roleOf(TIMESTAMP),
        },
      }),
    );

    const delegated = (role: KeyedRole) =>
      new DelegatedRole({
        name: role,
        keyIDs: roleKeys[role].map((k) => k.keyID),
        threshold: thresholds[role],
        terminating: true,
        paths: DELEGATED_PATHS[role],
      });
    const targetsRoles = new Map<string, Metadata<Targets>>();
    const newTargets = (role: string, delegations?: Delegations) =>
      new Metadata(
        new Targets({
          version: 1,
          specVersion: SPEC_VERSION,
          expires: expires(role),
          delegations,
        }),
      );
    targetsRoles.set(
      TARGETS,
      newTargets(
        TARGETS,
        new Delegations({
          keys: keyMap([...roleKeys.releases, ...roleKeys.rollouts]),
          roles: {
            releases: delegated(RELEASES),
            rollouts: delegated(ROLLOUTS),
          },
        }),
      ),
    );

    let releaseDelegations: Delegations | undefined;
    if (bins) {
      // Bins are signed by the releases keys: one team owns all images, and
      // bins exist only to keep each signed file small.
      const roles: Record<string, DelegatedRole> = {};
      for (let i = 0; i < bins.count; i++) {
        const name = binName(bins, i);
        roles[name] = new DelegatedRole({
          name,
          keyIDs: roleKeys.releases.map((k) => k.keyID),
          threshold: thresholds.releases,
          terminating: true,
          pathHashPrefixes: binPrefixes(bins, i),
        });
        targetsRoles.set(name, newTargets(name));
      }
      releaseDelegations = new Delegations({
        keys: keyMap(roleKeys.releases),
        roles,
      });
    }
    targetsRoles.set(RELEASES, newTargets(RELEASES, releaseDelegations));
    targetsRoles.set(ROLLOUTS, newTargets(ROLLOUTS));

    const rootTrust = {
      keys: roleKeys.root,
      threshold: thresholds.root,
    };
    await signWithThresholds(ROOT, root, keyring, [rootTrust]);
    const trustOf = (role: KeyedRole) => ({
      keys: roleKeys[role],
      threshold: thresholds[role],
    });
    for (const [role, md] of targetsRoles) {
      const owner: KeyedRole = isKeyedRole(role) ? role : RELEASES;
      await signWithThresholds(role, md, keyring, [trustOf(owner)]);
    }

    const snapshot = new Metadata(
      new Snapshot({
        version: 1,
        specVersion: SPEC_VERSION,
        expires: expires(SNAPSHOT),
        meta: Object.fromEntries(
          [...targetsRoles.keys()].map((r) => [
            `${r}.json`,
            new MetaFile({ version: 1 }),
          ]),
        ),
      }),
    );
    await signWithThresholds(SNAPSHOT, snapshot, keyring, [trustOf(SNAPSHOT)]);
    const timestamp = new Metadata(
      new Timestamp({
        version: 1,
        specVersion: SPEC_VERSION,
        expires: expires(TIMESTAMP),
        snapshotMeta: snapshotMetaFor(snapshot),
      }),
    );
    await signWithThresholds(TIMESTAMP, timestamp, keyring, [
      trustOf(TIMESTAMP),
    ]);

    await mkdir(options.keysDir, { recursive: true, mode: 0o700 });
    for (const key of newKeys) {
      await writeKeyFile(
        key.path,
        key.label,
        key.privateKey,
        key.online ? onlinePassphrase : passphrase,
        options.scrypt,
      );
    }
    await mkdir(layout.state, { recursive: true });
    await mkdir(layout.targets, { recursive: true });
    await writePublication(
      layout,
      { root, targets: targetsRoles, snapshot, timestamp },
      1,
    );
    // The settings file marks the folder as a repository; it goes last so a
    // run cut short can simply be run again.
    await writeConfig(layout, { expiry, bins });
    return { layout, keys: created, bins };
  } finally {
    // Token sessions the existing keys opened end with the run.
    await keyring.close();
  }
}
