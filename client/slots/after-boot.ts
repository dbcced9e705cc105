/**
 * The agent's part after every boot: learn what the bootloader did, and
 * end a trial. On a trial boot the health check runs; healthy, the trial
 * slot is committed as known-good, unhealthy, the trial is disarmed and
 * the device must reboot into the known-good slot. Either write is read
 * back and retried; a commit that never sticks is an error, never
 * reported as committed, and the armed trial keeps the device safe: the
 * next boot takes another try or falls back.
 *
 * The outcome is worked out from the record, the trial note and the
 * running slot alone, so asking again (after a crash) gives the same
 * answer until `acknowledge` is called.
 */
import { runStep, type Bootloader, type StepHook } from './bootloader.js';
import { SlotError, messageOf } from './errors.js';
import { runHealthCheck, type HealthCheck } from './health.js';
import { slotLog } from './log.js';
import {
  settledOn,
  type BootRecord,
  type BootState,
  type Slot,
} from './record.js';
import { readTrialNote, type TrialNote } from './trial-note.js';

const log = slotLog.child({ module: 'client/slots/after-boot' });

/**
 * - `trial-passed-committed`: the trial slot passed its health check and
 *   is now known-good (also reported for a commit made before a crash);
 * - `rolled-back`: the trial failed its health check (and the device must
 *   reboot), or the bootloader used up its tries and fell back;
 * - `no-trial`: an ordinary boot, nothing armed;
 * - `trial-running`: a trial is armed but this boot was not of the trial
 *   slot; nothing changed, the next boot tries it.
 */
export type AfterBootOutcome =
  'trial-passed-committed' | 'rolled-back' | 'no-trial' | 'trial-running';

/** What afterBoot found and did, for the agent to journal and report. */
export interface AfterBootResult {
  outcome: AfterBootOutcome;
  running: Slot;
  /** The deployment of the last trial, until acknowledged. */
  deploymentId?: string;
  version?: string;
  /** True when the device runs a slot it must leave now: reboot. */
  rebootRequired: boolean;
  /** Why it rolled back. */
  reason?: string;
  /** Damage to the boot record found and repaired, for the journal. */
  fault?: string;
}

/** What afterBoot works with. */
export interface AfterBootOptions {
  bootloader: Bootloader;
  stateDir: string;
  running: Slot;
  /** None: a trial boot that reaches the agent counts as healthy. */
  healthCheck?: HealthCheck;
  /** Attempts at a commit or disarm write. Default 5. */
  writeAttempts?: number;
  /** Wait between them. Default 500 ms. */
  retryMs?: number;
  /** Tests only: see StepHook. */
  hook?: StepHook;
  /**
   * Called once a boot of the armed trial slot is found, before its
   * health check runs, so the agent can say a trial boot is under way.
   */
  onTrialBoot?: () => Promise<void>;
}

/** See the module comment. */
export async function afterBoot(
  options: AfterBootOptions,
): Promise<AfterBootResult> {
  const { bootloader, running } = options;
  const stored = await readTrialNote(options.stateDir);
  const note = stored && !stored.acknowledged ? stored : undefined;
  const ids = note
    ? { deploymentId: note.deploymentId, version: note.version }
    : {};
  const { record, fault } = await bootloader.read();
  const base = { running, ...ids, ...(fault ? { fault } : {}) };

  if (!record) {
    // The firmware booted its fallback. What runs is the best known slot.
    await writeChecked(options, settledOn(running), 'after-boot:repair');
    log.error({ running, fault }, 'boot record lost; rewritten');
    return { ...base, outcome: 'no-trial', rebootRequired: false };
  }

  if (record.trial && record.active === running) {
    // Saying so is the agent's business; it never holds up the verdict.
    await options
      .onTrialBoot?.()
      .catch((err: unknown) =>
        log.error({ err: messageOf(err) }, 'could not record the trial boot'),
      );
    return { ...base, ...(await endTrial(options, record)) };
  }
  if (fault) {
    // One copy was lost; writing the same state again restores both.
    await writeChecked(options, record, 'after-boot:repair');
  }
  if (record.trial) {
    log.info({ running, trialSlot: record.active }, 'trial still armed');
    return { ...base, outcome: 'trial-running', rebootRequired: false };
  }
  const rebootRequired = running !== record.good;
  if (note && record.generation >= note.armGeneration) {
    return { ...base, rebootRequired, ...settledOutcome(record, note) };
  }
  return { ...base, outcome: 'no-trial', rebootRequired };
}

/** How a trial that is no longer armed ended. */
function settledOutcome(record: BootRecord, note: TrialNote) {
  if (record.good === note.slot) {
    return { outcome: 'trial-passed-committed' as const };
  }
  return {
    outcome: 'rolled-back' as const,
    reason: `slot ${note.slot} did not become known-good; slot ${record.good} boots`,
  };
}

async function endTrial(options: AfterBootOptions, record: BootRecord) {
  const { running } = options;
  const hook = options.hook ?? runStep;
  let verdict = { healthy: true, reason: undefined as string | undefined };
  if (options.healthCheck) {
    const check = options.healthCheck;
    const step = { kind: 'health-check' as const, label: 'after-boot:health' };
    await hook({ ...step, paths: [] }, async () => {
      const v = await runHealthCheck(check);
      verdict = { healthy: v.healthy, reason: v.reason };
    });
  }
  if (verdict.healthy) {
    await writeChecked(options, settledOn(running), 'after-boot:commit');
    log.info({ slot: running }, 'trial passed; committed');
    return {
      outcome: 'trial-passed-committed' as const,
      rebootRequired: false,
    };
  }
  await writeChecked(options, settledOn(record.good), 'after-boot:disarm');
  const reason = `health check failed: ${verdict.reason ?? 'unhealthy'}`;
  log.warn({ slot: running, good: record.good, reason }, 'trial failed');
  return { outcome: 'rolled-back' as const, rebootRequired: true, reason };
}

/**
 * Writes `state` and reads the whole record back, retrying a write that
 * fails or does not stick; throws once the attempts are spent.
 */
async function writeChecked(
  options: AfterBootOptions,
  state: BootState,
  label: string,
): Promise<void> {
  const attempts = options.writeAttempts ?? 5;
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      await options.bootloader.write(state, label);
      const { record } = await options.bootloader.read();
      if (
        record &&
        record.active === state.active &&
        record.good === state.good &&
        record.trial === state.trial &&
        record.tries === state.tries
      ) {
        return;
      }
      last = new Error('the record read back differs from what was written');
    } catch (err) {
      last = err;
    }
    log.warn({ label, attempt, err: messageOf(last) }, 'record write retried');
    if (attempt < attempts) await sleep(options.retryMs ?? 500);
  }
  throw new SlotError(
    'BOOT_RECORD',
    `${label}: not written after ${attempts} attempts: ${messageOf(last)}`,
    { cause: last },
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
