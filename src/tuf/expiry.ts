/**
 * Expiry periods and refresh windows. A role "needs refresh" once the time
 * left before it expires is shorter than its refresh window; online roles are
 * re-signed then, offline roles are flagged to their key holders.
 */
import { BadInputError } from '../errors.js';
import { ROOT, SNAPSHOT, TARGETS, TIMESTAMP } from './roles.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export interface ExpiryPolicy {
  /** How long a newly signed version stays valid, in milliseconds. */
  period: number;
  /** How long before expiry the role counts as due for re-signing. */
  refreshWindow: number;
}

/** Which policy a role uses: its own, or the one for delegated roles. */
export type ExpiryKey =
  | typeof ROOT
  | typeof TARGETS
  | typeof SNAPSHOT
  | typeof TIMESTAMP
  | 'delegated';

export type ExpiryPolicies = Record<ExpiryKey, ExpiryPolicy>;

export const EXPIRY_KEYS: readonly ExpiryKey[] = [
  ROOT,
  TARGETS,
  'delegated',
  SNAPSHOT,
  TIMESTAMP,
];

/**
 * Defaults close to what python-tuf and tuf-on-ci ship: long-lived offline
 * roles with weeks of warning, short-lived online roles re-signed at half
 * their period so one missed run never lets them lapse.
 */
export const DEFAULT_EXPIRY: ExpiryPolicies = {
  root: { period: 365 * DAY, refreshWindow: 60 * DAY },
  targets: { period: 365 * DAY, refreshWindow: 60 * DAY },
  delegated: { period: 90 * DAY, refreshWindow: 14 * DAY },
  snapshot: { period: 7 * DAY, refreshWindow: 3.5 * DAY },
  timestamp: { period: 1 * DAY, refreshWindow: 12 * HOUR },
};

export function expiryKeyFor(role: string): ExpiryKey {
  switch (role) {
    case ROOT:
    case TARGETS:
    case SNAPSHOT:
    case TIMESTAMP:
      return role;
    default:
      return 'delegated';
  }
}

export function isExpiryKey(value: string): value is ExpiryKey {
  return (EXPIRY_KEYS as readonly string[]).includes(value);
}

const UNITS: Record<string, number> = {
  s: SECOND,
  m: MINUTE,
  h: HOUR,
  d: DAY,
  w: 7 * DAY,
};

/**
 * Parses `90d`, `12h`, `30m`, `1w`, or a bare number of days. Fractions are
 * allowed (`0.5d`); zero and negative periods are not.
 */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)([smhdw]?)$/.exec(text.trim());
  if (!match) {
    throw new BadInputError(
      `${what}: "${text}" is not a duration; use forms like 365d, 12h, 30m`,
    );
  }
  const value = Number(match[1]) * UNITS[match[2] || 'd'];
  if (!(value >= SECOND)) {
    throw new BadInputError(`${what}: "${text}" must be at least one second`);
  }
  // Past 100 years a date soon needs more than four year digits, which
  // clients that parse RFC 3339 (python-tuf, go-tuf) refuse.
  if (!Number.isFinite(value) || value > MAX_PERIOD) {
    throw new BadInputError(
      `${what}: "${text}" is too long; at most ${MAX_PERIOD / DAY}d`,
    );
  }
  return Math.round(value);
}

/**
 * The longest expiry period: 100 years (of 365.25 days). Longer periods
 * have no use and soon leave the range of dates JavaScript can represent.
 */
export const MAX_PERIOD = 36_525 * DAY;

/**
 * Checks one role's policy: a period from a second to 100 years, and a
 * refresh window shorter than the period, or the role would be due for
 * re-signing the moment it is signed.
 */
export function checkExpiryPolicy(key: string, policy: ExpiryPolicy): void {
  const { period, refreshWindow } = policy;
  if (!Number.isFinite(period) || period < SECOND) {
    throw new BadInputError(
      `${key}: the expiry period must be at least one second`,
    );
  }
  if (period > MAX_PERIOD) {
    throw new BadInputError(
      `${key}: the expiry period ${formatDuration(period)} is longer than ` +
        `100 years (${formatDuration(MAX_PERIOD)})`,
    );
  }
  if (!Number.isFinite(refreshWindow) || refreshWindow < 0) {
    throw new BadInputError(`${key}: the refresh window must not be negative`);
  }
  if (refreshWindow >= period) {
    throw new BadInputError(
      `${key}: the refresh window ${formatDuration(refreshWindow)} is not ` +
        `shorter than the expiry period ${formatDuration(period)}; the role ` +
        'would always be due for re-signing',
    );
  }
}

export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  const days = Math.floor(rest / DAY);
  rest -= days * DAY;
  const hours = Math.floor(rest / HOUR);
  rest -= hours * HOUR;
  const minutes = Math.floor(rest / MINUTE);
  if (days > 0) return `${sign}${days}d${hours}h`;
  if (hours > 0) return `${sign}${hours}h${minutes}m`;
  return `${sign}${minutes}m`;
}

/**
 * The `expires` string for a version signed at `now`. The specification's
 * form has no fractional seconds, and python-tuf rejects any other form.
 */
export function expiresAt(now: Date, period: number): string {
  const when = new Date(Math.floor((now.getTime() + period) / 1000) * 1000);
  return when.toISOString().replace('.000Z', 'Z');
}

export function msUntil(expires: string, now: Date): number {
  return Date.parse(expires) - now.getTime();
}

/**
 * Why an `expires` value is not one every client reads the same way, or
 * undefined: it must be `YYYY-MM-DDTHH:MM:SSZ` (what the specification's
 * examples and python-tuf and go-tuf parse), a real date, at most 100
 * years past `now`. tuf-js takes an unparseable date as never expiring.
 */
export function expiresProblem(
  expires: string,
  now = new Date(),
): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(expires)) {
    return `expires "${expires}" is not of the form YYYY-MM-DDTHH:MM:SSZ`;
  }
  const time = Date.parse(expires);
  if (
    Number.isNaN(time) ||
    new Date(time).toISOString().slice(0, 19) !== expires.slice(0, 19)
  ) {
    return `expires "${expires}" is not a real date`;
  }
  if (time - now.getTime() > MAX_PERIOD) {
    return `expires ${expires}, more than 100 years ahead`;
  }
  return undefined;
}
