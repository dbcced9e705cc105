/**
 * Target paths. A target path is part of a URL on every client and part of a
 * file name on the repository, so it is held to a narrow form: relative,
 * forward slashes, no `.` or `..` segments, characters that need no escaping.
 */
import { posix } from 'node:path';
import { BadTargetPathError } from '../errors.js';

const SEGMENT = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$/;
const MAX_PATH = 512;
/**
 * The longest segment. The last one is stored as `<128-hex sha512>.NAME`,
 * and file systems allow 255 bytes a name: 100 leaves room for the hash and
 * for any temporary name built from it (segments are ASCII, a byte each).
 */
export const MAX_SEGMENT = 100;

export function checkTargetPath(path: string): string {
  if (path.length === 0) throw new BadTargetPathError('target path is empty');
  if (path.length > MAX_PATH) {
    throw new BadTargetPathError(
      `target path is longer than ${MAX_PATH} characters`,
    );
  }
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) {
    throw new BadTargetPathError(
      `target path "${path}" is absolute; give it relative, e.g. images/fw.img`,
    );
  }
  if (path.includes('\\')) {
    throw new BadTargetPathError(
      `target path "${path}" contains a backslash; use forward slashes`,
    );
  }
  for (const segment of path.split('/')) {
    if (segment === '..' || segment === '.') {
      throw new BadTargetPathError(
        `target path "${path}" contains a "${segment}" segment`,
      );
    }
    if (segment.length > MAX_SEGMENT) {
      throw new BadTargetPathError(
        `target path "${path}" has a segment of ${segment.length} ` +
          `characters; the limit is ${MAX_SEGMENT} characters a segment ` +
          '(stored names add a 129-character hash prefix)',
      );
    }
    if (!SEGMENT.test(segment)) {
      throw new BadTargetPathError(
        `target path "${path}" has an empty or unsupported segment ` +
          `"${segment}": use letters, digits and . _ + - (not leading .)`,
      );
    }
  }
  return path;
}

/**
 * Where a target is stored under a consistent snapshot: `DIR/HASH.NAME`, as
 * clients request it.
 */
export function consistentTargetPath(path: string, hash: string): string {
  const dir = posix.dirname(path);
  const name = `${hash}.${posix.basename(path)}`;
  return dir === '.' ? name : `${dir}/${name}`;
}
