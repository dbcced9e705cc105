/**
 * Device events: the steps a device reports to the server, and the one
 * check of their form that both sides run. The device checks an event
 * before it queues it (an event the server would refuse must never wait
 * in the outbox), and the server checks every event it receives; the
 * rules are this code on both sides, so they cannot drift apart.
 *
 * Pure: no I/O and no imports. The repository side imports it
 * (src/server/device-api.ts, src/state/): the one module of client/ it
 * does, and it may because a server carrying it carries nothing a device
 * would not. The device side never imports the server's code in turn.
 */

/** Every kind of event a device reports, in the order an update runs. */
export const DEVICE_EVENT_TYPES = [
  'download-started',
  'download-finished',
  'download-failed',
  'install-started',
  'install-finished',
  'install-failed',
  'trial-boot',
  'committed',
  'rolled-back',
  'precondition-refused',
  'deferred',
  'update-refused',
  'clock-absurd',
  'boot-fault',
] as const;

/** One of DEVICE_EVENT_TYPES. */
export type DeviceEventType = (typeof DEVICE_EVENT_TYPES)[number];

/** What a device id may be: safe in a URL path, a file name and a log. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DEVICE_ID_RULE =
  '1 to 64 of A-Z a-z 0-9 . _ -, the first a letter or digit';

/** A UUID, or any 16 to 64 of A-Z a-z 0-9 _ - (a UUID is one of those). */
export const EVENT_ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/** Most events in one batch. */
export const MAX_BATCH_EVENTS = 100;
/** Most bytes of one batch's JSON body. */
export const MAX_BATCH_BYTES = 64 * 1024;

/** Longest value of each text field, in UTF-16 code units. */
export const TEXT_LIMITS = {
  deploymentId: 128,
  runningVersion: 64,
  targetVersion: 64,
  target: 1024,
  reason: 1024,
} as const;

/** A text field of an event. */
export type EventTextField = keyof typeof TEXT_LIMITS;

/** One event, as the device sends it and the server stores it. */
export interface DeviceEvent {
  /** Fixed when the event is queued, so a re-send is known as one. */
  eventId: string;
  /** The device's own counter, given when the event is queued. */
  seq: number;
  type: DeviceEventType;
  /** ISO 8601 by the device's clock, which may be absurd. */
  time: string;
  deploymentId?: string;
  runningVersion?: string;
  targetVersion?: string;
  target?: string;
  reason?: string;
}

const TEXT_FIELDS = Object.keys(TEXT_LIMITS) as EventTextField[];
const FIELDS = new Set<string>([
  'eventId',
  'seq',
  'type',
  'time',
  ...TEXT_FIELDS,
]);

const ISO_TIME =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** Why `id` is not a device id, or undefined if it is one. */
export function deviceIdProblem(id: string): string | undefined {
  if (DEVICE_ID_PATTERN.test(id)) return undefined;
  return `device id ${JSON.stringify(id)} is not valid: use ${DEVICE_ID_RULE}`;
}

/**
 * Why `value` is not an event, naming the field, or undefined if it is
 * one. `at` prefixes the field's name (`events[3].`).
 */
export function eventProblem(value: unknown, at = ''): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const what = at ? at.slice(0, -1) : 'an event';
    return `${what} must be a JSON object`;
  }
  const event = value as Record<string, unknown>;
  const unknown = Object.keys(event).find((k) => !FIELDS.has(k));
  if (unknown !== undefined) {
    return `${at}${unknown} is not a field of an event`;
  }
  if (typeof event.eventId !== 'string') {
    return `${at}eventId must be a string`;
  }
  if (!EVENT_ID_PATTERN.test(event.eventId)) {
    return `${at}eventId must be a UUID or 16 to 64 of A-Z a-z 0-9 _ -`;
  }
  const seq = event.seq;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) {
    return `${at}seq must be a whole number from 0`;
  }
  if (!(DEVICE_EVENT_TYPES as readonly unknown[]).includes(event.type)) {
    return `${at}type must be one of ${DEVICE_EVENT_TYPES.join(', ')}`;
  }
  const time = event.time;
  if (
    typeof time !== 'string' ||
    !ISO_TIME.test(time) ||
    Number.isNaN(Date.parse(time))
  ) {
    return `${at}time must be an ISO 8601 date and time with a zone`;
  }
  for (const field of TEXT_FIELDS) {
    const text = event[field];
    if (text === undefined) continue;
    if (typeof text !== 'string') return `${at}${field} must be a string`;
    if (text.length > TEXT_LIMITS[field]) {
      return `${at}${field} is longer than ${TEXT_LIMITS[field]} characters`;
    }
  }
  return undefined;
}

/**
 * Why `value` is not a batch (a list of 1 to MAX_BATCH_EVENTS events in
 * ascending seq, no event id twice), naming the event by its index, or
 * undefined if it is one.
 */
export function batchProblem(value: unknown): string | undefined {
  if (!Array.isArray(value)) {
    return 'the body must be a JSON array of events';
  }
  if (value.length === 0 || value.length > MAX_BATCH_EVENTS) {
    return (
      `a batch holds 1 to ${MAX_BATCH_EVENTS} events, ` + `not ${value.length}`
    );
  }
  const ids = new Map<string, number>();
  for (const [i, item] of value.entries()) {
    const problem = eventProblem(item, `events[${i}].`);
    if (problem) return problem;
    const event = item as DeviceEvent;
    const first = ids.get(event.eventId);
    if (first !== undefined) {
      return `events[${i}].eventId repeats that of events[${first}]`;
    }
    ids.set(event.eventId, i);
    if (i > 0 && event.seq <= (value[i - 1] as DeviceEvent).seq) {
      return (
        `events[${i}].seq ${event.seq} is not above events[${i - 1}].seq; ` +
        'a batch is sent in ascending seq'
      );
    }
  }
  return undefined;
}

/** Whether two events with the same id say the same thing. */
export function sameEvent(a: DeviceEvent, b: DeviceEvent): boolean {
  return [...FIELDS].every(
    (k) =>
      (a as unknown as Record<string, unknown>)[k] ===
      (b as unknown as Record<string, unknown>)[k],
  );
}

/** Only the fields of an event, in a fixed order (a stored one has more). */
export function eventFields(event: DeviceEvent): DeviceEvent {
  const out: Record<string, unknown> = {};
  for (const k of FIELDS) {
    const v = (event as unknown as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out as unknown as DeviceEvent;
}
