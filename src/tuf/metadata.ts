/**
 * Reading, writing, signing and checking metadata over `@tufjs/models`.
 * Nothing here touches the filesystem: callers hand in bytes and get bytes.
 */
import {
  Metadata,
  MetadataKind,
  Signature,
  type Key,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from '@tufjs/models';
import { CorruptMetadataError, UnsignedMetadataError } from '../errors.js';
import { canonicalBytes } from './canonical.js';

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
    // The overloads of fromJSON narrow by kind; the union is checked below.
    const md = Metadata.fromJSON(
      kind as MetadataKind.Root,
      json as Parameters<typeof Metadata.fromJSON>[1],
    ) as Metadata<AnySigned>;
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
  return Buffer.from(JSON.stringify(md.toJSON()), 'utf8');
}

/** The bytes a signature over `md` must cover. */
export function signedBytes(md: Metadata<AnySigned>): Buffer {
  return canonicalBytes(md.signed.toJSON());
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
  for (const key of trusted.keys) {
    if (seen.has(key.keyID)) continue;
    seen.add(key.keyID);
    try {
      key.verifySignature(md);
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
