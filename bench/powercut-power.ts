/**
 * The power supply of a simulated device, as a StepHook: at any step that
 * writes (and while the health check runs) it may cut the power before
 * the step, after it, or half-way through, tearing the files the step was
 * changing the way a real cut would. After a cut nothing is written any
 * more until `restore`, so code that catches the error and carries on (a
 * retry loop) cannot write past the cut.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Step } from '../client/slots/bootloader.js';

/** Thrown at a cut. */
export class PowerCut extends Error {
  constructor(label: string) {
    super(`power cut at ${label}`);
    this.name = 'PowerCut';
  }
}

/** A seeded random source, so a run can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PowerOptions {
  random: () => number;
  /** Chance of a cut at each step. */
  chance: number;
  /** Cuts at most, after which the power stays on. */
  maxCuts: number;
  /**
   * Whether a torn record write leaves the file cut short (grub-editenv
   * truncates and rewrites) rather than new bytes over old in place, as
   * every other write here is (slots, sectors, U-Boot copies).
   */
  truncates: boolean;
}

export class Power {
  alive = true;
  cuts = 0;
  /** Cuts per step, by label without its copy or chunk number. */
  readonly byStep = new Map<string, number>();
  readonly #o: PowerOptions;

  constructor(options: PowerOptions) {
    this.#o = options;
  }

  /** Power back on, as at the next boot. */
  restore(): void {
    this.alive = true;
  }

  /** No more cuts in this run (its last boots are checked in peace). */
  steady(): void {
    this.cuts = this.#o.maxCuts;
  }

  readonly hook = async (step: Step, run: () => Promise<void>) => {
    if (!this.alive) throw new PowerCut(step.label);
    const o = this.#o;
    if (this.cuts >= o.maxCuts || o.random() >= o.chance) return run();
    this.cuts++;
    const name = `${step.label.replace(/:(copy-\d|\d+)$/, '')} (${step.kind})`;
    this.byStep.set(name, (this.byStep.get(name) ?? 0) + 1);
    // A rename (the note) and a running program cannot be torn.
    const tearable = step.kind !== 'note' && step.kind !== 'health-check';
    const when = o.random();
    if (when < 0.3 || step.kind === 'health-check') {
      this.alive = false;
      throw new PowerCut(step.label);
    }
    const before = await Promise.all(step.paths.map(readOrEmpty));
    await run();
    if (tearable && when < 0.75) {
      for (const [i, path] of step.paths.entries()) {
        await this.#tear(path, before[i], step.kind === 'record-copy');
      }
    }
    this.alive = false;
    throw new PowerCut(step.label);
  };

  async #tear(path: string, old: Buffer, record: boolean): Promise<void> {
    const now = await readOrEmpty(path);
    if (now.equals(old)) return;
    const random = this.#o.random;
    if (record && this.#o.truncates) {
      const keep = Math.floor(random() * now.length);
      await writeFile(path, now.subarray(0, keep));
      return;
    }
    let first = 0;
    while (first < now.length && now[first] === old[first]) first++;
    let last = now.length - 1;
    while (last > first && now[last] === old[last]) last--;
    const cut = first + Math.floor(random() * (last - first + 1));
    const torn = Buffer.from(now);
    old.copy(torn, cut, cut, Math.min(old.length, now.length));
    await writeFile(path, torn);
  }
}

async function readOrEmpty(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch {
    return Buffer.alloc(0);
  }
}
