/**
 * Download speed and memory of the device: one large target (1 GiB by
 * default) published into a temporary repository and served by the
 * tufota server over plain HTTP on 127.0.0.1, fetched and verified by
 * `downloadTarget` in a child process, and in the same run by `curl -s URL
 * | sha256sum`. Prints both rates, their ratio (goal: at least 0.8 of
 * curl's) and the child's peak resident memory (goal: under 150 MiB);
 * asserts nothing.
 *
 *   npm run bench:download -- --mib 1024 --rounds 3
 *
 * Options:
 *   --mib N      size of the target in MiB (default 1024)
 *   --rounds N   runs of each, alternating, best kept (default 3)
 *   --keep       keep the temporary folder and print its path
 *
 * The comparison leans towards curl: it hashes with sha256 alone and
 * writes nothing, where the device hashes with every listed algorithm
 * (sha256 and sha512), writes the image to disk and fsyncs it. Its rate
 * is timed inside the child from the first request to the renamed image,
 * so node's start-up is left out; peak memory is the child's VmHWM, read
 * from /proc as it runs, and includes that start-up. Where coreutils
 * hashes without the CPU's SHA extensions, sha256sum alone is what limits
 * curl's pipeline; the rate of `sha256sum FILE` is printed to show it.
 * Without a current build (`npm run build`) the child runs the sources
 * through tsx, whose loader adds about 30 MiB.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readFile,
  rm,
  stat,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createUpdater } from '../client/update/updater.js';
import { Keyring } from '../src/keys/keyring.js';
import { FixedPassphrase } from '../src/keys/passphrase.js';
import { initRepository } from '../src/repository/init.js';
import { publish } from '../src/repository/publish.js';
import { Repository } from '../src/repository/repository.js';
import { startServer } from '../src/server/server.js';

const PASSPHRASE = 'benchmark passphrase';
const MIB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
  },
});

/** What the child is told: the target and where to put it. */
interface ChildInput {
  target: { path: string; length: number; hashes: Record<string, string> };
  targetBaseUrl: string;
  stateDir: string;
  destination: string;
}

/** A field of /proc/PID/status in KiB (VmHWM, VmRSS), or 0. */
async function statusKiB(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * The device process: one download, then its time and memory as JSON.
 * Plain JavaScript run with `node -e`, so that with a build it runs as a
 * device runs it, without tsx's loader in memory.
 */
const CHILD = `
import { readFileSync } from 'node:fs';
import { TargetFile } from '@tufjs/models';
const { downloadTarget } = await import(process.env.DOWNLOAD_MODULE);
const hwm = () => Number(/^VmHWM:\\s+(\\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const input = JSON.parse(process.argv[1]);
const { path, ...fields } = input.target;
const beforeKiB = hwm();
const started = performance.now();
await downloadTarget({ ...input, target: TargetFile.fromJSON(path, fields), allowHttp: true });
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, beforeKiB, peakKiB: hwm() }));
`;

/** The download module: the build's when it is there and current. */
async function downloadModule(): Promise<{ url: string; built: boolean }> {
  const source = new URL('../client/update/download.ts', import.meta.url);
  const built = new URL('../dist/client/update/download.js', import.meta.url);
  const [s, b] = await Promise.all(
    [source, built].map((u) =>
      stat(u).then(
        (st) => st.mtimeMs,
        () => 0,
      ),
    ),
  );
  return b >= s
    ? { url: built.href, built: true }
    : { url: source.href, built: false };
}

/** A repository with one target of `mib` MiB of random bytes, published. */
async function makeRepository(base: string, mib: number) {
  const dir = join(base, 'repo');
  const keys = join(base, 'keys');
  const passphrases = new FixedPassphrase(PASSPHRASE);
  await initRepository({
    dir,
    keysDir: keys,
    passphrases,
    scrypt: { N: 2 ** 10, r: 8, p: 1 },
  });
  const source = join(base, 'fw.img');
  const file = await open(source, 'w');
  try {
    for (let i = 0; i < mib; i++) await file.write(randomBytes(MIB));
  } finally {
    await file.close();
  }
  const keyring = await Keyring.open(keys, passphrases);
  const repo = await Repository.open(dir, { lock: true, keyring });
  try {
    await repo.addTargets([{ source, path: 'images/fw.img' }]);
    await publish(repo);
  } finally {
    await repo.close();
  }
  await rm(source);
  return { dir, keyring: await Keyring.open(keys, passphrases) };
}

/** A shell pipeline's time and the digest it printed first. */
function timed(script: string): Promise<{ ms: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn('bash', ['-c', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) =>
      code === 0
        ? resolve({
            ms: performance.now() - started,
            sha256: out.split(' ')[0],
          })
        : reject(new Error(`${script} exited ${code}`)),
    );
  });
}

/** The device in a child; its VmHWM is also sampled from here. */
async function device(
  input: ChildInput,
  module: { url: string; built: boolean },
): Promise<{ ms: number; beforeKiB: number; peakKiB: number }> {
  const loader = module.built ? [] : ['--import', 'tsx'];
  const proc = spawn(
    process.execPath,
    [...loader, '--input-type=module', '-e', CHILD, JSON.stringify(input)],
    {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, DOWNLOAD_MODULE: module.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let sampled = 0;
  const sampler = setInterval(() => {
    void statusKiB(proc.pid ?? 0, 'VmHWM').then((kib) => {
      sampled = Math.max(sampled, kib);
    });
  }, 50);
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) =>
    proc.on('exit', resolve),
  );
  clearInterval(sampler);
  if (code !== 0) throw new Error(`the download child exited ${code}`);
  const report = JSON.parse(out) as {
    ms: number;
    beforeKiB: number;
    peakKiB: number;
  };
  return { ...report, peakKiB: Math.max(report.peakKiB, sampled) };
}

const rate = (mib: number, ms: number) => (mib / (ms / 1000)).toFixed(0);

async function main(): Promise<void> {
  const mib = Number(args.mib);
  const rounds = Number(args.rounds);
  const module = await downloadModule();
  console.log(
    module.built
      ? 'the device runs the build (dist/)'
      : 'no current build: the device runs the sources through tsx',
  );
  const base = await mkdtemp(join(tmpdir(), 'tufota-bench-download-'));
  try {
    console.log(`making a ${mib} MiB target...`);
    const { dir, keyring } = await makeRepository(base, mib);
    const server = await startServer({ dir, keyring, port: 0 });
    try {
      const metadataDir = join(base, 'device', 'metadata');
      await mkdir(metadataDir, { recursive: true });
      await copyFile(
        join(dir, 'metadata', '1.root.json'),
        join(metadataDir, 'root.json'),
      );
      const updater = createUpdater({
        metadataDir,
        metadataBaseUrl: server.metadataUrl,
        targetBaseUrl: server.targetsUrl,
      });
      const info = await updater.getTargetInfo('images/fw.img');
      if (!info) throw new Error('the target is not listed');
      const url = `${server.targetsUrl}/images/${info.hashes.sha256}.fw.img`;

      const file = join(
        dir,
        'targets',
        'images',
        `${info.hashes.sha256}.fw.img`,
      );
      const curl = () => timed(`curl -s '${url}' | sha256sum`);
      // Once through curl first, so both read the file from the page cache.
      await curl();
      const alone = await timed(`sha256sum '${file}'`);
      let best = { curl: Infinity, device: Infinity, beforeKiB: 0, peakKiB: 0 };
      for (let round = 1; round <= rounds; round++) {
        const c = await curl();
        if (c.sha256 !== info.hashes.sha256) throw new Error('curl: bad hash');
        const state = join(base, 'device', `state-${round}`);
        const d = await device(
          {
            target: {
              path: info.path,
              ...info.toJSON(),
            } as ChildInput['target'],
            targetBaseUrl: server.targetsUrl,
            stateDir: state,
            destination: join(state, 'fw.img'),
          },
          module,
        );
        console.log(
          `round ${round}: curl | sha256sum ${rate(mib, c.ms)} MiB/s, ` +
            `downloadTarget ${rate(mib, d.ms)} MiB/s, ` +
            `peak RSS ${(d.peakKiB / 1024).toFixed(0)} MiB`,
        );
        await rm(state, { recursive: true, force: true });
        best = {
          curl: Math.min(best.curl, c.ms),
          device: Math.min(best.device, d.ms),
          beforeKiB: Math.max(best.beforeKiB, d.beforeKiB),
          peakKiB: Math.max(best.peakKiB, d.peakKiB),
        };
      }
      const hashes = Object.keys(info.hashes).join('+');
      console.log(`
target                     ${mib} MiB, hashes ${hashes}
sha256sum FILE             ${rate(mib, alone.ms)} MiB/s, hashing alone
curl -s URL | sha256sum    ${rate(mib, best.curl)} MiB/s (${(best.curl / 1000).toFixed(2)} s)
downloadTarget             ${rate(mib, best.device)} MiB/s (${(best.device / 1000).toFixed(2)} s)
ratio                      ${(best.curl / best.device).toFixed(2)} of curl (goal >= 0.8)
peak RSS (VmHWM)           ${(best.peakKiB / 1024).toFixed(0)} MiB (goal < 150), ${(best.beforeKiB / 1024).toFixed(0)} MiB before the download, so +${((best.peakKiB - best.beforeKiB) / 1024).toFixed(0)} MiB`);
    } finally {
      await server.close();
    }
  } finally {
    if (args.keep) console.log(`kept ${base}`);
    else await rm(base, { recursive: true, force: true });
  }
}

await main();
