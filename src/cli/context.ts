/**
 * What every `tufota` command shares: where its output goes, the global
 * options, and parsing of `role=value` option lists.
 */
import { stat } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { passphraseSource, type PassphraseSource } from '../keys/passphrase.js';

export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal, for progress bars. */
  interactive: boolean;
  /**
   * Registers work for the end of the command, success or failure (closing
   * token sessions); `run` sets it for each command it runs.
   */
  atEnd?: (close: () => Promise<void>) => void;
}

export const processIO: CliIO = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  interactive: process.stderr.isTTY === true,
};

export interface GlobalOptions {
  dir: string;
  /** Key folders; `--keys` may be given more than once. */
  keys?: string[];
  passphraseFile?: string;
  json?: boolean;
}

export function passphrasesFor(
  opts: GlobalOptions,
  io: CliIO,
): PassphraseSource {
  return passphraseSource({ passphraseFile: opts.passphraseFile, env: io.env });
}

export async function keyringFor(
  opts: GlobalOptions,
  io: CliIO,
): Promise<Keyring> {
  // A folder named on the command line that is not there is a typo, not an
  // empty keyring: say so instead of failing later on a missing signature.
  for (const dir of opts.keys ?? []) {
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new BadInputError(`--keys ${dir}: no such folder`);
    }
  }
  const keyring = await Keyring.open(keyDirs(opts), passphrasesFor(opts, io), {
    env: io.env,
  });
  io.atEnd?.(() => keyring.close());
  return keyring;
}

/** The key folders given, or the default one. */
export function keyDirs(opts: GlobalOptions): string[] {
  return opts.keys && opts.keys.length > 0 ? opts.keys : ['keys'];
}

/** Collector for repeatable options whose values are file names, which may hold commas. */
export function collectEach(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').filter((v) => v.length > 0)];
}

/**
 * Parses `role=value` items. A bare value applies to every role in `roles`
 * when `bareFor` is true, else it is an error.
 */
export function roleValues(
  items: string[] | undefined,
  option: string,
  roles: readonly string[],
  bareForAll = false,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (!bareForAll) {
        throw new BadInputError(`${option} ${item}: expected ROLE=VALUE`);
      }
      for (const role of roles) out.set(role, item);
      continue;
    }
    const role = item.slice(0, eq);
    if (!roles.includes(role)) {
      throw new BadInputError(
        `${option} ${item}: unknown role "${role}"; one of ${roles.join(', ')}`,
      );
    }
    out.set(role, item.slice(eq + 1));
  }
  return out;
}

export function parseCount(value: string, what: string): number {
  if (!/^\d+$/.test(value)) {
    throw new BadInputError(`${what}: "${value}" is not a whole number`);
  }
  return Number(value);
}

export function printJson(io: CliIO, value: unknown): void {
  io.out(JSON.stringify(value, null, 2) + '\n');
}

export function shortId(keyid: string): string {
  return keyid.slice(0, 8);
}
