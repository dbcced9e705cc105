/**
 * The server's own state: API tokens, upload records and the signatures
 * received for signing events. TUF data never lives here; the metadata files
 * stay the source of truth for it, and this state can be lost without losing
 * a signed byte (tokens would have to be issued again).
 *
 * A store is read whole and changed through `update`, which runs its change
 * on a fresh read under a lock held across processes, so `tufota token
 * create` on the command line and a running server never lose each other's
 * writes.
 */

/** What a bearer token may do. */
export const SCOPES = ['releases', 'rollouts', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface TokenRecord {
  /** Short public id, shown in listings and logs instead of the token. */
  id: string;
  name: string;
  scopes: Scope[];
  /** sha256 of the token, hex; the token itself is never stored. */
  sha256: string;
  created: string;
  revoked?: string;
}

export interface UploadRecord {
  path: string;
  role: string;
  length: number;
  sha256: string;
  /** Id of the token that uploaded it. */
  by: string;
  at: string;
  replaced: boolean;
}

export interface SignatureRecord {
  role: string;
  version: number;
  keyid: string;
  by: string;
  at: string;
}

export interface ServerState {
  tokens: TokenRecord[];
  uploads: UploadRecord[];
  signatures: SignatureRecord[];
}

export function emptyState(): ServerState {
  return { tokens: [], uploads: [], signatures: [] };
}

/** Where the server keeps its state; one method to read, one to change. */
export interface StateStore {
  read(): Promise<ServerState>;
  /** Applies `change` to the current state and stores it durably. */
  update<T>(change: (state: ServerState) => T): Promise<T>;
}
