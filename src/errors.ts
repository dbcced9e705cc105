/**
 * The repository side's errors. Each class is named after the TUF or
 * operational failure it reports and carries a stable `code` so scripts and
 * the CLI can tell failures apart without parsing messages.
 */

export type ErrorCode =
  | 'BAD_INPUT'
  | 'BAD_TARGET_PATH'
  | 'NO_DELEGATION'
  | 'UNSIGNED_METADATA'
  | 'BAD_PASSPHRASE'
  | 'NO_PASSPHRASE'
  | 'BAD_KEY_FILE'
  | 'BAD_PIN'
  | 'TOKEN'
  | 'CORRUPT_METADATA'
  | 'BAD_STAGED_FILE'
  | 'NOT_A_REPOSITORY'
  | 'ALREADY_EXISTS'
  | 'LOCKED'
  | 'NOT_FOUND'
  | 'WRITE_FAILED'
  | 'CORRUPT_STATE';

export class TufotaError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A value given by a user (option, argument, file) is not acceptable. */
export class BadInputError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_INPUT', message, options);
  }
}

/** A target path that could escape its folder or that no client can fetch. */
export class BadTargetPathError extends TufotaError {
  constructor(message: string) {
    super('BAD_TARGET_PATH', message);
  }
}

/** No delegated role is trusted for a target path. */
export class NoDelegationError extends TufotaError {
  constructor(message: string) {
    super('NO_DELEGATION', message);
  }
}

/**
 * Metadata does not carry a threshold of valid signatures. `missing` lists
 * the key ids whose signatures would each help reach the threshold.
 */
export class UnsignedMetadataError extends TufotaError {
  readonly role: string;
  readonly missing: string[];

  constructor(role: string, message: string, missing: string[]) {
    super('UNSIGNED_METADATA', message);
    this.role = role;
    this.missing = missing;
  }
}

export class BadPassphraseError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_PASSPHRASE', message, options);
  }
}

export class NoPassphraseError extends TufotaError {
  constructor(message: string) {
    super('NO_PASSPHRASE', message);
  }
}

export class BadKeyFileError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_KEY_FILE', message, options);
  }
}

/** A hardware token refused its PIN, or has locked it. */
export class BadPinError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_PIN', message, options);
  }
}

/**
 * A PKCS#11 module or token cannot do what was asked: the module will not
 * load, no token or key matches, the key on the token is not the expected
 * one, or the token lacks a mechanism.
 */
export class TokenError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOKEN', message, options);
  }
}

/** A metadata file is unreadable, not JSON, or not valid TUF metadata. */
export class CorruptMetadataError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CORRUPT_METADATA', message, options);
  }
}

/** A staged signing-event file that cannot be read as metadata. */
export class BadStagedFileError extends TufotaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_STAGED_FILE', message, options);
  }
}

export class NotARepositoryError extends TufotaError {
  constructor(message: string) {
    super('NOT_A_REPOSITORY', message);
  }
}

export class AlreadyExistsError extends TufotaError {
  constructor(message: string) {
    super('ALREADY_EXISTS', message);
  }
}

/** Another writer holds the repository lock. */
export class LockedError extends TufotaError {
  constructor(message: string) {
    super('LOCKED', message);
  }
}

export class NotFoundError extends TufotaError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/**
 * Writing a target into the repository failed (a full disk, a quota, an I/O
 * error): not the source's fault, so it names the repository file and the
 * errno.
 */
export class TargetWriteError extends TufotaError {
  /** The errno code, such as ENOSPC. */
  readonly errno: string;
  readonly path: string;

  constructor(source: string, path: string, err: unknown) {
    const errno =
      (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);
    super(
      'WRITE_FAILED',
      `cannot write ${path} in the repository while copying target file ` +
        `${source} (${errno})`,
      { cause: err },
    );
    this.errno = errno;
    this.path = path;
  }
}

/** A message for any thrown value, without losing a TufotaError's text. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The server's own state file (tokens, upload records) cannot be read. */
export class CorruptStateError extends TufotaError {
  constructor(message: string) {
    super('CORRUPT_STATE', message);
  }
}
