/**
 * Publishing at scale: imports N targets of 1 KiB into a repository with
 * hashed bins, publishes them, adds one more target the way a fresh process
 * would, and verifies the result. Every write is the production one
 * (fsynced, atomic). Prints a table; asserts nothing.
 *
 *   npm run bench -- --sizes 10000,100000 --bins 256
 *
 * Options:
 *   --sizes N,N,...  target counts (default 10000,100000)
 *   --bins N         hashed bins (default: defaultBinCount(N) for each size)
 *   --file-size B    bytes per target (default 1024)
 *   --scrypt-n N     scrypt cost of the key files (default: production 2^15)
 *   --keep           keep the temporary folder and print its path
 *
 * Each size runs in its own child process so its peak memory is its own.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SCRYPT } from '../src/keys/keyfile.js';
import { Keyring } from '../src/keys/keyring.js';
import { FixedPassphrase } from '../src/keys/passphrase.js';
import { initRepository } from '../src/repository/init.js';
import { publish } from '../src/repository/publish.js';
import { mapLimit } from '../src/repository/limit.js';
import { Repository, type TargetInput } from '../src/repository/repository.js';
import { verifyRepository } from '../src/repository/verify.js';
import { defaultBinCount } from '../src/tuf/bins.js';

const PASSPHRASE = 'benchmark passphrase';

interface Options {
  sizes: number[];
  bins?: number;
  fileSize: number;
  scryptN: number;
  keep: boolean;
}

function parseArgs(argv: string[]): Options & { child?: number } {
  const opts: Options & { child?: number } = {
    sizes: [10_000, 100_000],
    fileSize: 1024,
    scryptN: DEFAULT_SCRYPT.N,
    keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = (v: string) => {
      const n = Number(v.replace(/_/g, ''));
      if (!Number.isInteger(n) || n < 1) {
        throw new Error(`${arg}: not a positive whole number: ${v}`);
      }
      return n;
    };
    switch (arg) {
      case '--sizes':
        opts.sizes = value().split(',').map(int);
        break;
      case '--bins':
        opts.bins = int(value());
        break;
      case '--file-size':
        opts.fileSize = int(value());
        break;
      case '--scrypt-n':
        opts.scryptN = int(value());
        break;
      case '--keep':
        opts.keep = true;
        break;
      case '--child':
        opts.child = int(value());
        break;
      case '--':
        break;
      default:
        throw new Error(`unknown option ${arg}`);
    }
  }
  return opts;
}

interface Result {
  targets: number;
  bins: number;
  importMs: number;
  publishMs: number;
  addOneUnlockedMs: number;
  addOneWithUnlockMs: number;
  verifyMs: number;
  verifyMetadataMs: number;
  verifyOk: boolean;
  largestBinBytes: number;
  diskCreatesPerS: number;
  maxRssMiB: number;
  peakHeapMiB: number;
  dir?: string;
}

/**
 * What this disk allows: 1 KiB files created, written and fsynced, 2,000 of
 * them, 16 at a time. No import can store targets faster than this.
 */
async function diskFloor(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const data = randomBytes(1024);
  const names = Array.from({ length: 2000 }, (_, i) => join(dir, `f${i}`));
  const [, took] = await timed(() =>
    mapLimit(names, 16, async (name) => {
      const handle = await open(name, 'wx');
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }),
  );
  await rm(dir, { recursive: true, force: true });
  return (names.length / took) * 1000;
}

/** Samples heap use; sync stretches are caught at their ends. */
function heapSampler(): { peak: () => number; stop: () => void } {
  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  };
  const timer = setInterval(sample, 20);
  return {
    peak: () => (sample(), peak),
    stop: () => clearInterval(timer),
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = process.hrtime.bigint();
  const out = await fn();
  return [out, Number(process.hrtime.bigint() - start) / 1e6];
}

async function runOne(count: number, opts: Options): Promise<Result> {
  const heap = heapSampler();
  const base = await mkdtemp(join(tmpdir(), 'tufota-bench-'));
  try {
    const dir = join(base, 'repo');
    const keysDir = join(base, 'keys');
    const sources = join(base, 'sources');
    const passphrases = new FixedPassphrase(PASSPHRASE);
    const bins = opts.bins ?? defaultBinCount(count);
    const scrypt = { ...DEFAULT_SCRYPT, N: opts.scryptN };
    await initRepository({ dir, keysDir, passphrases, bins, scrypt });

    // Source files, outside the timings.
    await mkdir(sources, { recursive: true });
    const name = (i: number) => `fw-${String(i).padStart(7, '0')}.img`;
    const inputs: TargetInput[] = Array.from({ length: count }, (_, i) => ({
      source: join(sources, name(i)),
      path: `images/${name(i)}`,
    }));
    await mapLimit(inputs, 32, (input) =>
      writeFile(input.source, randomBytes(opts.fileSize)),
    );
    const extra: TargetInput = {
      source: join(sources, 'extra.img'),
      path: 'images/extra.img',
    };
    await writeFile(extra.source, randomBytes(opts.fileSize));
    const diskCreatesPerS = await diskFloor(join(base, 'floor'));

    // (a) import and (b) publish, in one writer session.
    const keyring = await Keyring.open(keysDir, passphrases);
    const repo = await Repository.open(dir, { lock: true, keyring });
    const [, importMs] = await timed(() => repo.addTargets(inputs));
    // Unlock outside the publish timing: bulk publishing is about the
    // metadata, and key unlock is measured on its own below.
    await keyring.signersFor(repo.root.signed.roles.snapshot.keyIDs);
    const [, publishMs] = await timed(() => publish(repo));
    await repo.close();

    // (c) one more target, as a new process: open, add, publish. First with
    // the keyring already unlocked, as a long-running server holds it.
    const unlocked = await Keyring.open(keysDir, passphrases);
    const allKeyIds = Object.keys(repo.root.signed.keys);
    const releases = await repo.publishedTargets('releases');
    allKeyIds.push(...Object.keys(releases.signed.delegations?.keys ?? {}));
    await unlocked.signersFor(allKeyIds);
    const [, addOneUnlockedMs] = await timed(async () => {
      const r = await Repository.open(dir, { lock: true, keyring: unlocked });
      await r.addTargets([extra]);
      await publish(r);
      await r.close();
    });
    // Then including opening the key files and unlocking the keys.
    const extra2 = { ...extra, path: 'images/extra-2.img' };
    const [, addOneWithUnlockMs] = await timed(async () => {
      const ring = await Keyring.open(keysDir, passphrases);
      const r = await Repository.open(dir, { lock: true, keyring: ring });
      await r.addTargets([extra2]);
      await publish(r);
      await r.close();
    });

    // (e) verification, metadata only and then with every target hashed.
    const [, verifyMetadataMs] = await timed(() =>
      verifyRepository(dir, { skipTargets: true }),
    );
    const [report, verifyMs] = await timed(() => verifyRepository(dir));

    const final = await Repository.open(dir);
    let largestBinBytes = 0;
    for (const role of final.publishedRoles()) {
      if (!role.includes('-bin-')) continue;
      const md = await final.publishedTargets(role);
      largestBinBytes = Math.max(
        largestBinBytes,
        Buffer.byteLength(JSON.stringify(md.toJSON())),
      );
    }
    await final.close();

    const result: Result = {
      targets: count,
      bins,
      importMs,
      publishMs,
      addOneUnlockedMs,
      addOneWithUnlockMs,
      verifyMs,
      verifyMetadataMs,
      verifyOk: report.ok && report.targets === count + 2,
      largestBinBytes,
      diskCreatesPerS,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      peakHeapMiB: heap.peak() / 2 ** 20,
    };
    if (opts.keep) result.dir = base;
    return result;
  } finally {
    heap.stop();
    if (!opts.keep) await rm(base, { recursive: true, force: true });
  }
}

function runChild(count: number, argv: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        ...argv,
        '--child',
        String(count),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`benchmark for ${count} targets exited ${code}`));
        return;
      }
      resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as Result);
    });
  });
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ms = (v: number) => `${v.toFixed(0)} ms`;

function printTable(results: Result[]): void {
  const rows: [string, (r: Result) => string][] = [
    ['targets', (r) => String(r.targets)],
    ['hashed bins', (r) => String(r.bins)],
    ['(a) import (addTargets)', (r) => s(r.importMs)],
    ['    targets/s', (r) => ((r.targets / r.importMs) * 1000).toFixed(0)],
    ['    disk: fsynced creates/s', (r) => r.diskCreatesPerS.toFixed(0)],
    ['(b) publish', (r) => s(r.publishMs)],
    ['    import + publish', (r) => s(r.importMs + r.publishMs)],
    ['(c) +1 target, keys unlocked', (r) => ms(r.addOneUnlockedMs)],
    ['    +1 target, incl. unlock', (r) => ms(r.addOneWithUnlockMs)],
    ['(d) peak RSS (maxRSS)', (r) => `${r.maxRssMiB.toFixed(0)} MiB`],
    ['    peak heap (sampled)', (r) => `${r.peakHeapMiB.toFixed(0)} MiB`],
    ['(e) verify, metadata only', (r) => s(r.verifyMetadataMs)],
    ['    verify, with targets', (r) => s(r.verifyMs)],
    ['    verify ok', (r) => (r.verifyOk ? 'yes' : 'NO')],
    ['largest bin', (r) => `${(r.largestBinBytes / 1024).toFixed(0)} KiB`],
  ];
  const cells = rows.map(([label, f]) => [label, ...results.map(f)]);
  const widths = cells[0].map((_, c) =>
    Math.max(...cells.map((row) => row[c].length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, c) =>
        c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]),
      )
      .join('  ');
  process.stdout.write(line(cells[0]) + '\n');
  process.stdout.write(widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
  for (const row of cells.slice(1)) process.stdout.write(line(row) + '\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  if (opts.child !== undefined) {
    const result = await runOne(opts.child, opts);
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  process.stdout.write(
    `tufota publish benchmark: ${opts.fileSize}-byte targets, ` +
      `node ${process.version}, UV_THREADPOOL_SIZE=` +
      `${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}\n\n`,
  );
  const results: Result[] = [];
  for (const size of opts.sizes) {
    process.stderr.write(`running ${size} targets...\n`);
    results.push(await runChild(size, argv));
  }
  printTable(results);
  for (const r of results) {
    if (r.dir) process.stdout.write(`kept ${r.targets}: ${r.dir}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
