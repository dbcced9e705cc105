/**
 * `tufota-device run`: the update cycle as a long-running service. One
 * cycle at a time, then a wait of the interval spread by jitter, so a
 * fleet restarted together does not come back to the server together.
 *
 * It ends with 'reboot' (the command's exit 4) when the device must boot
 * another slot: a trial that failed, or an update installed and waiting
 * for its trial boot. Rebooting is the unit's job (see
 * docs/device-integration.md), so the agent needs no right to do it.
 *
 * Stopping (SIGTERM, SIGINT) ends the wait at once and lets a running
 * cycle finish, a long download included; every step is durable (the
 * journal, the state record, the part file), so a service killed outright
 * resumes at its next start exactly as after a power cut.
 */
import { logger } from '../log.js';
import type { DeviceConfig } from './config.js';
import { openDevice } from './device.js';

const log = logger.child({ module: 'client/service' });

export interface ServiceOptions {
  interval: number;
  /** Each wait is the interval times 1 ± up to this fraction. */
  jitter: number;
}

/** A wait of `interval` spread by `jitter`, uniformly. */
export function nextWait(
  { interval, jitter }: ServiceOptions,
  random = Math.random,
): number {
  return Math.round(interval * (1 + jitter * (2 * random() - 1)));
}

export async function runService(
  config: DeviceConfig,
  options: ServiceOptions,
  io: { out(text: string): void },
): Promise<'stopped' | 'reboot'> {
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    // Whatever the last boot was, it is judged and reported first.
    const first = await openDevice(config);
    try {
      const boot = await first.agent.afterBoot();
      if (boot) io.out(`${new Date().toISOString()} ${JSON.stringify(boot)}\n`);
      if (boot?.rebootRequired) {
        io.out(
          'reboot required: the trial failed; leaving for the known-good slot\n',
        );
        return 'reboot';
      }
    } finally {
      await first.close();
    }
    while (!stopping) {
      // The device is opened for each cycle, so a changed version file
      // (after an update outside the agent) is read afresh.
      let device: Awaited<ReturnType<typeof openDevice>> | undefined;
      try {
        device = await openDevice(config);
        // A stop during the download leaves the install to the next start:
        // a stopping service writes no slot and asks for no reboot.
        const result = await device.agent.runOnce({
          stopRequested: () => stopping,
        });
        io.out(`${new Date().toISOString()} ${JSON.stringify(result)}\n`);
        // An image this cycle put in the inactive slot does nothing until
        // the device boots it; the service leaves, and its unit reboots.
        // Only right after the install: one found waiting at a later start
        // (the reboot did not come, or the arm was lost) waits for the
        // next reboot, so no state can make the unit reboot again and again.
        if (
          result.outcome === 'installed' &&
          result.phase === 'awaiting-reboot'
        ) {
          io.out('reboot required: an update waits in the inactive slot\n');
          return 'reboot';
        }
      } catch (err) {
        // A local fault (disk, state file) is logged and retried next
        // time; the service does not die of it.
        log.error({ err }, 'update cycle failed');
        io.out(`${new Date().toISOString()} cycle failed: ${String(err)}\n`);
      } finally {
        await device?.close();
      }
      if (stopping) break;
      const wait = nextWait(options);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
  io.out('stopped\n');
  return 'stopped';
}
