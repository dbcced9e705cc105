/**
 * The slot installer's errors. The device side keeps its errors in
 * `client/errors.ts`, but `client/slots/` imports nothing of the project
 * (the part that must never fail depends on no other part), so its one
 * class lives here, with a stable `code` the agent can journal.
 */

export type SlotErrorCode =
  /** The image, or what was read back from the slot, is not the target. */
  | 'INTEGRITY'
  /** The slot is smaller than the image; refused before it is touched. */
  | 'NO_SPACE'
  /** The boot record could not be read, written or verified. */
  | 'BOOT_RECORD'
  /** The boot state forbids the step (a trial is running, say). */
  | 'SLOT_STATE'
  /** A bootloader tool is missing, failed, or said something unexpected. */
  | 'BOOTLOADER'
  /** Reading or writing a slot failed. */
  | 'SLOT_IO'
  /** The configuration names something impossible. */
  | 'CONFIG';

/** Every failure of the slot installer, told apart by `code`. */
export class SlotError extends Error {
  readonly code: SlotErrorCode;

  constructor(code: SlotErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The message of any thrown value, for logs and results. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
