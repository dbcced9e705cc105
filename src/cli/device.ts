/**
 * `tufota device add|list|revoke`: the devices allowed to report events,
 * each with a credential of its own (src/server/devices.ts).
 */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { Layout } from '../repository/layout.js';
import { addDevice, revokeDevice, summary } from '../server/devices.js';
import { defaultStateFile } from '../server/server.js';
import { LowdbStateStore } from '../state/lowdb-store.js';
import { printJson, type CliIO, type GlobalOptions } from './context.js';

/** The server's state of the repository the options name. */
async function storeFor(opts: GlobalOptions): Promise<LowdbStateStore> {
  await readFile(new Layout(opts.dir).config).catch(() => {
    throw new BadInputError(`${opts.dir} is not a tufota repository`);
  });
  return new LowdbStateStore(defaultStateFile(opts.dir));
}

export function registerDevice(program: Command, io: CliIO): void {
  const device = program
    .command('device')
    .description('devices and the credentials they report events with');

  device
    .command('add')
    .description(
      'allow a device to report events; its credential is printed once ' +
        'and only its hash is kept',
    )
    .argument('<id>', 'the device id: 1 to 64 of A-Z a-z 0-9 . _ -')
    .option('--name <name>', 'what the device is (default: its id)')
    .action(async (id: string, flags: { name?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const made = await addDevice(await storeFor(opts), id, flags.name);
      if (opts.json) {
        printJson(io, made);
        return;
      }
      const again = made.reissued
        ? ' (a new one; the old one was revoked)'
        : '';
      io.out(
        `credential ${made.device.credentialId} for device ${id}${again}:\n` +
          `${made.credential}\n` +
          'It is shown only now; the server keeps only its hash. Install ' +
          'it on the device, which posts its events to ' +
          `/api/v1/devices/${id}/events with it.\n`,
      );
    });

  device
    .command('list')
    .description('devices, their credential ids and how much they reported')
    .action(async (_flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const { devices } = await (await storeFor(opts)).read();
      const shown = devices.map(summary);
      if (opts.json) {
        printJson(io, { devices: shown });
        return;
      }
      if (shown.length === 0) io.out('no devices\n');
      for (const d of shown) {
        io.out(
          `${d.id}  credential ${d.credentialId}` +
            (d.name !== d.id ? `  name ${d.name}` : '') +
            `  ${d.events} events` +
            (d.lastSeq !== undefined ? `, last seq ${d.lastSeq}` : '') +
            (d.lastSeen ? `, last seen ${d.lastSeen}` : '') +
            (d.revoked ? `  revoked ${d.revoked}` : '') +
            '\n',
        );
      }
    });

  device
    .command('revoke')
    .description(
      "revoke a device's credential; the server refuses it at once and " +
        'keeps its events',
    )
    .argument('<id>', 'the device id')
    .action(async (id: string, _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const d = await revokeDevice(await storeFor(opts), id);
      if (opts.json) printJson(io, { id: d.id, revoked: d.revoked });
      else io.out(`device ${d.id}: credential ${d.credentialId} revoked\n`);
    });
}
