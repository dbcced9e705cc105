/**
 * `npm run demo`: the repository journey on embedded defaults, in a new
 * folder under the system's temporary folder (or the one given with
 * `--out DIR`). Exits 0 only if every step did what it says.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runJourney } from './journey.js';

const outIndex = process.argv.indexOf('--out');
const base =
  outIndex >= 0 && process.argv[outIndex + 1]
    ? resolve(process.argv[outIndex + 1])
    : await mkdtemp(join(tmpdir(), 'tufota-demo-'));

const started = Date.now();
process.stdout.write(`tufota demo in ${base}\n\n`);
const result = await runJourney({
  base,
  onStep: (step) => {
    process.stdout.write(`${step.ok ? 'ok  ' : 'FAIL'} ${step.title}\n`);
    for (const line of step.detail.split('\n')) {
      if (line.trim() !== '') process.stdout.write(`       ${line}\n`);
    }
  },
});

const seconds = ((Date.now() - started) / 1000).toFixed(1);
const passed = result.steps.filter((s) => s.ok).length;
process.stdout.write(
  `\n${passed} of ${result.steps.length} steps passed in ${seconds} s\n` +
    `  repository  ${result.paths.repo}\n` +
    `  keys        ${result.paths.keys} (sealed with the passphrase in ` +
    `${result.paths.passphraseFile})\n` +
    `Remove the folder when done: rm -rf ${result.paths.base}\n`,
);
process.exitCode = result.ok ? 0 : 1;
