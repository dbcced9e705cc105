/**
 * A markdown procedure replayed as it is written. Each ```sh block marked
 * `<!-- ceremony: MACHINE -->` runs line by line in the folder that stands
 * for that machine: `tufota` lines through the CLI in-process, after bash
 * has expanded their words as it would for the real command, and every
 * other line in bash. The stick is a folder that is moved into a machine's
 * folder for the length of a block and out again, so a machine sees only
 * its own files and, while plugged in, the stick.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCli } from './cli.js';

const execFileAsync = promisify(execFile);

export interface DocBlock {
  /** The machine its marker names. */
  machine: string;
  /** False when the marker says `(not run)`: kept in order, never run. */
  run: boolean;
  /** Line of the opening fence, counted from 1, for messages. */
  line: number;
  text: string;
  /** The first 12 hex digits of the sha256 of `text`. */
  digest: string;
}

const MARKER = /^<!-- ceremony: ([a-z0-9-]+)( \(not run\))? -->$/;
const FENCE = /^```(\S*)\s*$/;

// Shell blocks under another name would escape the check of markers.
const OTHER_SHELLS = new Set(['bash', 'shell', 'console', 'zsh']);

/**
 * Every ```sh block of a markdown text with its marker. A block without a
 * marker right above it (blank lines allowed) is refused, so no command
 * can be added to the document without saying where it runs.
 */
export function readDocBlocks(markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  let marker: RegExpExecArray | null = null;
  for (let i = 0; i < lines.length; i++) {
    const fence = FENCE.exec(lines[i]);
    if (!fence) {
      const found = MARKER.exec(lines[i].trim());
      if (found) marker = found;
      else if (lines[i].trim() !== '') marker = null;
      continue;
    }
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    if (OTHER_SHELLS.has(fence[1])) {
      throw new Error(`line ${i + 1}: a ${fence[1]} block; mark commands sh`);
    }
    if (fence[1] === 'sh') {
      if (!marker) {
        throw new Error(
          `line ${i + 1}: an sh block with no <!-- ceremony: MACHINE --> above`,
        );
      }
      const text = lines.slice(i + 1, end).join('\n');
      blocks.push({
        machine: marker[1],
        run: marker[2] === undefined,
        line: i + 1,
        text,
        digest: createHash('sha256').update(text).digest('hex').slice(0, 12),
      });
    }
    marker = null;
    i = end;
  }
  return blocks;
}

/** The commands of a block: continuations joined, comments dropped. */
export function commandsOf(text: string): string[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** Upper-case shell variables a text reads: the values a test must fill. */
export function variablesOf(text: string): Set<string> {
  return new Set(
    [...text.matchAll(/\$\{?([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]),
  );
}

/** One command and what it printed, for checks after the run. */
export interface Step {
  machine: string;
  command: string;
  out: string;
  /** Notes and warnings a reader of the screen would see too. */
  err: string;
}

/** What a command printed. */
export interface Printed {
  out: string;
  err: string;
}

/**
 * Runs `script` in bash, strictly: a failing command, an unset variable or
 * a glob that matches nothing fails it.
 */
async function bash(
  script: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<Printed> {
  try {
    const { stdout, stderr } = await execFileAsync(
      'bash',
      ['-c', `set -euo pipefail; shopt -s failglob\n${script}`],
      { cwd, env, maxBuffer: 16 * 1024 * 1024 },
    );
    return { out: stdout, err: stderr };
  } catch (err) {
    const { stdout = '', stderr = '' } = err as {
      stdout?: string;
      stderr?: string;
    };
    throw new Error(`bash: ${script}\n${stderr}${stdout}`, { cause: err });
  }
}

// A tufota line's words are expanded by bash alone; operators would make
// it a pipeline or a list, which the in-process run could not follow.
const SHELL_OPERATORS = /[|;&<>`]|\$\(/;

export class Machine {
  constructor(
    readonly name: string,
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Runs one command here and returns what it printed. */
  async run(command: string): Promise<Printed> {
    if (!/^tufota\s/.test(command)) {
      return bash(command, this.dir, this.env);
    }
    const words = command.slice('tufota'.length);
    if (SHELL_OPERATORS.test(words)) {
      throw new Error(`${command}: a tufota line must be one plain command`);
    }
    const expanded = await bash(`printf '%s\\0' ${words}`, this.dir, this.env);
    const argv = expanded.out.split('\0').slice(0, -1);
    // The CLI resolves relative paths against the working folder, as it
    // does for a person typing in this machine's folder.
    const previous = process.cwd();
    process.chdir(this.dir);
    try {
      const result = await runCli(argv, this.env);
      if (result.code !== 0) {
        throw new Error(
          `${this.name}: ${command} exited ${result.code}\n` +
            `${result.err}${result.out}`,
        );
      }
      return { out: result.out, err: result.err };
    } finally {
      process.chdir(previous);
    }
  }
}

/**
 * The stick: a folder kept apart from every machine, moved to
 * `MACHINE_DIR/stick` while plugged in there.
 */
export class Stick {
  readonly #drawer: string;

  private constructor(drawer: string) {
    this.#drawer = drawer;
  }

  static async make(base: string): Promise<Stick> {
    await mkdir(join(base, 'drawer', 'stick'), { recursive: true });
    return new Stick(join(base, 'drawer'));
  }

  /** Where the stick is mounted in a machine's folder: its `$STICK`. */
  static mountPoint(machineDir: string): string {
    return join(machineDir, 'stick');
  }

  /** Where the stick lies while in no machine. */
  get path(): string {
    return join(this.#drawer, 'stick');
  }

  /** Runs `work` with the stick plugged into `machine`. */
  async pluggedInto<T>(machine: Machine, work: () => Promise<T>): Promise<T> {
    await rename(this.path, Stick.mountPoint(machine.dir));
    try {
      return await work();
    } finally {
      await rename(Stick.mountPoint(machine.dir), this.path);
    }
  }
}

/**
 * Runs blocks in order, each on the machine it names with the stick
 * plugged in, and `afterBlock` before the stick is pulled out: what the
 * stick carries is what that machine held. Any command that fails stops
 * the run.
 */
export async function replay(
  blocks: readonly DocBlock[],
  machines: ReadonlyMap<string, Machine>,
  stick: Stick,
  afterBlock: (machine: Machine) => Promise<void>,
): Promise<Step[]> {
  const steps: Step[] = [];
  for (const block of blocks) {
    const machine = machines.get(block.machine);
    if (!machine) {
      throw new Error(`line ${block.line}: no machine ${block.machine}`);
    }
    await stick.pluggedInto(machine, async () => {
      for (const command of commandsOf(block.text)) {
        const printed = await machine.run(command);
        steps.push({ machine: machine.name, command, ...printed });
      }
      await afterBlock(machine);
    });
  }
  return steps;
}
