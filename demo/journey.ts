/**
 * The repository journey the demo shows and a test replays: a repository is
 * made with the `tufota` CLI, two releases are published, a device running
 * the real tuf-js client follows them from the root it was shipped with, and
 * a lying server's tampered image is refused. Each step records whether it
 * did what it says; the caller decides how to show that.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../src/cli/main.js';
import type { CliIO } from '../src/cli/context.js';
import { serveRepository } from '../src/server/static-server.js';
import { createUpdater } from '../client/update/updater.js';

export interface StepResult {
  title: string;
  ok: boolean;
  detail: string;
}

export interface JourneyResult {
  ok: boolean;
  steps: StepResult[];
  paths: { base: string; repo: string; keys: string; passphraseFile: string };
}

export interface JourneyOptions {
  base: string;
  /** Called as each step ends, for live output. */
  onStep?: (step: StepResult) => void;
}

const HARDWARE = 'demo-board';

function firmware(version: string): Buffer {
  // A stand-in image: a header naming the version, then random payload.
  return Buffer.concat([
    Buffer.from(`TUFOTA-DEMO-FIRMWARE ${version}\n`),
    randomBytes(256 * 1024),
  ]);
}

const sha256 = (bytes: Buffer) =>
  createHash('sha256').update(bytes).digest('hex');

export async function runJourney(
  options: JourneyOptions,
): Promise<JourneyResult> {
  const base = options.base;
  const paths = {
    base,
    repo: join(base, 'repo'),
    keys: join(base, 'keys'),
    passphraseFile: join(base, 'passphrase.txt'),
  };
  const steps: StepResult[] = [];
  const record = (title: string, ok: boolean, detail: string) => {
    const step = { title, ok, detail };
    steps.push(step);
    options.onStep?.(step);
    return ok;
  };

  await mkdir(base, { recursive: true });
  // A generated passphrase in a file is a demo convenience only: real
  // offline keys are sealed with passphrases their holders type.
  await writeFile(paths.passphraseFile, randomBytes(18).toString('base64url'), {
    mode: 0o600,
  });
  let output = '';
  const io: CliIO = {
    out: (text) => {
      output += text;
    },
    err: (text) => {
      output += text;
    },
    env: {},
    interactive: false,
  };
  const tufota = async (...args: string[]) => {
    output = '';
    const code = await run(
      [
        '--dir',
        paths.repo,
        '--keys',
        paths.keys,
        '--passphrase-file',
        paths.passphraseFile,
        ...args,
      ],
      io,
    );
    return { code, output: output.trim() };
  };

  const init = await tufota('init', '--bins', '16');
  if (
    !record(
      'create a repository with offline-style keys',
      init.code === 0,
      init.output,
    )
  ) {
    return { ok: false, steps, paths };
  }

  const images = new Map<string, Buffer>();
  for (const version of ['1.0.0', '1.1.0']) {
    const bytes = firmware(version);
    images.set(version, bytes);
    await writeFile(join(base, `firmware-${version}.img`), bytes);
  }
  const release = async (version: string) => {
    const add = await tufota(
      'targets',
      'add',
      join(base, `firmware-${version}.img`),
      '--version',
      version,
      '--hardware',
      HARDWARE,
    );
    const pub = await tufota('publish');
    return {
      ok: add.code === 0 && pub.code === 0,
      detail: `${add.output}\n${pub.output}`,
    };
  };

  const first = await release('1.0.0');
  if (!record('sign and publish release 1.0.0', first.ok, first.detail)) {
    return { ok: false, steps, paths };
  }

  const server = await serveRepository(paths.repo);
  try {
    const device = join(base, 'device');
    await mkdir(join(device, 'metadata'), { recursive: true });
    await mkdir(join(device, 'downloads'), { recursive: true });
    // The device ships with version 1 of root and trusts nothing else.
    await writeFile(
      join(device, 'metadata', 'root.json'),
      await readFile(join(paths.repo, 'metadata', '1.root.json')),
    );
    const updater = () =>
      createUpdater({
        metadataDir: join(device, 'metadata'),
        targetDir: join(device, 'downloads'),
        metadataBaseUrl: server.metadataUrl,
        targetBaseUrl: server.targetsUrl,
        config: { fetchRetries: 0 },
      });
    const fetchRelease = async (version: string) => {
      const client = updater();
      await client.refresh();
      const info = await client.getTargetInfo(`images/firmware-${version}.img`);
      if (!info)
        throw new Error(`images/firmware-${version}.img is not listed`);
      const file = join(device, 'downloads', `firmware-${version}.img`);
      await client.downloadTarget(info, file);
      return { info, bytes: await readFile(file) };
    };

    const got1 = await fetchRelease('1.0.0');
    record(
      'device verifies the metadata chain and downloads 1.0.0',
      sha256(got1.bytes) === sha256(images.get('1.0.0') as Buffer) &&
        got1.info.custom.version === '1.0.0',
      `from ${server.url} (a plain static server on loopback; tufota ` +
        `serve adds HTTPS)\n${got1.info.length} bytes, sha256 ` +
        `${got1.info.hashes.sha256}, custom ${JSON.stringify(got1.info.custom)}`,
    );

    const second = await release('1.1.0');
    record('sign and publish release 1.1.0', second.ok, second.detail);
    const got2 = await fetchRelease('1.1.0');
    record(
      'device follows the new snapshot and downloads 1.1.0',
      sha256(got2.bytes) === sha256(images.get('1.1.0') as Buffer),
      `${got2.info.length} bytes, sha256 ${got2.info.hashes.sha256}`,
    );

    // A lying server flips one byte of the image it serves.
    server.tamper = (path, body) => {
      if (!path.startsWith('/targets/') || !body) return undefined;
      const copy = Buffer.from(body);
      copy[copy.length - 1] ^= 0xff;
      return copy;
    };
    let refused = '';
    try {
      const client = updater();
      await client.refresh();
      const info = await client.getTargetInfo('images/firmware-1.1.0.img');
      if (info) {
        await client.downloadTarget(
          info,
          join(device, 'downloads', 'tampered.img'),
        );
      }
    } catch (err) {
      refused = err instanceof Error ? err.message : String(err);
    }
    server.tamper = undefined;
    record(
      'device refuses a tampered copy of 1.1.0',
      refused !== '',
      refused || 'the tampered image was accepted',
    );
  } finally {
    await server.close();
  }

  const verify = await tufota('verify');
  record(
    'tufota verify checks the whole repository from 1.root.json',
    verify.code === 0,
    verify.output,
  );
  const status = await tufota('status');
  record('tufota status', status.code === 0, status.output);

  return { ok: steps.every((s) => s.ok), steps, paths };
}
