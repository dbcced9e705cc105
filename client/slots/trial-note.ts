/**
 * The trial note: which deployment the last armed trial was for, written
 * durably just before the trial is armed. The record alone cannot say it:
 * once the bootloader has used up the tries it disarms and points back at
 * the known-good slot, and the agent must still learn that its deployment
 * rolled back.
 *
 * `armGeneration` is the generation the arming write will have; a record
 * older than it means the arm never happened (a cut between the note and
 * the arm). The note stays until the next install replaces it, so an
 * outcome is reported again after a crash until the agent acknowledges it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runStep, type StepHook } from './bootloader.js';
import { removeStaleTemps, writeFileDurable } from './durable.js';
import { slotLog } from './log.js';
import type { Slot } from './record.js';

const log = slotLog.child({ module: 'client/slots/trial-note' });

/** The file name under the installer's state folder. */
export const TRIAL_NOTE_FILE = 'trial.json';

export interface TrialNote {
  format: 1;
  deploymentId: string;
  version: string;
  slot: Slot;
  armGeneration: number;
  /** Set once the agent has journaled the outcome. */
  acknowledged: boolean;
}

function isNote(value: unknown): value is TrialNote {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    v.format === 1 &&
    typeof v.deploymentId === 'string' &&
    typeof v.version === 'string' &&
    (v.slot === 'a' || v.slot === 'b') &&
    Number.isSafeInteger(v.armGeneration) &&
    typeof v.acknowledged === 'boolean'
  );
}

/** The note in `dir`; a missing or damaged one is none (and logged). */
export async function readTrialNote(
  dir: string,
): Promise<TrialNote | undefined> {
  const path = join(dir, TRIAL_NOTE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    log.warn({ path, err: String(err) }, 'trial note unreadable; ignored');
    return undefined;
  }
  try {
    const json: unknown = JSON.parse(text);
    if (isNote(json)) return json;
  } catch {
    // Falls through to the warning below: the note only names the
    // deployment, the boot record decides what boots.
  }
  log.warn({ path }, 'trial note damaged; ignored');
  return undefined;
}

/** Replaces the note in `dir` durably. */
export async function writeTrialNote(
  dir: string,
  note: TrialNote,
  label: string,
  hook: StepHook = runStep,
): Promise<void> {
  const path = join(dir, TRIAL_NOTE_FILE);
  await removeStaleTemps(path);
  await hook({ kind: 'note', label, paths: [path] }, () =>
    writeFileDurable(path, `${JSON.stringify(note, null, 2)}\n`),
  );
}
