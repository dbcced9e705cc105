/**
 * `tufota sign` with a key that is already a signer (a hardware token),
 * where signing.ts `signFile` opens a key file itself. Same rules: only the
 * metadata file is read, its expiry is checked by this machine's clock, and
 * the signature is written through a link to the file it points at.
 */
import { realpath } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { DEFAULT_EXPIRY, expiryKeyFor, msUntil } from '../tuf/expiry.js';
import {
  addSignature,
  serializeMetadata,
  type AnySigned,
  type SigningKey,
} from '../tuf/metadata.js';
import type { Metadata } from '../tuf/models.js';
import { writeFileAtomic } from './atomic.js';
import { readAnyMetadata, type SignFileOptions } from './signing.js';

/** Adds the signature of `signer` to the metadata file at `path`. */
export async function signFileWith(
  path: string,
  signer: SigningKey,
  options: SignFileOptions = {},
): Promise<Metadata<AnySigned>> {
  const md = await readAnyMetadata(path);
  const now = options.now ?? new Date();
  const left = msUntil(md.signed.expires, now);
  const window = DEFAULT_EXPIRY[expiryKeyFor(md.signed.type)].refreshWindow;
  if (!options.force && left <= window) {
    throw new BadInputError(
      `${path} expires ${md.signed.expires}, ` +
        (left <= 0 ? 'in the past' : 'within its refresh window') +
        ` by this machine's clock (${now.toISOString()}); check the clock, ` +
        'or sign anyway with --force',
    );
  }
  await addSignature(md, signer);
  await writeFileAtomic(await realpath(path), serializeMetadata(md));
  return md;
}
