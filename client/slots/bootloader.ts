/**
 * The one interface every bootloader backend (file, GRUB, U-Boot)
 * implements: read the boot record from its two copies, write it as the
 * agent does, and write it as the boot firmware does. The counting the
 * firmware does with those writes is in boot.ts, shared by all backends.
 */
import type { BootRecord, BootState, Slot } from './record.js';

/** The backends. */
export type BootloaderKind = 'file' | 'grub' | 'uboot';

/** What reading the two copies of the record gave. */
export interface RecordRead {
  /** The current record; undefined when no copy holds one. */
  record?: BootRecord;
  /**
   * Set when a copy could not be used: one damaged copy (recovered from
   * the other) or both, naming what was wrong with each, for the journal.
   */
  fault?: string;
  /**
   * When no copy is readable: the last known-good slot as the backend
   * kept it apart from the record (file and GRUB keep a hint written with
   * every settled record), if it has one.
   */
  lastGood?: Slot;
}

/** A step a power cut can interrupt, as named to a StepHook. */
export interface Step {
  /** What is being done, e.g. `record-copy`, `slot-chunk`, `health-check`. */
  kind: StepKind;
  /** Where in the workflow, e.g. `install:mark-unbootable`. */
  label: string;
  /** The files the step may change; empty for the health check. */
  paths: readonly string[];
}

/** Kinds of interruptible steps. */
export type StepKind =
  'record-copy' | 'slot-chunk' | 'slot-sync' | 'note' | 'health-check';

/**
 * Runs `step`. Production code runs it as it is; the power-cut tests pass
 * a hook that stops it before, after or half-way (tearing the files it
 * changes) to play a power cut at every step that writes.
 */
export type StepHook = (step: Step, run: () => Promise<void>) => Promise<void>;

/** The hook production uses: run every step as it is. */
export const runStep: StepHook = (_step, run) => run();

/** What every backend provides. */
export interface Bootloader {
  readonly kind: BootloaderKind;
  /**
   * The slot booted when no copy of the record and no hint is readable:
   * the backend's default (GRUB's `tufota_fallback` set in grub.cfg,
   * U-Boot's default environment, the file backend's configured slot).
   */
  readonly fallback: Slot;
  /** The current record and any damage found on the way. */
  read(): Promise<RecordRead>;
  /**
   * Writes `state` as the agent does, with the next generation, so that a
   * cut at any moment leaves either the old record or the new one; each
   * copy is read back and compared. Throws `SlotError` `BOOT_RECORD` when
   * the write fails or does not read back as written.
   */
  write(state: BootState, label: string): Promise<BootRecord>;
  /**
   * Writes `record` as the boot firmware does: in place, generation kept
   * (GRUB cannot add). Throws when the change does not count, i.e. the
   * record read next does not hold it.
   */
  writeAsFirmware(record: BootRecord, label: string): Promise<void>;
}
