/**
 * The whole job, end to end, as `npm run demo` shows it and test/e2e
 * replays it: a repository with offline-style keys, `tufota serve` over
 * HTTPS, real ext4 firmware images, and a simulated device on A/B slots
 * that verifies, installs, boots on trial, and commits or falls back.
 *
 * Each step checks that it did what its title says and records the
 * evidence; the first step that fails ends the journey, since every later
 * step stands on it. The caller decides how to show the steps.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../src/cli/main.js';
import type { CliIO } from '../src/cli/context.js';
import { bootRecordWords, DemoDevice, type BootloaderKind } from './device.js';
import {
  buildFirmware,
  findExt4Tools,
  readFromImage,
  type Ext4Tools,
} from './firmware.js';
import {
  callApi,
  requireBuild,
  startServer,
  type DemoServer,
} from './server.js';

export interface StepResult {
  title: string;
  ok: boolean;
  detail: string;
}

export interface JourneyPaths {
  base: string;
  repo: string;
  keys: string;
  /** Seals root and targets keys and the CA key. */
  offlinePassphrase: string;
  /** Seals the online keys; the only passphrase the server is given. */
  onlinePassphrase: string;
  tls: string;
  serverLog: string;
  images: string;
  device: string;
  deviceConfig: string;
  journal: string;
}

export interface JourneyResult {
  ok: boolean;
  steps: StepResult[];
  paths: JourneyPaths;
}

export interface JourneyOptions {
  base: string;
  /** The device's bootloader backend; default `file`. */
  bootloader?: BootloaderKind;
  /** Called as each step begins, with its number from 1. */
  onStepStart?: (title: string, number: number) => void;
  /** Called as each step ends, for live output. */
  onStep?: (step: StepResult) => void;
  /** The device's progress lines, as they come. */
  onOutput?: (line: string) => void;
  /** Told of the server once it runs, so a caller can stop it on a signal. */
  onServer?: (server: { pid: number; stop(): Promise<void> }) => void;
}

/**
 * A step's evidence made readable: paths inside the demo folder relative
 * to it, and hashes cut to their first 12 digits.
 */
function tidy(text: string, base: string): string {
  return text
    .split(`${base}/`)
    .join('')
    .replace(/\b([0-9a-f]{12})[0-9a-f]{20,}\b/g, '$1…');
}

/** The step list, so a caller can tell a journey that stopped early. */
export const STEP_COUNT = 7;

const HARDWARE = 'demo-board';
const DEVICE_ID = 'demo-1';

interface DeviceEvent {
  type: string;
  deploymentId?: string;
  targetVersion?: string;
  reason?: string;
}

class StepFailed extends Error {}

/** Ends the step as failed with `detail` unless `condition` holds. */
function expect(condition: boolean, detail: string): void {
  if (!condition) throw new StepFailed(detail);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path))
    hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The sha256 of the first `length` bytes of `path`. */
async function sha256Prefix(path: string, length: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, {
    start: 0,
    end: length - 1,
  })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Inverts one byte of `file` in place; doing it twice restores it. */
async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, offset);
    await handle.write(Buffer.from([one[0] ^ 0xff]), 0, 1, offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function runJourney(
  options: JourneyOptions,
): Promise<JourneyResult> {
  const base = options.base;
  const bootloader = options.bootloader ?? 'file';
  const paths: JourneyPaths = {
    base,
    repo: join(base, 'repo'),
    keys: join(base, 'keys'),
    offlinePassphrase: join(base, 'offline-passphrase.txt'),
    onlinePassphrase: join(base, 'online-passphrase.txt'),
    tls: join(base, 'tls'),
    serverLog: join(base, 'server.log'),
    images: join(base, 'images'),
    device: join(base, 'device'),
    deviceConfig: join(base, 'device', 'device.json'),
    journal: join(base, 'device', 'state', 'journal'),
  };
  const steps: StepResult[] = [];
  const step = async (title: string, body: () => Promise<string>) => {
    options.onStepStart?.(title, steps.length + 1);
    let result: StepResult;
    try {
      result = { title, ok: true, detail: tidy(await body(), base) };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      result = { title, ok: false, detail: tidy(message, base) };
    }
    steps.push(result);
    options.onStep?.(result);
    return result.ok;
  };

  await mkdir(base, { recursive: true });
  // The journey writes keys, passphrases and slot files by fixed names:
  // a folder that already holds something is never written into.
  const present = await readdir(base);
  if (present.length > 0) {
    throw new Error(
      `${base} is not empty (${present.slice(0, 3).join(', ')}` +
        `${present.length > 3 ? ', ...' : ''}); give a new or empty folder`,
    );
  }
  await mkdir(paths.images, { recursive: true });
  // Generated passphrases in files are a demo convenience only: real
  // offline keys are sealed with passphrases their holders type.
  await writeFile(
    paths.offlinePassphrase,
    randomBytes(18).toString('base64url'),
    {
      mode: 0o600,
    },
  );
  await writeFile(
    paths.onlinePassphrase,
    randomBytes(18).toString('base64url'),
    {
      mode: 0o600,
    },
  );

  let output = '';
  const io: CliIO = {
    out: (text) => void (output += text),
    err: (text) => void (output += text),
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
        paths.offlinePassphrase,
        ...args,
      ],
      io,
    );
    return { code, output: output.trim() };
  };
  const tufotaJson = async <T>(...args: string[]): Promise<T> => {
    const r = await tufota('--json', ...args);
    expect(r.code === 0, `tufota ${args.join(' ')} failed: ${r.output}`);
    return JSON.parse(r.output) as T;
  };

  let server: DemoServer | undefined;
  let tools: Ext4Tools | undefined;
  let ca = '';
  const tokens = { releases: '', admin: '' };
  const images = new Map<string, string>();
  let device: DemoDevice | undefined;

  const api = (
    path: string,
    token: string,
    more: { method?: string; json?: unknown; file?: string } = {},
  ) => callApi(`${server!.url}/api/v1${path}`, { ca, token, ...more });

  /** Uploads and publishes a release through the admin API. */
  const release = async (version: string, image: string) => {
    const query = new URLSearchParams({
      path: `images/rootfs-${version}.ext4`,
      version,
      hardware: HARDWARE,
    });
    const upload = await api(`/targets?${query.toString()}`, tokens.releases, {
      method: 'POST',
      file: image,
    });
    expect(
      upload.status === 201,
      `upload of ${version} answered ${upload.status}: ${JSON.stringify(upload.body)}`,
    );
    const published = await api('/publish', tokens.releases, {
      method: 'POST',
      json: {},
    });
    expect(
      published.status === 200,
      `publish answered ${published.status}: ${JSON.stringify(published.body)}`,
    );
    const versions = (published.body as { versions?: Record<string, number> })
      .versions;
    return {
      hashes: (upload.body as { hashes: Record<string, string> }).hashes,
      line:
        `POST /api/v1/targets?${query.toString()} → ${upload.status}; ` +
        `POST /api/v1/publish → ${JSON.stringify(versions ?? {})}`,
    };
  };

  const events = async (): Promise<DeviceEvent[]> => {
    const answer = await api(`/devices/${DEVICE_ID}/events`, tokens.admin);
    expect(answer.status === 200, `events answered ${answer.status}`);
    return (answer.body as { events: DeviceEvent[] }).events;
  };
  /** Waits for the server to hold an event `match` accepts (reports are sent in the background). */
  const eventMatching = async (match: (e: DeviceEvent) => boolean) => {
    for (let i = 0; i < 100; i++) {
      const found = (await events()).find(match);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  };

  /** Powers the device on and expects it up on `slot`, running `version`. */
  const bootInto = async (slot: 'a' | 'b', version: string, what: string) => {
    const booted = await device!.boot();
    expect(
      booted.slot === slot && booted.version === version,
      `${what} came up on slot ${booted.slot} with ${booted.version}`,
    );
    return booted;
  };
  /** One device command, expected to exit `code` saying `words`. */
  const expectDevice = async (
    args: string[],
    code: number,
    words: RegExp,
    what: string,
  ) => {
    const ran = await device!.run(...args);
    expect(
      ran.code === code && words.test(ran.out),
      `${what} (exit ${ran.code}): ${ran.out}${ran.err}`,
    );
    return ran;
  };

  try {
    const made = await step(
      'create a repository (root 2 of 3) with sealed keys, a private CA, ' +
        'and tufota serve over HTTPS',
      async () => {
        await requireBuild();
        const init = await tufota(
          'init',
          '--online-passphrase-file',
          paths.onlinePassphrase,
        );
        expect(init.code === 0, `tufota init failed: ${init.output}`);
        const status = await tufotaJson<{
          roles: { role: string; threshold: number; keyids: string[] }[];
        }>('status');
        const root = status.roles.find((r) => r.role === 'root');
        expect(
          root?.threshold === 2 && root.keyids.length === 3,
          `root is not 2 of 3: ${JSON.stringify(root)}`,
        );
        const tls = await tufotaJson<{ fingerprint?: string }>(
          'tls',
          'init',
          '--out',
          paths.tls,
        );
        ca = await readFile(join(paths.tls, 'ca.crt'), 'utf8');
        server = await startServer({
          repo: paths.repo,
          keys: paths.keys,
          tls: paths.tls,
          passphraseFile: paths.onlinePassphrase,
          log: paths.serverLog,
        });
        options.onServer?.(server);
        expect(
          server.url.startsWith('https://127.0.0.1:'),
          `not HTTPS: ${server.url}`,
        );
        tokens.releases = (
          await tufotaJson<{ token: string }>(
            'token',
            'create',
            '--scope',
            'releases',
            '--name',
            'demo-release-engineer',
          )
        ).token;
        tokens.admin = (
          await tufotaJson<{ token: string }>(
            'token',
            'create',
            '--scope',
            'admin',
            '--name',
            'demo-operator',
          )
        ).token;
        const health = await api('/status', tokens.admin);
        expect(
          health.status === 200,
          `GET /api/v1/status answered ${health.status}`,
        );
        return [
          'roles: ' +
            status.roles
              .map((r) => `${r.role} ${r.threshold} of ${r.keyids.length}`)
              .join(', '),
          'root and targets keys sealed with one passphrase, online keys ' +
            '(releases, rollouts, snapshot, timestamp) with another: the ' +
            'server is given only that one',
          `CA for devices to pin: ${join(paths.tls, 'ca.crt')}` +
            (tls.fingerprint
              ? ` (sha256 ${tls.fingerprint.slice(0, 23)}…)`
              : ''),
          `tufota serve at ${server.url}, pid ${server.pid}, trusted ` +
            'through the CA only; its log: server.log',
          'tokens for a release engineer (releases) and an operator (admin)',
        ].join('\n');
      },
    );
    if (!made) return { ok: false, steps, paths };

    const built = await step(
      'build firmware images as ext4 filesystems (mkfs.ext4 -d): 1.0.0, 1.1.0, and a broken 1.2.0',
      async () => {
        tools = await findExt4Tools();
        const lines: string[] = [];
        for (const spec of [
          { version: '1.0.0', healthy: true },
          { version: '1.1.0', healthy: true },
          { version: '1.2.0', healthy: false },
        ]) {
          const image = await buildFirmware(tools, paths.images, spec);
          images.set(spec.version, image);
          const osRelease = await readFromImage(
            tools,
            image,
            '/etc/os-release',
          );
          expect(
            osRelease?.includes(`VERSION_ID="${spec.version}"`) === true,
            `${image} does not carry version ${spec.version}`,
          );
          lines.push(
            `${image}: /etc/os-release ${spec.version}, ` +
              (spec.healthy
                ? 'health marker, '
                : 'no health marker (its health check will fail), ') +
              `sha256 ${(await sha256File(image)).slice(0, 16)}…`,
          );
        }
        return lines.join('\n');
      },
    );
    if (!built) return { ok: false, steps, paths };

    const provisioned = await step(
      `provision a device (${bootloader} bootloader): slot A holds 1.0.0 ` +
        'as known-good, slot B is empty',
      async () => {
        const added = await tufotaJson<{ credential: string }>(
          'device',
          'add',
          DEVICE_ID,
        );
        device = await DemoDevice.provision(
          {
            dir: paths.device,
            tools: tools!,
            bootloader,
            factoryImage: images.get('1.0.0')!,
            hardware: HARDWARE,
            metadataUrl: server!.metadataUrl,
            targetsUrl: server!.targetsUrl,
            serverUrl: server!.url,
            ca: join(paths.tls, 'ca.crt'),
            deviceId: DEVICE_ID,
            credential: added.credential,
            onOutput: options.onOutput,
          },
          join(paths.repo, 'metadata', '1.root.json'),
        );
        const first = await bootInto('a', '1.0.0', 'the factory boot');
        await expectDevice(['after-boot'], 0, /no-trial/, 'after-boot');
        const checked = await expectDevice(
          ['check'],
          0,
          /up-to-date/,
          'the first check did not find the device up to date',
        );
        return [
          `${paths.device}: device.json, slot-a.img, slot-b.img, ` +
            'health-check.sh; the pinned CA and 1.root.json as the shipped root',
          bootRecordWords(bootloader),
          `boot → slot ${first.slot}, running ${first.version}`,
          `$ ${checked.shown}\n  ${checked.out}`,
        ].join('\n');
      },
    );
    if (!provisioned) return { ok: false, steps, paths };

    const upgraded = await step(
      'publish 1.1.0: the device verifies it, installs it into slot B, ' +
        'boots it on trial, checks its health and commits',
      async () => {
        const d = device!;
        const image = images.get('1.1.0')!;
        const published = await release('1.1.0', image);
        const checked = await expectDevice(
          ['check', '--progress'],
          0,
          /awaiting-reboot/,
          'check did not install 1.1.0',
        );
        const length = (await readFile(image)).length;
        expect(
          (await sha256Prefix(d.slots.b, length)) === published.hashes.sha256,
          'slot B does not hold the published image',
        );
        const trial = await bootInto('b', '1.1.0', 'the trial boot');
        const judged = await expectDevice(
          ['after-boot'],
          0,
          /trial-passed-committed/,
          'after-boot did not commit',
        );
        const again = await bootInto('b', '1.1.0', 'the next boot');
        const status = await expectDevice(
          ['status'],
          0,
          /^committed/,
          'status',
        );
        const committed = await eventMatching(
          (e) => e.type === 'committed' && e.targetVersion === '1.1.0',
        );
        expect(
          committed !== undefined,
          'the server holds no committed event for 1.1.0',
        );
        return [
          published.line,
          `$ ${checked.shown}\n  ${checked.out}`,
          `slot B holds the image (sha256 ${published.hashes.sha256.slice(0, 16)}…)`,
          `boot → slot ${trial.slot} on trial, running ${trial.version}`,
          `$ ${judged.shown}\n  ${judged.out.split('\n')[0]}`,
          `boot → slot ${again.slot} again; status: ${status.out.split('\n')[0]}`,
          `the server holds: committed, deployment ${committed!.deploymentId}`,
        ].join('\n');
      },
    );
    if (!upgraded) return { ok: false, steps, paths };

    const fellBack = await step(
      'publish 1.2.0 (signed, but broken): its health check fails, the ' +
        'device falls back to 1.1.0 and reports the rollback',
      async () => {
        const published = await release('1.2.0', images.get('1.2.0')!);
        const checked = await expectDevice(
          ['check', '--progress'],
          0,
          /awaiting-reboot/,
          'check did not install 1.2.0',
        );
        const trial = await bootInto('a', '1.2.0', 'the trial boot');
        const judged = await expectDevice(
          ['after-boot'],
          4,
          /rolled-back/,
          'after-boot did not roll back',
        );
        const back = await bootInto('b', '1.1.0', 'the fallback boot');
        await expectDevice(['after-boot'], 0, /no-trial/, 'after-boot');
        const status = await expectDevice(
          ['status'],
          0,
          /^rolled-back/,
          'status',
        );
        const rolledBack = await eventMatching(
          (e) => e.type === 'rolled-back' && e.targetVersion === '1.2.0',
        );
        expect(
          rolledBack !== undefined,
          'the server holds no rolled-back event for 1.2.0',
        );
        const all = await events();
        expect(
          !all.some(
            (e) =>
              e.deploymentId === rolledBack!.deploymentId &&
              e.type === 'committed',
          ),
          'the server holds a committed event for the broken deployment',
        );
        const again = await expectDevice(
          ['check'],
          0,
          /up-to-date/,
          'the device took 1.2.0 again by itself',
        );
        return [
          published.line,
          `$ ${checked.shown}\n  ${checked.out}`,
          `boot → slot ${trial.slot} on trial, running ${trial.version}`,
          `$ ${judged.shown} (exit ${judged.code}: reboot into the ` +
            `known-good slot)\n  ${judged.out.split('\n')[0]}`,
          `boot → slot ${back.slot}, running ${back.version}; ` +
            `status: ${status.out.split('\n')[0]}`,
          `the server holds: rolled-back, deployment ${rolledBack!.deploymentId}` +
            (rolledBack!.reason ? `: ${rolledBack!.reason}` : ''),
          `the next check leaves 1.2.0 alone: ${again.out}`,
        ].join('\n');
      },
    );
    if (!fellBack) return { ok: false, steps, paths };

    const refused = await step(
      "refuse a tampered copy: one byte of 1.3.0 changed in the server's storage",
      async () => {
        const image = await buildFirmware(tools!, paths.images, {
          version: '1.3.0',
          healthy: true,
        });
        images.set('1.3.0', image);
        const published = await release('1.3.0', image);
        // What a compromised mirror or CDN would serve: the listed name,
        // the listed length, one byte different.
        const file = join(
          paths.repo,
          'targets',
          'images',
          `${published.hashes.sha256}.rootfs-1.3.0.ext4`,
        );
        const offset = Math.floor((await stat(file)).size / 2);
        await flipByte(file, offset);
        try {
          const d = device!;
          const before = [
            await sha256File(d.slots.a),
            await sha256File(d.slots.b),
          ];
          const checked = await expectDevice(
            ['check'],
            1,
            /refused/,
            'the tampered image was not refused',
          );
          const after = [
            await sha256File(d.slots.a),
            await sha256File(d.slots.b),
          ];
          expect(
            before[0] === after[0] && before[1] === after[1],
            'a slot changed although the image was refused',
          );
          const failed = await eventMatching(
            (e) => e.type === 'download-failed' && e.targetVersion === '1.3.0',
          );
          expect(
            failed !== undefined,
            'the server holds no download-failed event for 1.3.0',
          );
          const audit = await tufota('verify');
          expect(
            audit.code !== 0,
            'tufota verify did not notice the changed file',
          );
          return [
            published.line,
            `changed one byte at offset ${offset} of ${file}`,
            `$ ${checked.shown} (exit ${checked.code})\n  ${checked.out}`,
            'both slots are byte for byte as before',
            `the server holds: download-failed${failed!.reason ? `: ${failed!.reason}` : ''}`,
            "tufota verify (an auditor's check) fails too: " +
              (audit.output
                .split('\n')
                .find((l) => /target|hash|length/i.test(l)) ??
                audit.output.split('\n')[0]),
            'the byte is put back: the repository is as published again',
          ].join('\n');
        } finally {
          // Flipped back: the repository is left as it was published.
          await flipByte(file, offset);
        }
      },
    );
    if (!refused) return { ok: false, steps, paths };

    await step(
      'tufota verify checks every signed version from 1.root.json and every image',
      async () => {
        const verify = await tufota('verify');
        expect(verify.code === 0, `tufota verify failed: ${verify.output}`);
        const journal = await journalTail(device!);
        return [verify.output.split('\n').slice(0, 3).join('\n'), journal].join(
          '\n',
        );
      },
    );
  } finally {
    await server?.stop();
  }
  return {
    ok: steps.length === STEP_COUNT && steps.every((s) => s.ok),
    steps,
    paths,
  };
}

/** The last journal entries of the device, one short line each. */
async function journalTail(device: DemoDevice): Promise<string> {
  const tail = await device.run('--json', 'journal', '-n', '6');
  const entries = JSON.parse(tail.out) as {
    seq: number;
    time: string;
    event: string;
    targetVersion?: string;
  }[];
  return `the device's journal ends:\n${entries
    .map(
      (e) =>
        `  ${e.seq} ${e.time} ${e.event}` +
        (e.targetVersion ? ` ${e.targetVersion}` : ''),
    )
    .join('\n')}`;
}
