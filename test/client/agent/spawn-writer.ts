/**
 * Runs crash-writer.ts in a real child process and kills it with SIGKILL
 * once it has acknowledged enough writes, so the crash tests can check what
 * a reopened file holds against what was acknowledged before the kill.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));

export interface KilledWriter {
  /** The line it printed first, on opening. */
  opened: string;
  /** Every acknowledged seq or count, in order. */
  acks: number[];
}

/** Starts the writer with `args`, kills it after `count` acks. */
export function killAfter(
  args: string[],
  count: number,
): Promise<KilledWriter> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', script, ...args],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let opened: string | undefined;
    const acks: number[] = [];
    let pending = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (opened === undefined) opened = line;
        else acks.push(Number(line));
      }
      if (acks.length >= count && child.exitCode === null) {
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL' || opened === undefined) {
        reject(new Error(`writer ended with ${code ?? signal}: ${stderr}`));
      } else {
        resolve({ opened, acks });
      }
    });
  });
}
