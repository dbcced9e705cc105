/**
 * installImage on the file backend: the order of its writes, the checks
 * before and after the slot is written, the states it refuses, and a real
 * installer process killed with SIGKILL at steps along the way.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Installer } from '../../../client/agent/agent.js';
import type { StepHook } from '../../../client/slots/bootloader.js';
import { SlotError } from '../../../client/slots/errors.js';
import type { SlotInstaller } from '../../../client/slots/slot-installer.js';
import { readTrialNote } from '../../../client/slots/trial-note.js';
import { damageCopy, makeRig, type Rig } from './rig.js';

// The agent takes a SlotInstaller as its Installer by shape alone (slots
// import nothing of the agent); this stops compiling if the two drift.
export const asInstaller = (s: SlotInstaller): Installer => s;

const child = fileURLToPath(new URL('./install-child.ts', import.meta.url));

function isSlotError(code: string) {
  return (err: unknown) => err instanceof SlotError && err.code === code;
}

/** A hook that lists every step, optionally acting after one. */
function recorder(after?: (label: string) => Promise<void>) {
  const labels: string[] = [];
  const hook: StepHook = async (step, run) => {
    labels.push(step.label);
    await run();
    await after?.(step.label);
  };
  return { labels, hook };
}

/** Whether slot `slot` of `rig` starts with an image that was verified. */
async function holdsVerified(rig: Rig, slot: 'a' | 'b'): Promise<boolean> {
  const bytes = await readFile(rig.slots[slot]);
  const image = slot === 'a' ? rig.factory : rig.image;
  return bytes.subarray(0, image.length).equals(image);
}

/** Runs install-child.ts, SIGKILLs it when it prints `at`. */
function killAt(configFile: string, at: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', child, configFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const seen: string[] = [];
    let pending = '';
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      seen.push(...lines);
      if (lines.includes(at)) proc.kill('SIGKILL');
    });
    proc.on('error', reject);
    proc.on('close', (_code, signal) => {
      if (signal === 'SIGKILL') resolve(seen);
      else reject(new Error(`installer was not killed at ${at}: ${stderr}`));
    });
  });
}

describe('installImage', () => {
  let rig: Rig;

  beforeEach(async () => {
    rig = await makeRig('file');
  });

  afterEach(() => rig.remove());

  it('marks the slot unbootable, writes it, syncs, notes, then arms', async () => {
    const { labels, hook } = recorder();
    await rig
      .installer({ hook, chunkBytes: 16 * 1024 })
      .install(rig.imagePath, rig.deployment);
    assert.deepEqual(labels, [
      'install:mark-unbootable:copy-1',
      'install:mark-unbootable:copy-0',
      'install:mark-unbootable:hint',
      'install:slot:0',
      'install:slot:1',
      'install:slot:2',
      'install:slot',
      'install:note',
      'install:arm:copy-1',
      'install:arm:copy-0',
    ]);
    const note = await readTrialNote(rig.stateDir);
    assert.equal(note?.armGeneration, 3);
    assert.equal(note?.slot, 'b');
  });

  it('refuses an image that is not the target before writing anything', async () => {
    const tampered = Buffer.from(rig.image);
    tampered[100] ^= 1;
    await writeFile(rig.imagePath, tampered);
    const { labels, hook } = recorder();
    await assert.rejects(
      rig.installer({ hook }).install(rig.imagePath, rig.deployment),
      (err) => isSlotError('INTEGRITY')(err) && /sha256 is/.test(String(err)),
    );
    assert.deepEqual(labels, []);
  });

  it('reads the image through no link and from no FIFO, before writing anything', async () => {
    const real = join(rig.stateDir, 'real.img');
    await writeFile(real, rig.image);
    await rm(rig.imagePath);
    await symlink(real, rig.imagePath);
    const { labels, hook } = recorder();
    await assert.rejects(
      rig.installer({ hook }).install(rig.imagePath, rig.deployment),
      (err) => isSlotError('INTEGRITY')(err) && /is a link/.test(String(err)),
    );
    await rm(rig.imagePath);
    execFileSync('mkfifo', [rig.imagePath]);
    await assert.rejects(
      rig.installer({ hook }).install(rig.imagePath, rig.deployment),
      (err) =>
        isSlotError('INTEGRITY')(err) && /not a regular file/.test(String(err)),
    );
    assert.deepEqual(labels, []);
  });

  it('leaves the slot unbootable when it reads back wrong', async () => {
    const { hook } = recorder(async (label) => {
      if (label !== 'install:slot') return;
      // Flash that took the write and returns something else.
      const handle = await open(rig.slots.b, 'r+');
      await handle.write(Buffer.from([0xff]), 0, 1, 5);
      await handle.close();
    });
    await assert.rejects(
      rig.installer({ hook }).install(rig.imagePath, rig.deployment),
      isSlotError('INTEGRITY'),
    );
    assert.equal((await rig.bootloader.read()).record?.trial, false);
    assert.equal(await readTrialNote(rig.stateDir), undefined);
    assert.equal(await rig.boot(), 'a');
  });

  it('refuses while a trial of the running slot is not committed', async () => {
    const installer = rig.installer();
    await installer.install(rig.imagePath, rig.deployment);
    assert.equal(await rig.boot(), 'b');
    await assert.rejects(
      installer.install(rig.imagePath, rig.deployment),
      isSlotError('SLOT_STATE'),
    );
  });

  it('refuses when no copy of the boot record is readable', async () => {
    await damageCopy(rig, 0);
    await damageCopy(rig, 1);
    await assert.rejects(
      rig.installer().install(rig.imagePath, rig.deployment),
      isSlotError('BOOT_RECORD'),
    );
  });

  it('replaces a trial armed but not yet booted', async () => {
    const installer = rig.installer();
    await installer.install(rig.imagePath, rig.deployment);
    await installer.install(rig.imagePath, { ...rig.deployment, id: 'd-2' });
    assert.equal((await readTrialNote(rig.stateDir))?.deploymentId, 'd-2');
    assert.equal(await rig.boot(), 'b');
    assert.equal((await installer.afterBoot()).deploymentId, 'd-2');
  });

  it('refuses tries outside 1 to 9', async () => {
    for (const tries of [0, 10]) {
      await assert.rejects(
        rig.installer({ tries }).install(rig.imagePath, rig.deployment),
        isSlotError('CONFIG'),
      );
    }
  });

  describe('when the installer process is killed with SIGKILL', () => {
    const points = [
      'install:mark-unbootable:copy-0',
      'install:mark-unbootable:hint',
      'install:slot:3',
      'install:slot:9',
      'install:slot',
      'install:note',
      'install:arm:copy-1',
      'install:arm:copy-0',
    ];
    for (const at of points) {
      it(`boots a verified image after a kill at ${at}`, async () => {
        const configFile = join(rig.dir, 'rig.json');
        const { config, slots, stateDir, imagePath, deployment } = rig;
        await writeFile(
          configFile,
          JSON.stringify({ config, slots, stateDir, imagePath, deployment }),
        );
        const seen = await killAt(configFile, at);
        assert.ok(!seen.includes('done'));
        for (let boot = 0; boot < 5; boot++) {
          const slot = await rig.boot();
          assert.ok(await holdsVerified(rig, slot), `slot ${slot} booted`);
        }
        assert.equal(await rig.boot(), 'a');
      });
    }
  });
});
