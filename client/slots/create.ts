/**
 * A backend from its configuration, as `tufota-device` reads it.
 */
import type { Bootloader, StepHook } from './bootloader.js';
import { FileBootloader } from './file-bootloader.js';
import { GrubBootloader } from './grub-bootloader.js';
import type { Slot } from './record.js';
import { UbootBootloader } from './uboot-bootloader.js';

/** One backend's settings; paths are absolute. */
export type BootloaderConfig =
  | { kind: 'file'; path: string; fallback?: Slot }
  | {
      kind: 'grub';
      copies: readonly [string, string];
      hint: string;
      fallback?: Slot;
      grubEditenv?: string;
    }
  | {
      kind: 'uboot';
      config: string;
      fallback?: Slot;
      fwPrintenv?: string;
      fwSetenv?: string;
    };

/** The backend `config` names; `hook` is for tests only. */
export function createBootloader(
  config: BootloaderConfig,
  hook?: StepHook,
): Bootloader {
  const extra = hook ? { hook } : {};
  switch (config.kind) {
    case 'file':
      return new FileBootloader({ ...config, ...extra });
    case 'grub':
      return new GrubBootloader({ ...config, ...extra });
    case 'uboot':
      return new UbootBootloader({ ...config, ...extra });
  }
}
