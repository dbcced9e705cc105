/**
 * The demo's device: a folder with two slot files, a boot record kept by
 * one of the bootloader backends, a pinned CA and the shipped root, driven
 * through the built `tufota-device` as an integrator's boot scripts would.
 *
 * What the demo plays besides the agent is the hardware: a boot is
 * `tufota-device boot` (the bootloader's counting, which writes the kernel
 * command line) followed by "mounting" the slot it chose, here copying
 * that slot's /etc/os-release to where the running system keeps it.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  HEALTH_CHECK_SCRIPT,
  readFromImage,
  type Ext4Tools,
} from './firmware.js';
import { DEVICE_BIN } from './server.js';

export type BootloaderKind = 'file' | 'grub' | 'uboot';

export const BOOTLOADERS: readonly BootloaderKind[] = ['file', 'grub', 'uboot'];

/** Each slot is larger than an image, as a partition would be. */
const SLOT_MIB = 20;
/** One U-Boot environment copy. */
const UBOOT_ENV_BYTES = 0x4000;

export interface DeviceRun {
  code: number;
  out: string;
  err: string;
  /** The command as a user would type it, for the demo's report. */
  shown: string;
}

export interface DeviceSetup {
  dir: string;
  tools: Ext4Tools;
  bootloader: BootloaderKind;
  factoryImage: string;
  hardware: string;
  metadataUrl: string;
  targetsUrl: string;
  serverUrl: string;
  ca: string;
  deviceId: string;
  credential: string;
  /** Lines the device writes to standard error (its progress), as they come. */
  onOutput?: (line: string) => void;
}

export class DemoDevice {
  readonly dir: string;
  readonly config: string;
  readonly slots: { a: string; b: string };
  readonly cmdline: string;
  readonly osRelease: string;
  readonly journal: string;
  readonly #setup: DeviceSetup;

  private constructor(setup: DeviceSetup) {
    this.#setup = setup;
    this.dir = setup.dir;
    this.config = join(setup.dir, 'device.json');
    this.slots = {
      a: join(setup.dir, 'slot-a.img'),
      b: join(setup.dir, 'slot-b.img'),
    };
    this.cmdline = join(setup.dir, 'cmdline');
    this.osRelease = join(setup.dir, 'root', 'etc', 'os-release');
    this.journal = join(setup.dir, 'state', 'journal');
  }

  /**
   * Lays the device out as it leaves the factory: slot a holds the factory
   * image, slot b is blank, and the device trusts the shipped root.
   */
  static async provision(
    setup: DeviceSetup,
    shippedRoot: string,
  ): Promise<DemoDevice> {
    const device = new DemoDevice(setup);
    const dir = setup.dir;
    await mkdir(join(dir, 'root', 'etc'), { recursive: true });
    await mkdir(join(dir, 'boot'), { recursive: true });
    await copyFile(setup.factoryImage, device.slots.a);
    await truncate(device.slots.a, SLOT_MIB * 1024 * 1024);
    await writeFile(device.slots.b, '');
    await truncate(device.slots.b, SLOT_MIB * 1024 * 1024);
    await writeFile(join(dir, 'credential'), `${setup.credential}\n`, {
      mode: 0o600,
    });
    const health = join(dir, 'health-check.sh');
    await writeFile(health, HEALTH_CHECK_SCRIPT, { mode: 0o755 });

    await writeFile(
      device.config,
      `${JSON.stringify(
        {
          stateDir: 'state',
          metadataUrl: setup.metadataUrl,
          targetsUrl: setup.targetsUrl,
          ca: setup.ca,
          hardware: setup.hardware,
          channel: 'stable',
          versionFile: 'root/etc/os-release',
          buildDate: '2026-01-01T00:00:00Z',
          slots: {
            a: 'slot-a.img',
            b: 'slot-b.img',
            bootloader: await bootloaderConfig(setup.bootloader, dir),
            cmdline: 'cmdline',
            tries: 3,
            healthCheck: {
              command: [
                '/bin/sh',
                health,
                device.cmdline,
                device.slots.a,
                device.slots.b,
                setup.tools.e2fsck,
                setup.tools.debugfs,
              ],
              timeoutMs: 30_000,
            },
          },
          report: {
            url: setup.serverUrl,
            deviceId: setup.deviceId,
            credentialFile: 'credential',
          },
        },
        null,
        2,
      )}\n`,
    );
    const init = await device.run('init', '--root', shippedRoot);
    if (init.code !== 0) {
      throw new Error(`tufota-device init failed: ${init.out}${init.err}`);
    }
    return device;
  }

  /** One `tufota-device` command, as its own process. */
  run(...args: string[]): Promise<DeviceRun> {
    const shown = `tufota-device --config ${this.config} ${args.join(' ')}`;
    return new Promise((resolve, reject) => {
      const child = execFile(
        process.execPath,
        [DEVICE_BIN, '--config', this.config, ...args],
        { cwd: this.dir, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code =
            err && typeof err.code === 'number' ? err.code : err ? -1 : 0;
          if (err && code === -1) {
            // Killed by a signal or never started: no exit code to report.
            reject(new Error(`${shown}: ${err.message}`));
            return;
          }
          resolve({ code, out: stdout.trim(), err: stderr.trim(), shown });
        },
      );
      if (this.#setup.onOutput) {
        let pending = '';
        child.stderr?.on('data', (chunk: Buffer) => {
          pending += chunk.toString();
          const lines = pending.split(/\r?\n|\r/);
          pending = lines.pop() ?? '';
          for (const line of lines) {
            if (line.trim() !== '') this.#setup.onOutput?.(line.trim());
          }
        });
      }
    });
  }

  /**
   * Power on: the bootloader picks a slot (and counts a trial try), then
   * the chosen slot becomes the running system. Resolves with the slot and
   * the version its /etc/os-release carries.
   */
  async boot(): Promise<{
    slot: 'a' | 'b';
    version: string | undefined;
    shown: string;
  }> {
    const played = await this.run('boot');
    const m = /booted slot ([ab])/.exec(played.out);
    if (played.code !== 0 || !m) {
      throw new Error(`the boot failed: ${played.out}${played.err}`);
    }
    const slot = m[1] as 'a' | 'b';
    const osRelease = await readFromImage(
      this.#setup.tools,
      this.slots[slot],
      '/etc/os-release',
    );
    // A slot without a root filesystem boots nothing: the running system's
    // os-release is then left out, which the agent reports as an error.
    await writeFile(this.osRelease, osRelease ?? '');
    const version = /^VERSION_ID="?([^"\n]*)"?$/m.exec(osRelease ?? '')?.[1];
    return { slot, version, shown: played.shown };
  }
}

async function bootloaderConfig(
  kind: BootloaderKind,
  dir: string,
): Promise<Record<string, unknown>> {
  if (kind === 'file') return { kind, path: 'boot/record', fallback: 'a' };
  if (kind === 'grub') {
    return {
      kind,
      copies: ['boot/grubenv-0', 'boot/grubenv-1'],
      hint: 'boot/slot-hint',
      fallback: 'a',
    };
  }
  // fw_env.config separates its fields by blanks, so a path with one
  // cannot be named there.
  if (/\s/.test(dir)) {
    throw new Error(
      `${dir} holds a blank, which fw_env.config cannot name; ` +
        'give the uboot demo a folder without spaces',
    );
  }
  // fw_setenv with a redundant environment: two copies in two files.
  const copies = [
    join(dir, 'boot', 'uboot-env-0'),
    join(dir, 'boot', 'uboot-env-1'),
  ];
  for (const copy of copies)
    await writeFile(copy, Buffer.alloc(UBOOT_ENV_BYTES));
  await writeFile(
    join(dir, 'boot', 'fw_env.config'),
    `# device offset size\n${copies
      .map((c) => `${c} 0x0 0x${UBOOT_ENV_BYTES.toString(16)}`)
      .join('\n')}\n`,
  );
  return { kind, config: 'boot/fw_env.config', fallback: 'a' };
}

/** Where each backend keeps the boot record, in words for the demo. */
export function bootRecordWords(kind: BootloaderKind): string {
  switch (kind) {
    case 'file':
      return 'boot record: boot/record, two copies in one file';
    case 'grub':
      return (
        'boot record: boot/grubenv-0 and boot/grubenv-1 (GRUB environment ' +
        'blocks written with grub-editenv) and boot/slot-hint'
      );
    case 'uboot':
      return (
        'boot record: a redundant U-Boot environment (boot/uboot-env-0 and ' +
        '-1, named by boot/fw_env.config) written with fw_setenv'
      );
  }
}
