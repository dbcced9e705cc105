/**
 * The device API, `/api/v1/devices/...`: devices post the events of their
 * updates, operators read them.
 *
 *   POST /api/v1/devices/ID/events   [event, ...]   the device's credential
 *   GET  /api/v1/devices                             admin or rollouts
 *   GET  /api/v1/devices/ID/events[?since=SEQ]       admin or rollouts
 *
 * A device posts with its own credential (devices.ts) and only for its
 * own id. A batch is checked whole (client/agent/events.ts) and stored
 * whole or not at all. Posting is idempotent: an event whose id is
 * already stored for the device is acknowledged as a duplicate and not
 * stored again, so a device that lost an answer sends the batch again
 * without making two events of one; the same id with other content is a
 * 409. Each device keeps its newest MAX_EVENTS_PER_DEVICE events, in the
 * order they arrived, each with the server's time of receipt; older ones
 * are dropped and counted, and a re-sent event older than what is kept
 * would be stored again (a device re-sends only its latest batches).
 */
import express, { type RequestHandler, type Router } from 'express';
import {
  batchProblem,
  eventFields,
  sameEvent,
  type DeviceEvent,
} from '../../client/agent/events.js';
import { BadInputError, NotFoundError } from '../errors.js';
import { logger } from '../log.js';
import type { DeviceRecord, StateStore } from '../state/store.js';
import { checkDeviceId, findDevice, summary } from './devices.js';
import { HttpError } from './http-errors.js';
import { findToken } from './tokens.js';

const log = logger.child({ module: 'server/device-api' });

/** Events kept per device; the oldest go first. */
export const MAX_EVENTS_PER_DEVICE = 1000;

/** What a device is told about a batch it posted. */
export interface BatchAnswer {
  accepted: number;
  duplicates: number;
  /** The highest seq stored for the device so far; null before any. */
  lastSeq: number | null;
}

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="tufota-device"' };

function deviceOf(res: express.Response): DeviceRecord {
  return res.locals.device as DeviceRecord;
}

/**
 * Authenticates a device for the `:id` of the path: no credential or a
 * malformed, unknown or revoked one is 401; an admin token, or another
 * device's id, is 403.
 */
function requireDevice(store: StateStore): RequestHandler {
  return (req, res, next) => {
    const run = async () => {
      const match = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '');
      if (!match) {
        throw new HttpError(401, 'a device credential is required', CHALLENGE);
      }
      const device = await findDevice(store, match[1]);
      if (!device) {
        const token = await findToken(store, match[1]);
        if (token) {
          log.info({ tokenId: token.id }, 'admin token refused for events');
          throw new HttpError(
            403,
            `token ${token.id} is an admin API token, not a device ` +
              'credential; devices post events with their own',
          );
        }
        throw new HttpError(401, 'the device credential is not valid', {
          'WWW-Authenticate':
            'Bearer realm="tufota-device", error="invalid_token"',
        });
      }
      const id = checkDeviceId(String(req.params.id));
      if (id !== device.id) {
        log.warn({ device: device.id, path: id }, 'device refused for another');
        throw new HttpError(
          403,
          `this credential is device ${device.id}'s; it posts no events for ${id}`,
        );
      }
      res.locals.device = device;
    };
    run().then(() => next(), next);
  };
}

/** `since` as a seq, or -1 (everything) when absent. */
function sinceOf(req: express.Request): number {
  const value = req.query.since;
  if (value === undefined) return -1;
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) {
    throw new BadInputError('since must be a whole number from 0, given once');
  }
  return Number(value);
}

/**
 * Stores the new events of `batch` for device `id` and counts the rest
 * as duplicates, or throws (409) and stores nothing.
 */
function storeBatch(
  store: StateStore,
  id: string,
  batch: DeviceEvent[],
): Promise<BatchAnswer & { dropped: number }> {
  const received = new Date().toISOString();
  return store.update((state) => {
    const device = state.devices.find((d) => d.id === id);
    if (!device || device.revoked) {
      throw new HttpError(401, 'the device credential was revoked', CHALLENGE);
    }

    // Every check before any change: a refused batch leaves no trace.
    const known = new Map(device.events.map((e) => [e.eventId, e]));
    const fresh: DeviceEvent[] = [];
    for (const [i, event] of batch.entries()) {
      const stored = known.get(event.eventId);
      if (!stored) {
        fresh.push(event);
      } else if (!sameEvent(stored, event)) {
        throw new HttpError(
          409,
          `events[${i}].eventId ${event.eventId} is already stored with ` +
            `other content (seq ${stored.seq}, ${stored.type}); nothing of ` +
            'this batch was stored',
        );
      }
    }

    const last = device.lastSeq ?? -1;
    if (fresh.length > 0 && fresh[0].seq <= last) {
      log.warn(
        { device: id, seq: fresh[0].seq, lastSeq: last },
        'new event not above the last seq stored; the device may have been reset',
      );
    }
    device.events.push(...fresh.map((e) => ({ ...eventFields(e), received })));
    const dropped = Math.max(0, device.events.length - MAX_EVENTS_PER_DEVICE);
    if (dropped > 0) {
      device.events.splice(0, dropped);
      device.dropped = (device.dropped ?? 0) + dropped;
    }
    if (fresh.length > 0) {
      device.lastSeq = Math.max(last, ...fresh.map((e) => e.seq));
    }
    device.lastSeen = received;
    return {
      accepted: fresh.length,
      duplicates: batch.length - fresh.length,
      lastSeq: device.lastSeq ?? null,
      dropped,
    };
  });
}

export function deviceApi(options: {
  store: StateStore;
  /** Who may read devices and their events. */
  read: RequestHandler;
}): Router {
  const { store } = options;
  const router = express.Router();
  // A batch is at most MAX_BATCH_BYTES (64 KiB); body-parser refuses more.
  const json = express.json({ limit: '64kb', strict: true });

  router.post('/:id/events', requireDevice(store), json, (req, res, next) => {
    const run = async () => {
      const id = deviceOf(res).id;
      const body: unknown = req.body;
      if (body === undefined) {
        throw new BadInputError(
          'the body must be a JSON array of events (Content-Type: ' +
            'application/json)',
        );
      }
      const problem = batchProblem(body);
      if (problem) throw new BadInputError(`${problem}; nothing was stored`);
      const { dropped, ...answer } = await storeBatch(
        store,
        id,
        body as DeviceEvent[],
      );
      log.info({ device: id, ...answer }, 'device events stored');
      if (dropped > 0) {
        log.info(
          { device: id, dropped, kept: MAX_EVENTS_PER_DEVICE },
          'oldest device events dropped',
        );
      }
      res.json(answer);
    };
    run().catch(next);
  });

  router.get('/', options.read, (_req, res, next) => {
    store
      .read()
      .then((state) => res.json({ devices: state.devices.map(summary) }))
      .catch(next);
  });

  router.get('/:id/events', options.read, (req, res, next) => {
    const run = async () => {
      const id = checkDeviceId(String(req.params.id));
      const since = sinceOf(req);
      const device = (await store.read()).devices.find((d) => d.id === id);
      if (!device) throw new NotFoundError(`no device with id ${id}`);
      res.json({
        device: summary(device),
        events: device.events.filter((e) => e.seq > since),
      });
    };
    run().catch(next);
  });

  return router;
}
