/**
 * The bootloader's part: which slot to boot, and what to write first.
 * `decideBoot` is the rule; the grub.cfg and U-Boot snippets in
 * docs/device-integration.md are the same rule in those languages, and
 * `playBoot` plays it through any backend's real reads and writes (it is
 * what `tufota-device boot` runs for the file backend).
 *
 * - A trial armed with tries left: take one try (write it), boot the
 *   trial slot. A try that cannot be written is not taken: the known-good
 *   slot boots instead, so a record that cannot count never loops a bad
 *   image forever.
 * - A trial armed with no tries left: disarm, boot the known-good slot.
 * - No trial: count nothing, write nothing, boot the known-good slot.
 * - No readable record: boot the last known-good slot the backend kept
 *   apart (its hint), else its fallback slot, and report it.
 * Nothing here halts a boot: every path ends in a slot.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Bootloader } from './bootloader.js';
import { SlotError, messageOf } from './errors.js';
import { slotLog } from './log.js';
import type { BootRecord, Slot } from './record.js';

const log = slotLog.child({ module: 'client/slots/boot' });

/** What a boot did, in the field's words. */
export type BootEvent =
  'steady' | 'trial-try' | 'trial-exhausted' | 'try-not-recorded' | 'no-record';

/** The rule's answer for one boot. */
export interface BootDecision {
  slot: Slot;
  event: BootEvent;
  /** The record to write before booting, when the boot changes it. */
  write?: BootRecord;
}

/** Which slot boots, given the record (undefined: none readable). */
export function decideBoot(
  record: BootRecord | undefined,
  fallback: Slot,
): BootDecision {
  if (!record) return { slot: fallback, event: 'no-record' };
  if (!record.trial) return { slot: record.good, event: 'steady' };
  if (record.tries > 0) {
    return {
      slot: record.active,
      event: 'trial-try',
      write: { ...record, tries: record.tries - 1 },
    };
  }
  return {
    slot: record.good,
    event: 'trial-exhausted',
    write: { ...record, active: record.good, trial: false, tries: 0 },
  };
}

/** How one played boot went. */
export interface BootResult {
  slot: Slot;
  event: BootEvent;
  /** Damage found in the record, or a write that failed. */
  fault?: string;
}

/** Settings of a played boot. */
export interface PlayBootOptions {
  /**
   * A file standing in for /proc/cmdline: `tufota.slot=SLOT` is written
   * there, as the real snippets put it on the kernel's command line.
   */
  cmdline?: string;
}

/** Plays one power-on through `bootloader`; never throws over the record. */
export async function playBoot(
  bootloader: Bootloader,
  options: PlayBootOptions = {},
): Promise<BootResult> {
  let record: BootRecord | undefined;
  let fault: string | undefined;
  let fallback = bootloader.fallback;
  try {
    const read = await bootloader.read();
    ({ record, fault } = read);
    fallback = read.lastGood ?? fallback;
  } catch (err) {
    fault = `reading the boot record failed: ${messageOf(err)}`;
  }
  const decision = decideBoot(record, fallback);
  let { slot, event } = decision;
  if (decision.write) {
    try {
      await bootloader.writeAsFirmware(decision.write, `boot:${event}`);
    } catch (err) {
      const why = `the ${event} write failed: ${messageOf(err)}`;
      fault = fault ? `${fault}; ${why}` : why;
      if (event === 'trial-try' && record) {
        slot = record.good;
        event = 'try-not-recorded';
      }
    }
  }
  if (fault) {
    log.warn({ backend: bootloader.kind, slot, event, fault }, 'boot fault');
  } else {
    log.info({ backend: bootloader.kind, slot, event }, 'boot');
  }
  if (options.cmdline) {
    await writeFile(options.cmdline, `tufota.slot=${slot}\n`);
  }
  return fault ? { slot, event, fault } : { slot, event };
}

/** The slot the kernel command line at `path` says is running. */
export async function slotFromCmdline(path = '/proc/cmdline'): Promise<Slot> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SlotError('CONFIG', `cannot read ${path}`, { cause: err });
  }
  const match = /(?:^|\s)tufota\.slot=([ab])(?:\s|$)/.exec(text);
  if (!match) {
    throw new SlotError(
      'CONFIG',
      `${path} names no tufota.slot=a or tufota.slot=b; the bootloader ` +
        'snippet adds it',
    );
  }
  return match[1] as Slot;
}
