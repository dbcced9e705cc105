/**
 * Reading a redundant U-Boot environment the way libubootenv and U-Boot
 * do, only to say which copy is damaged: fw_printenv silently uses the
 * good one, and the agent should still journal that one copy was lost.
 *
 * The configuration (/etc/fw_env.config form) names each copy as
 * `DEVICE OFFSET SIZE [SECTOR-SIZE [SECTORS]]`; a redundant copy is a
 * CRC-32 (little-endian) of the data, one flags byte, then the data.
 */
import { open, readFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { SlotError } from './errors.js';

/** One copy named by the configuration. */
export interface EnvCopy {
  device: string;
  offset: number;
  size: number;
}

/** The copies a fw_env.config names, in order. */
export async function readEnvConfig(path: string): Promise<EnvCopy[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SlotError('CONFIG', `cannot read ${path}`, { cause: err });
  }
  const copies: EnvCopy[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [device, offset, size] = line.split(/\s+/);
    const copy = { device, offset: Number(offset), size: Number(size) };
    if (!device || !Number.isSafeInteger(copy.size) || copy.size < 8) {
      throw new SlotError('CONFIG', `${path}: cannot read the line "${line}"`);
    }
    copies.push(copy);
  }
  if (copies.length !== 2) {
    throw new SlotError(
      'CONFIG',
      `${path} names ${copies.length} environment copies; the boot ` +
        'record needs a redundant environment (two)',
    );
  }
  return copies;
}

/** Why a copy is damaged, or undefined when its CRC holds. */
export async function envCopyProblem(
  copy: EnvCopy,
): Promise<string | undefined> {
  // A negative offset counts from the end of a device; only libubootenv
  // knows the device's size, so such a copy is not second-guessed.
  if (copy.offset < 0) return undefined;
  let bytes: Buffer;
  try {
    const handle = await open(copy.device, 'r');
    try {
      bytes = Buffer.alloc(copy.size);
      const { bytesRead } = await handle.read(bytes, 0, copy.size, copy.offset);
      bytes = bytes.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return `${copy.device} cannot be read (${code})`;
  }
  if (bytes.length < copy.size) {
    return `${copy.device} holds ${bytes.length} of ${copy.size} bytes`;
  }
  if (crc32(bytes.subarray(5)) !== bytes.readUInt32LE(0)) {
    return `${copy.device} fails its CRC-32`;
  }
  return undefined;
}
