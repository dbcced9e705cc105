/**
 * The slot state machine on real files, the same cases for every backend:
 * `file`, `grub` (real grub-editenv on two grubenv files) and `uboot`
 * (real fw_setenv / fw_printenv over a redundant environment in two
 * files). A "boot" is playBoot, the bootloader's counting through the
 * backend's own reads and writes; a "power cut" is a boot with no
 * afterBoot before the next one. Damage to the record is in
 * damaged-record.test.ts.
 *
 * Write failures are injected through the backend's StepHook: these tests
 * run as root, so a read-only file would not refuse a write, and a full
 * device (/dev/full) behind the record would make its reads fail too.
 * The hook either throws before the write (EIO) or lets the write happen
 * and puts the old bytes back (a write that does not stick), so the
 * read-back check is what catches it.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { playBoot } from '../../../client/slots/boot.js';
import type { Step, StepHook } from '../../../client/slots/bootloader.js';
import { createBootloader } from '../../../client/slots/create.js';
import { SlotError } from '../../../client/slots/errors.js';
import { KINDS, makeRig, type Rig } from './rig.js';

async function snapshot(rig: Rig): Promise<Buffer[]> {
  return Promise.all(rig.copies.map((c) => readFile(c.path)));
}

async function record(rig: Rig) {
  return (await rig.bootloader.read()).record;
}

/** A hook failing the steps `fails` picks, `times` times in all. */
function failing(
  fails: (step: Step) => boolean,
  times: number,
  how: 'throw' | 'lose',
): StepHook & { failed: number } {
  const hook = async (step: Step, run: () => Promise<void>) => {
    if (!fails(step) || hook.failed >= times) return run();
    hook.failed++;
    if (how === 'throw') {
      throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
    }
    const before = await Promise.all(step.paths.map((p) => readFile(p)));
    await run();
    await Promise.all(step.paths.map((p, i) => writeFile(p, before[i])));
  };
  hook.failed = 0;
  return hook;
}

const healthy = { command: ['true'] as [string] };
const unhealthy = { command: ['false'] as [string] };

for (const kind of KINDS) {
  describe(`slot state machine (${kind})`, () => {
    let rig: Rig;

    beforeEach(async () => {
      rig = await makeRig(kind);
    });

    afterEach(() => rig.remove());

    describe('with no update', () => {
      it('boots slot a through 50 plain reboots and counts nothing', async () => {
        const before = await snapshot(rig);
        const installer = rig.installer();
        for (let i = 0; i < 50; i++) {
          assert.equal(await rig.boot(), 'a');
          const after = await installer.afterBoot(healthy);
          assert.equal(after.outcome, 'no-trial');
        }
        assert.deepEqual(await snapshot(rig), before);
      });
    });

    describe('#install then boots', () => {
      it('commits a trial whose health check passes', async () => {
        const installer = rig.installer();
        const phase = await installer.install(rig.imagePath, rig.deployment);
        assert.equal(phase, 'awaiting-reboot');
        assert.equal(await rig.boot(), 'b');
        const after = await installer.afterBoot(healthy);
        assert.equal(after.outcome, 'trial-passed-committed');
        assert.equal(after.deploymentId, 'd-1');
        assert.deepEqual(await record(rig), {
          active: 'b',
          good: 'b',
          trial: false,
          tries: 0,
          generation: 4,
        });
        for (let i = 0; i < 5; i++) assert.equal(await rig.boot(), 'b');
      });

      it('keeps the trial through an unrelated reboot while tries remain', async () => {
        const installer = rig.installer();
        await installer.install(rig.imagePath, rig.deployment);
        assert.equal(await rig.boot(), 'b');
        // Power lost before the agent ran; the next boot tries again.
        assert.equal(await rig.boot(), 'b');
        const after = await installer.afterBoot(healthy);
        assert.equal(after.outcome, 'trial-passed-committed');
        assert.equal(await rig.boot(), 'b');
      });

      it('ends on the known-good slot after repeated power loss in a trial', async () => {
        const installer = rig.installer();
        await installer.install(rig.imagePath, rig.deployment);
        for (let i = 0; i < 3; i++) assert.equal(await rig.boot(), 'b');
        assert.equal(await rig.boot(), 'a');
        const after = await installer.afterBoot(healthy);
        assert.equal(after.outcome, 'rolled-back');
        assert.equal(after.deploymentId, 'd-1');
        assert.equal(after.rebootRequired, false);
        assert.equal((await record(rig))?.trial, false);
        for (let i = 0; i < 5; i++) assert.equal(await rig.boot(), 'a');
      });

      it('disarms a trial whose health check fails and asks for a reboot', async () => {
        const installer = rig.installer();
        await installer.install(rig.imagePath, rig.deployment);
        assert.equal(await rig.boot(), 'b');
        const failed = await installer.afterBoot(unhealthy);
        assert.equal(failed.outcome, 'rolled-back');
        assert.equal(failed.rebootRequired, true);
        assert.match(failed.reason ?? '', /health check exited with 1/);
        assert.equal(await rig.boot(), 'a');
        const again = await installer.afterBoot(healthy);
        assert.equal(again.outcome, 'rolled-back');
        assert.equal(again.rebootRequired, false);
        await installer.acknowledge('d-1');
        assert.equal((await installer.afterBoot()).outcome, 'no-trial');
      });

      it('changes nothing when power is lost early in a committed boot', async () => {
        const installer = rig.installer();
        await installer.install(rig.imagePath, rig.deployment);
        await rig.boot();
        await installer.afterBoot(healthy);
        const before = await snapshot(rig);
        for (let i = 0; i < 5; i++) assert.equal(await rig.boot(), 'b');
        assert.deepEqual(await snapshot(rig), before);
      });
    });

    describe('counters at zero', () => {
      it('boots the known-good slot and disarms a trial with no tries left', async () => {
        const installer = rig.installer({ tries: 1 });
        await installer.install(rig.imagePath, rig.deployment);
        assert.equal(await rig.boot(), 'b');
        assert.equal((await record(rig))?.tries, 0);
        assert.equal(await rig.boot(), 'a');
        assert.equal(await rig.boot(), 'a');
        assert.deepEqual(await record(rig), {
          active: 'a',
          good: 'a',
          trial: false,
          tries: 0,
          generation: 3,
        });
      });

      it('boots the known-good slot when the try cannot be written', async () => {
        await rig.installer().install(rig.imagePath, rig.deployment);
        const hook = failing((s) => s.label.startsWith('boot:'), 99, 'throw');
        const result = await playBoot(createBootloader(rig.config, hook));
        assert.equal(result.slot, 'a');
        assert.equal(result.event, 'try-not-recorded');
      });
    });

    describe('a commit write that fails', () => {
      const commit = (s: Step) => s.label.startsWith('after-boot:commit');

      for (const how of ['throw', 'lose'] as const) {
        it(`is retried until it sticks (${how})`, async () => {
          const hook = failing(commit, 2, how);
          const installer = rig.installer({ hook });
          await installer.install(rig.imagePath, rig.deployment);
          assert.equal(await rig.boot(), 'b');
          const after = await installer.afterBoot(healthy);
          assert.equal(hook.failed, 2);
          assert.equal(after.outcome, 'trial-passed-committed');
          assert.equal((await record(rig))?.good, 'b');
        });
      }

      it('is never reported as committed when it never sticks', async () => {
        const hook = failing(commit, 1000, 'lose');
        const installer = rig.installer({ hook, writeAttempts: 3 });
        await installer.install(rig.imagePath, rig.deployment);
        assert.equal(await rig.boot(), 'b');
        await assert.rejects(
          installer.afterBoot(healthy),
          (err) => err instanceof SlotError && err.code === 'BOOT_RECORD',
        );
        const armed = await record(rig);
        assert.equal(armed?.trial, true);
        assert.equal(armed?.good, 'a');
        // The trial goes on: the next boot takes a try, and a commit that
        // sticks then ends it.
        assert.equal(await rig.boot(), 'b');
        const after = await rig.installer().afterBoot(healthy);
        assert.equal(after.outcome, 'trial-passed-committed');
      });
    });

    describe('too little space', () => {
      it('is refused before a slot or the record is touched', async () => {
        const small = await makeRig(kind, {
          slotBytes: 16 * 1024,
          imageBytes: 20 * 1024,
        });
        try {
          const steps: string[] = [];
          const hook: StepHook = (step, run) => {
            steps.push(step.label);
            return run();
          };
          const before = await snapshot(small);
          const slotB = await readFile(small.slots.b);
          await assert.rejects(
            small
              .installer({ hook })
              .install(small.imagePath, small.deployment),
            (err) => err instanceof SlotError && err.code === 'NO_SPACE',
          );
          assert.deepEqual(steps, []);
          assert.deepEqual(await snapshot(small), before);
          assert.deepEqual(await readFile(small.slots.b), slotB);
          assert.equal(await small.boot(), 'a');
        } finally {
          await small.remove();
        }
      });
    });
  });
}
