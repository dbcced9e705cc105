/**
 * The record kept in two copies by the backend itself (the file backend's
 * two sectors, GRUB's two environment files); U-Boot keeps its redundant
 * environment on its own and does not use this.
 *
 * Rules, which the GRUB snippet in docs/device-integration.md follows too:
 * - a copy counts when it decodes (record.ts); of two, the higher
 *   generation wins, and copy 0 wins a tie;
 * - the agent writes the copy that is not current first, with the next
 *   generation, then the other: a cut during the first leaves the current
 *   copy alone, a cut during the second leaves the first, newer and whole;
 * - the firmware writes in place with the generation kept (GRUB cannot
 *   add), also the copy that is not current first; it reads it back and
 *   only then writes the current one. A cut during the first leaves the
 *   current copy, the state before the try, so a try is never counted for
 *   a boot that did not happen; a cut during the second leaves the first,
 *   changed and whole. The change counts (the trial slot boots) only when
 *   the copy chosen afterwards holds it. GRUB's save_env cannot write a
 *   damaged block, so with one copy damaged GRUB takes no try until the
 *   agent has rewritten both.
 * With every settled record (no trial) the agent also writes a hint, apart
 * from both copies, naming its known-good slot: what boots when both
 * copies are lost. It is written after the copies, so it never names a
 * slot that a later install writes (that install first settles on the
 * running slot, which writes the hint again).
 */
import type {
  Bootloader,
  BootloaderKind,
  RecordRead,
  StepHook,
} from './bootloader.js';
import { runStep } from './bootloader.js';
import { SlotError, messageOf } from './errors.js';
import { slotLog } from './log.js';
import {
  checkValue,
  sameRecord,
  stateProblem,
  type BootRecord,
  type BootState,
  type DecodedCopy,
  type Slot,
} from './record.js';

const log = slotLog.child({ module: 'client/slots/two-copies' });

/** Copy 0 or copy 1. */
export type CopyIndex = 0 | 1;

interface Chosen extends RecordRead {
  /** The copy the record came from. */
  index?: CopyIndex;
}

/** Picks the current copy of two, naming any that could not be used. */
export function chooseCopy(copies: readonly [DecodedCopy, DecodedCopy]) {
  const [c0, c1] = copies;
  const problems = copies.flatMap((c, i) =>
    c.ok ? [] : [`copy ${i} unreadable: ${c.problem}`],
  );
  const fault = problems.length > 0 ? problems.join('; ') : undefined;
  let chosen: Chosen;
  if (c0.ok && c1.ok) {
    const newer = c1.record.generation > c0.record.generation;
    chosen = newer
      ? { record: c1.record, index: 1 }
      : { record: c0.record, index: 0 };
  } else if (c0.ok) {
    chosen = { record: c0.record, index: 0 };
  } else if (c1.ok) {
    chosen = { record: c1.record, index: 1 };
  } else {
    chosen = {};
  }
  return fault ? { ...chosen, fault } : chosen;
}

/** A backend that stores the two copies itself. */
export abstract class TwoCopyBootloader implements Bootloader {
  abstract readonly kind: BootloaderKind;
  readonly fallback: Slot;
  protected readonly hook: StepHook;

  constructor(fallback: Slot, hook: StepHook = runStep) {
    this.fallback = fallback;
    this.hook = hook;
  }

  /** The file copy `index` lives in. */
  protected abstract copyPath(index: CopyIndex): string;

  /** The file the hint lives in. */
  protected abstract hintPath(): string;

  /** The hint's slot; undefined when missing or damaged. */
  protected abstract readHint(): Promise<Slot | undefined>;

  /** Writes the hint. */
  protected abstract writeHint(slot: Slot): Promise<void>;

  /** Reads and decodes one copy; damage is a result, not a throw. */
  protected abstract readCopy(index: CopyIndex): Promise<DecodedCopy>;

  /**
   * Writes one copy. `asFirmware` asks for what the firmware can do: an
   * in-place change of a block that is already valid, never a new one.
   */
  protected abstract writeCopy(
    index: CopyIndex,
    record: BootRecord,
    asFirmware: boolean,
  ): Promise<void>;

  async read(): Promise<RecordRead> {
    const { record, fault } = await this.readBoth();
    if (!fault) return { record };
    log.warn({ backend: this.kind, fault }, 'boot record damaged');
    if (record) return { record, fault };
    const lastGood = await this.readHint();
    return lastGood ? { fault, lastGood } : { fault };
  }

  async write(state: BootState, label: string): Promise<BootRecord> {
    const problem = stateProblem(state);
    if (problem) {
      throw new SlotError('BOOT_RECORD', `refusing to write: ${problem}`);
    }
    const current = await this.readBoth();
    const record: BootRecord = {
      ...state,
      generation: (current.record?.generation ?? 0) + 1,
    };
    const order: CopyIndex[] = current.index === 1 ? [0, 1] : [1, 0];
    for (const index of order) {
      await this.writeAndVerify(index, record, `${label}:copy-${index}`);
    }
    if (!record.trial) await this.writeAndVerifyHint(record.good, label);
    log.info(
      { backend: this.kind, label, record: checkValue(record) },
      'boot record written',
    );
    return record;
  }

  async writeAsFirmware(record: BootRecord, label: string): Promise<void> {
    const current = (await this.readBoth()).index ?? 0;
    const other: CopyIndex = current === 0 ? 1 : 0;
    const notCounted = (why: string) =>
      new SlotError('BOOT_RECORD', `${this.kind}: the firmware ${why}`);

    // The current copy is touched only once the other holds the change,
    // so a cut never leaves both unreadable.
    try {
      await this.hook(this.step(other, `${label}:copy-${other}`), () =>
        this.writeCopy(other, record, true),
      );
    } catch (err) {
      throw notCounted(`could not write copy ${other}: ${messageOf(err)}`);
    }
    const back = await this.readCopy(other);
    if (!back.ok || !sameRecord(back.record, record)) {
      throw notCounted(`wrote copy ${other}, which does not read back`);
    }
    try {
      await this.hook(this.step(current, `${label}:copy-${current}`), () =>
        this.writeCopy(current, record, true),
      );
    } catch (err) {
      // Copy 1 holding the change loses a tie to copy 0 without it; the
      // reading below decides whether the change counts.
      log.warn(
        { backend: this.kind, label, copy: current, err: messageOf(err) },
        'firmware write of the current copy failed',
      );
    }
    const after = await this.readBoth();
    if (!after.record || !sameRecord(after.record, record)) {
      throw notCounted('wrote a change that the record does not show');
    }
  }

  private async writeAndVerifyHint(slot: Slot, label: string): Promise<void> {
    const step = {
      kind: 'record-copy' as const,
      label: `${label}:hint`,
      paths: [this.hintPath()],
    };
    try {
      await this.hook(step, () => this.writeHint(slot));
    } catch (err) {
      throw new SlotError(
        'BOOT_RECORD',
        `${this.kind}: writing the known-good hint failed: ${messageOf(err)}`,
        { cause: err },
      );
    }
    const back = await this.readHint();
    if (back !== slot) {
      throw new SlotError(
        'BOOT_RECORD',
        `${this.kind}: the known-good hint reads back as ${back ?? 'unreadable'}, not ${slot}`,
      );
    }
  }

  private async readBoth(): Promise<Chosen> {
    return chooseCopy([await this.readCopy(0), await this.readCopy(1)]);
  }

  private step(index: CopyIndex, label: string) {
    return {
      kind: 'record-copy' as const,
      label,
      paths: [this.copyPath(index)],
    };
  }

  private async writeAndVerify(
    index: CopyIndex,
    record: BootRecord,
    label: string,
  ): Promise<void> {
    try {
      await this.hook(this.step(index, label), () =>
        this.writeCopy(index, record, false),
      );
    } catch (err) {
      throw new SlotError(
        'BOOT_RECORD',
        `${this.kind}: writing copy ${index} of the boot record failed: ` +
          messageOf(err),
        { cause: err },
      );
    }
    const back = await this.readCopy(index);
    if (!back.ok || !sameRecord(back.record, record)) {
      const got = back.ok ? checkValue(back.record) : back.problem;
      throw new SlotError(
        'BOOT_RECORD',
        `${this.kind}: copy ${index} of the boot record reads back as ` +
          `${got}, not ${checkValue(record)}`,
      );
    }
  }
}
