/**
 * A target's `custom` object: what a device reads to decide whether an image
 * is for it. Values must survive canonical JSON on every TUF implementation,
 * so floats and control characters are refused up front.
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

function checkValue(value: unknown, where: string): void {
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
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) {
      throw new BadInputError(
        `custom data at ${where}: strings may not hold control characters`,
      );
    }
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => checkValue(item, `${where}[${i}]`));
    return;
  }
  if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) checkValue(v, `${where}.${k}`);
    return;
  }
  throw new BadInputError(`custom data at ${where}: unsupported value`);
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
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(h)) {
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
  return Object.keys(out).length > 0 ? out : undefined;
}
