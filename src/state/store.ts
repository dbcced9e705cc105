/**
 * The server's own state: API tokens, upload records, the signatures
 * received for signing events, and the settings an admin changed. TUF data never lives here; the metadata files
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

/**
 * Settings changed through the API (`PUT /api/v1/settings`). Each one
 * replaces the server's built-in default; a flag given to `tufota serve`
 * replaces it in turn, so what an operator typed is what runs.
 */
export interface ServerSettings {
  /** Largest target upload, in bytes; applies to the next upload. */
  maxUploadBytes?: number;
  /** How often the online roles are checked; applies at the next start. */
  refreshEveryMs?: number;
}

/** Bounds of each setting, inclusive. */
export const SETTING_BOUNDS: Record<keyof ServerSettings, [number, number]> = {
  maxUploadBytes: [1, Number.MAX_SAFE_INTEGER],
  refreshEveryMs: [1000, 3_600_000],
};

export interface ServerState {
  tokens: TokenRecord[];
  uploads: UploadRecord[];
  signatures: SignatureRecord[];
  settings: ServerSettings;
}

export function emptyState(): ServerState {
  return { tokens: [], uploads: [], signatures: [], settings: {} };
}

/**
 * Why `value` is not a valid `name` setting, or undefined if it is one.
 * Shared by the API and the state file's own check.
 */
export function settingProblem(
  name: string,
  value: unknown,
): string | undefined {
  if (!Object.hasOwn(SETTING_BOUNDS, name)) {
    return `"${name}" is not a setting; known: ${Object.keys(SETTING_BOUNDS).join(', ')}`;
  }
  const [low, high] = SETTING_BOUNDS[name as keyof ServerSettings];
  if (
    !Number.isSafeInteger(value) ||
    (value as number) < low ||
    (value as number) > high
  ) {
    return `${name} must be a whole number from ${low} to ${high}`;
  }
  return undefined;
}

/** Where the server keeps its state; one method to read, one to change. */
export interface StateStore {
  read(): Promise<ServerState>;
  /** Applies `change` to the current state and stores it durably. */
  update<T>(change: (state: ServerState) => T): Promise<T>;
}
