/**
 * `tufota serve` and `tufota token create|list|revoke`.
 */
import type { Command } from 'commander';
import { readFile, stat } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { logger } from '../log.js';
import { defaultStateFile, startServer } from '../server/server.js';
import { loadTlsMaterial, tlsPaths } from '../server/tls.js';
import { createToken, parseScopes, revokeToken } from '../server/tokens.js';
import { LowdbStateStore } from '../state/lowdb-store.js';
import { parseDuration } from '../tuf/expiry.js';
import { Layout } from '../repository/layout.js';
import {
  collect,
  keyringFor,
  parseCount,
  printJson,
  type CliIO,
  type GlobalOptions,
} from './context.js';

interface ServeFlags {
  host: string;
  port: string;
  cert?: string;
  key?: string;
  tlsDir: string;
  insecureHttp?: boolean;
  refreshEvery?: string;
  maxUpload?: string;
}

async function tlsFor(
  flags: ServeFlags,
): Promise<{ cert: string; key: string } | undefined> {
  if (flags.insecureHttp) {
    if (flags.cert || flags.key) {
      throw new BadInputError('--insecure-http takes no --cert or --key');
    }
    return undefined;
  }
  if (Boolean(flags.cert) !== Boolean(flags.key)) {
    throw new BadInputError('--cert and --key go together');
  }
  if (flags.cert && flags.key) return loadTlsMaterial(flags.cert, flags.key);
  const paths = tlsPaths(flags.tlsDir);
  const made = await stat(paths.serverCert).catch(() => undefined);
  if (!made) {
    throw new BadInputError(
      `no TLS certificate in ${flags.tlsDir}/: run tufota tls init, or give ` +
        '--cert and --key (plain HTTP only with --insecure-http, behind a ' +
        'TLS proxy)',
    );
  }
  return loadTlsMaterial(paths.serverCert, paths.serverKey);
}

/** Resolves on the first SIGINT or SIGTERM. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: string) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

function registerServe(program: Command, io: CliIO): void {
  program
    .command('serve')
    .description(
      'serve metadata and targets over HTTPS with the admin API, keeping ' +
        'the online roles signed before they expire',
    )
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free one)', '8443')
    .option('--cert <file>', 'PEM server certificate, with its chain')
    .option('--key <file>', 'PEM private key of --cert')
    .option('--tls-dir <folder>', 'where tufota tls init wrote them', 'tls')
    .option(
      '--insecure-http',
      'plain HTTP, for tests and behind a TLS-terminating proxy only',
    )
    .option(
      '--refresh-every <duration>',
      'how often to check the online roles (default: a quarter of the ' +
        'shortest refresh window, at most 1m)',
    )
    .option(
      '--max-upload <bytes>',
      'largest target upload (default: the stored setting, else 8 GiB)',
    )
    .action(async (flags: ServeFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      if (!process.env.TUFOTA_LOG) logger.level = 'info';
      const tls = await tlsFor(flags);
      const port = parseCount(flags.port, '--port');
      if (port > 65535)
        throw new BadInputError(`--port ${port}: at most 65535`);
      const server = await startServer({
        dir: opts.dir,
        keyring: await keyringFor(opts, io),
        host: flags.host,
        port,
        tls,
        refreshEveryMs: flags.refreshEvery
          ? parseDuration(flags.refreshEvery, '--refresh-every')
          : undefined,
        maxUploadBytes:
          flags.maxUpload === undefined
            ? undefined
            : parseCount(flags.maxUpload, '--max-upload'),
      });
      if (opts.json) {
        printJson(io, { url: server.url, tls: tls !== undefined });
      } else {
        io.out(`serving ${opts.dir} at ${server.url}\n`);
      }
      const signal = await untilSignal();
      io.err(`${signal}: stopping\n`);
      await server.close();
    });
}

function registerToken(program: Command, io: CliIO): void {
  const token = program
    .command('token')
    .description('bearer tokens for the admin API');
  const storeFor = (opts: GlobalOptions) =>
    new LowdbStateStore(defaultStateFile(opts.dir));
  token
    .command('create')
    .description('issue a token; it is printed once and only its hash is kept')
    .requiredOption(
      '--scope <scope>',
      'releases, rollouts or admin; repeat or separate with commas',
      collect,
    )
    .option('--name <name>', 'who or what holds it', 'unnamed')
    .action(async (flags: { scope: string[]; name: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      await readFile(new Layout(opts.dir).config).catch(() => {
        throw new BadInputError(`${opts.dir} is not a tufota repository`);
      });
      const made = await createToken(
        storeFor(opts),
        flags.name,
        parseScopes(flags.scope),
      );
      if (opts.json) {
        printJson(io, { token: made.token, ...made.record, sha256: undefined });
        return;
      }
      io.out(
        `token ${made.record.id} (${made.record.scopes.join(', ')}) for ` +
          `${made.record.name}:\n${made.token}\n` +
          'It is shown only now; the server keeps only its hash.\n',
      );
    });
  token
    .command('list')
    .description('tokens issued, by id (never the tokens themselves)')
    .action(async (_flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const { tokens } = await storeFor(opts).read();
      const shown = tokens.map(({ sha256: _hash, ...rest }) => rest);
      if (opts.json) {
        printJson(io, { tokens: shown });
        return;
      }
      if (shown.length === 0) io.out('no tokens\n');
      for (const t of shown) {
        io.out(
          `${t.id}  ${t.scopes.join(',')}  ${t.name}  created ${t.created}` +
            (t.revoked ? `  revoked ${t.revoked}` : '') +
            '\n',
        );
      }
    });
  token
    .command('revoke')
    .description('revoke a token by its id; the server refuses it at once')
    .argument('<id>', 'the token id token list shows')
    .action(async (id: string, _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const record = await revokeToken(storeFor(opts), id);
      if (opts.json) printJson(io, { id: record.id, revoked: record.revoked });
      else io.out(`token ${record.id} revoked\n`);
    });
}

export function registerServer(program: Command, io: CliIO): void {
  registerServe(program, io);
  registerToken(program, io);
}
