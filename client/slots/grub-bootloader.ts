/**
 * The `grub` backend: the record in two GRUB environment blocks (1024-byte
 * grubenv files on the boot partition), read and written with
 * `grub-editenv`. At boot the grub.cfg snippet in
 * docs/device-integration.md reads both with `load_env`, counts with
 * `save_env`, and follows the same rules (two-copies.ts, boot.ts).
 *
 * `grub-editenv` rewrites a file whole (truncate, write, fsync), so a cut
 * leaves that copy empty or short; GRUB's `save_env` changes a block in
 * place. Neither has a checksum of the block, which is why the record
 * carries `tufota_check`.
 */
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StepHook } from './bootloader.js';
import { describeRun, runCommand } from './command.js';
import { fsyncDir } from './durable.js';
import { SlotError } from './errors.js';
import {
  decodeRecord,
  encodeRecord,
  type BootRecord,
  type DecodedCopy,
  type Slot,
} from './record.js';
import { TwoCopyBootloader, type CopyIndex } from './two-copies.js';

const TOOL_TIMEOUT_MS = 10_000;

/** Where the GRUB backend keeps its record, and its tool. */
export interface GrubBootloaderOptions {
  /** The two environment files, e.g. /boot/tufota/env0 and env1. */
  copies: readonly [string, string];
  /** The environment file of the known-good hint, e.g. /boot/tufota/hint. */
  hint: string;
  /** The slot grub.cfg boots when neither copy is readable. Default `a`. */
  fallback?: Slot;
  /** The grub-editenv program. Default `grub-editenv` on PATH. */
  grubEditenv?: string;
  /** Tests only: see StepHook. */
  hook?: StepHook;
}

/** Parses `grub-editenv list` output: one `name=value` a line. */
export function parseEnvList(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

/** The record in two GRUB environment blocks; see the module comment. */
export class GrubBootloader extends TwoCopyBootloader {
  readonly kind = 'grub' as const;
  readonly copies: readonly [string, string];
  readonly hint: string;
  readonly #tool: string;

  constructor(options: GrubBootloaderOptions) {
    super(options.fallback ?? 'a', options.hook);
    this.copies = options.copies;
    this.hint = options.hint;
    this.#tool = options.grubEditenv ?? 'grub-editenv';
  }

  protected copyPath(index: CopyIndex): string {
    return this.copies[index];
  }

  protected hintPath(): string {
    return this.hint;
  }

  protected async readCopy(index: CopyIndex): Promise<DecodedCopy> {
    const vars = await this.#list(this.copies[index]);
    return typeof vars === 'string'
      ? { ok: false, problem: vars }
      : decodeRecord(vars);
  }

  protected async writeCopy(
    index: CopyIndex,
    record: BootRecord,
    asFirmware: boolean,
  ): Promise<void> {
    await this.#set(this.copies[index], encodeRecord(record), asFirmware);
  }

  protected async readHint(): Promise<Slot | undefined> {
    const vars = await this.#list(this.hint);
    const slot = typeof vars === 'string' ? undefined : vars.tufota_fallback;
    return slot === 'a' || slot === 'b' ? slot : undefined;
  }

  protected async writeHint(slot: Slot): Promise<void> {
    await this.#set(this.hint, { tufota_fallback: slot }, false);
  }

  /** The variables in the block at `path`, or why it is unreadable. */
  async #list(path: string): Promise<Record<string, string> | string> {
    // `grub-editenv FILE list` creates FILE when it is missing; a read
    // must not write, so a missing file is found here instead.
    if (!(await exists(path))) return `${path} is missing`;
    const result = await this.#run([path, 'list']);
    if (result.code !== 0) return describeRun('grub-editenv list', result);
    return parseEnvList(result.stdout);
  }

  async #set(
    path: string,
    vars: Record<string, string>,
    asFirmware: boolean,
  ): Promise<void> {
    const assignments = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
    const set = await this.#run([path, 'set', ...assignments]);
    if (set.code === 0) return;
    // GRUB's save_env only changes a valid block; the agent makes a new
    // one when the copy is missing or damaged (it is not the current one).
    if (asFirmware) throw this.#failed('grub-editenv set', set);
    const create = await this.#run([path, 'create']);
    if (create.code !== 0) throw this.#failed('grub-editenv create', create);
    await fsyncDir(dirname(path));
    const again = await this.#run([path, 'set', ...assignments]);
    if (again.code !== 0) throw this.#failed('grub-editenv set', again);
  }

  async #run(args: string[]) {
    const result = await runCommand(this.#tool, args, TOOL_TIMEOUT_MS);
    if (result.spawnError) throw this.#failed(this.#tool, result);
    return result;
  }

  #failed(name: string, result: Parameters<typeof describeRun>[1]) {
    return new SlotError('BOOTLOADER', describeRun(name, result));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
