/**
 * Throwaway SoftHSM2 tokens for tests. SoftHSM2 finds its token folder
 * through the softhsm2.conf that SOFTHSM2_CONF names, read from this
 * process's own environment when the module initializes; so the helper
 * points SOFTHSM2_CONF at a config of its own in a temporary folder, and
 * the in-process CLI and spawned ones all see the same tokens.
 *
 * No SoftHSM2 is a failure, not a skip: CI installs it (`.ci/run`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './fixtures.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const SOFTHSM_UTIL = '/usr/bin/softhsm2-util';

/** For a `before` hook: fails with how to install SoftHSM2 when it is not. */
export function requireSoftHsm(): void {
  for (const path of [SOFTHSM_MODULE, SOFTHSM_UTIL]) {
    if (!existsSync(path)) {
      throw new Error(
        `${path} is missing: the hardware-token tests need SoftHSM2; ` +
          'install it with "apt-get update && apt-get install -y softhsm2" ' +
          '(.ci/run does this on CI)',
      );
    }
  }
}

let tokenDir: string | undefined;

/** The token folder, made anew when a cleanup removed the previous one. */
async function softHsmConfig(): Promise<string> {
  if (tokenDir && existsSync(tokenDir)) return tokenDir;
  const base = await tempDir('tufota-softhsm-');
  tokenDir = join(base, 'tokens');
  await mkdir(tokenDir);
  const conf = join(base, 'softhsm2.conf');
  await writeFile(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\n` +
      'log.level = ERROR\nslots.removable = false\n',
  );
  process.env.SOFTHSM2_CONF = conf;
  return tokenDir;
}

export interface TestToken {
  label: string;
  pin: string;
  /** A file holding the PIN, for `pin-source=file:`. */
  pinFile: string;
  /**
   * A URI for a key on this token, with the module path and PIN file in
   * it; `key` is appended to the path (e.g. `object=root-1`).
   */
  uri(key?: string, withPin?: boolean): string;
  /** Environment naming the module and PIN instead of the URI. */
  env: { TUFOTA_PKCS11_MODULE: string; TUFOTA_PKCS11_PIN: string };
}

let made = 0;

/** A new, empty, initialized token with its own label and PIN. */
export async function createToken(label?: string): Promise<TestToken> {
  requireSoftHsm();
  await softHsmConfig();
  const name = label ?? `tufota-test-${process.pid}-${++made}`;
  const pin = `pin-${made}-1234`;
  execFileSync(
    SOFTHSM_UTIL,
    [
      '--init-token',
      '--free',
      '--label',
      name,
      '--pin',
      pin,
      '--so-pin',
      `so-${pin}`,
    ],
    { env: process.env, stdio: 'pipe' },
  );
  const pinFile = join(await tempDir('tufota-pin-'), 'pin.txt');
  await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
  return {
    label: name,
    pin,
    pinFile,
    uri: (key, withPin = true) =>
      `pkcs11:token=${name}${key ? `;${key}` : ''}` +
      `?module-path=${SOFTHSM_MODULE}` +
      (withPin ? `&pin-source=file:${pinFile}` : ''),
    env: { TUFOTA_PKCS11_MODULE: SOFTHSM_MODULE, TUFOTA_PKCS11_PIN: pin },
  };
}
