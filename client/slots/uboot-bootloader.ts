/**
 * The `uboot` backend: the record as variables of a redundant U-Boot
 * environment, read with `fw_printenv` and written with `fw_setenv`
 * (Debian's libubootenv-tool). The two copies of the record are the two
 * copies of the environment: each has a CRC-32, and a write goes to the
 * copy that is not current and then flips which one is, so a cut leaves
 * the old environment or the new. At boot the U-Boot script in
 * docs/device-integration.md does the counting with `setexpr` and
 * `saveenv`, which keep the same rules.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  runStep,
  type Bootloader,
  type RecordRead,
  type StepHook,
} from './bootloader.js';
import { describeRun, runCommand, type CommandResult } from './command.js';
import { SlotError, messageOf } from './errors.js';
import { parseEnvList } from './grub-bootloader.js';
import { slotLog } from './log.js';
import {
  checkValue,
  decodeRecord,
  encodeRecord,
  sameRecord,
  stateProblem,
  type BootRecord,
  type BootState,
  type Slot,
} from './record.js';
import { envCopyProblem, readEnvConfig } from './uboot-env.js';

const log = slotLog.child({ module: 'client/slots/uboot' });

const TOOL_TIMEOUT_MS = 10_000;

/** Where the U-Boot backend finds its environment, and its tools. */
export interface UbootBootloaderOptions {
  /** An /etc/fw_env.config-style file naming the two copies. */
  config: string;
  /** The slot of the default environment U-Boot falls back to. Default `a`. */
  fallback?: Slot;
  fwPrintenv?: string;
  fwSetenv?: string;
  /** Tests only: see StepHook. */
  hook?: StepHook;
}

/** The record in a redundant U-Boot environment; see the module comment. */
export class UbootBootloader implements Bootloader {
  readonly kind = 'uboot' as const;
  readonly fallback: Slot;
  readonly config: string;
  readonly #printenv: string;
  readonly #setenv: string;
  readonly #hook: StepHook;

  constructor(options: UbootBootloaderOptions) {
    this.fallback = options.fallback ?? 'a';
    this.config = options.config;
    this.#printenv = options.fwPrintenv ?? 'fw_printenv';
    this.#setenv = options.fwSetenv ?? 'fw_setenv';
    this.#hook = options.hook ?? runStep;
  }

  async read(): Promise<RecordRead> {
    const copies = await readEnvConfig(this.config);
    const problems: string[] = [];
    for (const [i, copy] of copies.entries()) {
      const problem = await envCopyProblem(copy);
      if (problem) problems.push(`copy ${i} unreadable: ${problem}`);
    }
    const result = await this.#run(this.#printenv, ['-c', this.config]);
    let record: BootRecord | undefined;
    if (result.code !== 0) {
      problems.push(describeRun('fw_printenv', result));
    } else {
      const decoded = decodeRecord(parseEnvList(result.stdout));
      if (decoded.ok) record = decoded.record;
      else problems.push(`record unreadable: ${decoded.problem}`);
    }
    if (problems.length === 0) return { record };
    const fault = problems.join('; ');
    log.warn({ backend: this.kind, fault }, 'boot record damaged');
    return record ? { record, fault } : { fault };
  }

  async write(state: BootState, label: string): Promise<BootRecord> {
    const problem = stateProblem(state);
    if (problem) {
      throw new SlotError('BOOT_RECORD', `refusing to write: ${problem}`);
    }
    const current = await this.read();
    const record: BootRecord = {
      ...state,
      generation: (current.record?.generation ?? 0) + 1,
    };
    // Each fw_setenv writes the copy that is not current; twice puts the
    // record in both, so losing either copy later loses nothing.
    for (const pass of [0, 1]) {
      await this.#set(record, `${label}:copy-${pass}`);
      const back = await this.read();
      if (!back.record || !sameRecord(back.record, record)) {
        const got = back.record ? checkValue(back.record) : back.fault;
        throw new SlotError(
          'BOOT_RECORD',
          `uboot: the boot record reads back as ${got}, ` +
            `not ${checkValue(record)}`,
        );
      }
    }
    log.info(
      { backend: this.kind, label, record: checkValue(record) },
      'boot record written',
    );
    return record;
  }

  async writeAsFirmware(record: BootRecord, label: string): Promise<void> {
    await this.#set(record, `${label}:copy-0`);
  }

  async #set(record: BootRecord, label: string): Promise<void> {
    const copies = await readEnvConfig(this.config);
    const lines = Object.entries(encodeRecord(record))
      .map(([k, v]) => `${k}=${v}\n`)
      .join('');
    const dir = await mkdtemp(join(tmpdir(), 'tufota-fwenv-'));
    try {
      const script = join(dir, 'script');
      // The default environment is used only when neither copy is valid:
      // the first write of a new device, or one that lost both.
      const defaults = join(dir, 'defaults');
      await writeFile(script, lines);
      await writeFile(defaults, lines);
      const step = {
        kind: 'record-copy' as const,
        label,
        paths: copies.map((c) => c.device),
      };
      await this.#hook(step, async () => {
        const args = ['-c', this.config, '-f', defaults, '-s', script];
        const result = await this.#run(this.#setenv, args);
        if (result.code !== 0) {
          throw new SlotError('BOOT_RECORD', describeRun('fw_setenv', result));
        }
      });
    } catch (err) {
      throw err instanceof SlotError
        ? err
        : new SlotError('BOOT_RECORD', `uboot: ${messageOf(err)}`, {
            cause: err,
          });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async #run(tool: string, args: string[]): Promise<CommandResult> {
    const result = await runCommand(tool, args, TOOL_TIMEOUT_MS);
    if (result.spawnError) {
      throw new SlotError('BOOTLOADER', describeRun(tool, result));
    }
    return result;
  }
}
