/**
 * Hashed-bin delegations, in the specification's original form: each bin is
 * a delegated role with `path_hash_prefixes`, which every TUF client
 * understands (succinct delegations from TAP 15 are not yet universal).
 */
import { createHash } from 'node:crypto';
import { BadInputError } from '../errors.js';

/**
 * The most bins a repository may have. Every bin is a role listed in the
 * snapshot (about 60 bytes each, fetched by clients on every refresh) and
 * in its delegator, and `init` signs and writes them all: 16384 bins give a
 * 1 MiB snapshot, already far more than the largest catalogue needs.
 */
export const MAX_BINS = 16384;

export interface BinLayout {
  /** Number of bins, a power of two from 2 to MAX_BINS. */
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
    count > MAX_BINS ||
    (count & (count - 1)) !== 0
  ) {
    throw new BadInputError(
      `--bins must be a power of two from 2 to ${MAX_BINS}, got ${count}`,
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

/**
 * Average targets per bin that `defaultBinCount` aims at. A target entry
 * (path, length, sha256, sha512) takes about 300 bytes, so a bin is around
 * 150 KiB: far below the 5 MB clients accept for a targets role (tuf-js's
 * default cap), cheap to re-sign when one target changes, and cheap for a
 * device to download.
 */
export const TARGETS_PER_BIN = 512;

/**
 * A bin count for a repository expected to hold `targets` targets: the
 * smallest power of two that keeps bins at about `TARGETS_PER_BIN` targets,
 * from 16 up. More bins make each bin smaller but the snapshot (which lists
 * every bin, about 60 bytes each, and which clients fetch on every refresh)
 * and the delegating role bigger, and that role is parsed on every write;
 * 100,000 targets give 256 bins of ~400 targets (~115 KiB) and a ~15 KiB
 * snapshot.
 */
export function defaultBinCount(targets: number): number {
  let count = 16;
  while (count < MAX_BINS && count * TARGETS_PER_BIN < targets) count *= 2;
  return count;
}
