/** `tufota init`: keys and version 1 of every role. */
import type { Command } from 'commander';
import { parseKeyType, type KeyType } from '../keys/keygen.js';
import { passphraseFromFile } from '../keys/passphrase.js';
import {
  DEFAULT_KEY_COUNTS,
  DEFAULT_THRESHOLDS,
  KEYED_ROLES,
  initRepository,
  type KeyedRole,
} from '../repository/init.js';
import {
  DEFAULT_EXPIRY,
  EXPIRY_KEYS,
  formatDuration,
  parseDuration,
  type ExpiryPolicies,
} from '../tuf/expiry.js';
import {
  collect,
  collectEach,
  keyDirs,
  parseCount,
  passphrasesFor,
  printJson,
  roleValues,
  shortId,
  type CliIO,
  type GlobalOptions,
} from './context.js';

interface InitFlags {
  onlinePassphraseFile?: string;
  keyType?: string[];
  keyCount?: string[];
  threshold?: string[];
  expiry?: string[];
  refresh?: string[];
  useKey?: string[];
  bins?: string;
}

function perRole<T>(
  values: Map<string, string>,
  parse: (v: string, what: string) => T,
  option: string,
): Partial<Record<KeyedRole, T>> {
  const out: Partial<Record<KeyedRole, T>> = {};
  for (const [role, value] of values) {
    out[role as KeyedRole] = parse(value, `${option} ${role}`);
  }
  return out;
}

export function registerInit(program: Command, io: CliIO): void {
  program
    .command('init')
    .description(
      'create keys and version 1 of every role (root 2 of 3, targets 1 of 2, ' +
        'releases, rollouts, snapshot, timestamp)',
    )
    .option(
      '--key-type <[role=]type>',
      'ed25519 (default), ecdsa-sha2-nistp256 or rsassa-pss-sha256; ' +
        'for all roles or one',
      collect,
    )
    .option('--key-count <role=n>', 'number of keys for a role', collect)
    .option('--threshold <role=n>', 'signatures a role needs', collect)
    .option(
      '--expiry <role=duration>',
      `expiry period (${EXPIRY_KEYS.join(', ')}), e.g. timestamp=1d`,
      collect,
    )
    .option(
      '--refresh <role=duration>',
      'how long before expiry a role is due for re-signing',
      collect,
    )
    .option(
      '--use-key <role=keyfile>',
      "use the public key of an existing key file (or a token key's " +
        'reference file) instead of a new key',
      collectEach,
    )
    .option(
      '--online-passphrase-file <file>',
      'seal the keys of online roles (releases, rollouts, snapshot, ' +
        'timestamp) with the passphrase in this file, apart from the offline ones',
    )
    .option(
      '--bins <n>',
      'split releases into N hashed bins (a power of two, at most 16384)',
    )
    .action(async (flags: InitFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions & InitFlags>();
      const keyTypes = perRole<KeyType>(
        roleValues(flags.keyType, '--key-type', KEYED_ROLES, true),
        (v) => parseKeyType(v),
        '--key-type',
      );
      const keyCounts = perRole(
        roleValues(flags.keyCount, '--key-count', KEYED_ROLES),
        parseCount,
        '--key-count',
      );
      const thresholds = perRole(
        roleValues(flags.threshold, '--threshold', KEYED_ROLES),
        parseCount,
        '--threshold',
      );
      const expiry: ExpiryPolicies = structuredClone(DEFAULT_EXPIRY);
      for (const [key, value] of roleValues(
        flags.expiry,
        '--expiry',
        EXPIRY_KEYS,
      )) {
        const policy = expiry[key as keyof ExpiryPolicies];
        policy.period = parseDuration(value, `--expiry ${key}`);
        // A shorter period with the default window would leave a role
        // always "due"; keep the window at most half the period.
        policy.refreshWindow = Math.min(
          policy.refreshWindow,
          policy.period / 2,
        );
      }
      for (const [key, value] of roleValues(
        flags.refresh,
        '--refresh',
        EXPIRY_KEYS,
      )) {
        const policy = expiry[key as keyof ExpiryPolicies];
        policy.refreshWindow = parseDuration(value, `--refresh ${key}`);
      }
      const existingKeys: Partial<Record<KeyedRole, string[]>> = {};
      for (const item of flags.useKey ?? []) {
        const [role, file] = [
          ...roleValues([item], '--use-key', KEYED_ROLES),
        ][0];
        (existingKeys[role as KeyedRole] ??= []).push(file);
      }

      const result = await initRepository({
        dir: opts.dir,
        // New keys go to the first folder; the others are read for
        // existing keys named with --use-key.
        keysDir: keyDirs(opts)[0],
        passphrases: passphrasesFor(opts, io),
        onlinePassphrases: flags.onlinePassphraseFile
          ? passphraseFromFile(flags.onlinePassphraseFile)
          : undefined,
        keyTypes,
        keyCounts,
        thresholds,
        existingKeys,
        expiry,
        bins:
          flags.bins !== undefined
            ? parseCount(flags.bins, '--bins')
            : undefined,
      });

      if (opts.json) {
        printJson(io, {
          dir: opts.dir,
          keys: result.keys,
          bins: result.bins?.count ?? null,
        });
        return;
      }
      io.out(`Created repository in ${opts.dir}\n`);
      for (const role of KEYED_ROLES) {
        const keys = result.keys.filter((k) => k.role === role);
        const threshold = thresholds[role] ?? DEFAULT_THRESHOLDS[role];
        const count =
          keyCounts[role] ?? keys.length ?? DEFAULT_KEY_COUNTS[role];
        io.out(`  ${role.padEnd(10)} ${threshold} of ${count}\n`);
        for (const key of keys) {
          io.out(
            `    ${shortId(key.keyid)} ${key.keyType.padEnd(20)} ${key.path ?? '(existing)'}\n`,
          );
        }
      }
      if (result.bins) {
        io.out(`  releases is split into ${result.bins.count} hashed bins\n`);
      }
      const periods = EXPIRY_KEYS.map(
        (k) => `${k} ${formatDuration(expiry[k].period)}`,
      );
      io.out(`Expiry: ${periods.join(', ')}\n`);
      const madeOffline = result.keys.some(
        (k) =>
          k.path !== undefined && (k.role === 'root' || k.role === 'targets'),
      );
      if (madeOffline) {
        io.out(
          'Root and targets keys are offline keys: keep their files off the ' +
            'server (see "A security team" in the tufota README).\n',
        );
      }
    });
}
