/**
 * A device on real files for the slot tests: two slot files (slot a holds
 * the factory image and is known-good), one backend's record files, a
 * stand-in /proc/cmdline that played boots write, and a new image with
 * its TUF-style length and hashes. The same rig serves every backend, so
 * one table of cases runs through file, grub (grub-editenv) and uboot
 * (fw_setenv / fw_printenv over a redundant environment).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { playBoot, slotFromCmdline } from '../../../client/slots/boot.js';
import type { Bootloader, StepHook } from '../../../client/slots/bootloader.js';
import {
  createBootloader,
  type BootloaderConfig,
} from '../../../client/slots/create.js';
import { COPY_BYTES } from '../../../client/slots/file-bootloader.js';
import type { SlotDeployment } from '../../../client/slots/install.js';
import { settledOn, type Slot } from '../../../client/slots/record.js';
import {
  SlotInstaller,
  type SlotInstallerOptions,
} from '../../../client/slots/slot-installer.js';

export const KINDS = ['file', 'grub', 'uboot'] as const;
export type Kind = (typeof KINDS)[number];

/** Size of one U-Boot environment copy in the rig. */
const ENV_BYTES = 0x4000;

export interface RigOptions {
  slotBytes?: number;
  imageBytes?: number;
  hook?: StepHook;
  /** Where to make the rig; a new temporary folder by default. */
  dir?: string;
}

export interface Rig {
  kind: Kind;
  dir: string;
  config: BootloaderConfig;
  bootloader: Bootloader;
  slots: Record<Slot, string>;
  stateDir: string;
  cmdline: string;
  /** The factory image in slot a. */
  factory: Buffer;
  /** The new image, on disk at `imagePath`, and its deployment. */
  image: Buffer;
  imagePath: string;
  deployment: SlotDeployment;
  /** The files holding copy 0 and copy 1 of the record, with offsets. */
  copies: { path: string; offset: number; bytes: number }[];
  installer(extra?: Partial<SlotInstallerOptions>): SlotInstaller;
  /** Plays one power-on and returns the slot it booted. */
  boot(): Promise<Slot>;
  running(): Promise<Slot>;
  remove(): Promise<void>;
}

/** The listed hashes of `bytes`, as a TUF target lists them. */
export function hashesOf(bytes: Buffer): Record<string, string> {
  return {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    sha512: createHash('sha512').update(bytes).digest('hex'),
  };
}

function configFor(kind: Kind, dir: string): BootloaderConfig {
  if (kind === 'file') return { kind, path: join(dir, 'boot.rec') };
  if (kind === 'grub') {
    return {
      kind,
      copies: [join(dir, 'env0'), join(dir, 'env1')],
      hint: join(dir, 'hint'),
    };
  }
  return { kind, config: join(dir, 'fw_env.config') };
}

function copiesOf(config: BootloaderConfig, dir: string): Rig['copies'] {
  if (config.kind === 'file') {
    return [0, 1].map((i) => ({
      path: config.path,
      offset: i * COPY_BYTES,
      bytes: COPY_BYTES,
    }));
  }
  if (config.kind === 'grub') {
    return config.copies.map((path) => ({ path, offset: 0, bytes: 1024 }));
  }
  return ['uboot0.env', 'uboot1.env'].map((name) => ({
    path: join(dir, name),
    offset: 0,
    bytes: ENV_BYTES,
  }));
}

/** A fresh device of backend `kind`, settled on slot a. */
export async function makeRig(
  kind: Kind,
  options: RigOptions = {},
): Promise<Rig> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), `tufota-${kind}-`)));
  const slotBytes = options.slotBytes ?? 64 * 1024;
  const imageBytes = options.imageBytes ?? 40 * 1024 + 123;
  const config = configFor(kind, dir);
  const copies = copiesOf(config, dir);
  if (config.kind === 'uboot') {
    const lines = copies.map(
      (c) => `${c.path} 0x0 0x${ENV_BYTES.toString(16)}`,
    );
    await writeFile(
      config.config,
      `# device offset size\n${lines.join('\n')}\n`,
    );
    for (const c of copies) await writeFile(c.path, Buffer.alloc(ENV_BYTES));
  }
  const slots = { a: join(dir, 'slot-a'), b: join(dir, 'slot-b') };
  const factory = randomBytes(imageBytes - 100);
  const slotA = Buffer.alloc(slotBytes);
  factory.copy(slotA);
  await writeFile(slots.a, slotA);
  // Slot b holds bytes nobody verified: booting them is the failure.
  await writeFile(slots.b, randomBytes(slotBytes));
  const stateDir = join(dir, 'state');
  await mkdir(stateDir, { recursive: true });
  const cmdline = join(dir, 'cmdline');
  await writeFile(cmdline, 'quiet tufota.slot=a\n');
  const image = randomBytes(imageBytes);
  const imagePath = join(dir, 'image.img');
  await writeFile(imagePath, image);
  const deployment: SlotDeployment = {
    id: 'd-1',
    targetPath: 'images/fw-2.0.0.img',
    length: image.length,
    hashes: hashesOf(image),
    version: '2.0.0',
  };

  // The factory writes the first record without the hook: no cut there.
  await createBootloader(config).write(settledOn('a'), 'factory');
  const bootloader = createBootloader(config, options.hook);
  const running = () => slotFromCmdline(cmdline);
  return {
    kind,
    dir,
    config,
    bootloader,
    slots,
    stateDir,
    cmdline,
    factory,
    image,
    imagePath,
    deployment,
    copies,
    installer: (extra = {}) => {
      const hook = extra.hook ?? options.hook;
      return new SlotInstaller({
        // The hook sees record writes only through the backend.
        bootloader: extra.hook ? createBootloader(config, hook) : bootloader,
        slots,
        stateDir,
        running,
        retryMs: 0,
        ...(hook ? { hook } : {}),
        ...extra,
      });
    },
    boot: async () => (await playBoot(bootloader, { cmdline })).slot,
    running,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Overwrites part of copy `index` of the record with random bytes. */
export async function damageCopy(rig: Rig, index: 0 | 1): Promise<void> {
  const copy = rig.copies[index];
  const handle = await open(copy.path, 'r+');
  try {
    await handle.write(randomBytes(64), 0, 64, copy.offset + 8);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
