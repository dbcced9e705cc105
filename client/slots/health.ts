/**
 * The integrator's health check, run after a trial boot: a command with a
 * deadline (exit 0 in time is healthy; any other exit, a signal, a missing
 * program or the deadline is not), or, in-process, a function.
 */
import { describeRun, runCommand } from './command.js';
import { messageOf } from './errors.js';

/** A health check command, run without a shell. */
export interface HealthCommand {
  command: readonly [string, ...string[]];
  /** Default 60 s. */
  timeoutMs?: number;
}

/** A health check in the same process (tests, simulations). */
export type HealthProbe = () => Promise<HealthVerdict>;

/** What `afterBoot` runs after a trial boot. */
export type HealthCheck = HealthCommand | HealthProbe;

/** A health check's answer. */
export interface HealthVerdict {
  healthy: boolean;
  /** Why not, when not healthy. */
  reason?: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** Runs `check`; never throws, an error is an unhealthy verdict. */
export async function runHealthCheck(
  check: HealthCheck,
): Promise<HealthVerdict> {
  if (typeof check === 'function') {
    try {
      return await check();
    } catch (err) {
      return {
        healthy: false,
        reason: `health check threw: ${messageOf(err)}`,
      };
    }
  }
  const [file, ...args] = check.command;
  const result = await runCommand(
    file,
    args,
    check.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
  if (result.code === 0 && !result.timedOut && !result.spawnError) {
    return { healthy: true };
  }
  return { healthy: false, reason: describeRun('health check', result) };
}
