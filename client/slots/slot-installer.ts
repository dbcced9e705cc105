/**
 * The A/B slot installer as the update agent sees it: `install` writes a
 * verified image into the inactive slot and arms a trial
 * (`awaiting-reboot`); after every boot, `afterBoot` says how the trial
 * went and ends it; `acknowledge` stops an outcome being reported again.
 * It meets the agent's `Installer` interface by shape: the agent is not
 * imported here.
 */
import { afterBoot, type AfterBootResult } from './after-boot.js';
import { slotFromCmdline } from './boot.js';
import type { Bootloader, StepHook } from './bootloader.js';
import type { HealthCheck } from './health.js';
import {
  installImage,
  type SlotDeployment,
  type SlotPaths,
} from './install.js';
import type { Slot } from './record.js';
import { readTrialNote, writeTrialNote } from './trial-note.js';

/** A SlotInstaller's slots, backend and settings. */
export interface SlotInstallerOptions {
  bootloader: Bootloader;
  slots: SlotPaths;
  /** The installer's own folder (the trial note). */
  stateDir: string;
  /** The slot running now. Default: `tufota.slot=` in /proc/cmdline. */
  running?: () => Promise<Slot>;
  /** Trial boots before falling back, 1 to 9. Default 3. */
  tries?: number;
  /** Run after a trial boot; none means reaching the agent is healthy. */
  healthCheck?: HealthCheck;
  /** Attempts at a commit or disarm write. Default 5. */
  writeAttempts?: number;
  retryMs?: number;
  /** Bytes per slot write. Default 1 MiB. */
  chunkBytes?: number;
  /** Tests only: see StepHook. */
  hook?: StepHook;
}

/** The agent's `Installer` for A/B slots; see the module comment. */
/** What one `afterBoot` call may bring besides the installer's options. */
export interface AfterBootCall {
  /** In place of the configured health check. */
  healthCheck?: HealthCheck;
  /** See `AfterBootOptions.onTrialBoot`. */
  onTrialBoot?: () => Promise<void>;
}

export class SlotInstaller {
  readonly #o: SlotInstallerOptions;

  constructor(options: SlotInstallerOptions) {
    this.#o = options;
  }

  /**
   * Installs the image at `image` (checked again against `deployment`)
   * into the inactive slot and arms a trial boot of it. Throws
   * `SlotError` when it refuses or fails; the known-good slot still boots.
   */
  async install(
    image: string,
    deployment: SlotDeployment,
  ): Promise<'awaiting-reboot'> {
    const o = this.#o;
    await installImage(image, deployment, {
      bootloader: o.bootloader,
      slots: o.slots,
      running: await this.#running(),
      stateDir: o.stateDir,
      ...(o.tries !== undefined ? { tries: o.tries } : {}),
      ...(o.chunkBytes !== undefined ? { chunkBytes: o.chunkBytes } : {}),
      ...(o.hook ? { hook: o.hook } : {}),
    });
    return 'awaiting-reboot';
  }

  /**
   * Called once after each boot: see after-boot.ts. `healthCheck` here
   * overrides the one given to the constructor.
   */
  async afterBoot(
    call?: HealthCheck | AfterBootCall,
  ): Promise<AfterBootResult> {
    const o = this.#o;
    const given: AfterBootCall =
      call === undefined || typeof call === 'function' || 'command' in call
        ? { healthCheck: call }
        : call;
    const check = given.healthCheck ?? o.healthCheck;
    const onTrialBoot = given.onTrialBoot;
    return afterBoot({
      ...(onTrialBoot ? { onTrialBoot } : {}),
      bootloader: o.bootloader,
      stateDir: o.stateDir,
      running: await this.#running(),
      ...(check ? { healthCheck: check } : {}),
      ...(o.writeAttempts !== undefined
        ? { writeAttempts: o.writeAttempts }
        : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
      ...(o.hook ? { hook: o.hook } : {}),
    });
  }

  /**
   * Marks the outcome of deployment `id` as journaled, so later boots
   * report `no-trial`. A different or missing deployment is left alone.
   */
  async acknowledge(id: string): Promise<void> {
    const note = await readTrialNote(this.#o.stateDir);
    if (!note || note.deploymentId !== id || note.acknowledged) return;
    await writeTrialNote(
      this.#o.stateDir,
      { ...note, acknowledged: true },
      'acknowledge',
      this.#o.hook,
    );
  }

  #running(): Promise<Slot> {
    return this.#o.running ? this.#o.running() : slotFromCmdline();
  }
}
