/**
 * The power-cut test of the A/B slot installer: N randomized runs of a
 * device on real files (powercut-run.ts), the power cut at random steps
 * that write (install, arm, each boot's counting, the health check,
 * commit) and every twenty-fifth run's install killed with SIGKILL in a
 * child process. Each run uses one of the three backends (file, grub,
 * uboot) through their real tools.
 *
 *   npm run powercut -- --runs 1000
 *
 * Options:
 *   --runs N           runs (default 1000)
 *   --seed S           seed of the first run (default: random; printed)
 *   --sigkill-every K  every Kth run installs in a child killed with
 *                      SIGKILL (default 25; 0 for none)
 *   --jobs J           runs at a time (default 3)
 *   --dir D            where run folders go (default /dev/shm when it
 *                      exists, else the system's temporary folder)
 *
 * The last line on stdout is the one result, in the form
 * `runs: N, unbootable: 0, unverified boots: 0`: runs that ended without
 * a readable record booting its known-good, verified slot, and boots of a
 * slot whose image was not verified. Details (cuts per step, outcomes,
 * the seed of any bad run) go to stderr. Exits 1 when either count is
 * not zero.
 *
 * Runs default to tmpfs: a cut here is played at a step, not by losing
 * the page cache (which a SIGKILL does not lose either), so a disk's
 * fsync would only slow the runs; the slot tests run on a real disk.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seeded } from './powercut-power.js';
import { playRun } from './powercut-run.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    'sigkill-every': { type: 'string', default: '25' },
    jobs: { type: 'string', default: '3' },
    dir: { type: 'string' },
  },
});
const base = values.dir ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
const jobs = Math.max(1, Number(values.jobs) || 1);
const runs = Number(values.runs);
const sigkillEvery = Number(values['sigkill-every']);
const seed = values.seed
  ? Number(values.seed)
  : Math.floor(Math.random() * 2 ** 31);
if (!Number.isSafeInteger(runs) || runs < 1) {
  throw new Error('--runs takes a whole number of at least 1');
}

const counts = { unbootable: 0, unverifiedBoots: 0, boots: 0, sigkills: 0 };
const outcomes = new Map<string, number>();
const cuts = new Map<string, number>();
const kinds = new Map<string, number>();
const bad: string[] = [];
const bump = (m: Map<string, number>, k: string, n = 1) =>
  m.set(k, (m.get(k) ?? 0) + n);
const started = Date.now();

async function run(i: number): Promise<void> {
  const runSeed = (seed + i) >>> 0;
  const dir = await mkdtemp(join(base, 'tufota-powercut-'));
  const sigkill = sigkillEvery > 0 && i % sigkillEvery === sigkillEvery - 1;
  try {
    const r = await playRun(dir, seeded(runSeed), sigkill);
    counts.boots += r.boots;
    counts.unverifiedBoots += r.unverifiedBoots;
    if (r.sigkill) counts.sigkills++;
    bump(kinds, r.kind);
    for (const o of r.outcomes) bump(outcomes, o);
    for (const [step, n] of r.cuts) bump(cuts, step, n);
    if (r.unbootable) counts.unbootable++;
    const lost = r.outcomes.filter((o) => o.startsWith('lost'));
    if (r.unbootable || r.unverifiedBoots > 0 || lost.length > 0) {
      bad.push(
        `seed ${runSeed} (${r.kind}${r.sigkill ? ', SIGKILL' : ''}): ` +
          `${r.unbootable ?? 'bootable'}, ` +
          `${r.unverifiedBoots} unverified boots, ${lost.length} lost`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  done++;
  if (done % Math.max(1, Math.floor(runs / 10)) === 0) {
    process.stderr.write(`${done}/${runs} runs\n`);
  }
}

let done = 0;
let nextRun = 0;
await Promise.all(
  Array.from({ length: Math.min(jobs, runs) }, async () => {
    while (nextRun < runs) await run(nextRun++);
  }),
);

const list = (m: Map<string, number>) =>
  [...m.entries()]
    .sort((x, y) => x[0].localeCompare(y[0]))
    .map(([k, n]) => `  ${k}: ${n}`)
    .join('\n');
process.stderr.write(
  [
    `seed ${seed}; ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `${counts.boots} boots; ${counts.sigkills} installs killed with SIGKILL`,
    `backends:\n${list(kinds)}`,
    `deployments:\n${list(outcomes)}`,
    `power cuts by step:\n${list(cuts)}`,
    ...bad.slice(0, 20),
    '',
  ].join('\n'),
);
process.stdout.write(
  `runs: ${runs}, unbootable: ${counts.unbootable}, ` +
    `unverified boots: ${counts.unverifiedBoots}\n`,
);
process.exitCode = counts.unbootable + counts.unverifiedBoots > 0 ? 1 : 0;
