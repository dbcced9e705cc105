/**
 * Writes a download's body into its part file a buffer at a time, and
 * hands each buffer to the digests only once it is written, so that the
 * digests always describe exactly the bytes on disk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { BUFFER_SIZE, type TargetDigests } from './digests.js';

/**
 * Bytes written between two fdatasync calls made in the background. A
 * device has little RAM: left alone, the whole image would sit dirty in
 * the page cache and the final fsync would stall for seconds; syncing on
 * the way also keeps more of the part through a power cut.
 */
const SYNC_EVERY = 64 * 1024 * 1024;

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export class PartWriter {
  /** Where the next byte goes; every byte before it is written. */
  position: number;
  /** The first error of a write or sync; no byte is written after it. */
  error: Error | undefined;
  readonly #file: FileHandle;
  readonly #digests: TargetDigests;
  readonly #onWritten: (position: number) => void;
  #buffer: Buffer | undefined;
  #filled = 0;
  #unsynced = 0;
  #syncing: Promise<void> | undefined;

  private constructor(
    file: FileHandle,
    position: number,
    digests: TargetDigests,
    onWritten: (position: number) => void,
  ) {
    this.#file = file;
    this.position = position;
    this.#digests = digests;
    this.#onWritten = onWritten;
  }

  /** A writer into the existing file `path` from byte `position`. */
  static async open(
    path: string,
    position: number,
    digests: TargetDigests,
    onWritten: (position: number) => void,
  ): Promise<PartWriter> {
    const file = await open(path, 'r+');
    return new PartWriter(file, position, digests, onWritten);
  }

  /** Bytes taken but not yet written. */
  get pending(): number {
    return this.#filled;
  }

  /** Takes `chunk`, writing each buffer as it fills. */
  async push(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      this.#buffer ??= await this.#digests.buffer();
      const copied = rest.copy(this.#buffer, this.#filled);
      this.#filled += copied;
      rest = rest.subarray(copied);
      if (this.#filled === BUFFER_SIZE) await this.#flush();
      if (this.error !== undefined) throw this.error;
    }
  }

  /** Writes the buffer taken so far; a failure goes to `error`. */
  async #flush(): Promise<void> {
    const buffer = this.#buffer;
    const length = this.#filled;
    if (!buffer || length === 0) return;
    try {
      const { bytesWritten } = await this.#file.write(
        buffer,
        0,
        length,
        this.position,
      );
      if (bytesWritten !== length) throw new Error('short write');
    } catch (err) {
      this.error ??= asError(err);
      return;
    }
    this.#digests.update(buffer, length);
    this.#buffer = undefined;
    this.#filled = 0;
    this.position += length;
    this.#unsynced += length;
    if (this.#unsynced >= SYNC_EVERY && !this.#syncing) {
      this.#unsynced = 0;
      // Handled here, not left to the final fsync: Linux reports a
      // writeback error once, and this call may be the one to see it.
      this.#syncing = this.#file
        .datasync()
        .catch((err: unknown) => {
          this.error ??= asError(err);
        })
        .finally(() => (this.#syncing = undefined));
    }
    this.#onWritten(this.position);
  }

  /**
   * Writes what is taken (unless a write failed already), then closes
   * the file. A failed write or sync does not throw here: `error` says.
   */
  async close(): Promise<void> {
    if (this.error === undefined) await this.#flush();
    if (this.#buffer) this.#digests.release(this.#buffer);
    this.#buffer = undefined;
    await this.#syncing;
    await this.#file.close();
  }
}
