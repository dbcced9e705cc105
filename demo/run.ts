/**
 * `npm run demo`: the whole job on embedded defaults, in a new folder
 * under the system's temporary folder (or the one given with `--out DIR`),
 * on the `file` bootloader unless `--bootloader grub|uboot` says another.
 * Exits 0 only if every step did what it says, 1 if one did not, 2 for a
 * bad option or a folder it will not write into.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BOOTLOADERS, type BootloaderKind } from './device.js';
import { runJourney, STEP_COUNT } from './journey.js';

const USAGE =
  'usage: npm run demo [-- [--out DIR] [--bootloader file|grub|uboot]]\n' +
  '  Runs the whole job: a repository, tufota serve over HTTPS, ext4\n' +
  '  firmware images and a device on A/B slots that installs, commits,\n' +
  '  falls back and refuses a tampered image.\n' +
  '  --out DIR        a new or empty folder (default: a new temporary one)\n' +
  "  --bootloader B   the device's boot record: file (default), grub\n" +
  '                   (grub-editenv) or uboot (fw_setenv)\n';

function usage(problem: string): never {
  process.stderr.write(`demo: ${problem}\n${USAGE}`);
  process.exit(2);
}

let values: { out?: string; bootloader?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      out: { type: 'string' },
      bootloader: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  usage(err instanceof Error ? err.message : String(err));
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const bootloader = (values.bootloader ?? 'file') as BootloaderKind;
if (!BOOTLOADERS.includes(bootloader)) {
  usage(`--bootloader ${bootloader}: give one of ${BOOTLOADERS.join(', ')}`);
}
if (values.out !== undefined) {
  if (values.out === '' || values.out.startsWith('-')) {
    usage(`--out needs a folder, not "${values.out}"`);
  }
  // Kernel filesystems take no files, and Node's mkdir may never return there.
  if (/^\/(proc|sys|dev)(\/|$)/.test(resolve(values.out))) {
    usage(`--out ${values.out}: not a place for files`);
  }
}
const base = values.out
  ? resolve(values.out)
  : await mkdtemp(join(tmpdir(), 'tufota-demo-'));

/** Lines wider than the terminal are wrapped at a space, indented. */
const WIDTH = Math.max(60, Math.min(process.stdout.columns || 100, 120));
function show(
  line: string,
  indent: string,
  next = ' '.repeat(indent.length + 2),
): void {
  let rest = line;
  let lead = indent;
  while (lead.length + rest.length > WIDTH) {
    const room = WIDTH - lead.length;
    const cut = rest.lastIndexOf(' ', room);
    if (cut <= 0) break;
    process.stdout.write(`${lead}${rest.slice(0, cut)}\n`);
    rest = rest.slice(cut + 1);
    lead = next;
  }
  process.stdout.write(`${lead}${rest}\n`);
}

// The server is a process of its own: a signal or a reader that goes away
// stops it before the demo ends, so nothing is left holding the keys.
let stopServer: (() => Promise<void>) | undefined;
const leave = (code: number) => {
  void (stopServer?.() ?? Promise.resolve()).finally(() => process.exit(code));
};
process.once('SIGINT', () => leave(130));
process.once('SIGTERM', () => leave(143));
process.once('SIGHUP', () => leave(129));
process.stdout.on('error', () => leave(1));

const started = Date.now();
process.stdout.write(`tufota demo in ${base} (paths below are inside it)\n\n`);
const result = await runJourney({
  base,
  bootloader,
  onServer: (server) => {
    stopServer = () => server.stop();
  },
  onStepStart: (title, number) => show(title, `${number}. `),
  onOutput: (line) => show(line, '       | ', '       |   '),
  onStep: (step) => {
    process.stdout.write(`   ${step.ok ? 'ok' : 'FAILED'}\n`);
    for (const line of step.detail.split('\n')) {
      if (line.trim() !== '') show(line, '       ');
    }
    process.stdout.write('\n');
  },
}).catch((err: unknown) => {
  process.stderr.write(
    `demo: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(2);
});
stopServer = undefined;

const seconds = ((Date.now() - started) / 1000).toFixed(1);
const passed = result.steps.filter((s) => s.ok).length;
const p = result.paths;
const summary = [
  `${passed} of ${STEP_COUNT} steps passed in ${seconds} s; the server has stopped`,
  `  repository      ${p.repo}`,
  `  keys            ${p.keys}`,
  `  passphrases     ${p.offlinePassphrase} (root, targets, the CA key)`,
  `                  ${p.onlinePassphrase} (online roles; the server's)`,
  `  TLS             ${p.tls} (devices pin ca.crt)`,
  `  server log      ${p.serverLog}`,
  `  firmware        ${p.images}`,
  `  device          ${p.deviceConfig}`,
  `  device journal  ${p.journal}/journal.jsonl`,
  `Remove the folder when done: rm -rf ${p.base}`,
];
for (const line of summary) show(line, '');
process.exitCode = result.ok ? 0 : 1;
