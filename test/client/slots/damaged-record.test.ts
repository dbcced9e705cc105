/**
 * A damaged boot record, the same cases for every backend (file, grub
 * with real grub-editenv, uboot with real fw_setenv / fw_printenv): one
 * copy damaged and read from the other, then repaired by the agent; the
 * next boot's write torn as well; both copies lost.
 */
import assert from 'node:assert/strict';
import { playBoot } from '../../../client/slots/boot.js';
import type { StepHook } from '../../../client/slots/bootloader.js';
import { createBootloader } from '../../../client/slots/create.js';
import { KINDS, damageCopy, makeRig, type Rig } from './rig.js';

async function record(rig: Rig) {
  return (await rig.bootloader.read()).record;
}

const healthy = { command: ['true'] as [string] };

for (const kind of KINDS) {
  describe(`a damaged boot record (${kind})`, () => {
    let rig: Rig;

    beforeEach(async () => {
      rig = await makeRig(kind);
    });

    afterEach(() => rig.remove());

    describe('#read and boots', () => {
      for (const index of [0, 1] as const) {
        it(`is read from the other copy when copy ${index} is damaged, then repaired`, async () => {
          const installer = rig.installer();
          await installer.install(rig.imagePath, rig.deployment);
          const armed = await record(rig);
          await damageCopy(rig, index);
          const read = await rig.bootloader.read();
          assert.deepEqual(read.record, armed);
          assert.match(read.fault ?? '', new RegExp(`copy ${index}`));
          if (kind === 'grub') {
            // GRUB's save_env cannot write a damaged block, so it takes no
            // try until the agent has rewritten both copies.
            assert.equal(await rig.boot(), 'a');
            const waiting = await installer.afterBoot(healthy);
            assert.equal(waiting.outcome, 'trial-running');
            assert.match(waiting.fault ?? '', new RegExp(`copy ${index}`));
          }
          assert.equal(await rig.boot(), 'b');
          const after = await installer.afterBoot(healthy);
          assert.equal(after.outcome, 'trial-passed-committed');
          const repaired = await rig.bootloader.read();
          assert.equal(repaired.fault, undefined);
          assert.equal(repaired.record?.good, 'b');
        });
      }

      // U-Boot writes its own redundant environment; the rule tested here
      // (the copy that is not current first) is the one tufota keeps.
      for (const index of kind === 'uboot' ? [] : ([0, 1] as const)) {
        it(`keeps a readable copy when copy ${index} is damaged and the next boot's write is torn`, async () => {
          await rig.installer().install(rig.imagePath, rig.deployment);
          const armed = await record(rig);
          await damageCopy(rig, index);
          const tear: StepHook = async (step) => {
            await damageCopy(rig, Number(step.label.slice(-1)) as 0 | 1);
            throw new Error('power cut');
          };
          await playBoot(createBootloader(rig.config, tear));
          assert.deepEqual(await record(rig), armed);
        });
      }

      it('boots the last known-good slot when both copies are lost, reports it and rewrites the record', async () => {
        const installer = rig.installer();
        await installer.install(rig.imagePath, rig.deployment);
        await rig.boot();
        await installer.afterBoot(healthy);
        await damageCopy(rig, 0);
        await damageCopy(rig, 1);
        // uboot's default environment names slot a; file and grub keep a
        // hint of the last known-good slot beside the copies.
        const expected = kind === 'uboot' ? 'a' : 'b';
        assert.equal(await rig.boot(), expected);
        const after = await installer.afterBoot(healthy);
        assert.equal(after.outcome, 'no-trial');
        assert.match(after.fault ?? '', /copy 0 unreadable.*copy 1 unreadable/);
        const read = await rig.bootloader.read();
        assert.equal(read.fault, undefined);
        assert.equal(read.record?.good, expected);
        assert.equal(await rig.boot(), expected);
      });
    });
  });
}
