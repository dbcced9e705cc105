/**
 * One power-cut run: a device on real files (test/client/slots/rig.ts,
 * any of the three backends) goes through one or two deployments while
 * the power is cut at random steps (Power, powercut-power.ts), booting
 * after every cut with the bootloader's own counting (playBoot), the
 * agent calling afterBoot and install as it would. Some runs install in a
 * child process killed with SIGKILL instead.
 *
 * Measured: every boot's slot must start with an image whose hashes were
 * verified (the factory image or a listed one, not a torn or tampered
 * write), and the run must end, with the power steady, booting a readable
 * record's known-good slot with no trial armed.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { playBoot } from '../client/slots/boot.js';
import type { AfterBootResult } from '../client/slots/after-boot.js';
import type { HealthProbe } from '../client/slots/health.js';
import type { SlotDeployment } from '../client/slots/install.js';
import type { Slot } from '../client/slots/record.js';
import { Power } from './powercut-power.js';
import {
  KINDS,
  hashesOf,
  makeRig,
  type Kind,
  type Rig,
} from '../test/client/slots/rig.js';

const child = fileURLToPath(
  new URL('../test/client/slots/install-child.ts', import.meta.url),
);

/** What one run found. */
export interface RunResult {
  kind: Kind;
  boots: number;
  unverifiedBoots: number;
  /** Why the run did not end on a bootable known-good slot, if it did not. */
  unbootable?: string;
  /** How each deployment ended. */
  outcomes: string[];
  sigkill: boolean;
  cuts: Map<string, number>;
}

interface Deploy {
  deployment: SlotDeployment;
  path: string;
  healthy: boolean;
}

const MAX_STEPS = 80;

/** Plays one randomized run in `dir`. */
export async function playRun(
  dir: string,
  random: () => number,
  sigkill: boolean,
): Promise<RunResult> {
  const kind = KINDS[Math.floor(random() * KINDS.length)];
  const power = new Power({
    random,
    chance: 0.03 + random() * 0.2,
    maxCuts: 1 + Math.floor(random() * 6),
    truncates: kind === 'grub',
  });
  const imageBytes = 8 * 1024 + Math.floor(random() * 32 * 1024);
  const rig = await makeRig(kind, {
    dir,
    hook: power.hook,
    imageBytes,
    slotBytes: 48 * 1024,
  });
  const deploys = await plan(rig, random);
  const good = [rig.factory, ...deploys.map((d) => d.good)];
  const result: RunResult = {
    kind,
    boots: 0,
    unverifiedBoots: 0,
    outcomes: [],
    sigkill,
    cuts: power.byStep,
  };
  const verified = async (slot: Slot) => {
    const bytes = await readFile(rig.slots[slot]);
    return good.some((img) => bytes.subarray(0, img.length).equals(img));
  };
  const probe: HealthProbe = async () => {
    const bytes = await readFile(rig.slots[await rig.running()]);
    const runs = (img: Buffer) => bytes.subarray(0, img.length).equals(img);
    const bad = deploys.some((d) => !d.healthy && runs(d.good));
    return bad ? { healthy: false, reason: 'simulated' } : { healthy: true };
  };
  const installer = rig.installer({
    tries: 1 + Math.floor(random() * 4),
    chunkBytes: 4096,
    healthCheck: probe,
    writeAttempts: 3,
  });

  const boot = async (): Promise<void> => {
    for (let tries = 0; tries < 20; tries++) {
      power.restore();
      const { slot } = await playBoot(rig.bootloader, { cmdline: rig.cmdline });
      if (!power.alive) continue;
      result.boots++;
      if (!(await verified(slot))) result.unverifiedBoots++;
      return;
    }
    throw new Error('the power never stayed on through a boot');
  };
  /** Runs `fn`; false when the power was cut during it (then reboots). */
  const survives = async (fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
    } catch (err) {
      // Only a cut is expected here; anything else is the harness's bug.
      if (power.alive) throw err;
    }
    if (power.alive) return true;
    await boot();
    return false;
  };

  let next = 0;
  let awaiting = false;
  for (let steps = 0; next < deploys.length; steps++) {
    if (steps > MAX_STEPS) {
      result.unbootable = `no end after ${MAX_STEPS} steps`;
      return result;
    }
    const deploy = deploys[next];
    let after: AfterBootResult | undefined;
    const ran = await survives(async () => {
      after = await installer.afterBoot();
    });
    if (!ran || !after) continue;
    // An outcome already acknowledged, or of the deployment before, is
    // reported again after a cut; only this deployment's counts.
    const final =
      (after.outcome === 'trial-passed-committed' ||
        after.outcome === 'rolled-back') &&
      after.deploymentId === deploy.deployment.id;
    if (final) {
      result.outcomes.push(after.outcome);
      next++;
      awaiting = false;
      const id = deploy.deployment.id;
      if (!(await survives(() => installer.acknowledge(id)))) continue;
    }
    if (after.rebootRequired || after.outcome === 'trial-running') {
      await boot();
      continue;
    }
    if (final || next >= deploys.length) continue;
    if (awaiting) {
      // Armed and verified, yet no trial ran: the deployment was lost.
      result.outcomes.push(`lost (${after.outcome})`);
      next++;
      awaiting = false;
      continue;
    }
    let refused = false;
    const installed = await survives(async () => {
      try {
        if (sigkill && next === 0 && steps === 0) {
          await killedInstall(rig, deploy, random, power);
        } else {
          await installer.install(deploy.path, deploy.deployment);
        }
      } catch (err) {
        if (!power.alive) throw err;
        refused = true;
      }
    });
    if (!installed) continue;
    if (refused) {
      result.outcomes.push('install-refused');
      next++;
      continue;
    }
    awaiting = true;
    await boot();
  }

  power.steady();
  await boot();
  const slot = await rig.running();
  const end = await installer.afterBoot();
  const { record } = await rig.bootloader.read();
  if (!record || record.trial || record.good !== slot || end.rebootRequired) {
    result.unbootable = `ended on slot ${slot} with ${JSON.stringify(record)}`;
  } else if (!(await verified(slot))) {
    result.unbootable = `ended on slot ${slot}, which holds no verified image`;
  }
  return result;
}

/** The run's deployments: the rig's, then perhaps a second. */
async function plan(rig: Rig, random: () => number) {
  const first = {
    deployment: rig.deployment,
    path: rig.imagePath,
    healthy: random() < 0.7,
    good: rig.image,
  };
  // A tampered download: the file differs from what the target lists.
  if (random() < 0.1) {
    const tampered = Buffer.from(rig.image);
    tampered[Math.floor(random() * tampered.length)] ^= 0x20;
    await writeFile(rig.imagePath, tampered);
  }
  const deploys: (Deploy & { good: Buffer })[] = [first];
  if (random() < 0.3) {
    const image = randomBytes(8 * 1024 + Math.floor(random() * 32 * 1024));
    const path = join(rig.dir, 'image-3.img');
    await writeFile(path, image);
    deploys.push({
      deployment: {
        id: 'd-2',
        targetPath: 'images/fw-3.0.0.img',
        length: image.length,
        hashes: hashesOf(image),
        version: '3.0.0',
      },
      path,
      healthy: random() < 0.7,
      good: image,
    });
  }
  return deploys;
}

/** Installs in a child process and SIGKILLs it at a random step. */
async function killedInstall(
  rig: Rig,
  deploy: Deploy,
  random: () => number,
  power: Power,
): Promise<void> {
  const configFile = join(rig.dir, 'rig.json');
  const { config, slots, stateDir } = rig;
  const { deployment, path: imagePath } = deploy;
  await writeFile(
    configFile,
    JSON.stringify({ config, slots, stateDir, imagePath, deployment }),
  );
  const killAfter = Math.floor(random() * 16);
  const ended = await new Promise<string>((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', child, configFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let lines = 0;
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.stdout.on('data', (d: Buffer) => {
      lines += d.toString().split('\n').length - 1;
      if (lines > killAfter) proc.kill('SIGKILL');
    });
    proc.on('error', reject);
    proc.on('close', (code, signal) =>
      resolve(signal ?? (code === 0 ? 'done' : `refused: ${stderr}`)),
    );
  });
  if (ended === 'SIGKILL') {
    // As far as the device knows, a kill is a cut: the next step is a boot.
    power.alive = false;
    throw new Error('installer killed with SIGKILL');
  }
  if (ended !== 'done') throw new Error(ended);
}
