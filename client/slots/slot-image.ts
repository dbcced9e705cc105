/**
 * Bytes in and out of a slot: its capacity, the image copied into it in
 * chunks and synced, and the check of any file or slot against a TUF
 * target's length and hashes. A slot is a regular file (development,
 * tests) or a block device (a partition); either is written in place,
 * never truncated or created.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { runStep, type StepHook } from './bootloader.js';
import { SlotError } from './errors.js';

/** The hash algorithms a target may be checked with. */
export const CHECKED_HASHES = ['sha256', 'sha512'] as const;

/** The bytes a slot holds: a file's size, a block device's capacity. */
export async function slotCapacity(path: string): Promise<number> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new SlotError('SLOT_IO', `slot ${path} cannot be found`, {
      cause: err,
    });
  }
  if (info.isFile()) return info.size;
  if (!info.isBlockDevice()) {
    throw new SlotError('CONFIG', `slot ${path} is no file or block device`);
  }
  // stat gives a block device no size; the kernel publishes it in
  // 512-byte sectors whatever the device's own sector size.
  const major = Math.floor(info.rdev / 256) & 0xfff;
  const minor = (info.rdev & 0xff) | (Math.floor(info.rdev / 4096) & 0xfff00);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  try {
    return Number((await readFile(sysfs, 'utf8')).trim()) * 512;
  } catch (err) {
    throw new SlotError('SLOT_IO', `cannot read the size of ${path}`, {
      cause: err,
    });
  }
}

/**
 * Opens an image file to read: never through a link, never a FIFO or a
 * device (O_NONBLOCK keeps a FIFO from hanging the open), so whoever can
 * write the folder the image sits in cannot make the installer read
 * something else or wait forever.
 */
export async function openImage(path: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SlotError(
      'INTEGRITY',
      code === 'ELOOP'
        ? `${path} is a link, not an image file`
        : `cannot open ${path}: ${code ?? String(err)}`,
      { cause: err },
    );
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new SlotError('INTEGRITY', `${path} is not a regular file`);
  }
  return handle;
}

/**
 * What is wrong with the first `length` bytes at `path` against `hashes`
 * (sha256 and sha512, whichever are listed), or undefined when they match.
 * `exact` also asks that the file hold nothing past `length` (an image
 * file; a slot is larger than its image).
 */
export async function checkBytes(
  path: string,
  length: number,
  hashes: Readonly<Record<string, string>>,
  exact: boolean,
): Promise<string | undefined> {
  const algorithms = CHECKED_HASHES.filter((a) => hashes[a] !== undefined);
  if (algorithms.length === 0) return 'no sha256 or sha512 hash is listed';
  const digests = algorithms.map((a) => createHash(a));
  let size = 0;
  // Without `exact` only the first `length` bytes count; `end` is
  // inclusive, and an empty image reads nothing at all.
  if (exact || length > 0) {
    // `exact` reads an image file; a slot may be a block device.
    const stream = exact
      ? (await openImage(path)).createReadStream({ highWaterMark: 1024 * 1024 })
      : createReadStream(path, { highWaterMark: 1024 * 1024, end: length - 1 });
    for await (const chunk of stream) {
      const bytes = chunk as Buffer;
      size += bytes.length;
      if (size > length) return `longer than its ${length} bytes`;
      for (const d of digests) d.update(bytes);
    }
  }
  if (size !== length) return `${size} bytes, not ${length}`;
  for (const [i, a] of algorithms.entries()) {
    const actual = digests[i].digest('hex');
    // Hex is case-blind; the metadata may list either case.
    const expected = hashes[a].toLowerCase();
    if (actual !== expected) return `${a} is ${actual}, not ${expected}`;
  }
  return undefined;
}

export interface WriteImageOptions {
  image: string;
  slot: string;
  length: number;
  /** Bytes per write. Default 1 MiB. */
  chunkBytes?: number;
  /** Where in the workflow, for the hook. */
  label: string;
  hook?: StepHook;
}

/** Copies `length` bytes of the image to the start of the slot, synced. */
export async function writeImage(options: WriteImageOptions): Promise<void> {
  const { image, slot, length, label } = options;
  const hook = options.hook ?? runStep;
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  const source = await openImage(image);
  try {
    const target = await open(slot, 'r+');
    try {
      const buffer = Buffer.alloc(Math.min(chunkBytes, Math.max(length, 1)));
      for (let offset = 0, n = 0; offset < length; n++) {
        const want = Math.min(buffer.length, length - offset);
        const { bytesRead } = await source.read(buffer, 0, want, offset);
        if (bytesRead !== want) {
          throw new SlotError('INTEGRITY', `${image} ended at ${offset}`);
        }
        const at = offset;
        const step = { kind: 'slot-chunk' as const, label: `${label}:${n}` };
        await hook({ ...step, paths: [slot] }, async () => {
          await target.write(buffer, 0, want, at);
        });
        offset += want;
      }
      const sync = { kind: 'slot-sync' as const, label, paths: [slot] };
      await hook(sync, () => target.datasync());
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}
