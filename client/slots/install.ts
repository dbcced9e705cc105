/**
 * Installing an image into the inactive slot, as one step that can run on
 * its own (`tufota-device install`, with the rights to write slots and the
 * boot record, while the part that talks to the network has none). It
 * trusts nothing handed to it: it checks the image against the target's
 * length and hashes itself before writing, and the slot again after.
 *
 * The order, each step finished before the next:
 * 1. refuse, touching nothing, unless the record is readable, the device
 *    runs its known-good slot, no trial of it is running, and the other
 *    slot can hold the image;
 * 2. check the image file against the target;
 * 3. mark the inactive slot unbootable: a record with no trial, so no
 *    boot can reach the slot while it is written;
 * 4. write the image into the slot, fsync;
 * 5. read the slot back and check it against the target;
 * 6. write the trial note, then arm a trial boot of the slot with N tries.
 * A cut anywhere before 6 ends leaves the known-good slot booting.
 */
import { runStep, type Bootloader, type StepHook } from './bootloader.js';
import { SlotError, messageOf } from './errors.js';
import { slotLog } from './log.js';
import {
  DEFAULT_TRIES,
  MAX_TRIES,
  otherSlot,
  settledOn,
  type Slot,
} from './record.js';
import { checkBytes, slotCapacity, writeImage } from './slot-image.js';
import { writeTrialNote } from './trial-note.js';

const log = slotLog.child({ module: 'client/slots/install' });

/** What the installer needs of a deployment. */
export interface SlotDeployment {
  id: string;
  targetPath: string;
  length: number;
  hashes: Record<string, string>;
  version: string;
}

/** The two slots' paths: files or block devices. */
export type SlotPaths = Readonly<Record<Slot, string>>;

/** What installImage works with. */
export interface InstallImageOptions {
  bootloader: Bootloader;
  slots: SlotPaths;
  /** The slot running now (from the kernel command line). */
  running: Slot;
  /** Where the trial note is kept. */
  stateDir: string;
  /** Trial boots before falling back, 1 to 9. Default 3. */
  tries?: number;
  /** Bytes per slot write. Default 1 MiB. */
  chunkBytes?: number;
  /** Tests only: see StepHook. */
  hook?: StepHook;
}

/** Where the image went and the record that arms it. */
export interface Installed {
  slot: Slot;
  generation: number;
}

/** Installs the image at `image` for `deployment`; see the module comment. */
export async function installImage(
  image: string,
  deployment: SlotDeployment,
  options: InstallImageOptions,
): Promise<Installed> {
  const { bootloader, running } = options;
  const tries = options.tries ?? DEFAULT_TRIES;
  const hook = options.hook ?? runStep;
  if (!Number.isInteger(tries) || tries < 1 || tries > MAX_TRIES) {
    throw new SlotError('CONFIG', `tries ${tries} is not 1 to ${MAX_TRIES}`);
  }
  const target = otherSlot(running);
  const slotPath = options.slots[target];
  const fields = { deploymentId: deployment.id, slot: target };

  // 1. Refusals, before anything is written.
  await refuseUnlessReady(bootloader, running);
  const capacity = await slotCapacity(slotPath);
  if (capacity < deployment.length) {
    const reason =
      `slot ${target} (${slotPath}) holds ${capacity} bytes, less than ` +
      `the ${deployment.length} bytes of ${deployment.targetPath}`;
    log.warn({ ...fields, reason }, 'install refused');
    throw new SlotError('NO_SPACE', reason);
  }

  // 2. The image, as handed over, against the target.
  const before = await checkBytes(
    image,
    deployment.length,
    deployment.hashes,
    true,
  ).catch((err: unknown) => `unreadable (${messageOf(err)})`);
  if (before) {
    log.warn({ ...fields, reason: before }, 'install refused');
    throw new SlotError(
      'INTEGRITY',
      `${deployment.targetPath}: the image to install is ${before}`,
    );
  }

  // 3. No boot may reach the slot while it is written.
  const marked = await bootloader.write(
    settledOn(running),
    'install:mark-unbootable',
  );

  // 4. The image into the slot.
  log.info({ ...fields, length: deployment.length }, 'writing slot');
  try {
    await writeImage({
      image,
      slot: slotPath,
      length: deployment.length,
      label: 'install:slot',
      hook,
      ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}),
    });
  } catch (err) {
    if (err instanceof SlotError) throw err;
    throw new SlotError('SLOT_IO', `writing slot ${target} failed`, {
      cause: err,
    });
  }

  // 5. What the slot now holds, against the target.
  const after = await checkBytes(
    slotPath,
    deployment.length,
    deployment.hashes,
    false,
  );
  if (after) {
    log.error({ ...fields, reason: after }, 'slot read back wrong');
    throw new SlotError(
      'INTEGRITY',
      `slot ${target} read back after writing ${deployment.targetPath} ` +
        `is ${after}; it stays unbootable`,
    );
  }

  // 6. The note naming the deployment, then the trial.
  const armGeneration = marked.generation + 1;
  await writeTrialNote(
    options.stateDir,
    {
      format: 1,
      deploymentId: deployment.id,
      version: deployment.version,
      slot: target,
      armGeneration,
      acknowledged: false,
    },
    'install:note',
    hook,
  );
  const armed = await bootloader.write(
    { active: target, good: running, trial: true, tries },
    'install:arm',
  );
  log.info({ ...fields, tries, generation: armed.generation }, 'trial armed');
  return { slot: target, generation: armed.generation };
}

async function refuseUnlessReady(
  bootloader: Bootloader,
  running: Slot,
): Promise<void> {
  const { record, fault } = await bootloader.read();
  let reason: string | undefined;
  if (!record) {
    reason = `the boot record is unreadable (${fault}); afterBoot repairs it`;
  } else if (record.trial && record.active === running) {
    reason = `a trial of slot ${running} is running; it must be committed first`;
  } else if (record.good !== running) {
    reason = `slot ${running} runs but slot ${record.good} is known-good`;
  }
  if (reason) {
    log.warn({ running, reason }, 'install refused');
    throw new SlotError(record ? 'SLOT_STATE' : 'BOOT_RECORD', reason);
  }
}
