/** `tufota verify`. */
import type { Command } from 'commander';
import { TufotaError } from '../errors.js';
import { verifyRepository } from '../repository/verify.js';
import { printJson, type CliIO, type GlobalOptions } from './context.js';

/** Thrown to end a command with exit code 1 after it printed its report. */
export class VerificationFailed extends TufotaError {
  constructor(count: number) {
    super('CORRUPT_METADATA', `verification found ${count} problem(s)`);
  }
}

export function registerVerify(program: Command, io: CliIO): void {
  program
    .command('verify')
    .description(
      'check the published repository as a client would, from 1.root.json, ' +
        'including every target file',
    )
    .option('--skip-targets', 'check metadata only, not target files')
    .option('--skip-history', 'check only current versions, not kept ones')
    .action(
      async (
        flags: { skipTargets?: boolean; skipHistory?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        const report = await verifyRepository(opts.dir, {
          skipTargets: flags.skipTargets,
          skipHistory: flags.skipHistory,
        });
        if (opts.json) {
          printJson(io, report);
        } else {
          for (const problem of report.problems) io.out(`FAIL ${problem}\n`);
          io.out(
            `${report.ok ? 'OK' : 'FAILED'}: root v${report.rootVersion}, ` +
              `${report.roles} targets roles, ${report.targets} targets, ` +
              `${report.historyFiles} kept versions` +
              (flags.skipTargets ? ' (files not checked)' : '') +
              `, ${report.problems.length} problem(s)\n`,
          );
        }
        if (!report.ok) throw new VerificationFailed(report.problems.length);
      },
    );
}
