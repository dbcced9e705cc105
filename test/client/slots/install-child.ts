/**
 * A child process for the SIGKILL test: installs an image into a rig's
 * file backend, writing the slot in small chunks so a kill lands mid-way,
 * and prints each step's label as it starts.
 *
 * Usage: install-child.ts RIG-CONFIG.json
 */
import { readFile } from 'node:fs/promises';
import type { StepHook } from '../../../client/slots/bootloader.js';
import { createBootloader } from '../../../client/slots/create.js';
import { installImage } from '../../../client/slots/install.js';
import type { Rig } from './rig.js';

type Saved = Pick<
  Rig,
  'config' | 'slots' | 'stateDir' | 'imagePath' | 'deployment'
>;

const saved = JSON.parse(await readFile(process.argv[2], 'utf8')) as Saved;

// A pipe write is synchronous on Linux: the line is out before the step.
const hook: StepHook = (step, run) => {
  process.stdout.write(`${step.label}\n`);
  return run();
};

await installImage(saved.imagePath, saved.deployment, {
  bootloader: createBootloader(saved.config, hook),
  slots: saved.slots,
  running: 'a',
  stateDir: saved.stateDir,
  chunkBytes: 4096,
  hook,
});
process.stdout.write('done\n');
