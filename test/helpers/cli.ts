/**
 * The `tufota` CLI driven two ways: in-process through `run` with captured
 * output (fast, same code path as a user's), and as a real child process of
 * the built `dist/` for tests that kill it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/cli/main.js';

export const CLI_PASSPHRASE = 'cli test passphrase';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs one command in-process; `env` is the whole environment it sees. */
export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv = { TUFOTA_PASSPHRASE: CLI_PASSPHRASE },
): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await run(argv, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
    env,
    interactive: false,
  });
  return { code, out, err };
}

/** Runs a command that must succeed and returns its stdout. */
export async function cliOk(
  argv: string[],
  env?: NodeJS.ProcessEnv,
): Promise<string> {
  const result = await runCli(argv, env);
  if (result.code !== 0) {
    throw new Error(
      `tufota ${argv.join(' ')} exited ${result.code}: ${result.err}${result.out}`,
    );
  }
  return result.out;
}

/** Runs a command with --json that must succeed and parses its output. */
export async function cliJson<T>(
  argv: string[],
  env?: NodeJS.ProcessEnv,
): Promise<T> {
  return JSON.parse(await cliOk(['--json', ...argv], env)) as T;
}

/** The built CLI, as `npm run build` makes it. */
export const DIST_BIN = fileURLToPath(
  new URL('../../dist/src/cli/bin.js', import.meta.url),
);

/** For a `before` hook: fails clearly when there is no build to spawn. */
export function requireBuild(): void {
  if (!existsSync(DIST_BIN)) {
    throw new Error(
      `${DIST_BIN} is missing: run "npm run build" before these tests ` +
        '(npm test builds first)',
    );
  }
}

export interface SpawnResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  /** Extra environment over this process's own. */
  env?: NodeJS.ProcessEnv;
  /** Send SIGKILL this many milliseconds after the start. */
  killAfterMs?: number;
}

/**
 * Runs `node dist/src/cli/bin.js ARGV` and resolves once it has exited and
 * been reaped, so its pid no longer counts as alive.
 */
export function spawnCli(
  argv: string[],
  options: SpawnOptions = {},
): Promise<SpawnResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test' };
  delete env.TUFOTA_FAULT;
  Object.assign(env, options.env);
  const child = spawn(process.execPath, [DIST_BIN, ...argv], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer =
    options.killAfterMs !== undefined
      ? setTimeout(() => child.kill('SIGKILL'), options.killAfterMs)
      : undefined;
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
