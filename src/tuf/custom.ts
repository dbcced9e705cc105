/**
 * A target's `custom` object: what a device reads to decide whether an image
 * is for it. Values must survive canonical JSON on every TUF implementation,
 * so floats, control characters, characters outside the Basic Multilingual
 * Plane and deep nesting are refused up front, in values and keys alike.
 */
import { BadInputError } from '../errors.js';

export interface ReleaseFields {
  version?: string;
  hardware?: string[];
  fromVersion?: string;
  critical?: boolean;
}

// Versions compare as semantic versions on devices; the build part is kept.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

export function checkVersion(value: string, what: string): string {
  if (!SEMVER.test(value)) {
    throw new BadInputError(
      `${what} "${value}" is not a semantic version such as 1.4.0`,
    );
  }
  return value;
}

/** Containers (objects and arrays) nested in one another, at most. */
export const MAX_CUSTOM_DEPTH = 32;

// Characters outside the Basic Multilingual Plane are surrogate pairs in
// UTF-16. Canonical JSON here sorts keys by UTF-16 code unit, python's
// securesystemslib by code point, and the two orders differ for them; a
// lone surrogate has no UTF-8 form at all. Either way python-tuf clients
// would compute other bytes than were signed.
const SURROGATE = /[\uD800-\uDFFF]/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkText(text: string, where: string, what: string): void {
  if (CONTROL.test(text)) {
    throw new BadInputError(
      `custom data at ${where}: ${what} may not hold control characters`,
    );
  }
  if (SURROGATE.test(text)) {
    throw new BadInputError(
      `custom data at ${where}: ${what} may not hold characters outside the ` +
        'Basic Multilingual Plane (such as emoji) or lone surrogates: ' +
        'python-tuf clients sort and encode them differently and could not ' +
        'verify the role',
    );
  }
}

function checkValue(value: unknown, where: string, depth = 0): void {
  if (value === null || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new BadInputError(
        `custom data at ${where}: ${value} is not a whole number; ` +
          'canonical JSON has no fractions (use a string)',
      );
    }
    return;
  }
  if (typeof value === 'string') {
    checkText(value, where, 'strings');
    return;
  }
  if (typeof value === 'object') {
    if (depth >= MAX_CUSTOM_DEPTH) {
      throw new BadInputError(
        `custom data at ${where}: nested deeper than ${MAX_CUSTOM_DEPTH} levels`,
      );
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => checkValue(item, `${where}[${i}]`, depth + 1));
      return;
    }
    for (const [k, v] of Object.entries(value)) {
      // The key is checked before it is shown in any message.
      checkText(k, `${where}, key ${JSON.stringify(k)}`, 'keys');
      checkValue(v, `${where}.${k}`, depth + 1);
    }
    return;
  }
  throw new BadInputError(`custom data at ${where}: unsupported value`);
}

const HARDWARE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The release fields devices act on, whichever way they were given
 * (`--custom` or their own options): a device must never find a version
 * that is not a semantic version or a `critical` that is not a boolean.
 */
function checkReleaseFields(custom: Record<string, unknown>): void {
  for (const field of ['version', 'fromVersion'] as const) {
    const value = custom[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') {
      throw new BadInputError(
        `custom data at custom.${field}: must be a semantic version string ` +
          'such as 1.4.0',
      );
    }
    checkVersion(value, `custom.${field}`);
  }
  if (custom.hardware !== undefined) {
    const hardware = custom.hardware;
    if (!Array.isArray(hardware)) {
      throw new BadInputError(
        'custom data at custom.hardware: must be an array of hardware classes',
      );
    }
    hardware.forEach((h: unknown, i) => {
      if (typeof h !== 'string' || !HARDWARE.test(h)) {
        throw new BadInputError(
          `custom data at custom.hardware[${i}]: must be a string of 1 to 64 ` +
            'letters, digits, . _ or -',
        );
      }
    });
  }
  if (custom.critical !== undefined && typeof custom.critical !== 'boolean') {
    throw new BadInputError(
      'custom data at custom.critical: must be true or false',
    );
  }
}

/**
 * Checks custom data from anywhere (a draft, a published role) by the rules
 * `--custom` follows: a JSON object whose values survive canonical JSON on
 * every TUF implementation, with well-typed release fields.
 */
export function checkCustom(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadInputError('custom data must be a JSON object');
  }
  checkValue(value, 'custom');
  checkReleaseFields(value as Record<string, unknown>);
  return value as Record<string, unknown>;
}

/** Parses and checks `--custom` JSON; the result is a plain object. */
export function parseCustom(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadInputError(`--custom is not valid JSON: ${String(err)}`, {
      cause: err,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadInputError('--custom must be a JSON object');
  }
  checkValue(value, 'custom');
  checkReleaseFields(value as Record<string, unknown>);
  return value as Record<string, unknown>;
}

/** Merges release fields given as options into custom data. */
export function releaseCustom(
  base: Record<string, unknown> | undefined,
  fields: ReleaseFields,
): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = { ...(base ?? {}) };
  if (fields.version !== undefined) {
    out.version = checkVersion(fields.version, '--version');
  }
  if (fields.hardware !== undefined && fields.hardware.length > 0) {
    for (const h of fields.hardware) {
      if (!HARDWARE.test(h)) {
        throw new BadInputError(
          `--hardware "${h}" must be letters, digits, . _ or -`,
        );
      }
    }
    out.hardware = [...new Set(fields.hardware)];
  }
  if (fields.fromVersion !== undefined) {
    out.fromVersion = checkVersion(fields.fromVersion, '--from-version');
  }
  if (fields.critical !== undefined) out.critical = fields.critical;
  checkValue(out, 'custom');
  checkReleaseFields(out);
  return Object.keys(out).length > 0 ? out : undefined;
}
