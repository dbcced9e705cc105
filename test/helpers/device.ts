/**
 * A device on two slot files with the `file` bootloader, as the
 * `tufota-device` tests configure it, and the built agent they spawn.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** The built `tufota-device`, as `npm run build` makes it. */
export const DEVICE_BIN = fileURLToPath(
  new URL('../../dist/client/cli/bin.js', import.meta.url),
);

/**
 * The device.json of a test device in `home`: slot-a and slot-b files,
 * healthy while `home/healthy` exists, reporting to `server` as
 * `deviceId` with the credential in `home/credential`.
 */
export function slotDeviceConfig(
  home: string,
  server: { url: string; metadataUrl: string; targetsUrl: string },
  deviceId: string,
  slotsExtra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    stateDir: 'state',
    metadataUrl: server.metadataUrl,
    targetsUrl: server.targetsUrl,
    allowHttp: true,
    hardware: 'board-a',
    channel: 'stable',
    versionFile: 'version',
    buildDate: '2026-01-01T00:00:00Z',
    slots: {
      a: 'slot-a',
      b: 'slot-b',
      bootloader: { kind: 'file', path: 'boot', fallback: 'a' },
      cmdline: 'cmdline',
      healthCheck: {
        command: ['sh', '-c', `test -e ${join(home, 'healthy')}`],
        timeoutMs: 5000,
      },
      ...slotsExtra,
    },
    report: { url: server.url, deviceId, credentialFile: 'credential' },
  };
}
