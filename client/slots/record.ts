/**
 * The boot-state record that the agent and the bootloader share, and its
 * form as bootloader environment variables. No I/O here.
 *
 * The record is six variables. `tufota_check` is the record's checksum:
 * its other five fields joined with `:`. It is deliberately this simple,
 * because the bootloader must recompute it after taking a try, and GRUB's
 * script language has string comparison but no arithmetic and no hashing.
 * A copy whose fields do not agree with its check (torn mid-write, half
 * updated, edited by hand) is unreadable. The containers add their own
 * checks where they have them: the file backend and U-Boot's environment
 * keep a CRC-32 over each copy; a GRUB environment block has only its
 * header (see docs/device-integration.md).
 */

/** The two slots. */
export const SLOTS = ['a', 'b'] as const;

/** One of the two slots. */
export type Slot = (typeof SLOTS)[number];

/**
 * The most tries a trial can be armed with: GRUB counts down through a
 * written-out chain of `if`s, one per value, and U-Boot's `setexpr`
 * prints hexadecimal, which agrees with decimal only below 10.
 */
export const MAX_TRIES = 9;

/** The tries a trial is armed with unless the integrator says otherwise. */
export const DEFAULT_TRIES = 3;

/** What the agent asks for; the bootloader adds the generation. */
export interface BootState {
  /** The slot booted next: the trial slot while a trial is armed. */
  active: Slot;
  /** The last known-good slot; booted whenever no trial is taken. */
  good: Slot;
  /** Whether a trial boot of `active` is armed. */
  trial: boolean;
  /** Trial boots left, 0 to MAX_TRIES; 0 when no trial is armed. */
  tries: number;
}

/** The whole record as stored. */
export interface BootRecord extends BootState {
  /**
   * Raised by one on every write of the agent, so of two valid copies
   * the newer is known; the bootloader's own writes keep it.
   */
  generation: number;
}

/** Variable names, as they appear in grubenv and the U-Boot environment. */
export const RECORD_VARS = [
  'tufota_active',
  'tufota_good',
  'tufota_trial',
  'tufota_tries',
  'tufota_gen',
  'tufota_check',
] as const;

/** The value `tufota_check` must hold for `record`. */
export function checkValue(record: BootRecord): string {
  const trial = record.trial ? '1' : '0';
  return `${record.active}:${record.good}:${trial}:${record.tries}:${record.generation}`;
}

/** The record's variables, check included. */
export function encodeRecord(record: BootRecord): Record<string, string> {
  return {
    tufota_active: record.active,
    tufota_good: record.good,
    tufota_trial: record.trial ? '1' : '0',
    tufota_tries: String(record.tries),
    tufota_gen: String(record.generation),
    tufota_check: checkValue(record),
  };
}

/** A decoded copy: the record, or why the copy is unreadable. */
export type DecodedCopy =
  { ok: true; record: BootRecord } | { ok: false; problem: string };

function isSlot(value: string | undefined): value is Slot {
  return value === 'a' || value === 'b';
}

/**
 * Reads a record from environment variables; anything missing, out of
 * range or disagreeing with the check makes the copy unreadable.
 */
export function decodeRecord(
  vars: Readonly<Record<string, string | undefined>>,
): DecodedCopy {
  const missing = RECORD_VARS.filter((v) => vars[v] === undefined);
  if (missing.length > 0) {
    return { ok: false, problem: `missing ${missing.join(', ')}` };
  }
  const { tufota_active: active, tufota_good: good } = vars;
  if (!isSlot(active) || !isSlot(good)) {
    return { ok: false, problem: 'a slot is neither a nor b' };
  }
  if (!/^[01]$/.test(vars.tufota_trial ?? '')) {
    return { ok: false, problem: 'tufota_trial is neither 0 nor 1' };
  }
  if (!/^[0-9]$/.test(vars.tufota_tries ?? '')) {
    return { ok: false, problem: `tufota_tries is not 0 to ${MAX_TRIES}` };
  }
  const generation = Number(vars.tufota_gen);
  if (
    !/^(0|[1-9][0-9]{0,14})$/.test(vars.tufota_gen ?? '') ||
    !Number.isSafeInteger(generation)
  ) {
    return { ok: false, problem: 'tufota_gen is not a whole number' };
  }
  const record: BootRecord = {
    active,
    good,
    trial: vars.tufota_trial === '1',
    tries: Number(vars.tufota_tries),
    generation,
  };
  if (vars.tufota_check !== checkValue(record)) {
    return { ok: false, problem: 'tufota_check does not match the fields' };
  }
  const problem = stateProblem(record);
  return problem ? { ok: false, problem } : { ok: true, record };
}

/**
 * Why a state breaks the record's rules, if it does: with no trial the
 * active slot is the known-good one and no tries are left; a trial is of
 * the other slot.
 */
export function stateProblem(state: BootState): string | undefined {
  if (!Number.isInteger(state.tries) || state.tries < 0) {
    return `tries ${state.tries} is not a count`;
  }
  if (state.tries > MAX_TRIES) {
    return `tries ${state.tries} is more than ${MAX_TRIES}`;
  }
  if (!state.trial && (state.active !== state.good || state.tries !== 0)) {
    return 'no trial is armed, yet the active slot or tries say otherwise';
  }
  if (state.trial && state.active === state.good) {
    return 'a trial is armed of the known-good slot itself';
  }
  return undefined;
}

/** The slot that is not `slot`. */
export function otherSlot(slot: Slot): Slot {
  return slot === 'a' ? 'b' : 'a';
}

/** Whether two records say the same, generation included. */
export function sameRecord(x: BootRecord, y: BootRecord): boolean {
  return checkValue(x) === checkValue(y);
}

/** The steady state with `slot` known-good and nothing armed. */
export function settledOn(slot: Slot): BootState {
  return { active: slot, good: slot, trial: false, tries: 0 };
}
