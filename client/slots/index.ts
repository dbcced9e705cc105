/**
 * The A/B slot installer: the boot-state record, the bootloader backends
 * (file, GRUB environment, U-Boot environment), the install step and what
 * the agent runs after each boot. Imports nothing of the project.
 */
export { afterBoot } from './after-boot.js';
export type {
  AfterBootOptions,
  AfterBootOutcome,
  AfterBootResult,
} from './after-boot.js';
export { decideBoot, playBoot, slotFromCmdline } from './boot.js';
export type { BootDecision, BootEvent, BootResult } from './boot.js';
export { runStep } from './bootloader.js';
export type {
  Bootloader,
  BootloaderKind,
  RecordRead,
  Step,
  StepHook,
  StepKind,
} from './bootloader.js';
export { createBootloader } from './create.js';
export type { BootloaderConfig } from './create.js';
export { SlotError } from './errors.js';
export type { SlotErrorCode } from './errors.js';
export { FileBootloader } from './file-bootloader.js';
export { GrubBootloader } from './grub-bootloader.js';
export { runHealthCheck } from './health.js';
export type { HealthCheck, HealthCommand, HealthVerdict } from './health.js';
export { installImage } from './install.js';
export type {
  InstallImageOptions,
  Installed,
  SlotDeployment,
  SlotPaths,
} from './install.js';
export { DEFAULT_TRIES, MAX_TRIES, SLOTS, otherSlot } from './record.js';
export type { BootRecord, BootState, Slot } from './record.js';
export { SlotInstaller } from './slot-installer.js';
export type { SlotInstallerOptions } from './slot-installer.js';
export { UbootBootloader } from './uboot-bootloader.js';
