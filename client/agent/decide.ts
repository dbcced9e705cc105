/**
 * Which update a device takes: the one place that decides. It is pure (no
 * I/O, no clock, no logging) so the agent, `tufota-device` and tests ask it
 * the same question and get the same answer; the signed rollout policy will
 * replace its inside later behind the same signature.
 *
 * Today's rule, over verified targets only:
 * 1. A release is for this device when its custom data names the device's
 *    hardware class in `hardware` and, if it has `channels`, the device's
 *    channel. A release without `hardware` is for no device: flashing an
 *    image onto the wrong board can brick it, so silence never means "all".
 *    A release without `channels` is for every channel.
 * 2. Of those, the newest whose `fromVersion` (the lowest version it may
 *    update from) the running version meets is taken if it is newer than
 *    what runs. This makes stepping stones work: 1.0 goes to 1.5 when 2.0
 *    needs at least 1.5.
 * 3. Otherwise, when the newest release for the device is older than what
 *    runs, it is taken only if it says `downgrade: true`. Only the newest
 *    counts, so a device never goes back past a release still listed for it;
 *    to roll a fleet back, remove the bad release and mark the one before it.
 * 4. Anything else, including the running version itself, is "none".
 *
 * `channels` (an array of channel names) and `downgrade` (a boolean) are
 * not among `targets add`'s options yet; they are read from `--custom`.
 * A target whose release fields are malformed is skipped with its reason.
 */
import type { ReleaseFields } from '../../src/tuf/custom.js';

/** A verified target as tuf-js lists it (its `TargetFile` fits). */
export interface Candidate {
  readonly path: string;
  readonly length: number;
  readonly hashes: Readonly<Record<string, string>>;
  readonly custom?: Readonly<Record<string, unknown>>;
}

/** What a device knows about itself. */
export interface DeviceFacts {
  readonly hardware: string;
  readonly channel: string;
  /** The version it runs, a semantic version. */
  readonly version: string;
}

/** A target's release fields, checked. */
export interface Release extends ReleaseFields {
  version: string;
  hardware: string[];
  critical: boolean;
  /** Channels it is for; absent means every channel. */
  channels?: string[];
  /** May replace a newer running version. */
  downgrade: boolean;
}

/** A target not for this device, and why. */
export interface Skipped {
  path: string;
  reason: string;
}

/** What the device does; `reason` is for a person, as shown and reported. */
export type Decision<T extends Candidate = Candidate> =
  | {
      action: 'update';
      target: T;
      release: Release;
      reason: string;
      /** Targets not for this device, and why; for logs and status. */
      skipped: Skipped[];
    }
  | { action: 'none'; reason: string; skipped: Skipped[] };

/** A semantic version (2.0.0), parsed. */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  /** Pre-release identifiers; numeric ones as numbers. */
  pre: (string | number)[];
  text: string;
}

const IDENT = '[0-9A-Za-z-]+';
const SEMVER = new RegExp(
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)' +
    `(?:-(${IDENT}(?:\\.${IDENT})*))?(?:\\+${IDENT}(?:\\.${IDENT})*)?$`,
);

/**
 * Parses by Semantic Versioning 2.0.0, strictly: empty identifiers and
 * numeric pre-release identifiers with leading zeros are refused, as are
 * numbers past 2^53, since two such versions could compare equal.
 */
export function parseVersion(text: string): SemVer | undefined {
  if (text.length > 256) return undefined;
  const m = SEMVER.exec(text);
  if (!m) return undefined;
  const [major, minor, patch] = [m[1], m[2], m[3]].map(Number);
  if (![major, minor, patch].every(Number.isSafeInteger)) return undefined;
  const pre: (string | number)[] = [];
  for (const id of m[4]?.split('.') ?? []) {
    if (!/^\d+$/.test(id)) {
      pre.push(id);
      continue;
    }
    const n = Number(id);
    if ((id.length > 1 && id.startsWith('0')) || !Number.isSafeInteger(n)) {
      return undefined;
    }
    pre.push(n);
  }
  return { major, minor, patch, pre, text };
}

function sign(n: number): -1 | 0 | 1 {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

/** Precedence order; build metadata (`+...`) does not count. */
export function compareVersions(a: SemVer, b: SemVer): -1 | 0 | 1 {
  const core =
    sign(a.major - b.major) ||
    sign(a.minor - b.minor) ||
    sign(a.patch - b.patch);
  if (core !== 0) return core;

  // A pre-release is lower than its release.
  if (a.pre.length === 0 || b.pre.length === 0) {
    return sign(b.pre.length - a.pre.length);
  }
  for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return sign(x - y);
    // Numeric identifiers are lower than alphanumeric ones.
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return sign(a.pre.length - b.pre.length);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

interface Parsed<T> {
  target: T;
  release: Release;
  version: SemVer;
  from?: SemVer;
}

/** The checked release of a target, or why it has none. */
function parseRelease<T extends Candidate>(target: T): Parsed<T> | string {
  const c = target.custom ?? {};
  if (typeof c.version !== 'string') return 'has no custom.version';
  const version = parseVersion(c.version);
  if (!version) return `version "${c.version}" is not a semantic version`;
  if (!isStringArray(c.hardware)) return 'names no hardware class';
  let from: SemVer | undefined;
  if (c.fromVersion !== undefined) {
    from =
      typeof c.fromVersion === 'string'
        ? parseVersion(c.fromVersion)
        : undefined;
    if (!from) return 'has a fromVersion that is not a semantic version';
  }
  if (c.channels !== undefined && !isStringArray(c.channels)) {
    return 'has channels that are not an array of names';
  }
  for (const flag of ['critical', 'downgrade'] as const) {
    if (c[flag] !== undefined && typeof c[flag] !== 'boolean') {
      return `has a ${flag} that is not true or false`;
    }
  }
  const release: Release = {
    version: c.version,
    hardware: [...c.hardware],
    critical: c.critical === true,
    downgrade: c.downgrade === true,
  };
  if (from) release.fromVersion = from.text;
  if (c.channels !== undefined) release.channels = [...c.channels];
  return { target, release, version, from };
}

/** Newest first; equal versions by path, so the answer never wavers. */
function newestFirst<T extends Candidate>(a: Parsed<T>, b: Parsed<T>): number {
  return (
    compareVersions(b.version, a.version) ||
    (a.target.path < b.target.path ? -1 : 1)
  );
}

/**
 * Chooses the target a device with `facts` should install, if any.
 * Pure and total: it never throws on what the metadata holds.
 */
export function chooseUpdate<T extends Candidate>(
  candidates: readonly T[],
  facts: DeviceFacts,
): Decision<T> {
  const skipped: Skipped[] = [];
  const where = `hardware ${facts.hardware} on channel ${facts.channel}`;
  const running = parseVersion(facts.version);
  if (!running) {
    return {
      action: 'none',
      reason: `the running version "${facts.version}" is not a semantic version`,
      skipped,
    };
  }

  const mine: Parsed<T>[] = [];
  for (const target of candidates) {
    const parsed = parseRelease(target);
    if (typeof parsed === 'string') {
      skipped.push({ path: target.path, reason: parsed });
    } else if (!parsed.release.hardware.includes(facts.hardware)) {
      skipped.push({ path: target.path, reason: 'for other hardware' });
    } else if (
      parsed.release.channels &&
      !parsed.release.channels.includes(facts.channel)
    ) {
      skipped.push({ path: target.path, reason: 'for other channels' });
    } else {
      mine.push(parsed);
    }
  }
  if (mine.length === 0) {
    return {
      action: 'none',
      reason: `no release for ${where} among ${candidates.length} targets`,
      skipped,
    };
  }

  mine.sort(newestFirst);
  const newest = mine[0];
  const reachable = (p: Parsed<T>) =>
    !p.from || compareVersions(running, p.from) >= 0;
  const runs = running.text;

  const upgrade = mine.find(
    (p) => compareVersions(p.version, running) > 0 && reachable(p),
  );
  if (upgrade) {
    const via =
      upgrade === newest
        ? `the newest release for ${where}`
        : `a step towards ${newest.release.version}, which needs at ` +
          `least ${newest.release.fromVersion} to update from`;
    return {
      action: 'update',
      target: upgrade.target,
      release: upgrade.release,
      reason: `${upgrade.release.version} is ${via}; runs ${runs}`,
      skipped,
    };
  }

  const order = compareVersions(newest.version, running);
  if (order === 0) {
    return {
      action: 'none',
      reason: `already runs ${runs}, the newest release for ${where}`,
      skipped,
    };
  }
  if (order > 0) {
    return {
      action: 'none',
      reason:
        `${newest.release.version}, the newest release for ${where}, ` +
        `needs at least ${newest.release.fromVersion} to update from; ` +
        `runs ${runs}`,
      skipped,
    };
  }
  if (!newest.release.downgrade) {
    return {
      action: 'none',
      reason:
        `${newest.release.version}, the newest release for ${where}, is ` +
        `older than the running ${runs} and does not allow a downgrade`,
      skipped,
    };
  }
  if (!reachable(newest)) {
    return {
      action: 'none',
      reason:
        `${newest.release.version} allows a downgrade but needs at least ` +
        `${newest.release.fromVersion} to update from; runs ${runs}`,
      skipped,
    };
  }
  return {
    action: 'update',
    target: newest.target,
    release: newest.release,
    reason:
      `${newest.release.version}, the newest release for ${where}, allows ` +
      `a downgrade from ${runs}`,
    skipped,
  };
}
