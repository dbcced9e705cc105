/**
 * The `file` backend: a simulated bootloader for development and tests,
 * with the record in one file (or a small raw partition) as two 512-byte
 * copies, then the known-good hint, each sector written in place the way
 * a bootloader writes one:
 *
 *   bytes 0-3   CRC-32 of bytes 4-511, little-endian
 *   bytes 4-511 variables as `name=value` lines, then zeros
 *
 * The counting a real bootloader does is boot.ts, played by `playBoot`.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { StepHook } from './bootloader.js';
import { fsyncDir } from './durable.js';
import { dirname } from 'node:path';
import {
  decodeRecord,
  encodeRecord,
  type BootRecord,
  type DecodedCopy,
  type Slot,
} from './record.js';
import { TwoCopyBootloader, type CopyIndex } from './two-copies.js';

/** The size of one copy: one sector. */
export const COPY_BYTES = 512;

/** Where the hint sector starts, after the two copies. */
const HINT_OFFSET = 2 * COPY_BYTES;

/** Variables as the bytes of one sector. */
export function encodeSector(vars: Record<string, string>): Buffer {
  const text = Object.entries(vars)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');
  const sector = Buffer.alloc(COPY_BYTES);
  sector.write(text, 4, 'latin1');
  sector.writeUInt32LE(crc32(sector.subarray(4)), 0);
  return sector;
}

/** The variables of one sector, or why it is unreadable. */
export function decodeSector(
  sector: Buffer,
): { ok: true; vars: Record<string, string> } | { ok: false; problem: string } {
  if (sector.length < COPY_BYTES) {
    return { ok: false, problem: `only ${sector.length} bytes` };
  }
  if (crc32(sector.subarray(4)) !== sector.readUInt32LE(0)) {
    return { ok: false, problem: 'CRC-32 mismatch' };
  }
  const end = sector.indexOf(0, 4);
  const text = sector.toString('latin1', 4, end < 0 ? COPY_BYTES : end);
  const vars: Record<string, string> = {};
  for (const line of text.split('\n').filter((l) => l !== '')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return { ok: true, vars };
}

function decodeCopy(sector: Buffer): DecodedCopy {
  const decoded = decodeSector(sector);
  return decoded.ok ? decodeRecord(decoded.vars) : decoded;
}

/** Where the file backend keeps its record. */
export interface FileBootloaderOptions {
  /** The record file: two sectors, made on the first write. */
  path: string;
  /** Booted when neither copy is readable. Default `a`. */
  fallback?: Slot;
  /** Tests only: see StepHook. */
  hook?: StepHook;
}

/** The simulated bootloader's record store. */
export class FileBootloader extends TwoCopyBootloader {
  readonly kind = 'file' as const;
  readonly path: string;

  constructor(options: FileBootloaderOptions) {
    super(options.fallback ?? 'a', options.hook);
    this.path = options.path;
  }

  protected copyPath(): string {
    return this.path;
  }

  protected hintPath(): string {
    return this.path;
  }

  protected async readCopy(index: CopyIndex): Promise<DecodedCopy> {
    const sector = await this.readSector(index * COPY_BYTES);
    if (typeof sector === 'string') return { ok: false, problem: sector };
    return decodeCopy(sector);
  }

  protected async writeCopy(
    index: CopyIndex,
    record: BootRecord,
  ): Promise<void> {
    await this.writeSector(index * COPY_BYTES, encodeRecord(record));
  }

  protected async readHint(): Promise<Slot | undefined> {
    const sector = await this.readSector(HINT_OFFSET);
    if (typeof sector === 'string') return undefined;
    const decoded = decodeSector(sector);
    const slot = decoded.ok ? decoded.vars.tufota_fallback : undefined;
    return slot === 'a' || slot === 'b' ? slot : undefined;
  }

  protected async writeHint(slot: Slot): Promise<void> {
    await this.writeSector(HINT_OFFSET, { tufota_fallback: slot });
  }

  /** The sector at `offset`, or why it cannot be read. */
  private async readSector(offset: number): Promise<Buffer | string> {
    let handle;
    try {
      handle = await open(this.path, constants.O_RDONLY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return `cannot open ${this.path} (${code})`;
    }
    try {
      const sector = Buffer.alloc(COPY_BYTES);
      const { bytesRead } = await handle.read(sector, 0, COPY_BYTES, offset);
      return sector.subarray(0, bytesRead);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return `cannot read ${this.path} (${code})`;
    } finally {
      await handle.close();
    }
  }

  private async writeSector(
    offset: number,
    vars: Record<string, string>,
  ): Promise<void> {
    const handle = await this.openForWrite();
    try {
      await handle.write(encodeSector(vars), 0, COPY_BYTES, offset);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  private async openForWrite() {
    try {
      return await open(this.path, constants.O_RDWR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // The first write makes the file at its full size, so the other
    // sectors read as damaged (zeros) rather than short; its name durable.
    const handle = await open(this.path, 'wx', 0o600);
    await handle.truncate(3 * COPY_BYTES);
    await handle.sync();
    await fsyncDir(dirname(this.path));
    return handle;
  }
}
