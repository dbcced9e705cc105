/**
 * Metadata no tufota repository would publish, for tests that play a
 * compromised or buggy server: metadata JSON edited by hand, then signed
 * with key files straight from disk, bypassing every check of `publish`.
 */
import { readFile } from 'node:fs/promises';
import { readKeyFile, unsealPrivateKey } from '../../src/keys/keyfile.js';
import { InMemorySigner } from '../../src/keys/keygen.js';
import {
  addSignature,
  parseMetadata,
  serializeMetadata,
} from '../../src/tuf/metadata.js';
import { Signature, type MetadataKind } from '../../src/tuf/models.js';
import { TEST_PASSPHRASE } from './fixtures.js';

/** Metadata as JSON, to edit freely. */
export interface MetadataJson {
  signed: Record<string, unknown> & { version: number };
  signatures: { keyid: string; sig: string }[];
}

export async function readMetadataJson(path: string): Promise<MetadataJson> {
  return JSON.parse(await readFile(path, 'utf8')) as MetadataJson;
}

/**
 * `json` signed afresh: its old signatures dropped, one added by each key
 * file (sealed with TEST_PASSPHRASE), and each signature by a key id in
 * `twins` copied under the id it maps to.
 */
export async function signJson(
  json: MetadataJson,
  kind: MetadataKind,
  keyFiles: string[],
  twins: Record<string, string> = {},
): Promise<Buffer> {
  const bytes = Buffer.from(JSON.stringify({ ...json, signatures: [] }));
  // Only serialized again, so one overload serves every kind.
  const md = parseMetadata(kind as MetadataKind.Root, bytes, 'forged');
  for (const path of keyFiles) {
    const file = await readKeyFile(path);
    const key = await unsealPrivateKey(file, TEST_PASSPHRASE);
    await addSignature(md, new InMemorySigner(key));
  }
  for (const [keyid, twin] of Object.entries(twins)) {
    const sig = md.signatures[keyid];
    if (sig) md.signatures[twin] = new Signature({ keyID: twin, sig: sig.sig });
  }
  return serializeMetadata(md);
}

/** An id no real key has, to list an existing public key under again. */
export const TWIN_ID = 'd'.repeat(64);

/**
 * Lists the public key `keyid` of a key table (root's, or a targets role's
 * delegations, as JSON) again under TWIN_ID, for `role` only, with
 * `threshold`. Nothing in TUF ties a key id to its key's bytes, so both ids
 * verify that one key's signatures.
 */
export function listTwice(
  table: { keys: Record<string, unknown>; roles: unknown },
  role: string,
  keyid: string,
  threshold: number,
): void {
  table.keys[TWIN_ID] = table.keys[keyid];
  const roles = table.roles as
    | Record<string, { keyids: string[]; threshold: number }>
    | { name: string; keyids: string[]; threshold: number }[];
  const entry = Array.isArray(roles)
    ? roles.find((r) => r.name === role)
    : roles[role];
  if (!entry) throw new Error(`no role ${role} in the key table`);
  entry.keyids = [keyid, TWIN_ID];
  entry.threshold = threshold;
}
