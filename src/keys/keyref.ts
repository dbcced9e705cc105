/**
 * Key reference files: a key that lives on a hardware token, named by its
 * PKCS#11 URI beside its TUF public key. They hold no secret (a URI with a
 * pin-value is refused), so they can sit in a keys folder next to encrypted
 * key files and be copied freely.
 *
 * File format, version 1 (JSON):
 *   { "tufota_key_ref": 1, "label", "keyid", "public": <TUF key>,
 *     "pkcs11": "pkcs11:token=...;object=...;id=...?module-path=..." }
 */
import type { Key } from '@tufjs/models';
import { BadKeyFileError, describeError } from '../errors.js';
import { writeFileAtomic } from '../repository/atomic.js';
import {
  claimsField,
  claimsToBeKeyFile,
  isRecord,
  parseKeyFile,
  publicKeyFromJSON,
  readKeyText,
  type KeyFile,
} from './keyfile.js';
import {
  claimsToBePublicKeyFile,
  parsePublicKeyFile,
} from './public-file.js';
import {
  Pkcs11Signer,
  readTokenPublicKey,
  type TokenKey,
  type TokenOptions,
} from './pkcs11.js';
import {
  formatPkcs11Uri,
  isPkcs11Uri,
  parsePkcs11Uri,
  type Pkcs11Uri,
} from './pkcs11-uri.js';

export interface KeyRef {
  /** Where it was read from, for messages. */
  path: string;
  label: string;
  key: Key;
  uri: Pkcs11Uri;
}

/**
 * Whether a file's text says it is a key reference file: a JSON object
 * with a `"tufota_key_ref"` field, or text that is not JSON but has that
 * name in it (a file cut short). Such a file must parse as a good one.
 */
export function claimsToBeKeyRef(raw: string): boolean {
  return claimsField(raw, 'tufota_key_ref');
}

export function parseKeyRef(raw: string, path: string): KeyRef {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw new BadKeyFileError(`key reference ${path} is not valid JSON`, {
      cause: err,
    });
  }
  if (!isRecord(doc) || doc.tufota_key_ref !== 1) {
    throw new BadKeyFileError(
      `${path} is not a tufota key reference file (version 1)`,
    );
  }
  const { keyid, label, public: pub, pkcs11 } = doc;
  if (typeof keyid !== 'string' || !isRecord(pub) || typeof pkcs11 !== 'string') {
    throw new BadKeyFileError(`key reference ${path} is missing fields`);
  }
  const key = publicKeyFromJSON(keyid, pub, `key reference ${path}`);
  let uri: Pkcs11Uri;
  try {
    uri = parsePkcs11Uri(pkcs11);
  } catch (err) {
    throw new BadKeyFileError(
      `key reference ${path}: ${describeError(err)}`,
      { cause: err },
    );
  }
  if (uri.pinValue !== undefined) {
    throw new BadKeyFileError(
      `key reference ${path} holds a PIN (pin-value); remove it and use ` +
        'pin-source=file:PATH or TUFOTA_PKCS11_PIN',
    );
  }
  if (uri.id === undefined && uri.object === undefined) {
    throw new BadKeyFileError(
      `key reference ${path}: its URI names no key (no id= or object=)`,
    );
  }
  return {
    path,
    label: typeof label === 'string' ? label : '',
    key,
    uri,
  };
}

/** Writes a reference file for a token key; an existing file is kept. */
export async function writeKeyRef(
  path: string,
  label: string,
  tokenKey: TokenKey,
): Promise<KeyRef> {
  const doc = {
    tufota_key_ref: 1,
    label,
    keyid: tokenKey.key.keyID,
    public: tokenKey.key.toJSON(),
    pkcs11: formatPkcs11Uri(tokenKey.uri),
  };
  await writeFileAtomic(path, JSON.stringify(doc, null, 2) + '\n', {
    exclusive: true,
  });
  return { path, label, key: tokenKey.key, uri: tokenKey.uri };
}

/** What a `--key` names: a key file, a reference file, or a URI. */
export type KeySpec =
  | { kind: 'file'; file: KeyFile }
  | { kind: 'ref'; ref: KeyRef }
  | { kind: 'uri'; uri: Pkcs11Uri };

export async function readKeySpec(spec: string): Promise<KeySpec> {
  if (isPkcs11Uri(spec)) return { kind: 'uri', uri: parsePkcs11Uri(spec) };
  const raw = await readKeyText(spec);
  if (claimsToBeKeyRef(raw)) return { kind: 'ref', ref: parseKeyRef(raw, spec) };
  if (claimsToBeKeyFile(raw)) {
    return { kind: 'file', file: parseKeyFile(raw, spec) };
  }
  if (claimsToBePublicKeyFile(raw)) {
    throw new BadKeyFileError(
      `${spec} holds only a public key; use the key file or the token ` +
        'it came from',
    );
  }
  throw new BadKeyFileError(
    `${spec} is neither a tufota key file nor a key reference file`,
  );
}

/**
 * The public key of a key file, a reference file, a public key file, or a
 * `pkcs11:` URI (read from the token, no PIN needed).
 */
export async function readPublicKey(
  spec: string,
  options: TokenOptions = {},
): Promise<Key> {
  if (!isPkcs11Uri(spec)) {
    const raw = await readKeyText(spec);
    if (claimsToBePublicKeyFile(raw)) {
      return parsePublicKeyFile(raw, spec).key;
    }
  }
  const read = await readKeySpec(spec);
  switch (read.kind) {
    case 'file':
      return read.file.key;
    case 'ref':
      return read.ref.key;
    case 'uri':
      return readTokenPublicKey(read.uri, options).key;
  }
}

/**
 * A signer for a token key named by a reference file (which also says what
 * key the token must hold) or by a URI.
 */
export async function openTokenSigner(
  spec: Exclude<KeySpec, { kind: 'file' }>,
  options: TokenOptions,
): Promise<Pkcs11Signer> {
  if (spec.kind === 'uri') return Pkcs11Signer.open(spec.uri, options);
  return Pkcs11Signer.open(spec.ref.uri, {
    ...options,
    expected: spec.ref.key,
  });
}

/** Where a key lives, in words. */
export function describeKeySpec(spec: KeySpec): string {
  if (spec.kind === 'file') return `encrypted key file ${spec.file.path}`;
  const uri = spec.kind === 'ref' ? spec.ref.uri : spec.uri;
  return `PKCS#11 token key ${formatPkcs11Uri(uri)}`;
}
