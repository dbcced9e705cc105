/**
 * Devices and their credentials. Each device reports with a credential of
 * its own, bound to its id, so one device cannot write another's events.
 * A credential is `tfd_ID_SECRET`, made and checked by the same code as
 * the admin API's tokens (tokens.ts) but kept in the device's record: it
 * opens the device API and nothing of the admin API, and an admin token
 * is no device credential.
 */
import { deviceIdProblem } from '../../client/agent/events.js';
import { AlreadyExistsError, BadInputError, NotFoundError } from '../errors.js';
import type { DeviceRecord, StateStore } from '../state/store.js';
import { newSecret, secretId, secretMatches } from './tokens.js';

/** A device as listings show it: no hash, no events, their count. */
export type DeviceSummary = Omit<DeviceRecord, 'sha256' | 'events'> & {
  events: number;
};

export function summary(device: DeviceRecord): DeviceSummary {
  const { sha256: _hash, events, ...rest } = device;
  return { ...rest, events: events.length };
}

/** Refuses an id that breaks the device id rule (events.ts). */
export function checkDeviceId(id: string): string {
  const problem = deviceIdProblem(id);
  if (problem) throw new BadInputError(problem);
  return id;
}

export interface NewDeviceCredential {
  /** The credential, to install on the device; it is not stored anywhere. */
  credential: string;
  device: DeviceSummary;
  /** Whether the device was known, with its credential revoked. */
  reissued: boolean;
}

/**
 * Adds device `id` with a new credential. A device whose credential was
 * revoked gets a new one and keeps its events; a device with a live
 * credential is refused, so a typo cannot cut a working device off.
 */
export async function addDevice(
  store: StateStore,
  id: string,
  name = id,
): Promise<NewDeviceCredential> {
  checkDeviceId(id);
  if (!/^[\w .@+-]{1,64}$/.test(name)) {
    throw new BadInputError(
      `device name "${name}": use 1 to 64 letters, digits, spaces and . _ @ + -`,
    );
  }
  const made = newSecret('tfd');
  const now = new Date().toISOString();
  return store.update((state) => {
    const known = state.devices.find((d) => d.id === id);
    if (known && !known.revoked) {
      throw new AlreadyExistsError(
        `device ${id} already has a credential (${known.credentialId}); ` +
          'revoke it first to issue a new one',
      );
    }
    const device: DeviceRecord = known ?? {
      id,
      name,
      credentialId: made.id,
      sha256: made.sha256,
      created: now,
      events: [],
    };
    if (known) {
      Object.assign(known, {
        name,
        credentialId: made.id,
        sha256: made.sha256,
        created: now,
      });
      delete known.revoked;
    } else {
      state.devices.push(device);
    }
    return {
      credential: made.secret,
      device: summary(device),
      reissued: known !== undefined,
    };
  });
}

/** Revokes device `id`'s credential; its events stay. */
export async function revokeDevice(
  store: StateStore,
  id: string,
): Promise<DeviceSummary> {
  return store.update((state) => {
    const device = state.devices.find((d) => d.id === id);
    if (!device) throw new NotFoundError(`no device with id ${id}`);
    device.revoked ??= new Date().toISOString();
    return summary(device);
  });
}

/**
 * The device a presented credential stands for, or undefined for a
 * malformed, unknown or revoked one.
 */
export async function findDevice(
  store: StateStore,
  presented: string,
): Promise<DeviceRecord | undefined> {
  const credentialId = secretId('tfd', presented);
  if (credentialId === undefined) return undefined;
  const device = (await store.read()).devices.find(
    (d) => d.credentialId === credentialId,
  );
  if (!device || device.revoked) return undefined;
  return secretMatches(device.sha256, presented) ? device : undefined;
}
