/**
 * The server's own state: API tokens, upload records, the signatures
 * received for signing events, the settings an admin changed, and the
 * devices with the events they reported. TUF data never lives here; the metadata files
 * stay the source of truth for it, and this state can be lost without losing
 * a signed byte (tokens would have to be issued again).
 *
 * A store is read whole and changed through `update`, which runs its change
 * on a fresh read under a lock held across processes, so `tufota token
 * create` on the command line and a running server never lose each other's
 * writes.
 */

import type { DeviceEvent } from '../../client/agent/events.js';

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

/** A device event as stored: what the device sent, and when it came. */
export type StoredDeviceEvent = DeviceEvent & {
  /** ISO 8601 by the server's clock. */
  received: string;
};

/**
 * A device allowed to report events (`tufota device add`), with its
 * credential's hash and the newest events it sent, oldest first.
 */
export interface DeviceRecord {
  id: string;
  name: string;
  /** Public id of the credential (`tfd_ID_SECRET`), for logs and listings. */
  credentialId: string;
  /** sha256 of the credential, hex; the credential itself is never stored. */
  sha256: string;
  created: string;
  /** Set when the credential was revoked; `device add` issues a new one. */
  revoked?: string;
  /** When it last posted events, by the server's clock. */
  lastSeen?: string;
  /** Highest seq ever stored for it, kept when old events are dropped. */
  lastSeq?: number;
  /** How many of its oldest events were dropped to keep the newest. */
  dropped?: number;
  events: StoredDeviceEvent[];
}

export interface ServerState {
  tokens: TokenRecord[];
  uploads: UploadRecord[];
  signatures: SignatureRecord[];
  settings: ServerSettings;
  devices: DeviceRecord[];
}

export function emptyState(): ServerState {
  return {
    tokens: [],
    uploads: [],
    signatures: [],
    settings: {},
    devices: [],
  };
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
