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

const TOKEN_FORM = /^tfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
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
  const id = randomBytes(6).toString('hex');
  const token = `tfk_${id}_${randomBytes(32).toString('base64url')}`;
  const record: TokenRecord = {
    id,
    name,
    scopes,
    sha256: sha256(token),
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
  const form = TOKEN_FORM.exec(presented);
  if (!form) return undefined;
  const record = (await store.read()).tokens.find((t) => t.id === form[1]);
  if (!record || record.revoked) return undefined;
  const want = Buffer.from(record.sha256, 'hex');
  const got = Buffer.from(sha256(presented), 'hex');
  return timingSafeEqual(want, got) ? record : undefined;
}
