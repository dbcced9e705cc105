/**
 * Public key files: the public half of a key and nothing else, so a new key
 * holder can hand over what a root or targets edit needs without the sealed
 * private key ever leaving their machine.
 *
 * File format, version 1 (JSON):
 *   { "tufota_public_key": 1, "label", "keyid", "public": <TUF key> }
 */
import type { Key } from '@tufjs/models';
import { BadKeyFileError } from '../errors.js';
import { writeFileAtomic } from '../repository/atomic.js';
import { claimsField, isRecord, publicKeyFromJSON } from './keyfile.js';

export function claimsToBePublicKeyFile(raw: string): boolean {
  return claimsField(raw, 'tufota_public_key');
}

export function parsePublicKeyFile(
  raw: string,
  path: string,
): { label: string; key: Key } {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw new BadKeyFileError(`public key file ${path} is not valid JSON`, {
      cause: err,
    });
  }
  if (!isRecord(doc) || doc.tufota_public_key !== 1) {
    throw new BadKeyFileError(
      `${path} is not a tufota public key file (version 1)`,
    );
  }
  const { keyid, label, public: pub } = doc;
  if (typeof keyid !== 'string' || !isRecord(pub)) {
    throw new BadKeyFileError(`public key file ${path} is missing fields`);
  }
  return {
    label: typeof label === 'string' ? label : '',
    key: publicKeyFromJSON(keyid, pub, `public key file ${path}`),
  };
}

/** Writes a public key file; an existing file is kept. */
export async function writePublicKeyFile(
  path: string,
  label: string,
  key: Key,
): Promise<void> {
  const doc = {
    tufota_public_key: 1,
    label,
    keyid: key.keyID,
    public: key.toJSON(),
  };
  await writeFileAtomic(path, JSON.stringify(doc, null, 2) + '\n', {
    exclusive: true,
  });
}
