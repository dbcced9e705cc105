/**
 * Reading, writing, signing and checking metadata over `@tufjs/models`.
 * Nothing here touches the filesystem: callers hand in bytes and get bytes.
 */
import {
  Metadata,
  MetadataKind,
  Signature,
  TargetFile,
  Targets,
  type Key,
  type Root,
  type Snapshot,
  type Timestamp,
} from '@tufjs/models';
import { CorruptMetadataError, UnsignedMetadataError } from '../errors.js';
import { canonicalBytes } from './canonical.js';
import { getPublicKey } from './models.js';
import type { JsonWebKey as NodeJsonWebKey } from 'node:crypto';

export type AnySigned = Root | Targets | Snapshot | Timestamp;
export type KindOf<T extends AnySigned> = T extends Root
  ? MetadataKind.Root
  : T extends Targets
    ? MetadataKind.Targets
    : T extends Snapshot
      ? MetadataKind.Snapshot
      : MetadataKind.Timestamp;

/** The specification version this repository writes. */
export const SPEC_VERSION = '1.0.31';

export { MetadataKind };

type TargetsJSON = ReturnType<Targets['toJSON']>;
type TargetFileJSON = Parameters<typeof TargetFile.fromJSON>[1];

/**
 * Sets `obj[key]` as an own property, as an object literal's computed key
 * would: a target path of `__proto__` must not reach the prototype setter.
 */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    obj[key] = value;
  }
}

/*
 * Performance. `Targets#toJSON` and `Targets.fromJSON` in @tufjs/models build
 * their `targets` object with a spread inside `reduce`, which copies the
 * whole object once per entry: quadratic in the number of targets, and the
 * main cost of publishing hashed bins of a few hundred targets. The two
 * functions below give exactly the same objects (same fields, same key order,
 * same checks through `TargetFile.fromJSON`) in linear time; everything here
 * and in the repository uses them instead.
 */

/** `targets.toJSON()`, in linear time. */
export function targetsToJSON(targets: Targets): TargetsJSON {
  const entries: Record<string, TargetFileJSON> = {};
  for (const [path, target] of Object.entries(targets.targets)) {
    setOwn(entries, path, target.toJSON());
  }
  const json: TargetsJSON = {
    _type: targets.type,
    spec_version: targets.specVersion,
    version: targets.version,
    expires: targets.expires,
    targets: entries,
    ...targets.unrecognizedFields,
  };
  if (targets.delegations) {
    json.delegations = targets.delegations.toJSON();
  }
  return json;
}

function isObjectRecord(value: unknown): value is Record<string, object> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.values(value).every((v) => typeof v === 'object' && v !== null)
  );
}

/** The targets entries of parsed metadata, checked as the library does. */
function targetFilesFromJSON(data: Record<string, object>) {
  const out: Record<string, TargetFile> = {};
  for (const [path, entry] of Object.entries(data)) {
    setOwn(out, path, TargetFile.fromJSON(path, entry as TargetFileJSON));
  }
  return out;
}

/** Fills in the entries of a role parsed with an empty `targets`. */
function setTargets(signed: Targets, entries: Record<string, TargetFile>) {
  // `targets` is read-only in the type only; the library assigns it too.
  (signed as { targets: Record<string, TargetFile> }).targets = entries;
}

/** `Targets.fromJSON(data)`, in linear time. */
export function targetsFromJSON(data: TargetsJSON): Targets {
  const entries: unknown = data.targets;
  if (!isObjectRecord(entries)) return Targets.fromJSON(data); // it throws
  const signed = Targets.fromJSON({ ...data, targets: {} });
  setTargets(signed, targetFilesFromJSON(entries));
  return signed;
}

/** A deep copy of a targets role, to edit without touching the original. */
export function copyTargets(targets: Targets): Targets {
  return targetsFromJSON(targetsToJSON(targets));
}

/** `signed.toJSON()`, in linear time for targets roles. */
export function signedToJSON(
  signed: AnySigned,
): ReturnType<AnySigned['toJSON']> {
  return signed.type === MetadataKind.Targets
    ? targetsToJSON(signed)
    : signed.toJSON();
}

/** `md.toJSON()`, in linear time for targets roles. */
export function metadataToJSON(
  md: Metadata<AnySigned>,
): ReturnType<Metadata<AnySigned>['toJSON']> {
  return {
    signatures: Object.values(md.signatures).map((s) => s.toJSON()),
    signed: signedToJSON(md.signed),
    ...md.unrecognizedFields,
  };
}

/**
 * Parses metadata bytes of a known kind. `source` names the file in the
 * error, so a corrupt file is easy to find.
 */
export function parseMetadata(
  kind: MetadataKind.Root,
  bytes: Buffer,
  source: string,
): Metadata<Root>;
export function parseMetadata(
  kind: MetadataKind.Targets,
  bytes: Buffer,
  source: string,
): Metadata<Targets>;
export function parseMetadata(
  kind: MetadataKind.Snapshot,
  bytes: Buffer,
  source: string,
): Metadata<Snapshot>;
export function parseMetadata(
  kind: MetadataKind.Timestamp,
  bytes: Buffer,
  source: string,
): Metadata<Timestamp>;
export function parseMetadata(
  kind: MetadataKind,
  bytes: Buffer,
  source: string,
): Metadata<AnySigned> {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CorruptMetadataError(`${source} is not valid JSON`, {
      cause: err,
    });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CorruptMetadataError(`${source} is not a JSON object`);
  }
  try {
    // Targets entries are parsed apart, in linear time (see targetsToJSON);
    // the library checks everything else, and an odd `targets` value is
    // left for it to reject.
    const signed = (json as { signed?: unknown }).signed;
    const entries =
      kind === MetadataKind.Targets &&
      typeof signed === 'object' &&
      signed !== null &&
      isObjectRecord((signed as { targets?: unknown }).targets)
        ? (signed as { targets: Record<string, object> }).targets
        : undefined;
    if (entries) {
      json = { ...json, signed: { ...(signed as object), targets: {} } };
    }
    // The overloads of fromJSON narrow by kind; the union is checked below.
    const md = Metadata.fromJSON(
      kind as MetadataKind.Root,
      json as Parameters<typeof Metadata.fromJSON>[1],
    ) as Metadata<AnySigned>;
    if (entries) setTargets(md.signed as Targets, targetFilesFromJSON(entries));
    return md;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new CorruptMetadataError(
      `${source} is not valid ${kind} metadata: ${why}`,
      { cause: err },
    );
  }
}

/**
 * The bytes written to disk. Compact JSON: clients canonicalize what they
 * parse before checking signatures, so layout is free, and smaller files
 * matter to devices on slow links.
 */
export function serializeMetadata(md: Metadata<AnySigned>): Buffer {
  return Buffer.from(JSON.stringify(metadataToJSON(md)), 'utf8');
}

/** The bytes a signature over `md` must cover. */
export function signedBytes(md: Metadata<AnySigned>): Buffer {
  return canonicalBytes(signedToJSON(md.signed));
}

/** What any signer offers: its public key and a way to sign bytes. */
export interface SigningKey {
  readonly key: Key;
  sign(data: Buffer): Promise<Buffer>;
}

/**
 * Adds (or replaces) one signature. Async because hardware tokens are;
 * `Metadata.sign` in @tufjs/models only takes synchronous signers.
 */
export async function addSignature(
  md: Metadata<AnySigned>,
  signer: SigningKey,
): Promise<void> {
  const sig = await signer.sign(signedBytes(md));
  md.signatures[signer.key.keyID] = new Signature({
    keyID: signer.key.keyID,
    sig: sig.toString('hex'),
  });
}

/** The keys and threshold a delegator trusts for one role. */
export interface RoleKeys {
  keys: Key[];
  threshold: number;
}

export interface VerificationResult {
  role: string;
  threshold: number;
  /** Key ids with a valid signature, each counted once. */
  signed: string[];
  /** Trusted key ids without a valid signature. */
  unsigned: string[];
  verified: boolean;
}

/** The JWK of the key clients verify with, or undefined if there is none. */
function decodedJwk(key: Key): NodeJsonWebKey | undefined {
  try {
    const { key: decoded } = getPublicKey({
      keyType: key.keyType,
      scheme: key.scheme,
      keyVal: key.keyVal.public ?? '',
    });
    return decoded.export({ format: 'jwk' });
  } catch {
    return undefined;
  }
}

/**
 * What a public key is, however it is written: the key clients would
 * verify with, as @tufjs/models decodes it from the key's fields (hex or
 * PEM, a compressed or uncompressed EC point, a hex string it truncates),
 * in JWK form. Two entries with one identity are one key, however their
 * text or key ids differ. A key without a JWK form falls back to its text,
 * which proves nothing; `comparableKey` tells those apart, and key tables
 * refuse them.
 */
export function publicIdentity(key: Key): string {
  const jwk = decodedJwk(key);
  if (!jwk) return `text:${key.keyType}:${key.keyVal.public ?? ''}`;
  return `jwk:${JSON.stringify(jwk, Object.keys(jwk).sort())}`;
}

/**
 * Whether a key is one of the three kinds tufota signs with, decoded to
 * exactly that kind: ed25519, ECDSA on P-256, or a plain RSA key for
 * RSASSA-PSS. Only such keys can be compared with each other; an RSA key
 * written with the RSA-PSS algorithm id, or an EC key on another curve,
 * verifies the same signatures under a text no comparison can see through.
 */
export function comparableKey(key: Key): boolean {
  const jwk = decodedJwk(key);
  if (!jwk) return false;
  switch (key.scheme) {
    case 'ed25519':
      return (
        key.keyType === 'ed25519' && jwk.kty === 'OKP' && jwk.crv === 'Ed25519'
      );
    case 'ecdsa-sha2-nistp256':
      return jwk.kty === 'EC' && jwk.crv === 'P-256';
    case 'rsassa-pss-sha256':
      return key.keyType === 'rsa' && jwk.kty === 'RSA';
    default:
      return false;
  }
}

/**
 * Counts valid signatures over `md` by the trusted keys. Each trusted key
 * counts once, whatever number of signature entries name it; signatures by
 * keys outside `trusted` count for nothing.
 */
export function verifyRole(
  role: string,
  md: Metadata<AnySigned>,
  trusted: RoleKeys,
): VerificationResult {
  const signed: string[] = [];
  const unsigned: string[] = [];
  const seen = new Set<string>();
  // Key#verifySignature reads only `signatures` and `signed.toJSON()`; this
  // view of `md` answers the latter from one linear conversion for all keys.
  let view: Metadata<AnySigned> | undefined;
  const viewOf = () => {
    if (view) return view;
    const json = signedToJSON(md.signed);
    const signedView = Object.create(md.signed, {
      toJSON: { value: () => json },
    }) as AnySigned;
    view = new Metadata(signedView, md.signatures, md.unrecognizedFields);
    return view;
  };
  // A key counts once however many key ids list it: the same public key
  // under another id (an extra field, PEM instead of hex) adds nothing.
  const seenKeys = new Set<string>();
  for (const key of trusted.keys) {
    const identity = publicIdentity(key);
    if (seen.has(key.keyID) || seenKeys.has(identity)) continue;
    seen.add(key.keyID);
    seenKeys.add(identity);
    try {
      key.verifySignature(viewOf());
      signed.push(key.keyID);
    } catch {
      // An absent or bad signature is exactly what `unsigned` reports.
      unsigned.push(key.keyID);
    }
  }
  return {
    role,
    threshold: trusted.threshold,
    signed,
    unsigned,
    verified: signed.length >= trusted.threshold,
  };
}

export function requireThreshold(result: VerificationResult): void {
  if (result.verified) return;
  const need = result.threshold - result.signed.length;
  throw new UnsignedMetadataError(
    result.role,
    `${result.role} has ${result.signed.length} of ${result.threshold} ` +
      `required signatures; ${need} more needed from: ` +
      (result.unsigned.join(', ') || '(no other trusted keys)'),
    result.unsigned,
  );
}

/** The keys and threshold `delegator` assigns to `role`, if it delegates it. */
export function roleKeysFor(
  delegator: Root | Targets,
  role: string,
): RoleKeys | undefined {
  if (delegator.type === MetadataKind.Root) {
    const r = delegator.roles[role];
    if (!r) return undefined;
    return {
      threshold: r.threshold,
      keys: r.keyIDs.flatMap((id) =>
        delegator.keys[id] ? [delegator.keys[id]] : [],
      ),
    };
  }
  const d = delegator.delegations?.roles?.[role];
  if (!d || !delegator.delegations) return undefined;
  const keys = delegator.delegations.keys;
  return {
    threshold: d.threshold,
    keys: d.keyIDs.flatMap((id) => (keys[id] ? [keys[id]] : [])),
  };
}
