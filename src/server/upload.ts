/**
 * Receiving a target upload: the request body is streamed to a temporary
 * file in the server's upload folder, counted and hashed on the way, and
 * refused as soon as it passes the size limit, so no upload is ever held
 * in memory. What lands is then imported as `tufota targets add` imports a
 * file. Leftovers of uploads cut short are removed when the server starts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HttpError } from './http-errors.js';

export interface ReceivedUpload {
  file: string;
  length: number;
  sha256: string;
}

/** Removes what uploads cut short by a crash left in `dir`. */
export async function clearUploads(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(dir)) {
    await rm(join(dir, name), { force: true, recursive: true });
  }
}

export async function receiveUpload(
  body: Readable,
  dir: string,
  maxBytes: number,
  declaredLength: number | undefined,
): Promise<ReceivedUpload> {
  if (declaredLength !== undefined && declaredLength > maxBytes) {
    throw new HttpError(
      413,
      `the upload is ${declaredLength} bytes; the limit is ${maxBytes}`,
    );
  }
  const file = join(dir, `upload-${randomBytes(8).toString('hex')}`);
  const hash = createHash('sha256');
  let length = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      length += chunk.length;
      if (length > maxBytes) {
        done(
          new HttpError(
            413,
            `the upload passes the limit of ${maxBytes} bytes`,
          ),
        );
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(
      body,
      counter,
      createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    );
    // The stream has closed its descriptor; the bytes still have to reach
    // the disk before the upload is acknowledged.
    const handle = await open(file, 'r');
    await handle.sync().finally(() => handle.close());
  } catch (err) {
    await rm(file, { force: true });
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'the upload was cut off before its end');
  }
  if (declaredLength !== undefined && length !== declaredLength) {
    await rm(file, { force: true });
    throw new HttpError(400, 'the upload ended before its Content-Length');
  }
  return { file, length, sha256: hash.digest('hex') };
}
