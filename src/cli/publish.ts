/** `tufota publish` and `tufota discard`. */
import type { Command } from 'commander';
import { publish } from '../repository/publish.js';
import { Repository } from '../repository/repository.js';
import {
  collect,
  keyringFor,
  printJson,
  type CliIO,
  type GlobalOptions,
} from './context.js';

export function registerPublish(program: Command, io: CliIO): void {
  program
    .command('publish')
    .description(
      'sign changed roles with the keys at hand, then new snapshot and ' +
        'timestamp; timestamp.json is replaced last',
    )
    .option(
      '--resign <role>',
      'also make a new version of this role (e.g. to extend its expiry)',
      collect,
    )
    .option(
      '--leave-staged',
      'publish drafts and renew online roles even while a staged root or ' +
        'targets still lacks signatures; it stays staged for later',
    )
    .action(
      async (
        flags: { resign?: string[]; leaveStaged?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        const repo = await Repository.open(opts.dir, {
          lock: true,
          keyring: await keyringFor(opts, io),
        });
        try {
          const result = await publish(repo, {
            resign: flags.resign,
            leaveStaged: flags.leaveStaged,
          });
          if (opts.json) {
            printJson(io, result);
            return;
          }
          for (const p of result.pending) {
            const which = p.version > 0 ? `${p.role} v${p.version}` : p.role;
            io.err(`${which} stays staged: ${p.reason}\n`);
          }
          for (const role of result.unchanged) {
            io.out(`${role}: draft changed nothing; dropped\n`);
          }
          if (!result.published) {
            io.out(
              'nothing to publish: no changes and no role due for refresh\n',
            );
            return;
          }
          for (const [role, version] of Object.entries(result.versions)) {
            io.out(`published ${role} version ${version}\n`);
          }
        } finally {
          await repo.close();
        }
      },
    );

  program
    .command('discard')
    .description('drop unpublished changes: of the named roles, or all')
    .argument('[roles...]', 'roles whose drafts to drop')
    .action(async (roles: string[], _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir, { lock: true });
      try {
        const dropped = await repo.discardDrafts(
          roles.length > 0 ? roles : undefined,
        );
        if (opts.json) printJson(io, { discarded: dropped });
        else if (dropped.length === 0) io.out('no unpublished changes\n');
        else io.out(`discarded drafts of ${dropped.join(', ')}\n`);
      } finally {
        await repo.close();
      }
    });
}
