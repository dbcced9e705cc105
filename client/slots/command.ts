/**
 * Runs a program without a shell and with a deadline: the bootloader
 * tools (grub-editenv, fw_printenv, fw_setenv) and the integrator's health
 * check. The program gets its own process group, so a deadline kills what
 * it started as well (a health-check script's `sleep`, say).
 */
import { spawn } from 'node:child_process';

/** How a run ended. */
export interface CommandResult {
  /** The exit code; null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Whether the deadline passed and the group was killed. */
  timedOut: boolean;
  /** Set when it could not be started (ENOENT, EACCES...). */
  spawnError?: Error;
}

/** Output kept per stream; past it, the rest is dropped. */
const MAX_OUTPUT = 256 * 1024;

/** Runs `file` with `args` and waits for it, killing it at `timeoutMs`. */
export function runCommand(
  file: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let spawnError: Error | undefined;
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code, signal, stdout, stderr, timedOut };
      resolve(spawnError ? { ...result, spawnError } : result);
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // The group is already gone: the program ended as the deadline came.
  }
}

/** One line saying how a run ended, for errors and logs. */
export function describeRun(name: string, result: CommandResult): string {
  if (result.spawnError) {
    return `${name} could not be started: ${result.spawnError.message}`;
  }
  if (result.timedOut) return `${name} did not finish in time`;
  const how =
    result.code === null
      ? `was killed by ${result.signal}`
      : `exited with ${result.code}`;
  const said = result.stderr.trim().split('\n').slice(-1)[0];
  return said ? `${name} ${how}: ${said}` : `${name} ${how}`;
}
