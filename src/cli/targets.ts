/** `tufota targets add|remove|list`. */
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { posix, basename } from 'node:path';
import { BadInputError } from '../errors.js';
import { Repository, type TargetInput } from '../repository/repository.js';
import { parseCustom, releaseCustom } from '../tuf/custom.js';
import {
  collect,
  printJson,
  type CliIO,
  type GlobalOptions,
} from './context.js';

interface AddFlags {
  path?: string;
  custom?: string;
  version?: string;
  hardware?: string[];
  fromVersion?: string;
  critical?: boolean;
  replace?: boolean;
}

/** The release fields of custom data in a few words, for listings. */
function describeCustom(custom: Record<string, unknown>): string {
  const words: string[] = [];
  if (typeof custom.version === 'string') words.push(`v${custom.version}`);
  if (Array.isArray(custom.hardware)) {
    words.push(`for ${custom.hardware.join(', ')}`);
  }
  if (typeof custom.fromVersion === 'string') {
    words.push(`from ${custom.fromVersion}`);
  }
  if (custom.critical === true) words.push('critical');
  const known = new Set(['version', 'hardware', 'fromVersion', 'critical']);
  const others = Object.keys(custom).filter((k) => !known.has(k));
  if (others.length > 0) words.push(`+ ${others.join(', ')}`);
  return words.join('  ');
}

export function registerTargets(program: Command, io: CliIO): Command {
  const targets = program
    .command('targets')
    .description(
      'add, remove and list target files (changes wait for publish)',
    );

  targets
    .command('add')
    .description('copy files into the repository and list them in their role')
    .argument('<files...>', 'files to add')
    .option('--path <path>', 'target path (one file only); default images/NAME')
    .option('--custom <json>', 'custom data as a JSON object')
    .option('--version <semver>', 'release version (custom.version)')
    .option(
      '--hardware <class>',
      'hardware class it runs on (repeatable)',
      collect,
    )
    .option(
      '--from-version <semver>',
      'lowest running version it may update from',
    )
    .option('--critical', 'mark as a critical update (cannot be deferred)')
    .option('--replace', 'list new content under a path that is already listed')
    .action(async (files: string[], flags: AddFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      if (flags.path && files.length > 1) {
        throw new BadInputError(
          '--path names one target; give one file with it',
        );
      }
      const custom = releaseCustom(
        flags.custom ? parseCustom(flags.custom) : undefined,
        {
          version: flags.version,
          hardware: flags.hardware,
          fromVersion: flags.fromVersion,
          critical: flags.critical,
        },
      );
      const inputs: TargetInput[] = files.map((source) => ({
        source,
        path: flags.path ?? posix.join('images', basename(source)),
        custom,
      }));
      const repo = await Repository.open(opts.dir, { lock: true });
      try {
        const bar =
          io.interactive && files.length > 1 && !opts.json
            ? new SingleBar({ stream: process.stderr, etaBuffer: 50 })
            : undefined;
        bar?.start(files.length, 0);
        const added = await repo.addTargets(
          inputs,
          (done) => bar?.update(done),
          { replace: flags.replace },
        );
        bar?.stop();
        if (opts.json) {
          printJson(
            io,
            added.map((a) => ({
              path: a.target.path,
              role: a.role,
              length: a.target.length,
              hashes: a.target.hashes,
              replaced: a.replaced,
              unchanged: a.unchanged,
            })),
          );
          return;
        }
        for (const a of added) {
          const verb = a.unchanged
            ? 'unchanged'
            : a.replaced
              ? 'replaced'
              : 'added';
          const sha256 = a.target.hashes.sha256.slice(0, 16);
          io.out(
            `${verb} ${a.target.path} (${a.target.length} bytes, ` +
              `sha256 ${sha256}…) in ${a.role}\n`,
          );
        }
        io.out('Not yet published: run "tufota publish".\n');
      } finally {
        await repo.close();
      }
    });

  targets
    .command('remove')
    .description('unlist a target (its file is kept for older versions)')
    .argument('<path>', 'target path, e.g. images/fw-1.2.0.img')
    .action(async (path: string, _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir, { lock: true });
      try {
        const role = await repo.removeTarget(path);
        if (opts.json) printJson(io, { path, role });
        else io.out(`removed ${path} from ${role}; not yet published\n`);
      } finally {
        await repo.close();
      }
    });

  targets
    .command('list')
    .description('list targets as the next publish would sign them')
    .action(async (_flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir);
      const listed = await repo.listTargets();
      if (opts.json) {
        printJson(
          io,
          listed.map((l) => ({
            path: l.target.path,
            role: l.role,
            length: l.target.length,
            hashes: l.target.hashes,
            custom: l.target.custom,
            pending: l.pending,
          })),
        );
        return;
      }
      if (listed.length === 0) io.out('no targets\n');
      for (const l of listed) {
        io.out(`${l.target.path}  ${describeCustom(l.target.custom)}\n`);
        io.out(
          `    ${l.target.length} bytes  sha256 ${l.target.hashes.sha256}  ` +
            `${l.role}${l.pending ? '  (unpublished)' : ''}\n`,
        );
      }
    });
  return targets;
}
