/**
 * The bytes that signatures cover. Everything here delegates to
 * `@tufjs/canonical-json`, the same encoder tuf-js verifies with.
 */
import { canonicalize } from '@tufjs/canonical-json';
import type { Key } from '@tufjs/models';
import { createHash } from 'node:crypto';

type JSONValue = Parameters<typeof canonicalize>[0];

export function canonicalBytes(value: JSONValue): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}

/**
 * A key id as the specification defines it: the hex SHA-256 of the canonical
 * form of the public key object, taken after every field of it is final.
 */
export function computeKeyId(key: Key): string {
  return createHash('sha256')
    .update(canonicalBytes(key.toJSON()))
    .digest('hex');
}
