/**
 * Bearer tokens for the admin API. A token is 32 random bytes shown once
 * when it is made; the store keeps only its sha256, so a copy of the state
 * file opens nothing. A token carries an id (`tfk_ID_SECRET`) so a listing,
 * a log line or a revocation can name it without the secret.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BadInputError, NotFoundError } from '../errors.js';
import {
  SCOPES,
  type Scope,
  type StateStore,
  type TokenRecord,
} from '../state/store.js';

/** Admin API tokens start `tfk_`; device credentials (devices.ts) `tfd_`. */
export type SecretPrefix = 'tfk' | 'tfd';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A new `PREFIX_ID_SECRET`: 6 random bytes of id, 32 of secret. */
export function newSecret(prefix: SecretPrefix): {
  id: string;
  secret: string;
  sha256: string;
} {
  const id = randomBytes(6).toString('hex');
  const secret = `${prefix}_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, secret, sha256: sha256(secret) };
}

/** The id a presented secret names, or undefined if it is not of the form. */
export function secretId(
  prefix: SecretPrefix,
  presented: string,
): string | undefined {
  const form = new RegExp(`^${prefix}_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`);
  return form.exec(presented)?.[1];
}

/** Whether `presented` hashes to `hash` (hex), compared in constant time. */
export function secretMatches(hash: string, presented: string): boolean {
  const want = Buffer.from(hash, 'hex');
  const got = Buffer.from(sha256(presented), 'hex');
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Checks scope names given on a command line or in a request. */
export function parseScopes(values: readonly string[]): Scope[] {
  if (values.length === 0) {
    throw new BadInputError(`give at least one scope: ${SCOPES.join(', ')}`);
  }
  for (const value of values) {
    if (!(SCOPES as readonly string[]).includes(value)) {
      throw new BadInputError(
        `unknown scope "${value}"; one of ${SCOPES.join(', ')}`,
      );
    }
  }
  return [...new Set(values)] as Scope[];
}

export interface NewToken {
  /** The secret, to hand to its user; it is not stored anywhere. */
  token: string;
  record: TokenRecord;
}

export async function createToken(
  store: StateStore,
  name: string,
  scopes: Scope[],
): Promise<NewToken> {
  if (!/^[\w .@+-]{1,64}$/.test(name)) {
    throw new BadInputError(
      `token name "${name}": use 1 to 64 letters, digits, spaces and . _ @ + -`,
    );
  }
  const made = newSecret('tfk');
  const token = made.secret;
  const record: TokenRecord = {
    id: made.id,
    name,
    scopes,
    sha256: made.sha256,
    created: new Date().toISOString(),
  };
  await store.update((state) => {
    state.tokens.push(record);
  });
  return { token, record };
}

export async function revokeToken(
  store: StateStore,
  id: string,
): Promise<TokenRecord> {
  return store.update((state) => {
    const record = state.tokens.find((t) => t.id === id);
    if (!record) throw new NotFoundError(`no token with id ${id}`);
    record.revoked ??= new Date().toISOString();
    return record;
  });
}

/**
 * The live token record a presented token stands for, or undefined for a
 * malformed, unknown or revoked one.
 */
export async function findToken(
  store: StateStore,
  presented: string,
): Promise<TokenRecord | undefined> {
  const id = secretId('tfk', presented);
  if (id === undefined) return undefined;
  const record = (await store.read()).tokens.find((t) => t.id === id);
  if (!record || record.revoked) return undefined;
  return secretMatches(record.sha256, presented) ? record : undefined;
}
