/**
 * A refusal in words: what kind of attack or fault an error from the TUF
 * client or the download looks like, for the journal, the status and the
 * server. The kind comes first (`freeze:`, `rollback:` …) so a fleet's
 * reports can be counted by it; the error's own message follows.
 *
 * tuf-js and @tufjs/models each define their errors, and a device may
 * carry two copies of a class, so errors are told apart by name, not by
 * `instanceof`.
 */
import { ClientError } from '../errors.js';

const KINDS: Record<string, string> = {
  ExpiredMetadataError: 'freeze (metadata expired)',
  EqualVersionError: 'rollback (metadata version not newer)',
  BadVersionError: 'rollback (metadata version older or skipped)',
  UnsignedMetadataError: 'bad signature (metadata not signed by a threshold)',
  LengthOrHashMismatchError:
    'mix-and-match (metadata does not match what vouches for it)',
  DownloadLengthMismatchError: 'endless data (longer than allowed)',
  KeyTableError: 'bad key table (one key listed twice)',
  DownloadHTTPError: 'server error',
  DownloadError: 'transfer failed',
};

function nameChain(err: object): string[] {
  const names: string[] = [];
  for (
    let proto = Object.getPrototypeOf(err) as object | null;
    proto && proto !== Error.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    names.push((proto.constructor as { name: string }).name);
  }
  return names;
}

/**
 * tuf-js wraps some errors of loading a role into a plain RuntimeError
 * whose message holds the original; these tell the kind from the text.
 */
const WRAPPED: [RegExp, string][] = [
  [/Expected (hash|length) /, KINDS.LengthOrHashMismatchError],
  [/[Ee]xpired/, KINDS.ExpiredMetadataError],
  [/Expected version|[Nn]ew version .* must be/, KINDS.BadVersionError],
  [/[Ss]ignature|threshold/, KINDS.UnsignedMetadataError],
];

/** `kind: message` for `err`. */
export function describeRefusal(err: unknown): string {
  if (!(err instanceof Error)) return `error: ${String(err)}`;
  if (err instanceof ClientError && err.code === 'INTEGRITY') {
    return `tampered image: ${err.message}`;
  }
  for (const name of nameChain(err)) {
    const kind = KINDS[name];
    if (kind) return `${kind}: ${err.message}`;
  }
  if (err instanceof ClientError) {
    return `${err.code.toLowerCase()}: ${err.message}`;
  }
  for (const [pattern, kind] of WRAPPED) {
    if (pattern.test(err.message)) return `${kind}: ${err.message}`;
  }
  return `error: ${err.message}`;
}

const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/**
 * Whether `err` says only that the server could not be reached or was
 * busy (a network error, a timeout, a 5xx or 429), not that anything it
 * sent was refused. Such a cycle is tried again later, not reported as
 * an attack; a server that stays away is still seen, as the journal's
 * `unreachable` entries and, in time, expired metadata.
 */
export function isUnreachable(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 5; depth++) {
    if (e instanceof ClientError && e.code === 'TRANSPORT') return true;
    const { code, statusCode } = e as { code?: unknown; statusCode?: unknown };
    if (typeof code === 'string' && NETWORK.has(code)) return true;
    if (
      typeof statusCode === 'number' &&
      (statusCode >= 500 || statusCode === 429)
    ) {
      return true;
    }
    e = e.cause;
  }
  return false;
}
