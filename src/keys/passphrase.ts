/**
 * Where passphrases come from: a file (`--passphrase-file`), the
 * `TUFOTA_PASSPHRASE` environment variable for automation, or a prompt on the
 * terminal. Passphrases are never logged and never written anywhere.
 */
import { readFileSync } from 'node:fs';
import { BadInputError, NoPassphraseError } from '../errors.js';

/** The fewest characters a passphrase that seals new keys may have. */
export const MIN_NEW_PASSPHRASE = 8;

/**
 * Refuses a passphrase too short to seal new keys with. Opening existing
 * keys accepts any passphrase: they were sealed before this rule, or
 * elsewhere.
 */
export function checkNewPassphrase(passphrase: string, from?: string): void {
  if ([...passphrase].length < MIN_NEW_PASSPHRASE) {
    throw new BadInputError(
      `the passphrase for new keys${from ? ` (from ${from})` : ''} is too ` +
        `short: use at least ${MIN_NEW_PASSPHRASE} characters`,
    );
  }
}

export interface PassphraseSource {
  /** Whether asking means prompting a person, one question at a time. */
  readonly interactive: boolean;
  /** A passphrase to seal newly generated keys with. */
  forNewKeys(): Promise<string>;
  /**
   * A passphrase to try on one key file. `attempt` starts at 0; a source
   * that cannot offer another attempt returns undefined.
   */
  forKey(label: string, attempt: number): Promise<string | undefined>;
  /**
   * A hardware token's PIN, asked once: a wrong PIN counts against the
   * token's retry limit, so it is never tried again in one run. Sources
   * without it (files, the environment) give no PIN, since a passphrase
   * tried as a PIN would spend those tries.
   */
  forPin?(token: string): Promise<string | undefined>;
}

/**
 * Fixed passphrases, from a file or the environment. The first seals new
 * keys; every one is tried, in order, on a key to open, so keys sealed by
 * different holders can be opened in one run.
 */
export class FixedPassphrase implements PassphraseSource {
  readonly interactive = false;
  readonly #values: string[];
  #from?: string;

  constructor(...values: string[]) {
    if (values.length === 0 || values.some((v) => v.length === 0)) {
      throw new BadInputError('the passphrase is empty');
    }
    this.#values = values;
  }

  /** The same, with the source named in messages (e.g. the file). */
  static from(where: string, values: string[]): FixedPassphrase {
    const source = new FixedPassphrase(...values);
    source.#from = where;
    return source;
  }

  forNewKeys(): Promise<string> {
    const value = this.#values[0];
    return new Promise((resolve) => {
      checkNewPassphrase(value, this.#from);
      resolve(value);
    });
  }

  forKey(_label: string, attempt: number): Promise<string | undefined> {
    return Promise.resolve(this.#values[attempt]);
  }
}

/**
 * The passphrases in a file, one a line (blank lines skipped); the first
 * line seals new keys.
 */
export function passphraseFromFile(path: string): FixedPassphrase {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BadInputError(`cannot read passphrase file ${path}`, {
      cause: err,
    });
  }
  const lines = text.split(/\r?\n/).filter((line) => line.length > 0);
  if (lines.length === 0) {
    throw new BadInputError(`passphrase file ${path} is empty`);
  }
  return FixedPassphrase.from(`the first line of ${path}`, lines);
}

/** Asks on the terminal; new keys get the passphrase asked twice. */
export class PromptPassphrase implements PassphraseSource {
  readonly interactive = true;
  readonly #tries: number;
  #last?: string;

  constructor(tries = 3) {
    this.#tries = tries;
  }

  async forNewKeys(): Promise<string> {
    const password = await loadPrompt();
    for (;;) {
      const first = await password({
        message: 'Passphrase for the new keys:',
        mask: true,
      });
      if ([...first].length < MIN_NEW_PASSPHRASE) {
        process.stderr.write(
          `Use at least ${MIN_NEW_PASSPHRASE} characters.\n`,
        );
        continue;
      }
      const second = await password({ message: 'Again:', mask: true });
      if (first === second) return first;
      process.stderr.write('The two passphrases differ; try again.\n');
    }
  }

  async forKey(label: string, attempt: number): Promise<string | undefined> {
    // The passphrase that opened the previous key is tried first, since one
    // person usually unlocks several of their own keys in a row.
    if (attempt === 0 && this.#last !== undefined) return this.#last;
    const asked = this.#last !== undefined ? attempt - 1 : attempt;
    if (asked >= this.#tries) return undefined;
    const password = await loadPrompt();
    this.#last = await password({
      message: `Passphrase for ${label}:`,
      mask: true,
    });
    return this.#last;
  }

  async forPin(token: string): Promise<string | undefined> {
    let password;
    try {
      password = await loadPrompt();
    } catch (err) {
      // No terminal: the caller names every other way to give a PIN.
      if (err instanceof NoPassphraseError) return undefined;
      throw err;
    }
    return password({ message: `PIN for ${token}:`, mask: true });
  }
}

async function loadPrompt(): Promise<
  (opts: { message: string; mask: boolean }) => Promise<string>
> {
  if (!process.stdin.isTTY) {
    throw new NoPassphraseError(
      'a passphrase is needed but there is no terminal to ask on; ' +
        'set TUFOTA_PASSPHRASE or pass --passphrase-file',
    );
  }
  const mod = await import('@inquirer/password');
  return mod.default;
}

/**
 * The source a command uses: an explicit file first, then the environment,
 * then the terminal.
 */
export function passphraseSource(options: {
  passphraseFile?: string;
  env?: NodeJS.ProcessEnv;
}): PassphraseSource {
  if (options.passphraseFile) return passphraseFromFile(options.passphraseFile);
  const fromEnv = (options.env ?? process.env).TUFOTA_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== '') {
    return FixedPassphrase.from('TUFOTA_PASSPHRASE', [fromEnv]);
  }
  return new PromptPassphrase();
}
