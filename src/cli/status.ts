/** `tufota status`. */
import type { Command } from 'commander';
import { Repository } from '../repository/repository.js';
import { repositoryStatus, type RoleStatus } from '../repository/status.js';
import { formatDuration } from '../tuf/expiry.js';
import {
  printJson,
  shortId,
  type CliIO,
  type GlobalOptions,
} from './context.js';

function flag(role: RoleStatus): string {
  if (role.expired) return 'EXPIRED';
  if (role.signedBy.length < role.threshold) return 'BELOW THRESHOLD';
  if (role.needsRefresh) return 'due for re-signing';
  return '';
}

function line(role: RoleStatus): string {
  return [
    role.role.padEnd(18),
    `v${role.version}`.padEnd(7),
    `${role.signedBy.length}/${role.threshold} of ${role.keyids.length}`.padEnd(
      10,
    ),
    `expires in ${formatDuration(role.expiresIn)}`.padEnd(22),
    role.pending ? 'draft pending  ' : '',
    flag(role),
  ]
    .join(' ')
    .trimEnd();
}

export function registerStatus(program: Command, io: CliIO): void {
  program
    .command('status')
    .description(
      'every role: version, signatures/threshold of keys, time to expiry',
    )
    .option('--keys-detail', 'list each role’s key ids')
    .action(async (flags: { keysDetail?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir);
      const status = await repositoryStatus(repo);
      if (opts.json) {
        printJson(io, status);
        return;
      }
      io.out(`repository ${status.dir} at ${status.now}\n`);
      io.out('role               version sigs       expiry\n');
      io.out('  (sigs: valid signatures/threshold of the keys trusted)\n');
      // Hundreds of bins would drown the rest; they are summed up in one
      // line unless one of them needs attention.
      const bins = status.roles.filter((r) => /-bin-[0-9a-f]+$/.test(r.role));
      const others = status.roles.filter((r) => !bins.includes(r));
      for (const role of others) {
        io.out(line(role) + '\n');
        if (flags.keysDetail) {
          io.out(`    keys: ${role.keyids.map(shortId).join(' ')}\n`);
        }
      }
      if (bins.length > 0) {
        const soonest = bins.reduce((a, b) =>
          a.expiresIn < b.expiresIn ? a : b,
        );
        const low = Math.min(...bins.map((b) => b.version));
        const high = Math.max(...bins.map((b) => b.version));
        io.out(
          `${bins.length} hashed bins: ` +
            (low === high ? `version ${low}` : `versions ${low} to ${high}`) +
            `, soonest expiry in ${formatDuration(soonest.expiresIn)}\n`,
        );
        for (const bin of bins.filter((b) => flag(b) !== '' || b.pending)) {
          io.out(line(bin) + '\n');
        }
      }
      if (status.pending.length > 0) {
        io.out(
          `unpublished changes: ${status.pending.length} role(s); run "tufota publish"\n`,
        );
      }
    });
}
