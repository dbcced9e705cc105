/**
 * The `tufota` command line. `run` takes the arguments and an IO object and
 * returns an exit code, so tests drive it in-process exactly as a user would.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TufotaError, describeError } from '../errors.js';
import { logger } from '../log.js';
import { processIO, type CliIO } from './context.js';
import { registerDevice } from './device.js';
import { registerEvents } from './events.js';
import { registerInit } from './init.js';
import { registerKeys } from './keys.js';
import { registerPublish } from './publish.js';
import { registerServer } from './serve.js';
import { registerSigning } from './signing.js';
import { registerStatus } from './status.js';
import { registerTargets } from './targets.js';
import { registerTls } from './tls.js';
import { VerificationFailed, registerVerify } from './verify.js';

const log = logger.child({ module: 'cli' });

/** The version in tufota's package.json, found above this module. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 4; up++) {
    try {
      const pkg = JSON.parse(
        readFileSync(join(dir, 'package.json'), 'utf8'),
      ) as { name?: string; version?: string };
      if (pkg.name === 'tufota' && pkg.version) return pkg.version;
    } catch {
      // No package.json at this level; look one folder up.
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export function buildProgram(io: CliIO): Command {
  const program = new Command('tufota')
    .description(
      'a TUF repository for over-the-air updates (tufota --version prints ' +
        'its version)',
    )
    .option('--dir <folder>', 'repository folder', 'repo')
    .option(
      '--keys <folder>',
      'key folder, default keys; repeat to read several, e.g. ' +
        '--keys keys --keys /media/offline-keys',
      (value: string, previous: string[] | undefined) => [
        ...(previous ?? []),
        value,
      ],
    )
    .option(
      '--passphrase-file <file>',
      'read key passphrases from this file (else TUFOTA_PASSPHRASE, else a prompt)',
    )
    .option('--json', 'print results as JSON')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
    });
  registerInit(program, io);
  const targets = registerTargets(program, io);
  registerPublish(program, io);
  registerEvents(program, io, targets);
  registerSigning(program, io);
  registerKeys(program, io);
  registerStatus(program, io);
  registerVerify(program, io);
  registerServer(program, io);
  registerTls(program, io);
  registerDevice(program, io);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** Runs one command; 0 on success, 1 on failure, 2 on a usage error. */
export async function run(
  argv: string[],
  io: CliIO = processIO,
): Promise<number> {
  // Handled here, not by commander: its --version would also swallow the
  // --version option of `targets add` wherever that appears.
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    io.out(`${packageVersion()}\n`);
    return 0;
  }
  const closers: (() => Promise<void>)[] = [];
  const program = buildProgram({ ...io, atEnd: (fn) => closers.push(fn) });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end through here too, with exit code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof VerificationFailed) return 1;
    if (err instanceof TufotaError) {
      io.err(`error: ${err.message}\n`);
      log.info({ code: err.code }, 'command failed');
      return 1;
    }
    io.err(`error: ${describeError(err)}\n`);
    log.error({ err }, 'command failed unexpectedly');
    return 1;
  } finally {
    for (const close of closers) await close();
  }
}
