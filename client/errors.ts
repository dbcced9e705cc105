/**
 * The device side's errors. Like the repository side's (`src/errors.ts`),
 * each class is named after the failure and carries a stable `code`; the
 * two sides share none, since a device does not carry the repository code.
 */

export type ClientErrorCode =
  | 'KEY_TABLE'
  | 'TRANSPORT'
  | 'DOWNLOAD'
  | 'INTEGRITY'
  | 'PRECONDITION'
  | 'JOURNAL'
  | 'REPORT'
  | 'STATE'
  | 'CONFIG';

export class ClientError extends Error {
  readonly code: ClientErrorCode;

  constructor(
    code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Fetched root or targets metadata whose key table tufota never publishes:
 * one public key under two ids, which clients counting key ids (tuf-js,
 * python-tuf) would let meet a threshold of two alone, or a threshold its
 * listed keys cannot reach.
 */
export class KeyTableError extends ClientError {
  /** `root`, or the name of the targets role the file is for. */
  readonly role: string;
  readonly version: number;
  readonly url: string;

  constructor(role: string, version: number, url: string, problem: string) {
    super('KEY_TABLE', `${role} v${version} from ${url} ${problem}; refused`);
    this.role = role;
    this.version = version;
    this.url = url;
  }
}
