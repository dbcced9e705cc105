/**
 * `tufota tls init|issue`: the private CA devices pin and the server
 * certificate the coming HTTPS update server presents.
 */
import type { Command } from 'commander';
import {
  SERVER_DAYS,
  createTlsMaterial,
  issueServerCertificate,
  type TlsResult,
} from '../server/tls.js';
import { describeServerNames } from '../server/tls-names.js';
import {
  collect,
  parseCount,
  passphrasesFor,
  printJson,
  type CliIO,
  type GlobalOptions,
} from './context.js';

interface NameFlags {
  name?: string[];
  ip?: string[];
  days: string;
}

/** What each file is for, said where a person decides what goes where. */
function roleOf(result: TlsResult, path: string): string {
  const { paths } = result;
  if (path === paths.caCert) return 'the CA certificate: devices pin this';
  if (path === paths.caKey) {
    return 'the CA key, encrypted with the passphrase; only for issuing';
  }
  if (path === paths.serverCert) {
    return `the server certificate, valid until ${result.notAfter.toISOString()}`;
  }
  return 'its key, not encrypted, so the server starts unattended';
}

function report(
  io: CliIO,
  opts: GlobalOptions,
  result: TlsResult,
  next: string,
): void {
  if (opts.json) {
    printJson(io, {
      written: result.written,
      caCert: result.paths.caCert,
      caKey: result.paths.caKey,
      serverCert: result.paths.serverCert,
      serverKey: result.paths.serverKey,
      names: result.names.dns,
      ips: result.names.ips,
      notAfter: result.notAfter.toISOString(),
      caNotAfter: result.caNotAfter.toISOString(),
      fingerprint: result.fingerprint,
      caCertificate: result.caCertificate,
    });
    return;
  }
  const { caCert, caKey, serverCert, serverKey } = result.paths;
  const files = [caCert, caKey, serverCert, serverKey].filter((p) =>
    result.written.includes(p),
  );
  const width = Math.max(...files.map((p) => p.length));
  const lines = files.map((p) => `  ${p.padEnd(width)}  ${roleOf(result, p)}`);
  io.out(
    `wrote\n${lines.join('\n')}\n` +
      `server certificate for ${describeServerNames(result.names)}\n` +
      `CA ${caCert}, valid until ${result.caNotAfter.toISOString()}\n` +
      `CA fingerprint (SHA-256):\n  ${result.fingerprint}\n` +
      `${next}\n` +
      `CA certificate, for devices to pin:\n${result.caCertificate}`,
  );
}

function days(flags: NameFlags): number {
  return parseCount(flags.days, '--days');
}

function nameOptions(command: Command, defaults: string): Command {
  return command
    .option(
      '--name <dns>',
      'a DNS name devices reach the server by; repeat for more ' +
        `(default, with no --ip either: ${defaults})`,
      collect,
    )
    .option(
      '--ip <address>',
      'an IPv4 or IPv6 address devices reach the server by; repeat for more',
      collect,
    )
    .option(
      '--days <n>',
      'days the server certificate is valid',
      String(SERVER_DAYS),
    );
}

/** Adds `tls init` and `tls issue` to the program. */
export function registerTls(program: Command, io: CliIO): void {
  const tls = program
    .command('tls')
    .description(
      'TLS for the update server: a private CA that devices pin, and the ' +
        'server certificates it signs',
    );

  nameOptions(
    tls
      .command('init')
      .description(
        'make a CA (ten years, its key encrypted with the passphrase) and a ' +
          'server certificate it signs; writes ca.crt, ca.key, server.crt ' +
          'and server.key',
      )
      .option('--out <folder>', 'the folder to write', 'tls')
      .option(
        '--force',
        'replace TLS files already there (devices that pinned the old ' +
          'ca.crt will then refuse the server)',
      ),
    'localhost, 127.0.0.1 and ::1',
  ).action(
    async (
      flags: NameFlags & { out: string; force?: boolean },
      cmd: Command,
    ) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const result = await createTlsMaterial({
        dir: flags.out,
        names: flags.name,
        ips: flags.ip,
        days: days(flags),
        force: flags.force === true,
        passphrases: passphrasesFor(opts, io),
      });
      report(
        io,
        opts,
        result,
        `Give devices ${result.paths.caCert} (or the text below) to pin; ` +
          `keep ${result.paths.caKey} and its passphrase to issue the next ` +
          'server certificate.',
      );
    },
  );

  nameOptions(
    tls
      .command('issue')
      .description(
        'issue a new server certificate and key from an existing CA, ' +
          'replacing server.crt and server.key; ca.crt stays, so devices ' +
          'need nothing new',
      )
      .option('--ca-dir <folder>', 'the folder tls init wrote', 'tls')
      .option(
        '--out <folder>',
        'where server.crt and server.key go (default: the CA folder)',
      ),
    'the names of the certificate it replaces, else localhost, 127.0.0.1 ' +
      'and ::1',
  ).action(
    async (
      flags: NameFlags & { caDir: string; out?: string },
      cmd: Command,
    ) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const result = await issueServerCertificate({
        caDir: flags.caDir,
        out: flags.out,
        names: flags.name,
        ips: flags.ip,
        days: days(flags),
        passphrases: passphrasesFor(opts, io),
      });
      report(
        io,
        opts,
        result,
        `${result.paths.caCert} is unchanged, so devices that pin it trust ` +
          'the new certificate as they did the old.',
      );
    },
  );
}
