/**
 * `tufota-device`: the device's commands. `run` takes the arguments and an
 * IO object and returns an exit code, so tests drive it in-process as an
 * integrator's scripts would.
 *
 * Exit codes: 0 done (or nothing to do), 1 failed or refused, 2 usage,
 * 3 waiting on a precondition or a retry (try again later), 4 reboot now
 * (after-boot: the trial failed and the known-good slot must boot).
 */
import { Command, CommanderError } from 'commander';
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { loadConfig } from './config.js';
import { playBoot } from '../slots/boot.js';
import { createBootloader } from '../slots/create.js';
import {
  installerFor,
  openDevice,
  readStatus,
  slotsStateDir,
} from './device.js';
import type { BootOutcome } from '../agent/agent.js';
import { privilegeFor } from './privilege.js';
import { progressView } from './progress.js';
import { runService } from './service.js';

export interface DeviceIO {
  out(text: string): void;
  err(text: string): void;
}

const processIO: DeviceIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

interface Globals {
  config: string;
  json?: boolean;
}

/**
 * Control characters shown as `\xNN`: the words quote what a server or
 * the state folder held, which must not drive the reader's terminal.
 */
function plain(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex -- finding them is the point
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

function print(
  io: DeviceIO,
  json: boolean | undefined,
  value: unknown,
  words: string,
): void {
  io.out(json ? `${JSON.stringify(value, null, 2)}\n` : `${plain(words)}\n`);
}

/** A duration such as 30s, 90m, 12h or 3d, in milliseconds. */
function parseDuration(value: string, what: string): number {
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(value);
  if (!m || Number(m[1]) === 0) {
    throw new ClientError(
      'CONFIG',
      `${what} ${value}: give 30s, 15m, 6h or 1d`,
    );
  }
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    m[2] as 's' | 'm' | 'h' | 'd'
  ];
  return Number(m[1]) * unit;
}

/** A duration such as 90m, 12h or 3d, or an ISO 8601 time. */
function parseUntil(value: string, now: Date): Date {
  const m = /^(\d{1,4})([mhd])$/.exec(value);
  if (m) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[
      m[2] as 'm' | 'h' | 'd'
    ];
    return new Date(now.getTime() + Number(m[1]) * unit);
  }
  const at = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\dT/.test(value) || !Number.isFinite(at)) {
    throw new ClientError(
      'CONFIG',
      `--until ${value}: give a duration (90m, 12h, 3d) or an ISO 8601 time`,
    );
  }
  return new Date(at);
}

/** How long after-boot waits for the state folder before judging alone. */
const STATE_OPEN_MS = 30_000;

function buildProgram(io: DeviceIO, setCode: (code: number) => void): Command {
  const program = new Command('tufota-device')
    .description('the tufota update agent on a device')
    .requiredOption('--config <file>', 'the device configuration (JSON)')
    .option('--json', 'print results as JSON')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
    });

  program
    .command('init')
    .description('install the root the device was shipped with, once')
    .requiredOption('--root <file>', 'the trusted root (N.root.json)')
    .action(async (flags: { root: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const config = await loadConfig(g.config);
      const slotsDir = slotsStateDir(config);
      const privilege = await privilegeFor(config.stateDir, slotsDir);
      // The network step's trusted root, and the install step's own: the
      // install step verifies the chain again from it (reverify.ts).
      const places = [
        { dir: join(config.stateDir, 'metadata'), asRoot: false },
        ...(slotsDir ? [{ dir: join(slotsDir, 'trust'), asRoot: true }] : []),
      ];
      const installed: string[] = [];
      const kept: string[] = [];
      for (const place of places) {
        const target = join(place.dir, 'root.json');
        const install = async () => {
          const exists = await stat(target).then(
            () => true,
            () => false,
          );
          // Never step back: the trusted root may have moved on since.
          if (exists) return false;
          await mkdir(place.dir, { recursive: true, mode: 0o700 });
          await copyFile(flags.root, target);
          return true;
        };
        const done = await (
          place.asRoot ? privilege.asRoot(install) : install()
        ).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
          throw new ClientError(
            'CONFIG',
            place.asRoot
              ? `cannot write ${target}: run init with the rights of the ` +
                  'install step (root), which keeps a trusted root of its own'
              : `cannot write ${target}` +
                  (privilege.dropped
                    ? ` as the state folder's owner (uid ${privilege.ownerUid}):` +
                      ' everything inside it must be theirs (chown -R)'
                    : ''),
          );
        });
        (done ? installed : kept).push(target);
      }
      print(
        io,
        g.json,
        { initialized: installed.length > 0, installed, kept },
        [
          ...installed.map((t) => `trusting ${flags.root} in ${t}`),
          ...kept.map((t) => `${t} already exists; left as it is`),
        ].join('\n'),
      );
    });

  program
    .command('check')
    .description('run one update cycle: refresh, decide, download, install')
    .option(
      '--download-only',
      'stop once the image is verified; `install` (run with the rights to write slots) goes on',
    )
    .option('--progress', 'show the download as it goes, on standard error')
    .action(
      async (
        flags: { downloadOnly?: boolean; progress?: boolean },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals<Globals>();
        const view = flags.progress ? progressView(process.stderr) : undefined;
        const device = await openDevice(
          await loadConfig(g.config),
          view ? { onProgress: (done, total) => view.update(done, total) } : {},
        );
        try {
          const result = await device.agent.runOnce({
            install: !flags.downloadOnly,
          });
          view?.stop();
          const words =
            result.outcome === 'installed'
              ? `installed, deployment ${result.deploymentId}: ${result.phase}`
              : result.outcome === 'pending' && result.phase === 'installing'
                ? `downloaded and verified, deployment ${result.deploymentId}: ` +
                  'waiting for "tufota-device install"'
                : result.outcome === 'pending'
                  ? `deployment ${result.deploymentId} is ${result.phase}`
                  : `${result.outcome}: ${'reason' in result ? result.reason : ''}`;
          print(io, g.json, result, words);
          if (result.outcome === 'refused') setCode(1);
          if (
            result.outcome === 'waiting' ||
            result.outcome === 'retry-later'
          ) {
            setCode(3);
          }
        } finally {
          view?.stop();
          await device.close();
        }
      },
    );

  program
    .command('run')
    .description(
      'the agent as a service: a cycle every --interval, with jitter',
    )
    .option('--interval <duration>', 'time between checks (30s, 15m, 6h)', '1h')
    .option(
      '--jitter <fraction>',
      'spread each wait by up to this share',
      '0.2',
    )
    .action(
      async (flags: { interval: string; jitter: string }, cmd: Command) => {
        const g = cmd.optsWithGlobals<Globals>();
        const interval = parseDuration(flags.interval, '--interval');
        const jitter = Number(flags.jitter);
        if (!(jitter >= 0 && jitter < 1)) {
          throw new ClientError(
            'CONFIG',
            `--jitter ${flags.jitter}: from 0 to below 1`,
          );
        }
        const config = await loadConfig(g.config);
        const ended = await runService(config, { interval, jitter }, io);
        if (ended === 'reboot') setCode(4);
      },
    );

  program
    .command('install')
    .description(
      'install the deployment a `check --download-only` left verified; no network',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const device = await openDevice(await loadConfig(g.config), {
        local: true,
      });
      try {
        const result = await device.agent.installPending();
        const words =
          result.outcome === 'installed'
            ? `installed, deployment ${result.deploymentId}: ${result.phase}`
            : `${result.outcome}: ${'reason' in result ? result.reason : ''}`;
        print(io, g.json, result, words);
        if (result.outcome === 'refused') setCode(1);
        if (result.outcome === 'retry-later' || result.outcome === 'waiting') {
          setCode(3);
        }
      } finally {
        await device.close();
      }
    });

  program
    .command('after-boot')
    .description(
      'after each boot: judge a trial (health check), commit or fall back, report',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const config = await loadConfig(g.config);
      let result: BootOutcome | undefined;
      let stuck = false;
      try {
        // The state folder is another user's in a split: whatever it
        // holds may not keep the verdict waiting.
        const opening = openDevice(config, { local: true });
        const device = await new Promise<Awaited<typeof opening>>(
          (resolve, reject) => {
            const timer = setTimeout(() => {
              stuck = true;
              // Closed when it does open, so its lock goes with it.
              void opening.then((d) => d.close()).catch(() => undefined);
              reject(
                new ClientError(
                  'STATE',
                  `the state folder did not open in ${STATE_OPEN_MS / 1000} s`,
                ),
              );
            }, STATE_OPEN_MS);
            opening.then(
              (d) => {
                clearTimeout(timer);
                resolve(d);
              },
              (err: unknown) => {
                clearTimeout(timer);
                reject(err instanceof Error ? err : new Error(String(err)));
              },
            );
          },
        );
        try {
          result = await device.agent.afterBoot();
        } finally {
          await device.close();
        }
      } catch (err) {
        if (!config.slots) throw err;
        // The verdict on a trial must not wait on the state folder (a
        // held lock, a damaged record): the installer judges from its
        // own notes and the boot record; the outcome stays noted there
        // until an after-boot that can journal and report it.
        io.err(
          `error: ${err instanceof Error ? err.message : String(err)}; ` +
            'judging the boot without the state folder\n',
        );
        const privilege = await privilegeFor(
          config.stateDir,
          slotsStateDir(config),
        );
        result = await installerFor(config, privilege).afterBoot!();
        setCode(1);
        // What hung may still hold the event loop: leave once the verdict
        // is printed and the exit code set.
        if (stuck) setTimeout(() => process.exit(), 2000);
      }
      if (!result) {
        print(io, g.json, { outcome: 'no-slots' }, 'no slots configured');
        return;
      }
      const words =
        `${result.outcome}${result.deploymentId ? ` (deployment ${result.deploymentId})` : ''}` +
        `${result.reason ? `: ${result.reason}` : ''}` +
        `${result.rebootRequired ? '; reboot required' : ''}`;
      print(io, g.json, result, words);
      // The integrator's unit reboots on 4: the device runs a slot it
      // must leave for its known-good one.
      if (result.rebootRequired) setCode(4);
    });

  program
    .command('boot')
    .description(
      'play one power-on as the bootloader would (simulated devices and tests)',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const config = await loadConfig(g.config);
      if (!config.slots) {
        throw new ClientError(
          'CONFIG',
          'boot needs "slots" in the configuration',
        );
      }
      if (!config.slots.cmdline) {
        throw new ClientError(
          'CONFIG',
          'boot needs "slots.cmdline": a file standing in for /proc/cmdline',
        );
      }
      const result = await playBoot(createBootloader(config.slots.bootloader), {
        cmdline: config.slots.cmdline,
      });
      print(
        io,
        g.json,
        result,
        `booted slot ${result.slot} (${result.event})` +
          (result.fault ? `; fault: ${result.fault}` : ''),
      );
    });

  program
    .command('status')
    .description(
      'where the device is: idle, downloading (percent), installing, …',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const config = await loadConfig(g.config);
      // Root reads another user's folder with that user's rights.
      await privilegeFor(config.stateDir, slotsStateDir(config));
      const status = await readStatus(config);
      const d = status.deployment;
      const words = !d
        ? 'idle'
        : `${status.state}${status.progress ? ` ${status.progress.percent}%` : ''}: ` +
          `${d.targetPath} ${d.version} (deployment ${d.id}, from ${d.fromVersion})`;
      print(io, g.json, status, words);
    });

  program
    .command('defer')
    .description('put off the update this device would take now')
    .requiredOption(
      '--until <when>',
      'a duration (12h, 3d) or an ISO 8601 time',
    )
    .option('--by <who>', 'who asked, for the journal and the server')
    .action(async (flags: { until: string; by?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const until = parseUntil(flags.until, new Date());
      const device = await openDevice(await loadConfig(g.config));
      try {
        const answer = await device.agent.defer(until, flags.by);
        print(
          io,
          g.json,
          answer,
          answer.ok
            ? `${answer.target}: ${answer.reason}`
            : `not deferred: ${answer.reason}`,
        );
        if (!answer.ok) setCode(1);
      } finally {
        await device.close();
      }
    });

  program
    .command('journal')
    .description('the newest journal entries, oldest first')
    .option('-n, --count <n>', 'how many', '20')
    .action(async (flags: { count: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      const count = Number(flags.count);
      if (!Number.isSafeInteger(count) || count < 1) {
        throw new ClientError(
          'CONFIG',
          `--count ${flags.count}: a whole number from 1`,
        );
      }
      const device = await openDevice(await loadConfig(g.config), {
        local: true,
      });
      try {
        const entries = await device.journal.newest(count);
        if (g.json) print(io, true, entries, '');
        else {
          for (const e of entries) {
            const { seq, time, event, ...rest } = e;
            io.out(
              `${plain(`${seq} ${time} ${event}`)} ${JSON.stringify(rest)}\n`,
            );
          }
        }
      } finally {
        await device.close();
      }
    });

  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** Runs one command and returns its exit code. */
export async function run(
  argv: string[],
  io: DeviceIO = processIO,
): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const message = err instanceof Error ? err.message : String(err);
    io.err(`error: ${message}\n`);
    return 1;
  }
}
