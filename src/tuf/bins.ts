/**
 * Hashed-bin delegations, in the specification's original form: each bin is
 * a delegated role with `path_hash_prefixes`, which every TUF client
 * understands (succinct delegations from TAP 15 are not yet universal).
 */
import { createHash } from 'node:crypto';
import { BadInputError } from '../errors.js';

export interface BinLayout {
  /** Number of bins, a power of two from 2 to 65536. */
  count: number;
  /** Length of each hex prefix. */
  prefixLength: number;
  /** Role name of the delegator that owns the bins. */
  parent: string;
}

export function binLayout(count: number, parent: string): BinLayout {
  if (
    !Number.isInteger(count) ||
    count < 2 ||
    count > 65536 ||
    (count & (count - 1)) !== 0
  ) {
    throw new BadInputError(
      `--bins must be a power of two from 2 to 65536, got ${count}`,
    );
  }
  const prefixLength = Math.ceil(Math.log2(count) / 4);
  return { count, prefixLength, parent };
}

function prefixesPerBin(layout: BinLayout): number {
  return 16 ** layout.prefixLength / layout.count;
}

function hex(value: number, length: number): string {
  return value.toString(16).padStart(length, '0');
}

/** Bin role names look like `releases-bin-0a`, sorted by their first prefix. */
export function binName(layout: BinLayout, index: number): string {
  const first = index * prefixesPerBin(layout);
  return `${layout.parent}-bin-${hex(first, layout.prefixLength)}`;
}

export function binPrefixes(layout: BinLayout, index: number): string[] {
  const per = prefixesPerBin(layout);
  const prefixes: string[] = [];
  for (let i = 0; i < per; i++) {
    prefixes.push(hex(index * per + i, layout.prefixLength));
  }
  return prefixes;
}

/** The bin whose prefixes cover `sha256(path)`, as clients compute it. */
export function binIndexFor(layout: BinLayout, path: string): number {
  const digest = createHash('sha256').update(path, 'utf8').digest('hex');
  const prefix = parseInt(digest.slice(0, layout.prefixLength), 16);
  return Math.floor(prefix / prefixesPerBin(layout));
}
