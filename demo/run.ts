/**
 * `npm run demo`: the whole job on embedded defaults, in a new folder
 * under the system's temporary folder (or the one given with `--out DIR`),
 * on the `file` bootloader unless `--bootloader grub|uboot` says another.
 * Exits 0 only if every step did what it says.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BOOTLOADERS, type BootloaderKind } from './device.js';
import { runJourney, STEP_COUNT } from './journey.js';

function option(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const out = option('--out');
const bootloader = (option('--bootloader') ?? 'file') as BootloaderKind;
if (!BOOTLOADERS.includes(bootloader)) {
  process.stderr.write(
    `--bootloader ${bootloader}: give one of ${BOOTLOADERS.join(', ')}\n`,
  );
  process.exit(2);
}
const base = out ? resolve(out) : await mkdtemp(join(tmpdir(), 'tufota-demo-'));

if (out === undefined && process.argv.includes('--out')) {
  process.stderr.write('--out needs a folder\n');
  process.exit(2);
}
const started = Date.now();
process.stdout.write(`tufota demo in ${base}\n\n`);
const result = await runJourney({
  base,
  bootloader,
  onStepStart: (title, number) => process.stdout.write(`${number}. ${title}\n`),
  onOutput: (line) => process.stdout.write(`       | ${line}\n`),
  onStep: (step) => {
    process.stdout.write(`   ${step.ok ? 'ok' : 'FAILED'}\n`);
    for (const line of step.detail.split('\n')) {
      if (line.trim() !== '') process.stdout.write(`       ${line}\n`);
    }
    process.stdout.write('\n');
  },
}).catch((err: unknown) => {
  process.stderr.write(
    `demo: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(2);
});

const seconds = ((Date.now() - started) / 1000).toFixed(1);
const passed = result.steps.filter((s) => s.ok).length;
const p = result.paths;
process.stdout.write(
  `${passed} of ${STEP_COUNT} steps passed in ${seconds} s\n` +
    `  repository     ${p.repo}\n` +
    `  keys           ${p.keys} (offline keys sealed with the passphrase in ` +
    `${p.offlinePassphrase}, online keys with ${p.onlinePassphrase})\n` +
    `  TLS            ${p.tls} (devices pin ca.crt)\n` +
    `  server log     ${p.serverLog}\n` +
    `  firmware       ${p.images}\n` +
    `  device         ${p.deviceConfig}\n` +
    `  device journal ${p.journal}\n` +
    `Remove the folder when done: rm -rf ${p.base}\n`,
);
process.exitCode = result.ok ? 0 : 1;
